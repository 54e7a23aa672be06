import CallRelayCalls
import CallRelayCore
import CallRelayNormalize
import CallRelayTesting
import Foundation
import Testing

/// The call-state machine (CONTRACT §9), step by step, with the documented PIOPIY samples.
@Suite struct CallTrackerTests {
    static let settings = CallTracker.Settings(clearAfterSeconds: 600, staleAfterSeconds: 14_400)
    static let now: Int64 = 1_800_000_000_000

    static func fixture(_ name: String) -> [UInt8] {
        let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures")!
        return Array(try! Data(contentsOf: url))
    }

    static func event(_ body: [UInt8]) -> (facts: CallFacts, id: String) {
        let e = PiopiyNormalizer.normalize(try! JSONValue.parse(body), endpoint: .combined, receivedAtMilliseconds: now)
        return (e.call!, e.id)
    }

    static func event(_ name: String) -> (facts: CallFacts, id: String) { event(fixture(name)) }

    /// The state a subscriber sees, without its envelope (seq, updated_at, last_event_id).
    static func view(_ call: CallTracker.Call) -> String {
        var c = call
        (c.seq, c.updatedAt, c.lastEventID) = (0, 0, "")
        return String(decoding: CallStatePayload.write(c), as: UTF8.self)
    }

    static func json(_ payload: [UInt8]) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any] ?? [:]
    }

    /// Runs the events in order; returns the tracker and every message.
    static func run(_ events: [(facts: CallFacts, id: String)], start: Int64 = now) -> (CallTracker, [CallTracker.Message]) {
        var t = CallTracker(settings: settings)
        var out: [CallTracker.Message] = []
        for (i, e) in events.enumerated() { out += t.ingest(e.facts, eventID: e.id, now: start + Int64(i) * 1000) }
        return (t, out)
    }

    static func permutations<T>(_ items: [T]) -> [[T]] {
        guard items.count > 1 else { return [items] }
        var result: [[T]] = []
        for i in items.indices {
            var rest = items
            let head = rest.remove(at: i)
            for p in permutations(rest) { result.append([head] + p) }
        }
        return result
    }

    static let outbound = [
        "live_out_started_leg_a.json", "live_out_answered_leg_a.json", "live_out_started_leg_b.json", "live_out_answered_leg_b.json",
        "live_out_hangup_leg_b.inferred.json", "live_out_hangup_leg_a.inferred.json",
    ]
    static let inboundAnswered = [
        "live_in_answered_leg_a.json", "live_in_answered_leg_b.inferred.json", "live_in_hangup_leg_b.inferred.json",
        "live_in_hangup_leg_a.current_style.inferred.json",
    ]
    static let inboundMissedByCDR = ["cdr_in_missed_leg_a.json", "cdr_in_missed_leg_b.inferred.json"]
    static let outboundByCDR = ["cdr_out_answered_leg_a.json", "cdr_out_answered_leg_b.inferred.json"]

    /// Leg b of an inbound call whose media stream the stream samples report (same `cmiuuid`).
    static let streamLegB = Array(
        """
        {"appid":2222224,"cmiuuid":"c4ec9bd2-efad-4296-aa5b-eeafa6aeeea0","conversation_uuid":"conv-stream-1","leg":"b",
         "direction":"inbound","status":"in_answered","from":"919900000001","to":"914471000000","time":1725975490000}
        """.utf8)
    static let streamLegAHangup = Array(
        """
        {"appid":2222224,"cmiuuid":"conv-stream-1","conversation_uuid":"conv-stream-1","leg":"a",
         "direction":"inbound","status":"in_hangup","time":1725975599000}
        """.utf8)
    static var streamFlow: [(facts: CallFacts, id: String)] {
        [event(streamLegB), event("live_stream_connected.json"), event("live_stream_error.inferred.json"), event(streamLegAHangup)]
    }

    // MARK: Golden sequences

    @Test func outboundLegsAAndB() throws {
        let (tracker, messages) = Self.run(Self.outbound.map(Self.event))
        let states = messages.map { Self.json($0.payload) }
        #expect(states.map { $0["state"] as? String } == ["started", "answered", "answered", "answered", "answered", "ended"])
        #expect(states.map { $0["seq"] as? Int } == [1, 2, 3, 4, 5, 6])
        #expect(Set(messages.map(\.key)) == ["GQqYoKtV3Tn25SVqbWwdzPkNwMBo9hhLwWadm9N71N5"])
        let call = try #require(tracker.calls["GQqYoKtV3Tn25SVqbWwdzPkNwMBo9hhLwWadm9N71N5"])
        #expect(
            Self.view(call)
                == """
                {"schema":"callrelay.call-state.v1","app_id":"2222224","call_key":"GQqYoKtV3Tn25SVqbWwdzPkNwMBo9hhLwWadm9N71N5","state":"ended",\
                "outcome":"answered","direction":"outbound","legs":{"a":{"call_id":"ee6a7a9b-78ea-4693-9e77-5fc085567b2f","state":"ended",\
                "last_event":"out_hangup","from":"440000000000","to":"19170000000","started_at":"2024-09-10T04:34:31.456Z",\
                "answered_at":"2024-09-10T04:34:31.456Z","ended_at":"2024-09-10T04:34:31.456Z"},"b":{"call_id":"ade4153c-d8bd-4a62-bd6d-30774e0aa30a",\
                "state":"ended","last_event":"out_hangup","from":"440000000000","to":"19170000001","started_at":"2024-09-10T04:34:53.683Z",\
                "answered_at":"2024-09-10T04:34:53.683Z","ended_at":"2024-09-10T04:34:53.683Z"}},"started_at":"2024-09-10T04:34:31.456Z",\
                "answered_at":"2024-09-10T04:34:31.456Z","ended_at":"2024-09-10T04:34:31.456Z","updated_at":"1970-01-01T00:00:00.000Z","seq":0}
                """)
        #expect(tracker.activeCount == 0 && tracker.retainedCount == 1)
    }

    @Test func inboundAnswered() {
        let (_, messages) = Self.run(Self.inboundAnswered.map(Self.event))
        let states = messages.map { Self.json($0.payload) }
        #expect(states.map { $0["state"] as? String } == ["answered", "answered", "answered", "ended"])
        #expect(states.last?["outcome"] as? String == "answered")
        #expect((states.last?["legs"] as? [String: Any])?.keys.sorted() == ["a", "b"])
    }

    @Test func inboundMissedKnownOnlyByItsCDR() {
        // There is no inbound "ringing" event: the first state of a missed call is its end.
        let (_, messages) = Self.run(Self.inboundMissedByCDR.map(Self.event))
        let states = messages.map { Self.json($0.payload) }
        #expect(states.map { $0["state"] as? String } == ["ended", "ended"])
        #expect(states.map { $0["outcome"] as? String } == ["missed", "missed"])
        #expect(states[0]["answered_at"] == nil, "PIOPIY's answer_time on a missed CDR does not answer it")
        #expect(states[0]["ended_at"] as? String == "2021-09-22T13:24:33.000Z")
    }

    @Test func outboundAnsweredByCDR() {
        let (_, messages) = Self.run(Self.outboundByCDR.map(Self.event))
        #expect(messages.map { Self.json($0.payload)["outcome"] as? String } == ["answered", "answered"])
    }

    @Test func streamEventsFindTheirCallThroughTheLegsCallID() throws {
        let (tracker, messages) = Self.run(Self.streamFlow)
        #expect(Set(messages.map(\.key)) == ["conv-stream-1"])
        let call = try #require(tracker.calls["conv-stream-1"])
        let state = Self.json(CallStatePayload.write(call))
        let legB = (state["legs"] as? [String: Any])?["b"] as? [String: Any]
        #expect(legB?["stream"] as? String == "error")
        #expect(state["state"] as? String == "ended")
    }

    @Test func aStreamEventBeforeItsLegJoinsTheCallOnceTheLegIsKnown() throws {
        var t = CallTracker(settings: Self.settings)
        let orphan = t.ingest(Self.event("live_stream_connected.json").facts, eventID: "s1", now: Self.now)
        #expect(orphan.map(\.key) == ["c4ec9bd2-efad-4296-aa5b-eeafa6aeeea0"])
        let joined = t.ingest(Self.event(Self.streamLegB).facts, eventID: "b1", now: Self.now + 1)
        #expect(joined.map(\.key) == ["c4ec9bd2-efad-4296-aa5b-eeafa6aeeea0", "conv-stream-1"])
        #expect(joined[0].payload.isEmpty, "the orphan's retained state is cleared")
        let legB = (Self.json(joined[1].payload)["legs"] as? [String: Any])?["b"] as? [String: Any]
        #expect(legB?["stream"] as? String == "connected")
    }

    @Test func aReSentWebhookChangesNothing() {
        var t = CallTracker(settings: Self.settings)
        let e = Self.event("live_in_answered_leg_a.json")
        #expect(t.ingest(e.facts, eventID: e.id, now: Self.now).count == 1)
        #expect(t.ingest(e.facts, eventID: e.id, now: Self.now + 5).isEmpty)
    }

    // MARK: Every arrival order

    @Test(arguments: ["outbound", "inboundAnswered", "inboundMissedByCDR", "outboundByCDR", "stream"])
    func everyArrivalOrderEndsInTheSameState(flow: String) {
        let events: [(facts: CallFacts, id: String)] =
            switch flow {
            case "outbound": Self.outbound.map(Self.event)
            case "inboundAnswered": Self.inboundAnswered.map(Self.event)
            case "inboundMissedByCDR": Self.inboundMissedByCDR.map(Self.event)
            case "outboundByCDR": Self.outboundByCDR.map(Self.event)
            default: Self.streamFlow
            }
        let (reference, _) = Self.run(events)
        let expected = reference.calls.values.filter { $0.clearedAt == nil }.map(Self.view).sorted()
        var orders = 0
        for order in Self.permutations(events) {
            let (t, messages) = Self.run(order)
            let retained = t.calls.values.filter { $0.clearedAt == nil }.map(Self.view).sorted()
            #expect(retained == expected, "order \(order.map(\.facts.event))")
            // Per call, seq only grows, and the state never goes backwards.
            var last: [String: (Int, Int)] = [:]
            let rank = ["started": 0, "answered": 1, "ended": 2]
            for m in messages where !m.payload.isEmpty {
                let j = Self.json(m.payload)
                let now = (j["seq"] as? Int ?? 0, rank[j["state"] as? String ?? ""] ?? -1)
                if let before = last[m.key] { #expect(now.0 > before.0 && now.1 >= before.1) }
                last[m.key] = now
            }
            orders += 1
        }
        #expect(orders == (1...events.count).reduce(1, *))
    }

    // MARK: Time

    @Test func aCallWithNoEventForStaleAfterEndsStaleAndIsClearedLater() throws {
        let settings = CallTracker.Settings(clearAfterSeconds: 10, staleAfterSeconds: 60, tombstoneSeconds: 30)
        var t = CallTracker(settings: settings)
        let e = Self.event("live_out_started_leg_a.json")
        _ = t.ingest(e.facts, eventID: e.id, now: Self.now)
        #expect(t.nextDeadline == Self.now + 60_000)
        #expect(t.sweep(now: Self.now + 59_999).isEmpty)
        let stale = t.sweep(now: Self.now + 60_000)
        #expect(stale.count == 1)
        let j = Self.json(stale[0].payload)
        #expect(j["state"] as? String == "ended" && j["outcome"] as? String == "stale" && j["seq"] as? Int == 2)
        #expect(j["last_event_id"] as? String == e.id)
        #expect(t.activeCount == 0)
        #expect(t.sweep(now: Self.now + 69_999).isEmpty)
        let cleared = t.sweep(now: Self.now + 70_000)
        #expect(cleared.count == 1 && cleared[0].payload.isEmpty && cleared[0].rowID.hasSuffix("#clear"))
        #expect(t.retainedCount == 0)
        // A webhook for the cleared call does not bring its state back while its key is remembered.
        let late = Self.event("live_out_answered_leg_a.json")
        #expect(t.ingest(late.facts, eventID: late.id, now: Self.now + 80_000).isEmpty)
        _ = t.sweep(now: Self.now + 100_000)
        #expect(t.calls.isEmpty, "the tombstone is forgotten after its time")
        #expect(t.nextDeadline == nil)
    }

    @Test func aCDRAfterTheStaleSweepSaysHowTheCallReallyEnded() {
        let settings = CallTracker.Settings(clearAfterSeconds: 600, staleAfterSeconds: 60)
        var t = CallTracker(settings: settings)
        let leg = Self.event("cdr_in_missed_leg_a.json")
        var started = leg.facts
        (started.kind, started.event) = (.live, "in_started")
        _ = t.ingest(started, eventID: "x", now: Self.now)
        _ = t.sweep(now: Self.now + 60_000)
        let out = t.ingest(leg.facts, eventID: leg.id, now: Self.now + 61_000)
        #expect(out.map { Self.json($0.payload)["outcome"] as? String } == ["missed"])
    }

    // MARK: The bound (calls.max_calls)

    /// A started outbound call of its own (the fixture with another conversation and leg id).
    static func call(_ n: Int) -> (facts: CallFacts, id: String) {
        var e = event("live_out_started_leg_a.json")
        e.facts.conversationID = "conv-\(n)"
        e.facts.callID = "leg-\(n)"
        return (e.facts, "event-\(n)")
    }

    @Test func pastMaxCallsTheLeastRecentlyActiveAreForgottenAndCleared() {
        var t = CallTracker(settings: CallTracker.Settings(clearAfterSeconds: 600, staleAfterSeconds: 14_400, maxCalls: 100))
        for n in 0..<100 { _ = t.ingest(Self.call(n).facts, eventID: Self.call(n).id, now: Self.now + Int64(n)) }
        _ = t.takeChanges()
        #expect(t.calls.count == 100 && t.evictedCount == 0)
        // The delivery read the state rows of calls 1 to 5: those may be on the broker.
        for n in 1...5 { t.handedOut(key: "conv-\(n)", seq: 1) }
        // Call 0 is active again: the oldest are now 1, 2, ...
        let again = Self.event("live_out_answered_leg_a.json")
        var answered = again.facts
        (answered.conversationID, answered.callID) = ("conv-0", "leg-0")
        _ = t.ingest(answered, eventID: "again", now: Self.now + 200)
        let out = t.ingest(Self.call(100).facts, eventID: Self.call(100).id, now: Self.now + 300)
        #expect(t.calls.count == 75, "one batch, down to three quarters")
        #expect(t.evictedCount == 26)
        let clearings = out.filter(\.evicted)
        #expect(!(1...26).contains { t.calls["conv-\($0)"] != nil }, "the least recently active are forgotten")
        #expect(clearings.map(\.key) == (1...5).map { "conv-\($0)" }, "a clearing row only where a state may be on the broker")
        #expect(clearings.allSatisfy { $0.call == nil && $0.payload.isEmpty && $0.rowID.hasSuffix("#evict") })
        #expect(out.filter { !$0.evicted }.map(\.key) == ["conv-100"])
        #expect(t.calls["conv-0"] != nil && t.calls["conv-100"] != nil)
        #expect(t.activeCount == 75 && t.retainedCount == 75)
        let changes = t.takeChanges()
        #expect(changes.filter { $0.call == nil }.count == 26, "their records are deleted")
        // A later webhook of a forgotten call starts it again (its key is not remembered).
        let back = t.ingest(Self.call(1).facts, eventID: "back", now: Self.now + 400)
        #expect(back.map(\.key) == ["conv-1"] && t.calls["conv-1"]?.seq == 1)
    }

    @Test func clearedCallsAreForgottenFirstWithoutAClearing() {
        var t = CallTracker(settings: CallTracker.Settings(clearAfterSeconds: 1, staleAfterSeconds: 60, maxCalls: 100))
        for n in 0..<20 { _ = t.ingest(Self.call(n).facts, eventID: Self.call(n).id, now: Self.now) }
        _ = t.sweep(now: Self.now + 60_000)  // stale: ended
        _ = t.sweep(now: Self.now + 61_000)  // cleared: tombstones
        #expect(t.calls.count == 20 && t.retainedCount == 0)
        for n in 20..<100 { _ = t.ingest(Self.call(n).facts, eventID: Self.call(n).id, now: Self.now + 62_000 + Int64(n)) }
        let out = t.ingest(Self.call(100).facts, eventID: Self.call(100).id, now: Self.now + 70_000)
        #expect(t.calls.count == 75 && out.filter(\.evicted).isEmpty, "the 20 tombstones first, then the 6 oldest calls")
        #expect(t.calls.values.allSatisfy { $0.clearedAt == nil } && t.calls["conv-20"] == nil && t.calls["conv-26"] != nil)
        #expect(t.retainedCount == 75)
    }

    @Test func anEvictionRolledBackLeavesTheTrackerAsItWas() {
        var t = CallTracker(settings: CallTracker.Settings(clearAfterSeconds: 600, staleAfterSeconds: 14_400, maxCalls: 100))
        for n in 0..<100 { _ = t.ingest(Self.call(n).facts, eventID: Self.call(n).id, now: Self.now + Int64(n)) }
        _ = t.takeChanges()
        let before = t
        t.begin()
        _ = t.ingest(Self.call(100).facts, eventID: Self.call(100).id, now: Self.now + 300)
        #expect(t.evictedCount == 26)
        t.rollback()
        #expect(t == before)
        #expect(t.takeChanges().isEmpty)
    }

    // MARK: Rebuilding from stored rows

    /// What the outbox stores in order: each webhook, then the rows it caused; the sweeps' rows.
    enum Stored { case webhook(CallFacts, String, Int64), row(String, String, Int64) }

    static func rows(_ messages: [CallTracker.Message], at: Int64) -> [Stored] {
        messages.map { m in .row(m.seq.map(String.init) ?? (m.evicted ? "evict" : "clear"), m.key, at) }
    }

    @Test func foldingTheStoredRowsAgainGivesTheSameTracker() {
        let settings = CallTracker.Settings(clearAfterSeconds: 5, staleAfterSeconds: 60, tombstoneSeconds: 3600, maxCalls: 100)
        var live = CallTracker(settings: settings)
        var log: [Stored] = []
        var now = Self.now
        func ingest(_ e: (facts: CallFacts, id: String)) {
            now += 10
            log.append(.webhook(e.facts, e.id, now))
            let messages = live.ingest(e.facts, eventID: e.id, now: now)
            log += Self.rows(messages, at: now)
            // Delivered as they come (a rebuilt call counts its state as handed out).
            for m in messages { if let seq = m.seq { live.handedOut(key: m.key, seq: seq) } }
        }
        func sweep(_ at: Int64) {
            now = at
            let messages = live.sweep(now: now)
            log += Self.rows(messages, at: now)
            for m in messages { if let seq = m.seq { live.handedOut(key: m.key, seq: seq) } }
        }
        // Whole flows, a stream joining its call, calls going stale, ended calls cleared, and the bound.
        for e in (Self.outbound + Self.inboundAnswered).map(Self.event) { ingest(e) }
        for n in 0..<40 { ingest(Self.call(n)) }
        sweep(now + 61_000)  // stale
        sweep(now + 6_000)  // cleared
        for n in 40..<150 { ingest(Self.call(n)) }
        ingest(Self.event(Self.streamLegB))
        #expect(live.evictedCount > 0)

        var rebuilt = CallTracker(settings: settings)
        rebuilt.replaying = true
        for entry in log {
            switch entry {
            case .webhook(let facts, let id, let at): _ = rebuilt.ingest(facts, eventID: id, now: at)
            case .row(let head, let key, let at): rebuilt.replayStored(head: head, key: key, at: at)
            }
        }
        // Tombstones the bound forgot leave no row: the rebuilt tracker still has them (harmless:
        // the next batch forgets them first). Every call with a retained state is exactly the same.
        let retained = { (t: CallTracker) in t.calls.filter { $0.value.clearedAt == nil } }
        let differing = Set(retained(rebuilt).keys).union(retained(live).keys).filter { rebuilt.calls[$0] != live.calls[$0] }.sorted()
        #expect(differing.isEmpty, "seq, times and state of \(differing)")
        #expect(Set(live.calls.keys).isSubset(of: Set(rebuilt.calls.keys)))
        #expect(rebuilt.activeCount == live.activeCount && rebuilt.retainedCount == live.retainedCount)
        let later = now + 4 * 3_600_000
        let text = { (ms: [CallTracker.Message]) in ms.map { "\($0.key) \($0.seq ?? -1) \(String(decoding: $0.payload, as: UTF8.self))" } }
        let (fromRebuilt, fromLive) = (rebuilt.sweep(now: later), live.sweep(now: later))
        #expect(text(fromRebuilt) == text(fromLive), "and the same timers from here on")
        for m in fromLive { if let seq = m.seq { live.handedOut(key: m.key, seq: seq) } }
        #expect(retained(rebuilt) == retained(live))
    }

    // MARK: Transactions

    @Test func aRolledBackTransactionLeavesTheTrackerAsItWas() {
        var t = CallTracker(settings: Self.settings)
        t.begin()
        for e in Self.inboundAnswered.prefix(2).map(Self.event) { _ = t.ingest(e.facts, eventID: e.id, now: Self.now) }
        t.commit()
        _ = t.takeChanges()
        let before = t
        t.begin()
        for e in (Self.outbound + Self.inboundAnswered).map(Self.event) { _ = t.ingest(e.facts, eventID: e.id, now: Self.now + 5) }
        _ = t.sweep(now: Self.now + 1_000_000_000)
        #expect(t != before)
        t.rollback()
        #expect(t == before, "calls, index, counts, deadline and slots as before the transaction")
        #expect(t.activeCount == 1 && t.retainedCount == 1)
        #expect(t.takeChanges().isEmpty)
    }

    // MARK: Persistence

    @Test func aRecordSurvivesEncodingExactly() throws {
        for flow in [Self.outbound, Self.inboundAnswered, Self.inboundMissedByCDR] {
            let (t, _) = Self.run(flow.map(Self.event))
            for var call in t.calls.values {
                call.handedOut = true  // not persisted: a decoded call counts its state as handed out
                #expect(CallRecordCoding.decode(CallRecordCoding.encode(call)) == call)
            }
            let reloaded = CallTracker(settings: Self.settings, calls: Array(t.calls.values))
            #expect(reloaded == CallTracker(settings: Self.settings, calls: Array(t.calls.values)))
        }
        var t = CallTracker(settings: Self.settings)
        _ = t.ingest(Self.event(Self.streamLegB).facts, eventID: "b", now: Self.now)
        // After a restart the index finds the call again for a stream event.
        var restarted = CallTracker(settings: Self.settings, calls: t.calls.values.map { CallRecordCoding.decode(CallRecordCoding.encode($0))! })
        let out = restarted.ingest(Self.event("live_stream_connected.json").facts, eventID: "s", now: Self.now + 1)
        #expect(out.map(\.key) == ["conv-stream-1"])
        #expect(Self.json(out[0].payload)["seq"] as? Int == 2)
    }
}

/// Every state message of the documented flows matches docs/schema/call-state.v1.schema.json,
/// and writes nothing the schema does not declare.
@Suite struct CallStateSchemaTests {
    static let schemaURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../docs/schema/call-state.v1.schema.json").standardizedFileURL

    @Test func everyStateMessageMatchesTheSchema() throws {
        let schema = try JSONValue.parse([UInt8](Data(contentsOf: Self.schemaURL)))
        #expect(schema["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
        let declared = Set(schema["properties"]?.keys ?? [])
        let legDeclared = Set(schema["$defs"]?["leg"]?["properties"]?.keys ?? [])
        let flows = [CallTrackerTests.outbound, CallTrackerTests.inboundAnswered, CallTrackerTests.inboundMissedByCDR,
                     CallTrackerTests.outboundByCDR].map { $0.map(CallTrackerTests.event) } + [CallTrackerTests.streamFlow]
        var checked = 0
        for flow in flows {
            var t = CallTracker(settings: .init(clearAfterSeconds: 1, staleAfterSeconds: 60))
            var messages: [CallTracker.Message] = []
            for e in flow { messages += t.ingest(e.facts, eventID: e.id, now: CallTrackerTests.now) }
            messages += t.sweep(now: CallTrackerTests.now + 3_600_000)
            for m in messages where !m.payload.isEmpty {
                let payload = try JSONValue.parse(m.payload)
                var validator = MiniValidator(root: schema)
                validator.validate(payload, against: schema, at: "$")
                #expect(validator.errors.isEmpty, "\(validator.errors)")
                #expect(Set(payload.keys).subtracting(declared).isEmpty)
                if case .object(let legs)? = payload["legs"] {
                    for leg in legs { #expect(Set(leg.value.keys).subtracting(legDeclared).isEmpty, "\(leg.key)") }
                }
                checked += 1
            }
        }
        #expect(checked > 15)
        // The stale sweep's messages keep the webhook's id; a bad value is caught.
        var validator = MiniValidator(root: schema)
        validator.validate(try JSONValue.parse(#"{"schema":"callrelay.call-state.v1","app_id":"1","call_key":"k","state":"ringing","legs":{"c":{}},"updated_at":"x","seq":0}"#), against: schema, at: "$")
        #expect(validator.errors.count >= 4, "\(validator.errors)")
    }
}
