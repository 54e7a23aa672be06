import ArgumentParser
import CallRelayConfig
import CallRelayCore
import CallRelayOutbox

/// `callrelay status`: what the outbox holds and whether the agent and its broker connection are
/// up. Reads the outbox file directly, so it works with the agent stopped.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show events by state, oldest undelivered age, dead letters, and whether the agent runs and is connected.",
        discussion: """
            Reads the outbox file (storage.path) directly, so it works whether or not the agent runs, and asks the \
            running agent (http.listen, GET /metrics) whether it is connected to the broker.
            Exit status 0; 69 when neither the agent nor the outbox can be read; 78 when the config is invalid.
            """)

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: "How many of the newest dead letters to list.")
    var deadLetters: Int = 10

    func run() throws {
        let (loaded, _) = loadConfiguration(flag: options.config)
        guard let configuration = loaded else { throw ExitCode(ExitCodes.config) }
        let now = Timestamp.nowMilliseconds()

        let agent = AgentProbe.probe(configuration.http)
        printLine("agent:         \(agent.summary)")
        for line in agent.details { printLine("               \(line)") }

        let path = configuration.storage.path
        printLine("outbox:        \(path)")
        let stats: OutboxStats
        do {
            stats = try SQLiteOutbox.inspect(path: path)
        } catch {
            printLine("               cannot read: \(error)")
            if !agent.running { throw ExitCode(ExitCodes.unavailable) }
            return
        }
        let oldest = stats.oldestPendingReceivedAtMilliseconds.map { " (oldest received \(age(now - $0)) ago)" } ?? ""
        printLine("  pending:     \(stats.pending)\(oldest)")
        let last = stats.lastDeliveredAtMilliseconds.map { " (last \(age(now - $0)) ago)" } ?? ""
        printLine("  delivered:   \(stats.delivered)\(last)")
        printLine("  dead letters: \(stats.deadLetters)")
        if stats.deadLetters > 0, deadLetters > 0, let letters = try? SQLiteOutbox.deadLetters(path: path, limit: deadLetters) {
            printLine("dead letters (newest first; `callrelay replay --since TIME` publishes them again):")
            for l in letters {
                printLine(
                    "  \(Timestamp.rfc3339(millisecondsSinceEpoch: l.deadAtMilliseconds))  id \(l.eventID)  \(l.topic)  attempts \(l.attempts): \(l.reason)")
            }
        }
    }
}

/// Asks the running agent for its state through `GET /metrics` (on `http.admin_listen` when
/// that is set).
struct AgentProbe {
    var running: Bool
    var summary: String
    /// Further lines about the broker session (protocol, window, refusals), when running.
    var details: [String] = []

    static func probe(_ http: RelayConfiguration.HTTP) -> AgentProbe {
        let address = http.adminLocalAddress ?? http.localAddress
        let client = HTTPClient(host: address.host, port: address.port, timeoutMilliseconds: 2000)
        do {
            let response = try client.request(method: "GET", path: "/metrics", headers: [], body: [])
            guard response.status == 200 else {
                return AgentProbe(running: true, summary: "something answers on \(client.authority) with HTTP \(response.status); is it callrelay?")
            }
            let metrics = MetricsSample(text: response.bodyText)
            let connected = metrics.value("callrelay_mqtt_connected") == 1
            let version = metrics.value("callrelay_mqtt_protocol_info", label: "version=\"5\"") == 1 ? "MQTT 5" : "MQTT 3.1.1"
            let window = metrics.value("callrelay_mqtt_inflight_window").map { ", in-flight window \(Int($0))" } ?? ""
            var details: [String] = []
            if metrics.value("callrelay_mqtt_retain_available") == 0 {
                details.append("the broker does not keep retained messages: the presence topic is not retained")
            }
            if let active = metrics.value("callrelay_calls_active") {
                let retained = Int(metrics.value("callrelay_calls_retained") ?? 0)
                details.append("calls: \(Int(active)) active, \(retained) with a retained state (ended ones are cleared after calls.clear_after_seconds)")
            } else {
                details.append("calls: call state off (calls.enabled = false)")
            }
            let refused = Int(metrics.value("callrelay_mqtt_refused_total") ?? 0)
            if refused > 0 {
                let waiting = Int(metrics.value("callrelay_mqtt_retry_waiting_messages") ?? 0)
                details.append("publishes refused by the broker: \(refused) (\(waiting) waiting for a retry; reasons in the agent's log and below)")
            }
            return AgentProbe(
                running: true,
                summary: "running on \(client.authority); broker \(connected ? "connected (\(version)\(window))" : "NOT connected (see the agent's log)")",
                details: details)
        } catch {
            return AgentProbe(running: false, summary: "not running (\(error))")
        }
    }
}

/// The samples of a Prometheus text page, looked up by name (and one label).
struct MetricsSample {
    private var lines: [Substring]
    init(text: String) { lines = text.split(separator: "\n").filter { !$0.hasPrefix("#") } }

    func value(_ name: String, label: String? = nil) -> Double? {
        let prefix = label.map { "\(name){\($0)}" } ?? name
        for line in lines where line.hasPrefix(prefix + " ") {
            return Double(line.dropFirst(prefix.count + 1))
        }
        return nil
    }
}

extension RelayConfiguration.HTTP {
    /// `http.admin_listen` as a local tool reaches it, when set.
    var adminLocalAddress: (host: String, port: Int)? {
        guard let host = adminHost, let port = adminPort else { return nil }
        switch host {
        case "", "0.0.0.0": return ("127.0.0.1", port)
        case "::", "[::]": return ("::1", port)
        default: return (host, port)
        }
    }

    /// Where a local tool reaches the agent: `http.listen`, a wildcard address replaced by loopback.
    var localAddress: (host: String, port: Int) {
        switch listenHost {
        case "", "0.0.0.0": ("127.0.0.1", listenPort)
        case "::", "[::]": ("::1", listenPort)
        default: (listenHost, listenPort)
        }
    }
}

/// `3d4h`, `12m5s`, `800ms`.
func age(_ milliseconds: Int64) -> String {
    let ms = max(0, milliseconds)
    if ms < 1000 { return "\(ms)ms" }
    let s = ms / 1000
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60)
    if d > 0 { return "\(d)d\(h)h" }
    if h > 0 { return "\(h)h\(m)m" }
    if m > 0 { return "\(m)m\(sec)s" }
    return "\(sec)s"
}
