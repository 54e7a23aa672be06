import CallRelayConfig
import CallRelayDaemon
import CallRelayMQTT
import Glibc
import Logging
import Synchronization

/// A short-lived MQTT connection made with the agent's settings (host, port, credentials, TLS) but
/// its own client id, for `check-config --connect` and `send-test`. A second connection with the
/// agent's own client id would make the broker disconnect the running agent.
final class BrokerProbe: Sendable {
    struct Message: Sendable {
        var topic: String
        var payload: [UInt8]
    }

    private struct State {
        var connected = false
        var firstFailure: String?
        var messages: [Message] = []
    }

    /// Shared with the client's event closure (a `Mutex` itself cannot be captured).
    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    let options: MQTTConnectionOptions
    private let client: MosquittoClient
    private let shared = Shared()

    /// `host:port`, with " (TLS)" when `ca_file` is set.
    var brokerDescription: String {
        let address = options.host.contains(":") ? "[\(options.host)]:\(options.port)" : "\(options.host):\(options.port)"
        return options.caFile == nil ? address : "\(address) (TLS)"
    }

    init(configuration: RelayConfiguration, clientID: String) throws(MosquittoError) {
        var options = MQTTConnectionOptions(configuration: configuration.mqtt, clientID: clientID)
        options.backoff = ReconnectBackoff(minimumMilliseconds: 500, maximumMilliseconds: 2000)  // it never retries for long
        let shared = self.shared
        self.options = options
        client = try MosquittoClient(options: options, logger: silentLogger) { event in
            switch event {
            case .connected:
                shared.state.withLock { $0.connected = true }
            case .disconnected(let reason):
                shared.state.withLock { s in
                    s.connected = false
                    if s.firstFailure == nil { s.firstFailure = reason }
                }
            case .message(let m):
                shared.state.withLock { $0.messages.append(Message(topic: m.topic, payload: m.payload)) }
            case .published:
                break
            }
        }
    }

    /// Connects (subscribing to `topics` first thing) and waits for the CONNACK and the SUBACKs.
    /// Returns nil when connected and subscribed, else why not: the first failure libmosquitto
    /// or the broker reported (no retry: a technician wants the reason now), or a timeout.
    func connect(subscribing topics: [String] = [], timeoutMilliseconds: Int) -> String? {
        for topic in topics { client.subscribe(topic: topic, qos: .atLeastOnce) }
        client.start()
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while monotonicMilliseconds() < deadline {
            let (connected, failure) = shared.state.withLock { ($0.connected, $0.firstFailure) }
            if let failure, !connected { return failure }
            if connected && client.subscriptionsAcknowledged.load(ordering: .relaxed) >= topics.count { return nil }
            usleep(5_000)
        }
        let connected = shared.state.withLock { $0.connected }
        return connected
            ? "connected, but the broker did not acknowledge the subscription within \(timeoutMilliseconds / 1000) s"
            : "no answer within \(timeoutMilliseconds / 1000) s (a firewall dropping packets, or a wrong host)"
    }

    /// The first message received (in order) that `matches`, waiting up to the deadline.
    func waitForMessage(untilMonotonicMilliseconds deadline: Int64, where matches: (Message) -> Bool) -> Message? {
        var seen = 0
        while true {
            let fresh = shared.state.withLock { s -> [Message] in
                defer { seen = s.messages.count }
                return Array(s.messages[seen...])
            }
            if let hit = fresh.first(where: matches) { return hit }
            if monotonicMilliseconds() >= deadline { return nil }
            usleep(2_000)
        }
    }

    var received: [Message] { shared.state.withLock { $0.messages } }

    /// Disconnects cleanly when connected. A connection attempt that hangs (a host that drops
    /// packets) is left to the process exit instead of being joined.
    func close() {
        if shared.state.withLock({ $0.connected }) { client.stop() }
    }

    /// One sentence of advice for a broker failure reason.
    static func hint(for reason: String) -> String {
        let text = reason.lowercased()
        if text.contains("not authori") || text.contains("bad user name or password") {
            return "check mqtt.username and mqtt.password (or CALLRELAY_MQTT_PASSWORD) against the broker's users"
        }
        if text.contains("identifier rejected") {
            return "the broker rejects the client id; check its client id rules"
        }
        if text.contains("broker unavailable") {
            return "the broker is up but refuses clients for now; see the broker's log"
        }
        if text.contains("connection refused") {
            return "nothing accepts connections there: check mqtt.host and mqtt.port, and that the broker runs"
        }
        if text.contains("tls") || text.contains("ssl") || text.contains("certificate") {
            return
                "check mqtt.ca_file (the CA that signed the broker's certificate), that mqtt.host matches the name in that certificate, and mqtt.cert_file/mqtt.key_file if the broker asks for a client certificate"
        }
        if text.contains("lookup") || text.contains("resolve") || text.contains("name or service") {
            return "mqtt.host does not resolve: check the name, or use the broker's IP address"
        }
        if text.contains("no answer") || text.contains("timed out") || text.contains("unreachable") {
            return "check mqtt.host, the network route and firewalls between this gateway and the broker"
        }
        if text.contains("connection lost") || text.contains("reset") {
            return "the broker closed the connection: a TLS listener reached without mqtt.ca_file, or see the broker's log"
        }
        return "see the broker's log"
    }
}

/// Commands print their own lines; library logging would only interleave with them.
let silentLogger = Logger(label: "callrelay.cli", factory: { _ in SwiftLogNoOpLogHandler() })
