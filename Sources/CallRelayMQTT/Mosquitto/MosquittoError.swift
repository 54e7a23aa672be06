import CMosquitto

/// A libmosquitto result code with its library description (`mosquitto_strerror`).
package struct MosquittoError: Error, Sendable, Equatable, CustomStringConvertible {
    package let code: Int32

    package var description: String {
        String(cString: mosquitto_strerror(code)) + " (MOSQ_ERR \(code))"
    }

    /// The client is not connected (publishing may be retried after reconnecting).
    package var isNotConnected: Bool { code == Int32(MOSQ_ERR_NO_CONN.rawValue) }
    /// The broker's Maximum Packet Size (MQTT 5) is smaller than the message.
    package var isOversize: Bool { code == Int32(MOSQ_ERR_OVERSIZE_PACKET.rawValue) }
    /// The message can never be sent (too large for the protocol or the broker).
    package var isPermanent: Bool {
        code == Int32(MOSQ_ERR_PAYLOAD_SIZE.rawValue) || code == Int32(MOSQ_ERR_OVERSIZE_PACKET.rawValue)
            || code == Int32(MOSQ_ERR_MALFORMED_UTF8.rawValue) || code == Int32(MOSQ_ERR_INVAL.rawValue)
    }
}

/// The text of a CONNACK return code: 3.1.1's (`mosquitto_connack_string`), e.g. "Connection
/// Refused: not authorised.", or MQTT 5's reason code (`mosquitto_reason_string`).
package func connackDescription(_ code: Int32) -> String {
    code < 0x80 ? String(cString: mosquitto_connack_string(code)) : String(cString: mosquitto_reason_string(code)) + " (CONNACK 0x\(String(code, radix: 16)))"
}
