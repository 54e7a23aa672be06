import CallRelayConfig
import CallRelayDaemon
import CallRelayOutbox
import CallRelayMQTT
import CallRelayTesting
import Foundation
import Synchronization
import Testing

/// `callrelay status` and `callrelay replay` on the built binary (CONTRACT §2, issue #3 item 8).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct OperatorToolTests {
    func writeConfig(_ c: RelayConfiguration, port: Int) throws -> URL {
        let file = URL(fileURLWithPath: c.storage.path).deletingLastPathComponent().appendingPathComponent("callrelay.toml")
        try """
        [http]
        listen = "127.0.0.1:\(port)"
        [mqtt]
        port = \(c.mqtt.port)
        client_id = "\(c.mqtt.clientID)"
        [storage]
        path = "\(c.storage.path)"
        """.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    @Test func statusWorksWithTheAgentRunningAndStopped() async throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.http.listenPort = try freeTCPPort()
        let file = try writeConfig(configuration, port: configuration.http.listenPort)
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        for n in 0..<5 { #expect(try post(daemon.httpPort, liveEvent(call: "status", n: n)).status == 200) }
        #expect(waitUntil(seconds: 10) { daemon.outbox.metrics.pending.load(ordering: .relaxed) == 0 })

        // status reads the file, where the delivered watermark lands at most ~100 ms after the
        // acknowledgements (docs/decisions.md D10): give it a few tries.
        var running = try CLITests.run(["status", "--config", file.path])
        for _ in 0..<20 where !running.stdout.contains("pending:     0") {
            usleep(100_000)
            running = try CLITests.run(["status", "--config", file.path])
        }
        #expect(running.status == 0, "\(running.stderr)")
        #expect(
            running.stdout.contains("running on 127.0.0.1:\(configuration.http.listenPort); broker connected (MQTT 5, in-flight window 20)"),
            "the negotiated protocol and the window (mosquitto's Receive Maximum): \(running.stdout)")
        #expect(running.stdout.contains("delivered:   5"), "\(running.stdout)")
        #expect(running.stdout.contains("pending:     0"), "\(running.stdout)")

        await daemon.shutdown()
        broker.stop()
        let stopped = try CLITests.run(["status", "--config", file.path])
        #expect(stopped.status == 0)
        #expect(stopped.stdout.contains("not running"), "\(stopped.stdout)")
        #expect(stopped.stdout.contains("delivered:   5"), "\(stopped.stdout)")
    }

    @Test func statusExits69WhenNeitherTheAgentNorTheOutboxCanBeRead() throws {
        let dir = temporaryDirectory()
        let file = dir.appendingPathComponent("callrelay.toml")
        try "[http]\nlisten = \"127.0.0.1:\(try freeTCPPort())\"\n[storage]\npath = \"\(dir.path)/missing/outbox.sqlite3\"\n"
            .write(to: file, atomically: true, encoding: .utf8)
        let r = try CLITests.run(["status", "--config", file.path])
        #expect(r.status == 69, "\(r.stdout)\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir.path)/missing/outbox.sqlite3"), "status never creates an outbox")
    }

    @Test func replayPublishesDeliveredEventsAndDeadLettersAgain() async throws {
        let broker = try MosquittoBroker(extraConfig: "max_packet_size 8192")
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/+/live/#")
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.http.listenPort = try freeTCPPort()
        let file = try writeConfig(configuration, port: configuration.http.listenPort)
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())

        let a = try post(daemon.httpPort, liveEvent(call: "replay-a", n: 1)).json?["id"] as? String
        let b = try post(daemon.httpPort, liveEvent(call: "replay-b", n: 2)).json?["id"] as? String
        let poisonBody = Array(#"{"appid":1,"cmiuuid":"replay-p","leg":"a","status":"out_started","time":1,"pad":"\#(String(repeating: "y", count: 20_000))"}"#.utf8)
        let poison = try post(daemon.httpPort, poisonBody).json?["id"] as? String
        #expect(collector.wait(for: 2).count == 2)
        #expect(waitUntil(seconds: 30) { daemon.outbox.metrics.deadLetters.load(ordering: .relaxed) == 1 })

        let status = try CLITests.run(["status", "--config", file.path])
        #expect(status.stdout.contains("dead letters: 1"), "\(status.stdout)")
        #expect(status.stdout.contains(poison ?? "?"), "dead letters are listed by id")
        // Commit the delivery marks still waiting (~100 ms) so that `replay`, another process,
        // sees a and b as delivered.
        _ = try daemon.outbox.stats()

        // Only call b, while the agent runs: published again within about a second.
        let one = try CLITests.run(["replay", "--config", file.path, "--since", "1h", "--call", "replay-b"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(one.stdout.contains("queued 1 event"), "\(one.stdout)")
        #expect(collector.wait(for: 2, seconds: 10) { $0.json?["id"] as? String == b }.count == 2)
        #expect(collector.received.filter { $0.json?["id"] as? String == a }.count == 1)

        // Everything from the last hour, dead letters included (the poison is dead-lettered again).
        let all = try CLITests.run(["replay", "--config", file.path, "--since", "1h"])
        #expect(all.stdout.contains("queued 3 events"), "\(all.stdout)")
        #expect(all.stdout.contains("of which 1 dead letter, given up on before because:"), "\(all.stdout)")
        #expect(all.stdout.contains("(broker maximum packet size 8192 bytes)"), "the reason is shown: \(all.stdout)")
        #expect(collector.wait(for: 2, seconds: 10) { $0.json?["id"] as? String == a }.count == 2)
        #expect(waitUntil(seconds: 30) { daemon.outbox.metrics.deadLetters.load(ordering: .relaxed) == 2 })

        #expect(try CLITests.run(["replay", "--config", file.path, "--since", "tomorrow"]).status == 64)
        await daemon.shutdown()
        collector.stop()
    }
}
