import CallRelayCalls
import CallRelayCore
import CallRelayNormalize
import CallRelayOutbox
import Synchronization

/// The call state (CONTRACT §9) riding on the outbox: inside each commit, the tracker turns the
/// webhooks just stored into call-state rows (retained on `{prefix}/{app}/calls/{key}`), written
/// in the same transaction right after their event, and its records into `companion_state`.
/// The tracker changes in place and keeps an undo record of what each transaction replaced: a
/// rollback puts it back.
final class CallStateCompanion: OutboxCompanion {
    /// The `kind` of a call-state row in the outbox.
    static let rowKind = "state"

    private struct State {
        var tracker: CallTracker
        /// `tracker.nextDeadline`, kept so `isDue` costs nothing.
        var deadline: Int64?
    }

    private let state: Mutex<State>
    private let topicPrefix: String
    /// For `/metrics` and `status`.
    let activeCalls = Atomic<Int>(0)
    let retainedCalls = Atomic<Int>(0)
    /// Calls kept in memory (tombstones included), bounded by `calls.max_calls`.
    let trackedCalls = Atomic<Int>(0)
    /// Calls forgotten (and cleared) to stay within `calls.max_calls`, since the start.
    let evictedCalls = Atomic<Int>(0)
    let messages = Atomic<Int>(0)

    init(settings: CallTracker.Settings, topicPrefix: String) {
        state = Mutex(State(tracker: CallTracker(settings: settings)))
        self.topicPrefix = topicPrefix
    }

    func load(_ records: [(slot: Int64, data: [UInt8])]) {
        let calls = records.compactMap { CallRecordCoding.decode($0.data) }
        state.withLock { s in
            s.tracker = CallTracker(settings: s.tracker.settings, calls: calls)
            s.deadline = s.tracker.nextDeadline
            publishGauges(s.tracker)
        }
    }

    /// Folds the rows stored after the snapshot again: webhooks are normalized from their bodies
    /// (deterministic, as at delivery) and ingested at their receive time; the tracker's own rows
    /// say what its timers and its bound did. Rows `callrelay replay` copied are not folded (they
    /// were not when they were stored). The bound waits until the rows are folded: their
    /// `evict` rows say what it forgot.
    func replay(_ rows: [OutboxReplayRow]) {
        state.withLock { s in
            s.tracker.replaying = true
            defer { s.tracker.replaying = false }
            for row in rows {
                if row.kind == Self.rowKind {
                    guard let (_, head, key) = Self.parse(row.data) else { continue }
                    s.tracker.replayStored(head: head, key: key, at: row.receivedAtMilliseconds)
                } else if let kind = row.kind, kind == "cdr" || kind == "live", !row.eventID.contains("#replay-"),
                    let parsed = try? JSONValue.parse(row.data),
                    let facts = PiopiyNormalizer.normalize(parsed, endpoint: kind == "cdr" ? .cdr : .live, receivedAtMilliseconds: row.receivedAtMilliseconds).call
                {
                    _ = s.tracker.ingest(facts, eventID: row.eventID, now: row.receivedAtMilliseconds)
                }
            }
            s.deadline = s.tracker.nextDeadline
            publishGauges(s.tracker)
        }
    }

    var hasChanges: Bool { state.withLock { $0.tracker.hasChanges } }

    func begin() {
        state.withLock { $0.tracker.begin() }
    }

    func rows(after event: OutboxEvent, now: Int64) -> [OutboxEvent] {
        guard let facts = event.companionInput as? CallFacts else { return [] }
        return state.withLock { s in s.tracker.ingest(facts, eventID: event.id, now: now) }.map { row($0, now: now) }
    }

    func isDue(now: Int64) -> Bool {
        state.withLock { s in s.deadline.map { $0 <= now } ?? false }
    }

    func dueRows(now: Int64) -> [OutboxEvent] {
        state.withLock { s in s.tracker.sweep(now: now) }.map { row($0, now: now) }
    }

    func changes() -> [(slot: Int64, data: [UInt8]?)] {
        state.withLock { s in s.tracker.takeChanges() }.map { (slot: $0.slot, data: $0.call.map(CallRecordCoding.encode)) }
    }

    func planChanges() -> Int { state.withLock { $0.tracker.planSnapshot() } }

    func changes(limit: Int) -> [(slot: Int64, data: [UInt8]?)] {
        state.withLock { s in s.tracker.takeChanges(limit: limit) }.map { (slot: $0.slot, data: $0.call.map(CallRecordCoding.encode)) }
    }

    func finish(committed: Bool) {
        state.withLock { s in
            if committed {
                s.tracker.commit()
            } else {
                s.tracker.rollback()
            }
            s.deadline = s.tracker.nextDeadline
            publishGauges(s.tracker)
        }
    }

    private func publishGauges(_ t: CallTracker) {
        activeCalls.store(t.activeCount, ordering: .relaxed)
        retainedCalls.store(t.retainedCount, ordering: .relaxed)
        trackedCalls.store(t.calls.count, ordering: .relaxed)
        evictedCalls.store(t.evictedCount, ordering: .relaxed)
    }

    /// A state row stores only which message it is, `=<app level> <head> <key>` with `<head>` the
    /// state's `seq`, `clear`, or `evict` (a call forgotten past `calls.max_calls`), and no topic
    /// or event id (both follow from it): the payload is built when it is delivered, from the
    /// call's record (`deliveryPayload`). So a row costs ~50 bytes instead of the payload, and a
    /// row a newer state of its call has replaced is skipped: subscribers of a retained topic want
    /// the current state, not the stale ones. (Rows of the first build with call state read
    /// `<head> <key>` and carry their topic.)
    private func row(_ m: CallTracker.Message, now: Int64) -> OutboxEvent {
        messages.add(1, ordering: .relaxed)
        let data = Array("=\(m.appLevel) \(m.seq.map(String.init) ?? (m.evicted ? "evict" : "clear")) \(m.key)".utf8)
        return OutboxEvent(id: "", callID: nil, topic: "", kind: Self.rowKind, body: data, payload: data, receivedAtMilliseconds: now)
    }

    /// A state row's parts (nil app level: a row of the first format).
    static func parse(_ data: [UInt8]) -> (appLevel: String?, head: String, key: String)? {
        var rest = data[...]
        var appLevel: String?
        if rest.first == UInt8(ascii: "=") {
            guard let space = rest.firstIndex(of: UInt8(ascii: " ")) else { return nil }
            appLevel = String(decoding: rest[rest.index(after: rest.startIndex)..<space], as: UTF8.self)
            rest = rest[(space + 1)...]
        }
        guard let space = rest.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        return (appLevel, String(decoding: rest[..<space], as: UTF8.self), String(decoding: rest[(space + 1)...], as: UTF8.self))
    }

    /// The retained topic of a state row (`stored`: what the row's topic column says).
    func topic(of data: [UInt8], stored: String) -> String {
        guard stored.isEmpty, let row = Self.parse(data), let app = row.appLevel else { return stored }
        return "\(topicPrefix)/\(app)/calls/\(Self.topicLevel(row.key))"
    }

    enum Delivery: Equatable {
        /// Publish this payload (empty: clear the retained message).
        case publish([UInt8])
        /// A newer state of the call is stored (or the call is forgotten): mark it done unpublished.
        case skip
    }

    /// What to publish for a stored state row (its data as `row` wrote it). Runs on the outbox
    /// queue, between commits: the tracker is what the file holds.
    func deliveryPayload(_ data: [UInt8]) -> Delivery {
        guard let (_, head, key) = Self.parse(data) else { return .skip }
        if head == "clear" || head == "evict" { return .publish([]) }
        guard let seq = Int64(head) else { return .skip }
        return state.withLock { s in
            if let call = s.tracker.current(key: key, seq: seq) {
                s.tracker.handedOut(key: key, seq: seq)
                return .publish(CallStatePayload.write(call))
            }
            // Forgotten past calls.max_calls before this state was handed out: no `evict` row
            // was stored, so this row clears the retained message (a clearing of a topic the
            // broker has nothing on is harmless). Superseded or cleared: skipped.
            return s.tracker.calls[key] == nil ? .publish([]) : .skip
        }
    }

    let skipped = Atomic<Int>(0)

    /// The key as a topic level: kept when it is only letters, digits, `.`, `_` and `-` (PIOPIY's
    /// UUIDs and conversation ids are), else every other byte becomes `_`.
    static func topicLevel(_ key: String) -> String {
        let bytes = Array(key.utf8).prefix(128)
        let safe = bytes.map { b -> UInt8 in
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                b
            default: UInt8(ascii: "_")
            }
        }
        return safe.isEmpty ? "unknown" : String(decoding: safe, as: UTF8.self)
    }
}
