/// Rows the outbox derives from the events it stores (the call-state messages, CONTRACT §9),
/// written in the same transaction as the event that caused them, right after it in `seq`, with
/// the keyed state they come from (table `companion_state`). So a derived row is exactly as
/// durable as its event, is published after it, and the state survives restarts and power cuts.
///
/// Called on the outbox queue only, inside a transaction: the companion works on a copy of its
/// state that `finish(committed: true)` makes current and `finish(committed: false)` drops.
/// The outbox knows nothing of what the rows mean.
package protocol OutboxCompanion: AnyObject, Sendable {
    /// At open: the persisted keyed state.
    func load(_ records: [(slot: Int64, data: [UInt8])])
    /// Rows caused by `event`, which was just stored (re-sends recognized by the dedupe never come here).
    func rows(after event: OutboxEvent, now: Int64) -> [OutboxEvent]
    /// Whether `dueRows` has something at `now` (cheap; checked every second).
    func isDue(now: Int64) -> Bool
    /// Rows due at `now` without an event (timers).
    func dueRows(now: Int64) -> [OutboxEvent]
    /// The keyed state changed in this transaction (nil data: delete the record). Slots are the
    /// companion's own numbers: records of new keys get higher ones, so they append.
    func changes() -> [(slot: Int64, data: [UInt8]?)]
    /// A transaction starts (before the first `rows` or `dueRows` of it).
    func begin()
    func finish(committed: Bool)
}
