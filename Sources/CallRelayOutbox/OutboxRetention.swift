import Dispatch
import Logging
import Synchronization

/// Retention and room-making: delivered events leave the file after `retention_hours`, or
/// earlier, oldest first, when the outbox reaches `storage.max_bytes`. Pending events are never
/// touched. Deletes run in small transactions so the WAL stays inside its limit.
extension SQLiteOutbox {
    /// Dedupe rows one deleting transaction takes (~50 bytes each).
    static let deleteChunk = 2000

    /// Events one deleting transaction takes: a quarter of the WAL's limit at the average row
    /// size seen so far, so deleting never grows the WAL past what `SpacePolicy` allows.
    func eventDeleteChunk(_ writer: Writer) -> Int {
        Int(min(max(space.walLimitBytes / 4 / max(writer.averageRowBytes, 256), 8), 2000))
    }

    func schedulePrune(after seconds: Int) {
        queue.asyncAfter(deadline: .now() + .seconds(seconds)) { [weak self] in
            guard let self, self.pruneDelivered() else { return }
            self.schedulePrune(after: 60)
        }
    }

    /// Deletes delivered events (and dead letters) older than the retention, and the dedupe rows
    /// no longer needed. Returns false once closed.
    @discardableResult
    package func pruneDelivered(now: Int64 = SQLiteOutbox.nowMilliseconds()) -> Bool {
        let cutoff = now - retentionMilliseconds
        return connection.withLock { writer in
            guard let writer else { return false }
            guard fault == nil else { return true }
            // Rows the companion's snapshot does not cover yet cannot go: bring it up to date first.
            if writer.companionThrough < writer.ledger.committedWatermark { snapshotCompanion(writer) }
            do throws(SQLiteError) {
                let deleted = try deleteDelivered(writer, settledBefore: cutoff, limit: .max)
                if deleted > 0 { logger.debug("pruned delivered events", metadata: ["count": "\(deleted)"]) }
                // Dead letters are kept as long as delivered events, then dropped too.
                let watermark = writer.ledger.committedWatermark
                try writer.db.execute(
                    """
                    BEGIN IMMEDIATE;
                    DELETE FROM events WHERE seq IN (SELECT seq FROM dead_letters WHERE dead_at < \(cutoff) AND seq <= \(min(watermark, writer.companionFloor)));
                    DELETE FROM dead_letters WHERE dead_at < \(cutoff) AND seq <= \(min(watermark, writer.companionFloor));
                    COMMIT;
                    """)
                let droppedDead = writer.db.changes
                if droppedDead > 0 { metrics.deadLetters.subtract(droppedDead, ordering: .relaxed) }
                try pruneDedupe(writer, now: now)
                afterCommit(writer)
            } catch {
                try? writer.db.execute("ROLLBACK")
                if !noteFault(error, while: "pruning delivered events") {
                    logger.warning("retention prune failed", metadata: ["error": "\(error)"])
                }
            }
            return true
        }
    }

    /// Called on the outbox queue when appends hit the size cap: deletes up to 10,000 delivered
    /// events, oldest first, whatever their age (their ids stay in `dedupe`, so a re-send is still
    /// recognised), and ids older than the dedupe floor whose events are gone. Returns how many
    /// events were deleted.
    func makeRoom(_ writer: Writer) -> Int {
        if writer.companionThrough < writer.ledger.committedWatermark { snapshotCompanion(writer) }
        do throws(SQLiteError) {
            let deleted = try deleteDelivered(writer, settledBefore: nil, limit: 10_000)
            let ids = try pruneDedupe(writer, now: Self.nowMilliseconds())
            guard deleted + ids > 0 else { return 0 }
            // The freed pages are reused by the next rows (the file does not grow for them: see
            // `spaceProblem`); the WAL that recorded the deletes goes back to the filesystem.
            writer.db.checkpoint(.truncate)
            publishWALGauge(writer)
            metrics.prunedForSpace.add(deleted, ordering: .relaxed)
            logger.warning(
                "outbox at storage.max_bytes: dropped delivered events before their retention ended",
                metadata: ["count": "\(deleted)", "ids": "\(ids)"])
            return deleted + ids
        } catch {
            try? writer.db.execute("ROLLBACK")
            if !noteFault(error, while: "making room") {
                logger.error("making room in the outbox failed", metadata: ["error": "\(error)"])
            }
            return 0
        }
    }

    /// Deletes delivered events oldest first, a `delivery_marks` minute at a time, keeping each
    /// minute's `delivered` count exact (what `status` sums). Only events at or below the
    /// persisted watermark are candidates; dead letters stay.
    private func deleteDelivered(_ writer: Writer, settledBefore cutoff: Int64?, limit: Int) throws(SQLiteError) -> Int {
        var deleted = 0
        let oldest = try writer.db.prepare("SELECT minute, seq_hi, delivered_at FROM delivery_marks ORDER BY minute LIMIT 2")
        while deleted < limit {
            defer { oldest.reset() }
            guard try oldest.step() else { break }
            let (minute, markedHigh, settledAt) = (oldest.int64(0), oldest.int64(1), oldest.int64(2))
            let seqHigh = min(markedHigh, writer.companionFloor)
            let isNewest = !(try oldest.step())
            if let cutoff, settledAt >= cutoff { break }
            let chunk = min(eventDeleteChunk(writer), limit - deleted)
            try writer.db.execute(
                """
                BEGIN IMMEDIATE;
                DELETE FROM events WHERE seq IN (
                    SELECT seq FROM events WHERE seq <= \(seqHigh) AND seq NOT IN (SELECT seq FROM dead_letters) ORDER BY seq LIMIT \(chunk));
                """)
            let n = writer.db.changes
            if n < chunk {
                // This minute's events are all gone: its row goes too, except the newest, which
                // holds the watermark.
                try writer.db.execute(
                    isNewest
                        ? "UPDATE delivery_marks SET delivered = 0 WHERE minute = \(minute); COMMIT;"
                        : "DELETE FROM delivery_marks WHERE minute = \(minute); COMMIT;")
            } else {
                try writer.db.execute("UPDATE delivery_marks SET delivered = max(0, delivered - \(n)) WHERE minute = \(minute); COMMIT;")
            }
            deleted += n
            afterCommit(writer)
            if n < chunk && isNewest { break }
        }
        return deleted
    }

    /// Deletes dedupe rows no longer needed: ids seen before the dedupe floor whose event is no
    /// longer retained.
    @discardableResult
    private func pruneDedupe(_ writer: Writer, now: Int64) throws(SQLiteError) -> Int {
        // An id stays while its event is retained (received at or after the oldest retained one),
        // and at least for the dedupe floor after its event was deleted to make room.
        let oldestRetained = try writer.db.scalarInt("SELECT min(received_at) FROM (SELECT received_at FROM events ORDER BY seq LIMIT 64)") ?? now
        let cutoff = min(now - Self.dedupeFloorMilliseconds, oldestRetained)
        var deleted = 0
        while true {
            try writer.db.execute(
                """
                DELETE FROM dedupe WHERE (ord, id) IN (
                    SELECT ord, id FROM dedupe WHERE ord < \(max(cutoff, 1)) AND seen_at < \(cutoff) LIMIT \(Self.deleteChunk))
                """)
            let n = writer.db.changes
            deleted += n
            afterCommit(writer)
            if n < Self.deleteChunk { break }
        }
        return deleted
    }
}
