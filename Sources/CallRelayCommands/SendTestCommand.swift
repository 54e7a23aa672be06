import ArgumentParser
import CallRelayConfig
import CallRelayCore
import Glibc

/// `callrelay send-test`: an end-to-end check for a field technician. Subscribes to the broker,
/// posts a synthetic live event to the running agent, and waits until the agent publishes it.
struct SendTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-test",
        abstract: "Send a test webhook to the running agent and wait for it on MQTT: PASS or FAIL.",
        discussion: """
            Uses the agent's config file; run it with sudo (the installed file is readable
            by root and the callrelay group only). One line per stage:
              broker  connects with the agent's MQTT settings (host, port, credentials,
                      TLS) as callrelay-send-test-PID and subscribes to
                      {topic_prefix}/callrelay-send-test/live/#
              agent   posts a live event with a new call id, with http.token, to
                      http://HOST:PORT/webhooks/piopiy/live, HOST:PORT from http.listen
                      (127.0.0.1 or ::1 when it listens on every address; see --agent)
              mqtt    waits for the message carrying the id from the agent's answer
            then PASS with the timings, or FAIL with what to check: agent not running,
            wrong token, outbox full (503), broker unreachable (with the libmosquitto
            reason), or the event not published within --timeout seconds.

            Subscribers see the test event on {topic_prefix}/callrelay-send-test/live/send_test
            with app_id "callrelay-send-test"; they can ignore that app id.

            Exit status: 0 PASS; 1 FAIL; 78 invalid configuration.
            """)

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the broker, for the agent's answer, and for the event on MQTT.", valueName: "SECONDS"))
    var timeout: Int = 10

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Post to this address instead of the one derived from http.listen (for example the gateway's LAN address, to test the firewall too).",
            valueName: "HOST:PORT"))
    var agent: String?

    func validate() throws {
        guard (1...300).contains(timeout) else { throw ValidationError("--timeout must be 1 to 300 seconds") }
        if let agent, Self.parseAddress(agent) == nil {
            throw ValidationError("--agent must be HOST:PORT or [IPv6]:PORT, found \"\(agent)\"")
        }
    }

    func run() throws {
        let (loaded, path) = loadConfiguration(flag: options.config)
        guard let configuration = loaded else {
            printLine("FAIL: the configuration \(path) is invalid (the problems are listed above); fix it, then check it with callrelay check-config")
            throw ExitCode(ExitCodes.config)
        }
        if let failure = SendTest(configuration: configuration, configPath: path, agent: agent.flatMap(Self.parseAddress), timeoutSeconds: timeout).run() {
            printLine("FAIL: \(failure)")
            throw ExitCode(1)
        }
    }

    /// `HOST:PORT` or `[IPv6]:PORT`.
    static func parseAddress(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }
}

/// One run of the test; `run()` returns nil on PASS, else the reason for FAIL.
struct SendTest {
    static let appID = "callrelay-send-test"
    static let status = "send_test"

    let configuration: RelayConfiguration
    let configPath: String
    let agent: (host: String, port: Int)?
    let timeoutSeconds: Int

    var timeoutMilliseconds: Int { timeoutSeconds * 1000 }

    /// Where the agent is reached: `http.listen`, with a wildcard address replaced by loopback.
    var agentAddress: (host: String, port: Int) {
        agent ?? configuration.http.localAddress
    }

    func run() -> String? {
        let mqtt = configuration.mqtt
        let eventFilter = "\(mqtt.topicPrefix)/\(Self.appID)/live/#"
        let presenceTopic = "\(mqtt.topicPrefix)/agents/\(mqtt.clientID)/status"

        // 1. Subscribe before posting, so the event cannot pass by unseen.
        let clientID = "callrelay-send-test-\(getpid())"
        let probe: BrokerProbe
        do {
            probe = try BrokerProbe(configuration: configuration, clientID: clientID)
        } catch {
            return "cannot set up the MQTT client: \(error)"
        }
        defer { probe.close() }
        if let failure = probe.connect(subscribing: [eventFilter, presenceTopic], timeoutMilliseconds: timeoutMilliseconds) {
            printLine("broker \(probe.brokerDescription) ... FAILED: \(failure)")
            return "cannot reach the MQTT broker \(probe.brokerDescription): \(failure); \(BrokerProbe.hint(for: failure)). "
                + "The agent was not tested (callrelay check-config --connect shows the same connection)."
        }
        printLine("broker \(probe.brokerDescription) ... ok (subscribed to \(eventFilter) as \(clientID))")

        // 2. Post the webhook.
        let (host, port) = agentAddress
        let http = HTTPClient(host: host, port: port, timeoutMilliseconds: timeoutMilliseconds)
        let url = "http://\(http.authority)/webhooks/piopiy/live"
        let callID = "\(Self.appID)-\(getpid())-\(Timestamp.nowMilliseconds())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        let body = Array(
            """
            {"appid":"\(Self.appID)","cmiuuid":"\(callID)","conversation_uuid":"\(callID)","direction":"outbound","leg":"a",\
            "status":"\(Self.status)","time":\(Timestamp.nowMilliseconds()),"extra_params":"sent by callrelay send-test; safe to ignore"}
            """.utf8)
        var headers: [(String, String)] = [("Content-Type", "application/json"), ("User-Agent", "callrelay-send-test/\(callrelayVersion)")]
        if !configuration.http.token.isEmpty { headers.append(("Authorization", "Bearer \(configuration.http.token)")) }
        let posted = monotonicMilliseconds()
        let response: HTTPClient.Response
        do {
            response = try http.request(method: "POST", path: "/webhooks/piopiy/live", headers: headers, body: body)
        } catch {
            printLine("agent \(url) ... FAILED: \(error)")
            return agentUnreachable(error, address: http.authority)
        }
        let answered = monotonicMilliseconds()
        let answer = try? JSONValue.parse(response.body)
        let errorText = answer?["error"]?.stringValue ?? response.bodyText
        guard response.status == 200 else {
            printLine("agent \(url) ... FAILED: \(response.status) \(errorText)")
            return rejected(response, errorText: errorText)
        }
        guard let id = answer?["id"]?.stringValue else {
            printLine("agent \(url) ... FAILED: 200 without an event id: \(response.bodyText)")
            return "the server at \(http.authority) answered 200 but not like callrelay (\(response.bodyText.prefix(200))); is another program listening on that port?"
        }
        if answer?["duplicate"] == JSONValue.bool(true) {
            printLine("agent \(url) ... FAILED: 200 duplicate")
            return "the agent reported the new test event \(id) as a duplicate; this is a callrelay bug, please report it"
        }
        printLine("agent \(url) ... ok (200 in \(answered - posted) ms, stored as \(id))")

        // 3. Wait for it on the broker.
        let deadline = answered + Int64(timeoutMilliseconds)
        let message = probe.waitForMessage(untilMonotonicMilliseconds: deadline) { message in
            guard message.topic != presenceTopic, let payload = try? JSONValue.parse(message.payload) else { return false }
            return payload["id"]?.stringValue == id
        }
        guard let message else {
            printLine("mqtt \(eventFilter) ... FAILED: not received within \(timeoutSeconds) s")
            return notPublished(id: id, presenceTopic: presenceTopic, presence: probe.received.last { $0.topic == presenceTopic })
        }
        let received = monotonicMilliseconds()
        printLine("mqtt \(message.topic) ... ok (received \(received - answered) ms after the agent's answer)")
        printLine(
            "PASS: the agent stored the test webhook in \(answered - posted) ms and the broker delivered it \(received - answered) ms later (\(received - posted) ms in all)"
        )
        return nil
    }

    private func agentUnreachable(_ error: HTTPClient.Failure, address: String) -> String {
        switch error {
        case .cannotConnect(_, let code) where code == ECONNREFUSED:
            return "the agent is not running: nothing accepts connections on \(address) (http.listen in \(configPath)). "
                + "Start it with: systemctl start callrelay; if it stops again, its log says why: journalctl -u callrelay -n 50"
        case .cannotConnect(_, let code):
            return "cannot reach the agent at \(address): \(String(cString: strerror(code))); check http.listen in \(configPath), the address and firewalls"
        case .cannotResolve(let host, let reason):
            return "cannot resolve \(host): \(reason); check http.listen in \(configPath) or --agent"
        case .timedOut(_, let stage):
            return "the agent at \(address) did not answer within \(timeoutSeconds) s (\(stage)); it may be stuck or the disk very slow: see journalctl -u callrelay and callrelay status"
        case .badResponse(_, let reason):
            return "the connection to \(address) broke (\(reason)); is another program listening on that port?"
        }
    }

    private func rejected(_ response: HTTPClient.Response, errorText: String) -> String {
        switch response.status {
        case 401:
            return configuration.http.token.isEmpty
                ? "the agent requires a token (401: \(errorText)), but http.token in \(configPath) is empty: the running agent uses another config or CALLRELAY_HTTP_TOKEN; set the same token here (or run with the same environment)"
                : "the agent rejected the token (401: \(errorText)): http.token in \(configPath) differs from the token the running agent uses. The agent reads the file only at start: after changing the token, systemctl restart callrelay (and update the URL in the PIOPIY dashboard). CALLRELAY_HTTP_TOKEN, when set, overrides the file"
        case 503:
            let retry = response.headers["retry-after"].map { ", Retry-After \($0) s" } ?? ""
            return "the agent cannot store webhooks (503: \(errorText)\(retry)): the outbox is full (storage.max_bytes) or its disk is failing or full. "
                + "PIOPIY gets the same answer and retries later. Check callrelay status, df -h for the outbox's disk, and journalctl -u callrelay"
        case 413:
            return "the agent refused the test webhook as too large (413: \(errorText)); http.max_body_bytes is too small"
        default:
            return "unexpected answer \(response.status) from the agent: \(errorText)"
        }
    }

    private func notPublished(id: String, presenceTopic: String, presence: BrokerProbe.Message?) -> String {
        let stored = "the agent stored the test event (id \(id)) but it did not arrive on the broker within \(timeoutSeconds) s. "
        let kept = " The event stays in the outbox and is published as soon as the agent gets through."
        switch presence.map({ String(decoding: $0.payload, as: UTF8.self) }) {
        case "online":
            return stored
                + "The agent says it is connected (\(presenceTopic) is online), so it is backlogged or the broker does not deliver its messages to this subscriber "
                + "(a broker ACL denying the agent's publish to \(configuration.mqtt.topicPrefix)/#, or a bridge). "
                + "Check the agent's log (journalctl -u callrelay), callrelay status (pending events, oldest age) and the broker's log." + kept
        case "offline":
            return stored
                + "The agent is not connected to this broker (\(presenceTopic) says offline). "
                + "Its log says why: journalctl -u callrelay; callrelay check-config --connect tests the same connection." + kept
        default:
            return stored
                + "The agent has never announced itself on this broker (nothing retained on \(presenceTopic)): it connects to another broker or with another mqtt.client_id, or cannot connect. "
                + "Check the agent's log (journalctl -u callrelay) and callrelay status." + kept
        }
    }
}
