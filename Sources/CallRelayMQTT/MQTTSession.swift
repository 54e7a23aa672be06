/// The MQTT version of a session.
package enum MQTTProtocolVersion: String, Sendable, Equatable, CustomStringConvertible {
    case v311 = "3.1.1"
    case v5 = "5"

    package var description: String { rawValue }
}

/// `mqtt.protocol`: which version to speak, and whether to fall back.
package enum MQTTProtocolPreference: Sendable, Equatable, CustomStringConvertible {
    /// MQTT 5, falling back to 3.1.1 when the broker's CONNACK refuses the protocol version.
    case auto
    /// This version only.
    case only(MQTTProtocolVersion)

    /// `"auto"`, `"5"`, `"3.1.1"` (the config key's values); nil for anything else.
    package init?(configValue: String) {
        switch configValue {
        case "auto": self = .auto
        case "5": self = .only(.v5)
        case "3.1.1": self = .only(.v311)
        default: return nil
        }
    }

    /// The version of the first CONNECT.
    package var first: MQTTProtocolVersion {
        switch self {
        case .auto: .v5
        case .only(let version): version
        }
    }

    package var description: String {
        switch self {
        case .auto: "auto"
        case .only(let version): version.rawValue
        }
    }
}

package enum MQTTQoS: Int, Sendable, Equatable, CaseIterable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2
}

/// What the broker's CONNACK said about the session.
package struct MQTTSessionInfo: Sendable, Equatable {
    package var protocolVersion: MQTTProtocolVersion
    /// MQTT 5 Receive Maximum: QoS 1 and 2 publishes the broker takes unacknowledged at once
    /// (nil: not sent, which means 65,535; always nil on 3.1.1).
    package var receiveMaximum: Int?
    /// MQTT 5 Retain Available (always true on 3.1.1, which cannot say otherwise). When false,
    /// libmosquitto silently clears the retain flag of every publish.
    package var retainAvailable: Bool
    /// MQTT 5 Maximum Packet Size (nil: no limit given). libmosquitto refuses a larger publish
    /// with `MOSQ_ERR_OVERSIZE_PACKET`.
    package var maximumPacketSize: Int?

    package init(protocolVersion: MQTTProtocolVersion, receiveMaximum: Int? = nil, retainAvailable: Bool = true, maximumPacketSize: Int? = nil) {
        self.protocolVersion = protocolVersion
        self.receiveMaximum = receiveMaximum
        self.retainAvailable = retainAvailable
        self.maximumPacketSize = maximumPacketSize
    }

    /// The stock mosquitto's quota of incoming QoS 2 messages per client (`max_inflight_messages`,
    /// default 20). Past it, mosquitto answers PUBREC with reason 0x97 "quota exceeded" and drops
    /// the message, and a 3.1.1 PUBREC carries no reason: the loss looks like a delivery.
    package static let qos2QuotaAssumedOn311 = 20

    /// The in-flight window for this session: the configured `mqtt.max_inflight`, bounded by the
    /// broker's Receive Maximum on MQTT 5; on 3.1.1 at QoS 2, bounded by the quota a stock
    /// mosquitto takes (nothing else on 3.1.1 can say what the broker takes, and exceeding it
    /// loses events silently). At least 1.
    package func inflightWindow(configured: Int, qos: MQTTQoS) -> Int {
        var window = max(1, configured)
        if let receiveMaximum { window = min(window, receiveMaximum) }
        if protocolVersion == .v311 && qos == .exactlyOnce { window = min(window, Self.qos2QuotaAssumedOn311) }
        return max(1, window)
    }
}

/// An MQTT 5 reason code from a PUBACK, PUBREC or PUBCOMP (0 on 3.1.1, which has none).
package struct MQTTReasonCode: Sendable, Equatable, Hashable, CustomStringConvertible {
    package let value: Int

    package init(_ value: Int) { self.value = value }

    package static let success = MQTTReasonCode(0x00)
    package static let noMatchingSubscribers = MQTTReasonCode(0x10)
    package static let unspecifiedError = MQTTReasonCode(0x80)
    package static let notAuthorized = MQTTReasonCode(0x87)
    package static let topicNameInvalid = MQTTReasonCode(0x90)
    package static let quotaExceeded = MQTTReasonCode(0x97)
    package static let payloadFormatInvalid = MQTTReasonCode(0x99)

    /// 0x80 and above: the broker did not take the message.
    package var isFailure: Bool { value >= 0x80 }

    /// The specification's name (MQTT 5 §2.4), e.g. "not authorized".
    package var name: String {
        switch value {
        case 0x00: "success"
        case 0x10: "no matching subscribers"
        case 0x80: "unspecified error"
        case 0x83: "implementation specific error"
        case 0x87: "not authorized"
        case 0x90: "topic name invalid"
        case 0x91: "packet identifier in use"
        case 0x92: "packet identifier not found"
        case 0x95: "packet too large"
        case 0x97: "quota exceeded"
        case 0x99: "payload format invalid"
        default: "reason code"
        }
    }

    /// "not authorized (0x87)".
    package var description: String {
        let hex = String(value, radix: 16, uppercase: false)
        return "\(name) (0x\(hex.count < 2 ? "0" + hex : hex))"
    }
}

/// MQTT 5 properties of one publish; ignored on a 3.1.1 session (where libmosquitto would
/// refuse a publish that carries any with `MOSQ_ERR_NOT_SUPPORTED`).
package struct MQTTPublishProperties: Sendable, Equatable {
    /// Payload Format Indicator 1: the payload is UTF-8.
    package var payloadIsUTF8: Bool
    package var contentType: String?
    package var userProperties: [(name: String, value: String)]
    /// Message Expiry Interval; nil: never expires.
    package var messageExpirySeconds: UInt32?

    package init(
        payloadIsUTF8: Bool = false, contentType: String? = nil, userProperties: [(name: String, value: String)] = [],
        messageExpirySeconds: UInt32? = nil
    ) {
        self.payloadIsUTF8 = payloadIsUTF8
        self.contentType = contentType
        self.userProperties = userProperties
        self.messageExpirySeconds = messageExpirySeconds
    }

    package var isEmpty: Bool { !payloadIsUTF8 && contentType == nil && userProperties.isEmpty && messageExpirySeconds == nil }

    package static func == (a: Self, b: Self) -> Bool {
        a.payloadIsUTF8 == b.payloadIsUTF8 && a.contentType == b.contentType && a.messageExpirySeconds == b.messageExpirySeconds
            && a.userProperties.map(\.name) == b.userProperties.map(\.name) && a.userProperties.map(\.value) == b.userProperties.map(\.value)
    }
}
