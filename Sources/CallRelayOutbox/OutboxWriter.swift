import CSQLite

extension SQLiteOutbox {
    /// The writing connection with its prepared statements and the state that lives beside it:
    /// the delivery ledger, the committed tail, the newest seq. Confined to the outbox queue (the
    /// Mutex around it is never contended).
    final class Writer: @unchecked Sendable {
        let db: SQLiteDatabase
        let policy: SpacePolicy
        private let insertEvent: SQLiteStatement
        private let insertDedupe: SQLiteStatement
        private let insertMark: SQLiteStatement
        private let insertDeadLetter: SQLiteStatement
        private let fetchRange: SQLiteStatement
        private let selectMaxSeq: SQLiteStatement
        private let selectReceivedAt: SQLiteStatement
        let begin: SQLiteStatement
        let commit: SQLiteStatement
        let rollback: SQLiteStatement
        private let upsertCompanion: SQLiteStatement
        private let deleteCompanion: SQLiteStatement
        /// Derives rows and keyed state inside each transaction (`OutboxCompanion`).
        var companion: (any OutboxCompanion)?
        private let upsertCompanionMeta: SQLiteStatement
        /// The last seq the companion's persisted records cover: rows above it are folded again at
        /// open, so none of them may be deleted (`companionFloor`).
        private(set) var companionThrough: Int64 = 0
        private(set) var lastSnapshotAt: Double = 0

        var ledger: DeliveryLedger
        /// Dead letters reported but not yet in `dead_letters`: never handed out again, but not
        /// settled in the ledger until their row is committed, so the watermark written to the
        /// file never passes one (retention and `makeRoom` delete what is below the watermark).
        private(set) var unwrittenDead: Set<Int64> = []
        // About 40 ms of webhooks at full speed: a pump that keeps up lags by its window (100) and a
        // commit; one that does not reads from the file anyway.
        var tail = CommittedTail(maxCount: 1024, maxBytes: 1 << 20)
        /// The highest seq in the file, as of the last commit or refresh.
        private(set) var lastSeq: Int64
        /// Rows in `acked_above` at or below the watermark wait to be deleted.
        private var ackedAboveRows: Bool
        /// The `delivery_marks` minute last written (never goes backwards, whatever the clock does).
        private var markMinute: Int64
        /// Bytes that may still be appended before the space is measured again.
        var spaceBudget: Int64 = 0
        /// Average bytes of a stored row (payload and columns), for sizing deleting transactions;
        /// pessimistic until appends were seen.
        var averageRowBytes: Int64 = 4096
        /// The filesystem had little free space at the last measurement (see `spaceProblem`).
        var lowDisk = false
        var lastMarkCommitAt: Double = 0
        var lastCommitAt: Double = 0
        var shrinkScheduled = false

        init(db: SQLiteDatabase, policy: SpacePolicy) throws(SQLiteError) {
            self.db = db
            self.policy = policy
            insertEvent = try db.prepare(
                "INSERT INTO events(seq, event_id, call_id, topic, kind, data, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            // A row for a new id; nothing for an id seen before, under its order or (rows migrated
            // from schema 1, CDRs) under order 0.
            insertDedupe = try db.prepare(
                """
                INSERT INTO dedupe(ord, id, seen_at) SELECT ?1, ?2, ?3
                WHERE ?1 = 0 OR NOT EXISTS (SELECT 1 FROM dedupe WHERE ord = 0 AND id = ?2)
                ON CONFLICT DO NOTHING
                """)
            insertMark = try db.prepare(
                """
                INSERT INTO delivery_marks(minute, seq_hi, delivered_at, delivered) VALUES (?1, ?2, ?3, ?4)
                ON CONFLICT(minute) DO UPDATE SET seq_hi = excluded.seq_hi, delivered_at = excluded.delivered_at,
                    delivered = delivered + excluded.delivered
                """)
            insertDeadLetter = try db.prepare(
                "INSERT OR REPLACE INTO dead_letters(seq, reason, attempts, dead_at) VALUES (?1, ?2, ?3, ?4)")
            fetchRange = try db.prepare(
                "SELECT seq, event_id, topic, kind, data, received_at, call_id FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            selectMaxSeq = try db.prepare("SELECT max(seq) FROM events")
            selectReceivedAt = try db.prepare("SELECT received_at FROM events WHERE seq = ?1")
            begin = try db.prepare("BEGIN IMMEDIATE")
            commit = try db.prepare("COMMIT")
            rollback = try db.prepare("ROLLBACK")
            upsertCompanion = try db.prepare(
                "INSERT INTO companion_state(slot, data) VALUES (?1, ?2) ON CONFLICT(slot) DO UPDATE SET data = excluded.data")
            deleteCompanion = try db.prepare("DELETE FROM companion_state WHERE slot = ?1")
            upsertCompanionMeta = try db.prepare(
                "INSERT INTO companion_meta(id, through_seq) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET through_seq = excluded.through_seq")

            let watermark = try db.scalarInt("SELECT max(seq_hi) FROM delivery_marks") ?? 0
            markMinute = try db.scalarInt("SELECT max(minute) FROM delivery_marks") ?? 0
            var settled: [Int64: Bool] = [:]
            let acked = try db.prepare("SELECT seq, delivered FROM acked_above WHERE seq > ?1")
            acked.bind(1, watermark)
            while try acked.step() { settled[acked.int64(0)] = acked.int64(1) != 0 }
            acked.reset()
            let dead = try db.prepare("SELECT seq FROM dead_letters WHERE seq > ?1")
            dead.bind(1, watermark)
            while try dead.step() { settled[dead.int64(0)] = false }
            dead.reset()
            ackedAboveRows = (try db.scalarInt("SELECT count(*) FROM acked_above") ?? 0) > 0
            ledger = DeliveryLedger(watermark: watermark, settledAbove: settled)
            lastSeq = 0
            try refreshLastSeq()
        }

        func refreshLastSeq() throws(SQLiteError) {
            defer { selectMaxSeq.reset() }
            try selectMaxSeq.step()
            lastSeq = max(lastSeq, selectMaxSeq.int64(0))
        }

        func receivedAt(seq: Int64) throws(SQLiteError) -> Int64? {
            defer { selectReceivedAt.reset() }
            selectReceivedAt.bind(1, seq)
            return try selectReceivedAt.step() ? selectReceivedAt.int64(0) : nil
        }

        /// Applies acknowledgements to the ledger (in memory) and holds dead letters back from
        /// delivery until their rows are written (`write`).
        func settle(marks: [Int64], dead: [DeadLetter]) {
            for seq in marks { ledger.settle(seq, delivered: true) }
            for letter in dead where !ledger.isSettled(letter.seq) { unwrittenDead.insert(letter.seq) }
            tail.drop(through: ledger.watermark)
        }

        /// Whether `seq` must not be handed to the delivery pump.
        func isDone(_ seq: Int64) -> Bool { ledger.isSettled(seq) || unwrittenDead.contains(seq) }

        /// The event's dedupe order, or 0 when its time lies more than a day after its receipt: a
        /// row ordered in the future would outlive every prune (`ord < cutoff`). A re-send can
        /// only move from 0 to its time (received later), and the order-0 probe finds that.
        static func dedupeOrder(_ e: OutboxEvent) -> Int64 {
            e.dedupeOrder <= e.receivedAtMilliseconds + 86_400_000 ? e.dedupeOrder : 0
        }

        /// Pending rows after `after` from the file, skipping settled ones, at most `limit`.
        func readPending(after: Int64, limit: Int) throws(SQLiteError) -> [OutboxRecord] {
            var rows: [OutboxRecord] = []
            var cursor = max(after, ledger.watermark)
            while rows.count < limit {
                let s = fetchRange
                defer { s.reset() }
                let want = limit - rows.count
                s.bind(1, cursor)
                s.bind(2, Int64(want))
                var seen = 0
                while try s.step() {
                    seen += 1
                    cursor = s.int64(0)
                    if isDone(cursor) { continue }
                    let data = s.blob(4)
                    let content: OutboxRecord.Content =
                        s.isNull(3) ? .payload(data) : .body(data, kind: s.text(3), receivedAtMilliseconds: s.int64(5))
                    rows.append(
                        OutboxRecord(
                            seq: cursor, eventID: s.text(1), topic: s.text(2), content: content, callID: s.isNull(6) ? nil : s.text(6),
                            kind: s.isNull(3) ? nil : s.text(3)))
                }
                if seen < want { break }
            }
            return rows
        }

        /// One transaction: the appends (dedupe row, then event row), dead letters, and (with
        /// `mark`) the watermark. Returns each append's outcome and the records stored. Throws with
        /// everything rolled back.
        func write(_ appends: [OutboxEvent], dead: [DeadLetter], mark withMark: Bool, now: Int64) throws(SQLiteError) -> (
            outcomes: [AppendOutcome], stored: [OutboxRecord], mark: (watermark: Int64, delivered: Int)?
        ) {
            try begin.run()
            companion?.begin()
            // The dead letters settle in the ledger inside the transaction (so its watermark may
            // pass them); a failed transaction puts the ledger back.
            let ledgerBefore = ledger
            do throws(SQLiteError) {
                var outcomes: [AppendOutcome] = []
                var stored: [OutboxRecord] = []
                let due = companion.map { $0.isDue(now: now) } ?? false
                if !appends.isEmpty || due {
                    outcomes.reserveCapacity(appends.count)
                    // Another process (`callrelay replay`) may have appended since our last commit.
                    try refreshLastSeq()
                    var next = max(lastSeq, ledger.watermark) + 1
                    if due, let companion {
                        for row in companion.dueRows(now: now) { try insertRow(row, seq: &next, into: &stored) }
                    }
                    for e in appends {
                        insertDedupe.bind(1, Self.dedupeOrder(e))
                        insertDedupe.bind(2, e.id)
                        insertDedupe.bind(3, e.receivedAtMilliseconds)
                        try insertDedupe.run()
                        guard db.changes > 0 else {
                            outcomes.append(.duplicate(id: e.id))
                            continue
                        }
                        try insertRow(e, seq: &next, into: &stored)
                        outcomes.append(.stored(id: e.id))
                        if let companion {
                            for row in companion.rows(after: e, now: now) { try insertRow(row, seq: &next, into: &stored) }
                        }
                    }
                }
                for letter in dead {
                    insertDeadLetter.bind(1, letter.seq)
                    insertDeadLetter.bind(2, letter.reason)
                    insertDeadLetter.bind(3, Int64(letter.attempts))
                    insertDeadLetter.bind(4, now)
                    try insertDeadLetter.run()
                    ledger.settle(letter.seq, delivered: false)
                }
                let mark = withMark ? ledger.pendingCommit() : nil
                if let mark {
                    let minute = max(markMinute, now / 60_000)
                    insertMark.bind(1, minute)
                    insertMark.bind(2, mark.watermark)
                    insertMark.bind(3, now)
                    insertMark.bind(4, Int64(mark.delivered))
                    try insertMark.run()
                    if ackedAboveRows { try db.execute("DELETE FROM acked_above WHERE seq <= \(mark.watermark)") }
                    markMinute = minute
                }
                try commit.run()
                companion?.finish(committed: true)
                for letter in dead { unwrittenDead.remove(letter.seq) }
                if let mark {
                    ledger.committed(mark)
                    if ackedAboveRows { ackedAboveRows = (try? db.scalarInt("SELECT count(*) FROM acked_above")).flatMap { $0 } ?? 0 > 0 }
                }
                if let last = stored.last { lastSeq = last.seq }
                if !appends.isEmpty, !stored.isEmpty {
                    let bytes = appends.reduce(Int64(0)) { $0 + Int64($1.body.count + $1.topic.utf8.count + 120) }
                    let average = bytes / Int64(stored.count)
                    averageRowBytes = averageRowBytes == 4096 ? average : (averageRowBytes * 7 + average) / 8
                }
                return (outcomes, stored, mark)
            } catch {
                try? rollback.run()
                companion?.finish(committed: false)
                ledger = ledgerBefore
                throw error
            }
        }

        /// The `events` row at `next`, and its record for the committed tail. A companion's rows have
        /// no dedupe row: their ids are their own.
        private func insertRow(_ row: OutboxEvent, seq next: inout Int64, into stored: inout [OutboxRecord]) throws(SQLiteError) {
            insertEvent.bind(1, next)
            insertEvent.bind(2, row.id)
            insertEvent.bind(3, row.callID)
            insertEvent.bind(4, row.topic)
            insertEvent.bind(5, row.kind)
            insertEvent.bind(6, blob: row.body)
            insertEvent.bind(7, row.receivedAtMilliseconds)
            try insertEvent.run()
            stored.append(OutboxRecord(seq: next, eventID: row.id, topic: row.topic, content: .payload(row.payload), callID: row.callID, kind: row.kind))
            next += 1
        }

        /// Rows a snapshot may let the companion write again after this many stored rows, or
        /// seconds: what a start after a crash folds again at most (~10 µs a row).
        static let snapshotRows: Int64 = 50_000
        static let snapshotSeconds: Double = 30

        /// Rows below this may be deleted (retention, room-making): the companion's snapshot covers them.
        var companionFloor: Int64 { companion == nil ? .max : companionThrough }

        /// A snapshot being written a chunk per commit: it covers `through` once `remaining`
        /// records (the changes counted when it began) are written.
        private var snapshotRound: (through: Int64, remaining: Int)?
        /// Records one chunk writes (~5 ms): a snapshot never holds the commits up for long.
        static let snapshotChunk = 1000

        /// Whether the companion's records should be written now (a round under way, or one due).
        func snapshotDue(now: Double) -> Bool {
            guard let companion else { return false }
            if snapshotRound != nil { return true }
            let behind = lastSeq - companionThrough
            return (companion.hasChanges || behind > 0)
                && (behind >= Self.snapshotRows || now - lastSnapshotAt >= Self.snapshotSeconds)
        }

        /// One step of a snapshot: a chunk of changed records, and with the last chunk the seq
        /// the records cover. A record written after the round began may be newer than `through`:
        /// folding the rows above `through` again over it changes nothing (the join is idempotent,
        /// and the tracker's own rows are only applied where the record is older).
        func snapshotStep() throws(SQLiteError) {
            guard let companion else { return }
            let round = snapshotRound ?? (through: lastSeq, remaining: companion.planChanges())
            snapshotRound = round
            try begin.run()
            companion.begin()
            do throws(SQLiteError) {
                let chunk = companion.changes(limit: Self.snapshotChunk)
                try writeRecords(chunk)
                let remaining = round.remaining - chunk.count
                let done = chunk.count < Self.snapshotChunk
                if done {
                    upsertCompanionMeta.bind(1, round.through)
                    try upsertCompanionMeta.run()
                }
                try commit.run()
                companion.finish(committed: true)
                if done {
                    snapshotRound = nil
                    companionThrough = round.through
                    lastSnapshotAt = SQLiteOutbox.monotonicSeconds()
                } else {
                    snapshotRound = (round.through, remaining)
                }
            } catch {
                try? rollback.run()
                companion.finish(committed: false)
                // The round is abandoned (its plan too): the next one starts over from the change sets.
                snapshotRound = nil
                throw error
            }
        }

        private func writeRecords(_ records: [(slot: Int64, data: [UInt8]?)]) throws(SQLiteError) {
            for (slot, data) in records {
                if let data {
                    upsertCompanion.bind(1, slot)
                    upsertCompanion.bind(2, blob: data)
                    try upsertCompanion.run()
                } else {
                    deleteCompanion.bind(1, slot)
                    try deleteCompanion.run()
                }
            }
        }

        /// Opens the companion: its records, then the rows stored after them, folded again.
        func attach(_ companion: any OutboxCompanion) throws(SQLiteError) -> Int {
            let s = try db.prepare("SELECT slot, data FROM companion_state ORDER BY slot")
            var records: [(slot: Int64, data: [UInt8])] = []
            while try s.step() { records.append((s.int64(0), s.blob(1))) }
            companion.load(records)
            self.companion = companion
            let through = try db.scalarInt("SELECT through_seq FROM companion_meta WHERE id = 1")
            companionThrough = through ?? lastSeq
            // No row yet (a new file, or records a build before snapshots wrote in every commit):
            // the records cover every stored row; the row is written at once, so from now on
            // what a crash leaves above it is folded again.
            if through == nil { try snapshotCompanion() }
            lastSnapshotAt = SQLiteOutbox.monotonicSeconds()
            let rows = try db.prepare("SELECT seq, event_id, kind, data, received_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT 2000")
            var cursor = companionThrough
            var replayed = 0
            while true {
                rows.bind(1, cursor)
                var chunk: [OutboxReplayRow] = []
                while try rows.step() {
                    cursor = rows.int64(0)
                    chunk.append(
                        OutboxReplayRow(
                            seq: cursor, eventID: rows.text(1), kind: rows.isNull(2) ? nil : rows.text(2), data: rows.blob(3),
                            receivedAtMilliseconds: rows.int64(4)))
                }
                rows.reset()
                if chunk.isEmpty { break }
                companion.replay(chunk)
                replayed += chunk.count
            }
            return replayed
        }

        /// Writes all the companion's changed records and the seq they now cover, in one transaction
        /// of its own (between commits, so the companion's state is what the file holds): at open
        /// and close, and before deleting rows the snapshot does not cover yet.
        func snapshotCompanion() throws(SQLiteError) {
            guard let companion else { return }
            try begin.run()
            companion.begin()
            do throws(SQLiteError) {
                try writeRecords(companion.changes())
                upsertCompanionMeta.bind(1, lastSeq)
                try upsertCompanionMeta.run()
                try commit.run()
                companion.finish(committed: true)
                snapshotRound = nil
                companionThrough = lastSeq
                lastSnapshotAt = SQLiteOutbox.monotonicSeconds()
            } catch {
                try? rollback.run()
                companion.finish(committed: false)
                throw error
            }
        }

        /// At close: the acknowledgements above the watermark go to `acked_above`, so a restart
        /// does not publish them again.
        func persistAcknowledgedAbove() throws(SQLiteError) {
            let acked = ledger.acknowledgedAbove
            guard !acked.isEmpty else { return }
            try db.execute("BEGIN IMMEDIATE")
            do throws(SQLiteError) {
                let s = try db.prepare("INSERT OR IGNORE INTO acked_above(seq) VALUES (?1)")
                for seq in acked {
                    s.bind(1, seq)
                    try s.run()
                }
                try db.execute("COMMIT")
                ackedAboveRows = true
            } catch {
                try? db.execute("ROLLBACK")
                throw error
            }
        }
    }
}
