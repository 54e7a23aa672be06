/// Rows the outbox derives from the events it stores (the call-state messages, CONTRACT §9),
/// written in the same transaction as the event that caused them, right after it in `seq`. So a
/// derived row is exactly as durable as its event and is published after it.
///
/// The keyed state they come from is a fold of the stored rows: the file keeps a snapshot of it
/// (table `companion_state`, and in `companion_meta` the last seq it covers), written every
/// `snapshotRows` rows or `snapshotSeconds` and at close, not in every commit; at open the
/// companion folds the rows stored after the snapshot again (`replay`). The events table is the
/// log, the records a checkpoint of it: a state survives restarts and power cuts without being
/// written once per webhook (docs/decisions.md D18).
///
/// Called on the outbox queue only, inside a transaction: the companion works on a copy of its
/// state that `finish(committed: true)` makes current and `finish(committed: false)` drops.
/// The outbox knows nothing of what the rows mean.
package protocol OutboxCompanion: AnyObject, Sendable {
    /// At open: the persisted keyed state.
    func load(_ records: [(slot: Int64, data: [UInt8])])
    /// At open, after `load`: rows stored after the snapshot, in `seq` order (outside any
    /// transaction), to fold again exactly as when they were stored; nothing is derived from them.
    func replay(_ rows: [OutboxReplayRow])
    /// Whether the keyed state changed since the last `changes()`.
    var hasChanges: Bool { get }
    /// Rows caused by `event`, which was just stored (re-sends recognized by the dedupe never come here).
    func rows(after event: OutboxEvent, now: Int64) -> [OutboxEvent]
    /// Whether `dueRows` has something at `now` (cheap; checked every second).
    func isDue(now: Int64) -> Bool
    /// Rows due at `now` without an event (timers).
    func dueRows(now: Int64) -> [OutboxEvent]
    /// The records changed since the last call (nil data: delete the record), written with the
    /// snapshot, inside its transaction. Slots are the companion's own numbers: records of new
    /// keys get higher ones, so they append.
    func changes() -> [(slot: Int64, data: [UInt8]?)]
    /// A snapshot written a chunk per commit: `planChanges` starts a round over the records
    /// changed now (returns how many), `changes(limit:)` gives its next chunk (empty: done).
    func planChanges() -> Int
    func changes(limit: Int) -> [(slot: Int64, data: [UInt8]?)]
    /// A transaction starts (before the first `rows` or `dueRows` of it).
    func begin()
    func finish(committed: Bool)
}

/// A stored row as `OutboxCompanion.replay` sees it.
package struct OutboxReplayRow: Sendable {
    package var seq: Int64
    package var eventID: String
    /// `live`, `cdr`, a companion's own kind, or nil (rows of v0.1.0).
    package var kind: String?
    /// The webhook body, or what the companion stored in its own rows.
    package var data: [UInt8]
    package var receivedAtMilliseconds: Int64
}
