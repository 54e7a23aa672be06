import CallRelayConfig
import CallRelayDaemon
import CallRelayMQTT
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Testing

/// `callrelay send-test` (CONTRACT §2): PASS against a working agent, and a FAIL a technician can
/// act on for each likely fault. The binary is run as a technician would; the agent runs in
/// process against a real broker.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct SendTestTests {
    static let token = "send-test-token-0123456789"

    @Test func passesAgainstARunningAgentListeningOnEveryAddress() async throws {
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#")
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory(), token: Self.token)
        configuration.http.listenHost = "0.0.0.0"
        configuration.http.listenPort = try freeTCPPort()
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        #expect(waitUntil(seconds: 10) { daemon.client.isConnected })

        let r = try CLITests.run(["send-test", "--config", try configFile(configuration)])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("broker 127.0.0.1:\(broker.port) ... ok (subscribed to piopiy/callrelay-send-test/live/# as callrelay-send-test-"), "\(r.stdout)")
        #expect(r.stdout.contains("agent http://127.0.0.1:\(configuration.http.listenPort)/webhooks/piopiy/live ... ok (200 in "), "0.0.0.0 is reached on loopback: \(r.stdout)")
        #expect(r.stdout.contains("mqtt piopiy/callrelay-send-test/live/send_test ... ok (received "), "\(r.stdout)")
        #expect(r.stdout.contains("PASS: "), "\(r.stdout)")
        #expect(!r.stdout.contains(Self.token) && !r.stderr.contains(Self.token), "the token is never printed")

        // A second run is a new event, never a duplicate.
        let again = try CLITests.run(["send-test", "--config", try configFile(configuration)])
        #expect(again.status == 0, "\(again.stdout)")
        let seen = collector.wait(for: 2) { $0.topic == "piopiy/callrelay-send-test/live/send_test" }
        #expect(seen.count == 2)
        #expect(Set(seen.compactMap { $0.json?["id"] as? String }).count == 2)
        #expect(seen.first?.json?["app_id"] as? String == "callrelay-send-test")
        await daemon.shutdown()
        collector.stop()
    }

    @Test func aWrongTokenFailsWithTheTokenAdvice() async throws {
        let broker = try MosquittoBroker()
        let configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory(), token: Self.token)
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        var technician = configuration
        technician.http.listenPort = daemon.httpPort
        technician.http.token = "not-the-agents-token-123"
        let r = try CLITests.run(["send-test", "--config", try configFile(technician)])
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.stdout.contains("FAIL: the agent rejected the token (401"), "\(r.stdout)")
        #expect(r.stdout.contains("http.token"), "\(r.stdout)")
        #expect(!r.stdout.contains("not-the-agents-token-123"), "the token is never printed")
        await daemon.shutdown()
    }

    @Test func anAgentThatIsNotRunningIsNamedAsSuch() throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.http.listenPort = try freeTCPPort()  // nothing listens there
        let r = try CLITests.run(["send-test", "--config", try configFile(configuration)])
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.stdout.contains("Connection refused"), "\(r.stdout)")
        #expect(r.stdout.contains("FAIL: the agent is not running"), "\(r.stdout)")
        #expect(r.stdout.contains("systemctl start callrelay"), "\(r.stdout)")
    }

    @Test func anUnreachableBrokerGivesTheLibmosquittoReason() throws {
        var configuration = testConfiguration(brokerPort: try freeTCPPort(), directory: temporaryDirectory())
        configuration.http.listenPort = try freeTCPPort()
        let r = try CLITests.run(["send-test", "--config", try configFile(configuration)])
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.stdout.contains("FAIL: cannot reach the MQTT broker 127.0.0.1:\(configuration.mqtt.port): Connection refused"), "\(r.stdout)")
        #expect(r.stdout.contains("check mqtt.host and mqtt.port"), "\(r.stdout)")
    }

    /// The agent publishes to one broker, the technician's config names another: the event is
    /// stored but never seen, and the agent's presence topic tells why.
    @Test func anEventNotSeenWithinTheTimeoutSaysWhereToLook() async throws {
        let agentsBroker = try MosquittoBroker()
        let otherBroker = try MosquittoBroker()
        let configuration = testConfiguration(brokerPort: agentsBroker.port, directory: temporaryDirectory())
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        var technician = configuration
        technician.http.listenPort = daemon.httpPort
        technician.mqtt.port = otherBroker.port
        let started = Date()
        let r = try CLITests.run(["send-test", "--timeout", "2", "--config", try configFile(technician)])
        #expect(r.status == 1, "\(r.stdout)")
        #expect(Date().timeIntervalSince(started) < 10, "--timeout bounds the wait")
        #expect(r.stdout.contains("agent http://127.0.0.1:\(daemon.httpPort)/webhooks/piopiy/live ... ok"), "\(r.stdout)")
        #expect(r.stdout.contains("but it did not arrive on the broker within 2 s"), "\(r.stdout)")
        #expect(r.stdout.contains("never announced itself on this broker"), "\(r.stdout)")
        #expect(r.stdout.contains("journalctl -u callrelay"), "\(r.stdout)")
        await daemon.shutdown()
    }

    /// 503 (outbox full) and a foreign server, from a fake HTTP server: the agent's own 503 path
    /// is covered by the outbox tests.
    @Test func anOutboxFullAnswerAndAForeignServerAreExplained() throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())

        let body = #"{"error":"outbox full (storage.max_bytes)"}"#
        let full = try OneShotHTTPServer(
            answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 60\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        configuration.http.listenPort = full.port
        let r = try CLITests.run(["send-test", "--config", try configFile(configuration)])
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.stdout.contains("FAIL: the agent cannot store webhooks (503: outbox full (storage.max_bytes), Retry-After 60 s)"), "\(r.stdout)")
        #expect(r.stdout.contains("callrelay status"), "\(r.stdout)")

        let foreign = try OneShotHTTPServer(answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        configuration.http.listenPort = foreign.port
        let f = try CLITests.run(["send-test", "--config", try configFile(configuration)])
        #expect(f.status == 1, "\(f.stdout)")
        #expect(f.stdout.contains("answered 200 but not like callrelay (hello)"), "\(f.stdout)")
    }

    @Test func anInvalidConfigExits78AndBadOptionsExit64() throws {
        let file = temporaryDirectory().appendingPathComponent("bad.toml")
        try "[mqtt]\nqos = 7\n".write(to: file, atomically: true, encoding: .utf8)
        let r = try CLITests.run(["send-test", "--config", file.path])
        #expect(r.status == 78, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains("\(file.path):2:"), "\(r.stderr)")
        #expect(try CLITests.run(["send-test", "--timeout", "0"]).status == 64)
        #expect(try CLITests.run(["send-test", "--agent", "nope"]).status == 64)
    }

    /// The agent's settings as a config file for the CLI.
    private func configFile(_ c: RelayConfiguration) throws -> String {
        let file = temporaryDirectory().appendingPathComponent("callrelay.toml")
        try """
        [http]
        listen = "\(c.http.listenHost):\(c.http.listenPort)"
        token = "\(c.http.token)"
        [mqtt]
        host = "\(c.mqtt.host)"
        port = \(c.mqtt.port)
        client_id = "\(c.mqtt.clientID)"
        [storage]
        path = "\(c.storage.path)"
        """.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }
}

/// Answers every connection on a loopback port with the same bytes, then closes it.
final class OneShotHTTPServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init(answer: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = self.fd
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0 && listen(fd, 8) == 0
            }
        }
        guard ok else { throw POSIXError(.EADDRINUSE) }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let bytes = Array(answer.utf8)
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                var buffer = [UInt8](repeating: 0, count: 8192)
                _ = recv(client, &buffer, buffer.count, 0)
                _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
        }
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
