import CSQLite
import Glibc
import Logging

/// What a start did with an outbox it could not trust (`/metrics`, the log).
package struct OutboxRecovery: Sendable, Equatable {
    /// Where the damaged file went (`<path>.corrupt-<UTC time>`, with its `-wal`/`-shm`).
    package var movedTo: String
    /// Why: the error that opening or `PRAGMA quick_check` reported.
    package var reason: String
    /// Pending events read from the damaged file and stored again, in their order, in the fresh outbox.
    package var salvaged: Int
    /// Pending events the damaged file held but that could not be read; nil when the file could
    /// not even say how many it held (its header, schema or last page unreadable).
    package var unreadable: Int?
    /// Event ids carried over so that re-sends are still recognized.
    package var dedupeIDs: Int
    /// Dead letters left behind in the set-aside file.
    package var deadLettersLeft: Int
}

/// Salvage: the pending events of a set-aside outbox, read around its damaged pages, become the
/// first rows of the fresh one. SQLite stops a scan at the first damaged page; a rowid seek that
/// avoids that page still works, so after a failure the reader looks for the next seq it can
/// seek to (doubling the distance, then bisecting) and goes on from there. Delivered events and
/// dead letters are not carried over; the ids of all readable events are, for deduplication.
extension SQLiteOutbox {
    static let salvageChunk = 2000

    static func salvage(from aside: String, into fresh: SQLiteDatabase, reason: String, logger: Logger) throws(SQLiteError) -> OutboxRecovery {
        var recovery = OutboxRecovery(movedTo: aside, reason: reason, salvaged: 0, unreadable: nil, dedupeIDs: 0, deadLettersLeft: 0)
        // Read-only: the set-aside file stays as it was found (no checkpoint at close).
        guard let old = try? SQLiteDatabase(path: aside, mode: .readOnly), (try? old.scalarInt("PRAGMA user_version")) != nil else {
            logger.error("nothing could be read from the damaged outbox", metadata: ["file": "\(aside)"])
            return recovery
        }
        // Whatever cannot be read about delivery counts as pending: a duplicate rather than a loss.
        let watermark = ((try? old.scalarInt("SELECT max(seq_hi) FROM delivery_marks")) ?? nil) ?? 0
        var settled = Set<Int64>()
        _ = readAll(old, "SELECT seq FROM acked_above WHERE seq > \(watermark)") { settled.insert($0.int64(0)) }
        _ = readAll(old, "SELECT seq FROM dead_letters WHERE seq > \(watermark)") { settled.insert($0.int64(0)) }
        recovery.deadLettersLeft = Int(((try? old.scalarInt("SELECT count(*) FROM dead_letters")) ?? nil) ?? 0)
        let maxSeq = (try? old.scalarInt("SELECT max(seq) FROM events")) ?? nil

        let insert = try fresh.prepare(
            "INSERT INTO events(seq, event_id, call_id, topic, kind, data, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        let insertID = try fresh.prepare("INSERT OR IGNORE INTO dedupe(ord, id, seen_at) VALUES (?1, ?2, ?3)")
        var nextSeq: Int64 = 1
        var unreadable = 0
        var countKnown = true
        var after = watermark
        var holes = 0
        let probe = try? old.prepare("SELECT seq FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1")
        func seekable(_ seq: Int64) -> Bool {
            guard let probe else { return false }
            defer { probe.reset() }
            probe.bind(1, seq)
            return (try? probe.step()) != nil
        }
        while true {
            let (rows, failed) = readEvents(old, after: after)
            try transaction(fresh) { () throws(SQLiteError) in
                for row in rows where !settled.contains(row.seq) {
                    insert.bind(1, nextSeq)
                    insert.bind(2, row.id)
                    insert.bind(3, row.callID)
                    insert.bind(4, row.topic)
                    insert.bind(5, row.kind)
                    insert.bind(6, blob: row.data)
                    insert.bind(7, row.receivedAt)
                    try insert.run()
                    insertID.bind(1, 0)
                    insertID.bind(2, row.id)
                    insertID.bind(3, row.receivedAt)
                    try insertID.run()
                    nextSeq += 1
                    recovery.salvaged += 1
                }
            }
            fresh.checkpoint(.restart)
            if let last = rows.last { after = last.seq }
            if !failed {
                if rows.count < salvageChunk { break }
                continue
            }
            // A damaged page after `after`: find the smallest seq a seek reaches again.
            holes += 1
            var bad = after + 1
            var distance: Int64 = 1
            var good: Int64? = nil
            let upper = maxSeq ?? (after + (1 << 40))
            while holes <= 10_000, bad < upper {
                let candidate = min(bad + distance, upper)
                if seekable(candidate) {
                    good = candidate
                    break
                }
                bad = candidate
                distance *= 2
            }
            guard var hi = good else {
                // Nothing readable up to the end.
                if let maxSeq {
                    unreadable += pendingCount(from: after + 1, through: maxSeq, settled: settled)
                } else {
                    countKnown = false
                }
                break
            }
            while hi - bad > 1 {
                let middle = bad + (hi - bad) / 2
                if seekable(middle) { hi = middle } else { bad = middle }
            }
            unreadable += pendingCount(from: after + 1, through: hi - 1, settled: settled)
            after = hi - 1
        }
        recovery.unreadable = countKnown ? unreadable : nil

        // The ids of the delivered events, read until the first damaged page of that index.
        let copyID = try fresh.prepare("INSERT OR IGNORE INTO dedupe(ord, id, seen_at) VALUES (?1, ?2, ?3)")
        var ids: [(Int64, String, Int64)] = []
        _ = readAll(old, "SELECT ord, id, seen_at FROM dedupe") { ids.append(($0.int64(0), $0.text(1), $0.int64(2))) }
        for start in stride(from: 0, to: ids.count, by: salvageChunk) {
            try transaction(fresh) { () throws(SQLiteError) in
                for (ord, id, seenAt) in ids[start..<min(start + salvageChunk, ids.count)] {
                    copyID.bind(1, ord)
                    copyID.bind(2, id)
                    copyID.bind(3, seenAt)
                    try copyID.run()
                }
            }
        }
        fresh.checkpoint(.truncate)
        recovery.dedupeIDs = Int((try fresh.scalarInt("SELECT count(*) FROM dedupe")) ?? 0)
        return recovery
    }

    private struct SalvagedRow {
        var seq: Int64
        var id: String
        var callID: String?
        var topic: String
        var kind: String?
        var data: [UInt8]
        var receivedAt: Int64
    }

    /// Up to `salvageChunk` events after `after`, and whether the scan stopped at a damaged page.
    private static func readEvents(_ db: SQLiteDatabase, after: Int64) -> (rows: [SalvagedRow], failed: Bool) {
        var rows: [SalvagedRow] = []
        guard
            let s = try? db.prepare(
                "SELECT seq, event_id, call_id, topic, kind, data, received_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT \(salvageChunk)")
        else { return (rows, true) }
        s.bind(1, after)
        do throws(SQLiteError) {
            while try s.step() {
                rows.append(
                    SalvagedRow(
                        seq: s.int64(0), id: s.text(1), callID: s.isNull(2) ? nil : s.text(2), topic: s.text(3),
                        kind: s.isNull(4) ? nil : s.text(4), data: s.blob(5), receivedAt: s.int64(6)))
            }
            return (rows, false)
        } catch {
            return (rows, true)
        }
    }

    /// Steps through `sql`, calling `row` for each; stops quietly at the first error. False then.
    private static func readAll(_ db: SQLiteDatabase, _ sql: String, _ row: (SQLiteStatement) -> Void) -> Bool {
        guard let s = try? db.prepare(sql) else { return false }
        do throws(SQLiteError) {
            while try s.step() { row(s) }
            return true
        } catch {
            return false
        }
    }

    private static func pendingCount(from low: Int64, through high: Int64, settled: Set<Int64>) -> Int {
        guard high >= low else { return 0 }
        return Int(high - low + 1) - settled.filter { $0 >= low && $0 <= high }.count
    }
}
