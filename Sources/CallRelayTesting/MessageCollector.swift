import CallRelayMQTT
import Foundation
import Synchronization

/// An MQTT subscriber (through the same libmosquitto wrapper) that records what arrives.
public final class MessageCollector: Sendable {
    public struct Message: Sendable {
        public var topic: String
        public var payload: [UInt8]
        public var retain: Bool = false
        /// MQTT 5 properties (empty on 3.1.1).
        public var contentType: String? = nil
        public var payloadFormatUTF8: Bool = false
        public var userProperties: [String: String] = [:]
        public var messageExpirySeconds: UInt32? = nil
        public var text: String { String(decoding: payload, as: UTF8.self) }
        public var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any] }
    }

    private let messages = Mutex<[Message]>([])
    private let connectedFlag = Mutex(false)
    private let box = ClientBox()

    /// - Parameter persistentSession: keep the subscription and queued QoS 1 messages in the broker
    ///   while this subscriber is away (with a broker started with `persistent: true`, also across
    ///   broker restarts).
    public init(
        port: Int, topic: String, qos: Int32 = 1, clientID: String = "collector-\(UUID().uuidString.prefix(8))", persistentSession: Bool = false,
        mqtt5: Bool = true
    ) throws {
        var options = MQTTConnectionOptions(host: "127.0.0.1", port: port, clientID: clientID)
        options.protocolPreference = .only(mqtt5 ? .v5 : .v311)
        options.cleanSession = !persistentSession
        options.backoff = ReconnectBackoff(minimumMilliseconds: 100, maximumMilliseconds: 500)
        let client = try MosquittoClient(options: options) { [weak self] event in
            switch event {
            case .message(let m):
                let p = m.properties
                let message = Message(
                    topic: m.topic, payload: m.payload, retain: m.retain, contentType: p.contentType, payloadFormatUTF8: p.payloadIsUTF8,
                    userProperties: Dictionary(p.userProperties.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a }),
                    messageExpirySeconds: p.messageExpirySeconds)
                self?.messages.withLock { $0.append(message) }
            case .connected: self?.connectedFlag.withLock { $0 = true }
            case .disconnected: self?.connectedFlag.withLock { $0 = false }
            case .published: break
            }
        }
        client.subscribe(topic: topic, qos: MQTTQoS(rawValue: Int(qos)) ?? .atLeastOnce)
        box.client = client
        client.start()
        guard waitUntil(seconds: 10, { self.connectedFlag.withLock { $0 } }) else {
            client.stop()
            throw HTTPTestClient.Failure(description: "subscriber could not connect to 127.0.0.1:\(port)")
        }
        usleep(100_000)  // let the SUBACK arrive
    }

    public var received: [Message] { messages.withLock { $0 } }

    /// Waits until `count` messages matching `filter` arrived (or the timeout); returns them.
    @discardableResult
    public func wait(for count: Int, seconds: Double = 15, where filter: @escaping (Message) -> Bool = { _ in true }) -> [Message] {
        _ = waitUntil(seconds: seconds) { self.received.filter(filter).count >= count }
        return received.filter(filter)
    }

    public func stop() { box.client?.stop() }

    deinit { box.client?.stop() }
}

private final class ClientBox: @unchecked Sendable {
    var client: MosquittoClient?
}

/// Polls `condition` every 10 ms until true or the timeout.
public func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
