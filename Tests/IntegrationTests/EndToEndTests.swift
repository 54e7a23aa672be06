import CallRelayConfig
import CallRelayDaemon
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Testing

/// Real HTTP → real SQLite → real mosquitto → a real subscriber. A missing `mosquitto` fails these
/// tests (MosquittoBroker throws); nothing here is skipped.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EndToEndTests {
    @Test func everyDocumentedWebhookReachesTheSubscriberAsTheNormalizedEvent() async throws {
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#")
        let dir = temporaryDirectory()
        let daemon = try await Daemon.start(configuration: testConfiguration(brokerPort: broker.port, directory: dir), logger: testLogger())

        var answered: [String: String] = [:]  // fixture -> id
        for name in try Fixtures.topLevel() {
            let path = name.hasPrefix("cdr_") ? "/webhooks/piopiy/cdr" : "/webhooks/piopiy/live"
            // Any Content-Type is accepted.
            let response = try post(daemon.httpPort, path, try Fixtures.bytes(name), headers: ["Content-Type": "text/plain"])
            #expect(response.status == 200, "\(name): \(response.bodyText)")
            #expect(response.json?["duplicate"] as? Bool == false)
            answered[name] = response.json?["id"] as? String
        }
        let events = collector.wait(for: answered.count) { !$0.topic.contains("/agents/") }
        #expect(events.count == answered.count)

        for (name, id) in answered {
            guard let message = events.first(where: { $0.json?["id"] as? String == id }), let payload = message.json else {
                Issue.record("no MQTT message for \(name) (id \(id))")
                continue
            }
            #expect(payload["schema"] as? String == "callrelay.call-event.v1")
            #expect(payload["source"] as? String == "piopiy")
            let kind = name.hasPrefix("cdr_") ? "cdr" : "live"
            #expect(payload["kind"] as? String == kind)
            let fixture = try Fixtures.object(name)
            #expect(payload["call_id"] as? String == fixture["cmiuuid"] as? String)
            #expect((payload["raw"] as? NSDictionary) == (fixture as NSDictionary), "\(name): raw must be the body as received")
            let appID = "\(fixture["appid"]!)"
            #expect(message.topic == "piopiy/\(appID)/\(kind)/\(payload["event"] as! String)")
        }
        // Spot checks of the contract's event names.
        func event(_ fixture: String) -> String? {
            events.first { $0.json?["id"] as? String == answered[fixture] }?.json?["event"] as? String
        }
        #expect(event("live_out_answered_leg_b.json") == "out_answered")
        #expect(event("live_stream_disconnected.json") == "stream_disconnected")
        #expect(event("live_in_hangup_leg_a.json") == "in_hangup")
        #expect(event("cdr_in_missed_leg_a.json") == "in_missed")
        #expect(event("cdr_out_answered_leg_a.json") == "out_answered")

        // The presence topic is retained and says online.
        let late = try MessageCollector(port: broker.port, topic: "piopiy/agents/+/status")
        let status = late.wait(for: 1, seconds: 5)
        #expect(status.first?.text == "online")
        late.stop()

        await daemon.shutdown()
        let afterStop = try MessageCollector(port: broker.port, topic: "piopiy/agents/+/status")
        #expect(afterStop.wait(for: 1, seconds: 5).first?.text == "offline")
        afterStop.stop()
        collector.stop()
    }

    @Test func webhooksAreAnsweredWhileTheBrokerIsDownAndAllArriveInOrderWhenItReturns() async throws {
        let broker = try MosquittoBroker(persistent: true)
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#", clientID: "outage-collector", persistentSession: true)
        let dir = temporaryDirectory()
        let daemon = try await Daemon.start(configuration: testConfiguration(brokerPort: broker.port, directory: dir), logger: testLogger())

        #expect(try post(daemon.httpPort, liveEvent(call: "before", n: 0)).status == 200)
        #expect(collector.wait(for: 1) { $0.topic.contains("/live/") }.count == 1)

        broker.stop()
        var ids: [String] = []
        for n in 1...60 {
            let response = try post(daemon.httpPort, liveEvent(call: "call-\(n % 3)", n: n))
            #expect(response.status == 200)
            ids.append(response.json?["id"] as? String ?? "")
        }
        // Broker down: nothing could have been delivered, everything waits in the outbox.
        #expect(try daemon.outbox.stats().pending == 60)

        try broker.start()
        let events = collector.wait(for: 61, seconds: 30) { $0.topic.contains("/live/") }
        let received = events.compactMap { $0.json?["id"] as? String }
        #expect(Set(received).isSuperset(of: ids), "every webhook answered 200 is delivered")
        // Per call, the order received by callrelay is kept.
        for call in 0..<3 {
            let sent = (1...60).filter { $0 % 3 == call }
            let got = events.compactMap { m -> Int? in
                guard let raw = m.json?["raw"] as? [String: Any], raw["cmiuuid"] as? String == "call-\(call)" else { return nil }
                return raw["n"] as? Int
            }
            #expect(Array(got.drop(while: { !sent.contains($0) })).filter(sent.contains).uniqued() == sent)
        }
        #expect(waitUntil(seconds: 10) { (try? daemon.outbox.stats().pending) == 0 })
        await daemon.shutdown()
        collector.stop()
    }

    @Test func aResentCDRIsPublishedOnceAlsoAfterARestart() async throws {
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/+/cdr/#")
        let dir = temporaryDirectory()
        let configuration = testConfiguration(brokerPort: broker.port, directory: dir)
        var daemon = try await Daemon.start(configuration: configuration, logger: testLogger())

        let original = try Fixtures.bytes("cdr_in_answered_leg_a.json")
        // A re-send with other key order, other whitespace and a later balance (PIOPIY does not
        // promise byte-identical re-sends).
        var reordered = try Fixtures.object("cdr_in_answered_leg_a.json")
        reordered["balance"] = "870.000000"
        let resend = Array(try JSONSerialization.data(withJSONObject: reordered, options: [.sortedKeys, .prettyPrinted]))

        let first = try post(daemon.httpPort, "/webhooks/piopiy/cdr", original)
        #expect(first.status == 200)
        #expect(first.json?["duplicate"] as? Bool == false)
        let id = try #require(first.json?["id"] as? String)
        for body in [original, resend, original] {
            let again = try post(daemon.httpPort, "/webhooks/piopiy", body)
            #expect(again.status == 200)
            #expect(again.json?["id"] as? String == id)
            #expect(again.json?["duplicate"] as? Bool == true)
        }
        await daemon.shutdown()

        daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        let afterRestart = try post(daemon.httpPort, "/webhooks/piopiy/cdr", resend)
        #expect(afterRestart.json?["id"] as? String == id)
        #expect(afterRestart.json?["duplicate"] as? Bool == true)

        // A different CDR after the re-sends: once it arrives, anything published before it has too.
        let other = try post(daemon.httpPort, "/webhooks/piopiy/cdr", try Fixtures.bytes("cdr_out_missed_leg_a.json"))
        let otherID = try #require(other.json?["id"] as? String)
        collector.wait(for: 1) { $0.json?["id"] as? String == otherID }
        usleep(200_000)
        #expect(collector.received.filter { $0.json?["id"] as? String == id }.count == 1)
        await daemon.shutdown()
        collector.stop()
    }
}

/// A burst through a stock broker (Nagle on, delayed ACK) and one with `set_tcp_nodelay true`:
/// the pump must keep its window full either way, so both deliver everything. Times are printed
/// for the curious; `bench/` measures speed, tests do not.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BurstTests {
    @Test(arguments: [false, true])
    func aConcurrentBurstIsAnsweredAndDeliveredCompletely(brokerNoDelay: Bool) async throws {
        let broker = try MosquittoBroker(extraConfig: brokerNoDelay ? "set_tcp_nodelay true" : "")
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/+/live/#")
        let daemon = try await Daemon.start(
            configuration: testConfiguration(brokerPort: broker.port, directory: temporaryDirectory()), logger: testLogger())
        let port = daemon.httpPort
        let total = 2000
        let start = Date()
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 16) { worker in
            for n in stride(from: worker, to: total, by: 16) {
                let status = (try? post(port, liveEvent(call: "burst-\(n % 50)", n: n)).status) ?? -1
                if status != 200 { failures.add(n) }
            }
        }
        let answered = Date()
        #expect(failures.count == 0)
        let received = collector.wait(for: total, seconds: 60) { _ in true }
        let ids = Set(received.compactMap { $0.json?["id"] as? String })
        #expect(ids.count == total, "every answered webhook is delivered")
        print(
            "burst nodelay=\(brokerNoDelay): \(total) answered in \(Int(answered.timeIntervalSince(start) * 1000)) ms, delivered after \(Int(Date().timeIntervalSince(start) * 1000)) ms"
        )
        #expect(waitUntil(seconds: 10) { (try? daemon.outbox.stats().pending) == 0 })
        await daemon.shutdown()
        collector.stop()
    }
}

final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Int] = []
    func add(_ n: Int) { lock.withLock { items.append(n) } }
    var count: Int { lock.withLock { items.count } }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
