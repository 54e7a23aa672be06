import CallRelayConfig
import CallRelayDaemon
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Testing

/// Contract §6: an outbox written by v0.1.0 is migrated in place at start; nothing it stored is
/// lost or published again.
///
/// `Fixtures/v0.1.0-outbox.db` was written by the v0.1.0 binary (commit 3636853) itself: call 1's
/// out_started, out_answered and CDR posted and delivered to a broker; the broker stopped; call
/// 2's in_answered, in_hangup and CDR posted (pending); SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct UpgradeTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/v0.1.0-outbox.db")
    static let delivered = ["e629452899b41f2c0f9049b8517d2589", "ec28294c2f835e2240ddc2135c570068", "d7e3d8998199a01ebcbaee7422413be7"]
    static let pending = ["273f7bef45512e59b216a46e0f82bdbb", "26c5642e15b825d8b20afa7ee506b1cb", "d7e3e7c36099a01ebcbaee7428c9f21a"]

    @Test func aVersion010OutboxPublishesItsPendingEventsOnceAndRemembersItsIDs() async throws {
        let directory = temporaryDirectory()
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#", clientID: "upgrade-collector")
        var configuration = testConfiguration(brokerPort: broker.port, directory: directory)
        try FileManager.default.copyItem(atPath: Self.fixture.path, toPath: configuration.storage.path)
        configuration.mqtt.topicPrefix = "piopiy"

        let before = try SQLiteOutbox.inspect(path: configuration.storage.path)
        #expect(before.pending == 3 && before.delivered == 3)

        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        let received = collector.wait(for: 3, seconds: 20) { $0.topic.hasPrefix("piopiy/7001/") }
        // Nothing more arrives: the delivered events are not published again.
        try await Task.sleep(for: .milliseconds(1500))
        let ids = collector.received.filter { $0.topic.hasPrefix("piopiy/7001/") }.compactMap { $0.json?["id"] as? String }
        #expect(received.count == 3)
        #expect(ids.sorted() == Self.pending.sorted(), "published \(ids)")

        // Dedupe memory survived: re-sends of a delivered live event and of both CDRs are duplicates.
        let resentLive = try post(
            daemon.httpPort, "/webhooks/piopiy/live",
            Array(
                #"{"appid":7001,"cmiuuid":"v010-call-1","conversation_uuid":"v010-conv-1","leg":"a","direction":"outbound","status":"out_started","time":1725942871001,"from":440000000001,"to":19170000001}"#
                    .utf8))
        #expect(resentLive.status == 200)
        #expect(resentLive.json?["duplicate"] as? Bool == true && resentLive.json?["id"] as? String == Self.delivered[0])
        for call in ["v010-call-1", "v010-call-2"] {
            let cdr = try post(
                daemon.httpPort, "/webhooks/piopiy/cdr",
                Array(#"{"appid":7001,"cmiuuid":"\#(call)","leg":"a","direction":"inbound","status":"answered","duration":10}"#.utf8))
            #expect(cdr.json?["duplicate"] as? Bool == true, "\(call): \(cdr.bodyText)")
        }
        #expect(waitUntil(seconds: 5) { (try? daemon.outbox.stats().pending) == 0 })
        let stats = try daemon.outbox.stats()
        #expect(stats.delivered >= 3)
        await daemon.shutdown()
        let after = try SQLiteOutbox.inspect(path: configuration.storage.path)
        #expect(after.pending == 0)
        #expect(after.delivered == 6)
        collector.stop()
    }
}
