import CSQLite
import Glibc

/// A dead letter as `callrelay status` lists it.
package struct DeadLetterRecord: Sendable, Equatable {
    package var seq: Int64
    package var eventID: String
    package var topic: String
    package var reason: String
    package var attempts: Int
    package var deadAtMilliseconds: Int64
}

/// Operator tools (`callrelay status`, `callrelay replay`): they open the file with their own
/// connection, whether or not the agent runs. SQLite's locking and the agent's `busy_timeout`
/// keep both safe; the agent's delivery pump polls for new rows, so replayed rows are picked up
/// within a second while it runs, or at its next start.
extension SQLiteOutbox {
    /// Counts by state, without creating or changing the file.
    package static func inspect(path: String) throws(SQLiteError) -> OutboxStats {
        let db = try SQLiteDatabase(path: path, mode: .readWrite)
        try db.execute("PRAGMA busy_timeout=5000")
        // An outbox of v0.1.0 not yet migrated (the agent migrates it at its next start).
        switch try db.scalarInt("PRAGMA user_version") {
        case 1: return try readVersion1Stats(db)
        case movingFromVersion1:
            throw SQLiteError(
                code: SQLITE_BUSY, message: "the agent is migrating this outbox from v0.1.0; try again in a moment", context: "open \(path)")
        default: break
        }
        return try readStats(db)
    }

    private static func readVersion1Stats(_ db: SQLiteDatabase) throws(SQLiteError) -> OutboxStats {
        let last = try db.scalarInt("SELECT max(delivered_at) FROM delivered")
        return OutboxStats(
            pending: Int(try db.scalarInt("SELECT count(*) FROM pending") ?? 0),
            delivered: Int(try db.scalarInt("SELECT count(*) FROM delivered") ?? 0),
            deadLetters: Int(try db.scalarInt("SELECT count(*) FROM dead_letters") ?? 0),
            oldestPendingReceivedAtMilliseconds: try db.scalarInt(
                "SELECT e.received_at FROM pending p JOIN events e ON e.seq = p.seq ORDER BY p.seq LIMIT 1"),
            lastDeliveredAtMilliseconds: last ?? nil)
    }

    /// The most recent dead letters, newest first.
    package static func deadLetters(path: String, limit: Int = 20) throws(SQLiteError) -> [DeadLetterRecord] {
        let db = try SQLiteDatabase(path: path, mode: .readWrite)
        try db.execute("PRAGMA busy_timeout=5000")
        let s = try db.prepare(
            """
            SELECT e.seq, e.event_id, e.topic, d.reason, d.attempts, d.dead_at
            FROM dead_letters d JOIN events e ON e.seq = d.seq ORDER BY d.dead_at DESC, e.seq DESC LIMIT ?1
            """)
        s.bind(1, Int64(limit))
        var rows: [DeadLetterRecord] = []
        while try s.step() {
            rows.append(
                DeadLetterRecord(
                    seq: s.int64(0), eventID: s.text(1), topic: s.text(2), reason: s.text(3), attempts: Int(s.int64(4)),
                    deadAtMilliseconds: s.int64(5)))
        }
        return rows
    }

    /// What `replay` did.
    package struct ReplayResult: Sendable, Equatable {
        package var copied: Int
        /// Stopped early: the copies reached `storage.max_bytes` (the rest was not queued).
        package var stoppedAtCap: Bool
        /// The dead letters in the window, by the reason they were given up on (most first).
        package var deadLetterReasons: [DeadLetterReason] = []
    }

    package struct DeadLetterReason: Sendable, Equatable {
        package var reason: String
        package var count: Int
    }

    /// Queues stored events again: every delivered or dead-lettered event received in
    /// `[since, until)` (optionally only of one call) is copied to the end of the queue with its
    /// payload unchanged (same `id`: subscribers that de-duplicate on `id` will see a repeat).
    /// Events still pending are not copied (they are about to be published anyway), nor are
    /// earlier replay copies. Reads the whole table (there is no time index: it would cost every
    /// webhook a page write for a command run by hand). The copies obey `maxBytes` like the agent's
    /// writes (`SpacePolicy`): they go in small transactions with a checkpoint after each, and stop
    /// at the soft cap.
    package static func replay(
        path: String, sinceMilliseconds: Int64, untilMilliseconds: Int64?, callID: String?, maxBytes: Int64 = 1 << 30,
        now: Int64 = nowMilliseconds()
    ) throws(SQLiteError) -> ReplayResult {
        let db = try SQLiteDatabase(path: path, mode: .readWrite)
        try db.execute("PRAGMA busy_timeout=10000")
        let space = SpacePolicy(maxBytes: maxBytes, pageSize: try db.scalarInt("PRAGMA page_size") ?? 4096)
        try db.execute("PRAGMA max_page_count=\(space.hardPages)")
        try db.execute("PRAGMA journal_size_limit=\(space.walLimitBytes)")
        // A quarter of the WAL's share per transaction, at ~700 bytes a row.
        let chunk = min(max(space.batchBytes / 700, 16), 2000)
        let filter = """
            received_at >= ?1 AND received_at < ?2 AND (?3 IS NULL OR call_id = ?3)
              AND (seq <= ?4 OR seq IN (SELECT seq FROM acked_above) OR seq IN (SELECT seq FROM dead_letters))
              AND instr(event_id, '#replay-') = 0 AND coalesce(kind, '') != 'state' AND seq > ?5 AND seq <= ?6
            """
        let chunkEnd = try db.prepare("SELECT seq FROM events WHERE \(filter) ORDER BY seq LIMIT 1 OFFSET \(chunk - 1)")
        let copy = try db.prepare(
            """
            INSERT INTO events(seq, event_id, call_id, topic, kind, data, received_at)
            SELECT ?8 + row_number() OVER (ORDER BY seq) - 1, event_id || '#replay-' || ?7 || '-' || seq, call_id, topic, kind, data,
                received_at
            FROM events WHERE \(filter) ORDER BY seq
            """)
        // Only events stored before the replay started: the copies, and what the agent stores
        // meanwhile, are not replayed again.
        let end = try db.scalarInt("SELECT max(seq) FROM events") ?? 0
        var cursor: Int64 = 0
        var result = ReplayResult(copied: 0, stoppedAtCap: false)
        let reasons = try db.prepare(
            """
            SELECT d.reason, count(*) FROM dead_letters d JOIN events e ON e.seq = d.seq
            WHERE e.received_at >= ?1 AND e.received_at < ?2 AND (?3 IS NULL OR e.call_id = ?3) AND instr(e.event_id, '#replay-') = 0
              AND e.seq <= ?4
            GROUP BY d.reason ORDER BY count(*) DESC, d.reason
            """)
        reasons.bind(1, sinceMilliseconds)
        reasons.bind(2, untilMilliseconds ?? Int64.max)
        reasons.bind(3, callID)
        reasons.bind(4, end)
        while try reasons.step() { result.deadLetterReasons.append(DeadLetterReason(reason: reasons.text(0), count: Int(reasons.int64(1)))) }
        reasons.reset()
        while cursor < end {
            let pages = try db.pageCounts()
            if pages.total - pages.free >= space.softPages {
                result.stoppedAtCap = true
                break
            }
            try db.execute("BEGIN IMMEDIATE")
            do throws(SQLiteError) {
                // New rows go above both the newest row and the watermark, like the agent's (see
                // `Writer.write`): everything above the watermark is pending or settled.
                let watermark = try db.scalarInt("SELECT max(seq_hi) FROM delivery_marks") ?? 0
                let first = max(try db.scalarInt("SELECT max(seq) FROM events") ?? 0, watermark) + 1
                for s in [chunkEnd, copy] {
                    s.bind(1, sinceMilliseconds)
                    s.bind(2, untilMilliseconds ?? Int64.max)
                    s.bind(3, callID)
                    s.bind(4, watermark)
                    s.bind(5, cursor)
                    s.bind(6, end)
                }
                let last = try chunkEnd.step() ? chunkEnd.int64(0) : end
                chunkEnd.reset()
                copy.bind(6, last)
                copy.bind(7, now)
                copy.bind(8, first)
                try copy.run()
                result.copied += db.changes
                try db.execute("COMMIT")
                cursor = last
            } catch {
                chunkEnd.reset()
                try? db.execute("ROLLBACK")
                if error.isFull {
                    result.stoppedAtCap = true
                    break
                }
                throw error
            }
            // Keep the WAL inside its share whether or not the agent runs (its own checkpoints
            // take over when it does; a busy one is retried for up to a second).
            for _ in 0..<50 where space.shouldCheckpoint(walFrames: db.walFrames) && !db.checkpoint(.restart) { usleep(20_000) }
        }
        return result
    }
}
