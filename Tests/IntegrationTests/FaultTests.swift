import CallRelayConfig
import CallRelayDaemon
import CallRelayOutbox
import CallRelayMQTT
import CallRelayTesting
import Foundation
import Synchronization
import Testing

/// Issue #3: the delivery promise under the faults an edge box meets. Each test fails when a
/// webhook answered 200 is lost or when one bad event stops the others.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct FaultTests {
    /// A live event padded with `padding` bytes in an extra field.
    func bigEvent(call: String, n: Int, padding: Int) -> [UInt8] {
        Array(
            """
            {"appid":7,"cmiuuid":"\(call)","leg":"a","direction":"inbound","status":"in_answered","time":\(1_725_942_871_000 + n),
             "n":\(n),"pad":"\(String(repeating: "x", count: padding))"}
            """.utf8)
    }

    /// Posts 16 KB events until one is not answered 200; returns the ids stored and that answer.
    func fillUntilRefused(port: Int, call: String) throws -> (stored: [String], refusal: HTTPTestResponse?) {
        var stored: [String] = []
        for n in 0..<400 {
            let r = try post(port, bigEvent(call: "\(call)-\(n)", n: n, padding: 16_000))
            guard r.status == 200 else { return (stored, r) }
            stored.append(r.json?["id"] as? String ?? "")
        }
        return (stored, nil)
    }

    @Test func aFullOutboxAnswers503UntilTheBacklogDrainsAndLosesNothing() async throws {
        let broker = try MosquittoBroker(persistent: true)
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#", clientID: "full-collector", persistentSession: true)
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.storage.maxBytes = 1 << 20  // the smallest cap check-config allows
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        broker.stop()

        let (stored, refusal) = try fillUntilRefused(port: daemon.httpPort, call: "full")
        let full = try #require(refusal, "the outbox never filled up")
        #expect(full.status == 503)
        #expect(Int(full.headers["retry-after"] ?? "") ?? 0 > 0)
        #expect((full.json?["error"] as? String)?.contains("outbox full") == true, "\(full.bodyText)")
        #expect(try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/readyz").status == 503)
        #expect(try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/healthz").status == 200)
        #expect(stored.count > 10)

        try broker.start()
        let received = collector.wait(for: stored.count, seconds: 60) { $0.topic.contains("/live/") }
        let delivered = Set(received.compactMap { $0.json?["id"] as? String })
        #expect(delivered.isSuperset(of: stored), "stored events are delivered")
        #expect(waitUntil(seconds: 10) { daemon.outbox.metrics.pending.load(ordering: .relaxed) == 0 })

        // The backlog drained: new webhooks are accepted again, and a re-send of a delivered event
        // is still a duplicate even if its row had to make room.
        let again = try post(daemon.httpPort, bigEvent(call: "after", n: 1, padding: 16_000))
        #expect(again.status == 200, "\(again.bodyText)")
        let resend = try post(daemon.httpPort, bigEvent(call: "full-0", n: 0, padding: 16_000))
        #expect(resend.json?["duplicate"] as? Bool == true)
        #expect(try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/readyz").status == 200)
        print("outbox full: stored \(stored.count) before 503, delivered \(received.count)")
        await daemon.shutdown()
        collector.stop()
    }

    @Test func aFullDiskAnswers503WithoutCrashingAndRecovers() async throws {
        let mountPoint = temporaryDirectory()
        let mounted = try spawn("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint.path])
        try #require(waitForExit(mounted, seconds: 10) == 0, "mounting a small tmpfs needs root (CI runs as root)")
        defer {
            if let p = try? spawn("/bin/umount", ["-l", mountPoint.path]) { _ = waitForExit(p, seconds: 10) }
        }
        let broker = try MosquittoBroker(persistent: true)
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#", clientID: "disk-collector", persistentSession: true)
        var configuration = testConfiguration(brokerPort: broker.port, directory: mountPoint)
        configuration.storage.maxBytes = 64 << 20  // above the disk: the disk fills first (headroom 1 MiB)
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        broker.stop()

        let (stored, refusal) = try fillUntilRefused(port: daemon.httpPort, call: "disk")
        let full = try #require(refusal, "the disk never filled up")
        #expect(full.status == 503)
        #expect(full.headers["retry-after"] != nil)
        #expect(full.json?["error"] != nil)
        #expect(try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/healthz").status == 200)

        try broker.start()
        let received = collector.wait(for: stored.count, seconds: 60) { $0.topic.contains("/live/") }
        let delivered = Set(received.compactMap { $0.json?["id"] as? String })
        #expect(delivered.isSuperset(of: stored))
        #expect(waitUntil(seconds: 10) { daemon.outbox.metrics.pending.load(ordering: .relaxed) == 0 })
        #expect(waitUntil(seconds: 10) { (try? post(daemon.httpPort, bigEvent(call: "disk-after", n: 1, padding: 4000)).status) == 200 })
        print("disk full: stored \(stored.count) before 503, delivered \(received.count)")
        await daemon.shutdown()
        collector.stop()
    }

    @Test func aCorruptOutboxIsMovedAsideAndTheAgentStartsOnAFreshOne() async throws {
        let broker = try MosquittoBroker()
        let directory = temporaryDirectory()
        let configuration = testConfiguration(brokerPort: broker.port, directory: directory)
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: URL(fileURLWithPath: configuration.storage.path))

        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        #expect(try post(daemon.httpPort, liveEvent(call: "fresh", n: 1)).status == 200)
        await daemon.shutdown()

        let aside = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("outbox.sqlite3.corrupt-") }
        #expect(aside.count == 1, "\(aside)")
        if let name = aside.first {
            #expect(try Data(contentsOf: directory.appendingPathComponent(name)) == garbage, "the damaged file is kept as it was")
        }
        #expect(try SQLiteOutbox.inspect(path: configuration.storage.path).pending + SQLiteOutbox.inspect(path: configuration.storage.path).delivered == 1)
    }

    /// On 3.1.1, mosquitto drops a client that sends a packet over max_packet_size, and the pump
    /// finds the culprit by its drops. On MQTT 5 the CONNACK says the limit, libmosquitto refuses
    /// the publish with MOSQ_ERR_OVERSIZE_PACKET, and the event is dead-lettered at once.
    @Test(arguments: ["5", "3.1.1"])
    func aPoisonEventIsDeadLetteredAndTheEventsBehindItFlow(protocolVersion: String) async throws {
        let broker = try MosquittoBroker(extraConfig: "max_packet_size 8192")
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/+/live/#")
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.mqtt.protocolVersion = protocolVersion
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())

        var small: [String] = []
        for n in 0..<3 { small.append(try post(daemon.httpPort, liveEvent(call: "poison-call", n: n)).json?["id"] as? String ?? "") }
        let poison = try post(daemon.httpPort, bigEvent(call: "poison-call", n: 100, padding: 20_000))
        #expect(poison.status == 200)
        for n in 3..<20 { small.append(try post(daemon.httpPort, liveEvent(call: "poison-call", n: n)).json?["id"] as? String ?? "") }

        let received = collector.wait(for: small.count, seconds: 60) { _ in true }
        let ids = received.compactMap { $0.json?["id"] as? String }
        #expect(Set(ids).isSuperset(of: small), "the events behind the poison are delivered")
        #expect(!ids.contains(poison.json?["id"] as? String ?? "?"))
        #expect(waitUntil(seconds: 10) { daemon.outbox.metrics.deadLetters.load(ordering: .relaxed) == 1 })
        let metrics = try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/metrics").bodyText
        #expect(metrics.contains("callrelay_outbox_dead_letters 1"), "dead letters are visible to monitoring")
        let letters = try SQLiteOutbox.deadLetters(path: daemon.configuration.storage.path)
        #expect(letters.count == 1)
        #expect(letters.first?.eventID == poison.json?["id"] as? String)
        #expect((letters.first?.attempts ?? 0) >= 1)
        if protocolVersion == "5" {
            #expect(letters.first?.attempts == 1, "no reconnects to find it: the broker said its limit")
            #expect(daemon.client.reconnects.load(ordering: .relaxed) == 0)
            #expect(letters.first?.reason.contains("maximum packet size 8192") == true, "\(letters.first?.reason ?? "")")
        } else {
            #expect(daemon.client.reconnects.load(ordering: .relaxed) >= 1, "3.1.1 cannot know the limit: the broker drops the connection")
        }
        // Order of the small ones (one call) is kept.
        let order = received.compactMap { ($0.json?["raw"] as? [String: Any])?["n"] as? Int }.filter { $0 < 100 }
        #expect(order.uniqued() == Array(0..<20))
        print("poison (MQTT \(protocolVersion)): \(small.count) small delivered, dead letter attempts \(letters.first?.attempts ?? 0), reconnects \(daemon.client.reconnects.load(ordering: .relaxed))")
        await daemon.shutdown()
        collector.stop()
    }
}
