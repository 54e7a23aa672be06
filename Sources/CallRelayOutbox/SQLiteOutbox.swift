import CSQLite
import Dispatch
import Glibc
import Logging
import Synchronization

/// An event ready to be stored: already normalized, with its topic and payload bytes.
package struct OutboxEvent: Sendable {
    package var id: String
    package var kind: String
    package var event: String
    package var appID: String
    package var callID: String?
    package var topic: String
    package var payload: [UInt8]
    package var receivedAtMilliseconds: Int64

    package init(
        id: String, kind: String, event: String, appID: String, callID: String?, topic: String, payload: [UInt8],
        receivedAtMilliseconds: Int64
    ) {
        self.id = id
        self.kind = kind
        self.event = event
        self.appID = appID
        self.callID = callID
        self.topic = topic
        self.payload = payload
        self.receivedAtMilliseconds = receivedAtMilliseconds
    }
}

/// A stored, not yet delivered event, in outbox order.
package struct OutboxRecord: Sendable, Equatable {
    package var seq: Int64
    package var eventID: String
    package var topic: String
    package var payload: [UInt8]
}

/// What `append` did: stored a new row, or found the same event id already stored (a re-send).
package enum AppendOutcome: Sendable, Equatable {
    case stored(id: String)
    case duplicate(id: String)
}

package enum OutboxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `storage.max_bytes` reached or the disk is full: try again later (HTTP 503).
    case full(String)
    /// Any other storage failure (HTTP 503).
    case storage(String)
    /// The outbox was closed (shutdown).
    case closed

    package var description: String {
        switch self {
        case .full(let detail): "outbox full: \(detail)"
        case .storage(let detail): "storage failure: \(detail)"
        case .closed: "outbox closed"
        }
    }
}

package struct OutboxStats: Sendable, Equatable {
    package var pending: Int
    package var delivered: Int
    package var deadLetters: Int
    package var oldestPendingReceivedAtMilliseconds: Int64?
    package var lastDeliveredAtMilliseconds: Int64?
}

/// A row the delivery gave up on (the broker kept refusing it); kept for `replay`.
package struct DeadLetter: Sendable, Equatable {
    package var seq: Int64
    package var reason: String
    package var attempts: Int
    package init(seq: Int64, reason: String, attempts: Int) {
        self.seq = seq
        self.reason = reason
        self.attempts = attempts
    }
}

package enum SynchronousMode: String, Sendable {
    case full = "FULL"
    case normal = "NORMAL"
}

/// The durable outbox: one SQLite file in WAL mode, one connection, one serial queue.
///
/// Design constraints:
/// - Every SQLite call runs on `queue`, a serial dispatch queue: never on a NIO event loop or the
///   Swift concurrency pool, because `fsync` blocks.
/// - Group commit: `append` and `markDelivered` only enqueue; one flush takes everything waiting
///   (up to `maxBatch` appends) into ONE transaction, so concurrent webhooks share one fsync.
///   While a flush is in its fsync, the next batch gathers.
///
/// Delivery guarantees:
/// - An `append` completion reports `.stored`/`.duplicate` only after `COMMIT` returned, with
///   `synchronous=FULL` by default (the WAL is fsynced at every commit).
/// - A row is marked delivered only through `markDelivered`, which the delivery pump calls on the
///   broker's acknowledgement. Marks ride in the next group commit; losing one on a crash causes
///   a re-publish (at-least-once), never a loss.
/// - The event id is UNIQUE: a re-sent event inserts nothing and reports `.duplicate` with the same
///   id, for as long as the first row is retained (`retention_hours`).
package final class SQLiteOutbox: Sendable {
    package static let maxBatch = 512

    private struct Waiting {
        var appends: [(OutboxEvent, @Sendable (Result<AppendOutcome, OutboxError>) -> Void)] = []
        var marks: [Int64] = []
        var deadLetters: [DeadLetter] = []
        var flushScheduled = false
        var closed = false
        var lastWriteFailed = false
        /// Monotonic time before which waiting acknowledgements are not retried (0: no failure).
        var settleRetryAt: Double = 0
        var committedListener: (@Sendable () -> Void)?
    }

    struct Connection: @unchecked Sendable {
        // Confined to `queue`.
        let db: SQLiteDatabase
        let insert: SQLiteStatement
        let insertPending: SQLiteStatement
        let removePending: SQLiteStatement
        let markDelivered: SQLiteStatement
        let insertDeadLetter: SQLiteStatement
        let fetchPending: SQLiteStatement
        let begin: SQLiteStatement
        let commit: SQLiteStatement
        let rollback: SQLiteStatement
        /// Whether checkpoints currently run inside commits (disk space low).
        let tightWAL = Flag()
        /// Bytes that may still be appended before the space is measured again.
        let spaceBudget = Budget()
    }

    final class Flag: @unchecked Sendable {
        // Confined to the outbox queue, like the connection.
        var value = false
    }

    final class Budget: @unchecked Sendable {
        // Confined to the outbox queue, like the connection.
        var bytes: Int64 = 0
    }

    package let path: String
    private let queue = DispatchQueue(label: "callrelay.outbox")
    private let connection: Mutex<Connection?>
    private let checkpointQueue = DispatchQueue(label: "callrelay.outbox.checkpoint")
    private let checkpointer = Mutex<Checkpointer?>(nil)
    private let waiting = Mutex(Waiting())
    private let retentionMilliseconds: Int64
    let logger: Logger
    /// In-memory counters for `/metrics`.
    package let metrics = OutboxMetrics()
    private let maxBytes: Int64
    private let softCapPages: Int64
    /// Free filesystem space kept for acknowledgements and checkpoints: appends stop below it.
    let diskHeadroomBytes: Int64
    /// Appended bytes between two space measurements (see `write`).
    private let spaceCheckInterval: Int64

    /// Opens (creating if needed) the outbox at `path`.
    package init(
        path: String, synchronous: SynchronousMode = .full, maxBytes: Int64 = 1 << 30, retentionHours: Int = 168,
        logger: Logger = Logger(label: "callrelay.outbox")
    ) throws(SQLiteError) {
        self.path = path
        self.logger = logger
        self.retentionMilliseconds = Int64(retentionHours) * 3_600_000
        let db = try Self.openRecovering(path: path, logger: logger)
        try db.execute("PRAGMA synchronous=\(synchronous.rawValue)")
        let pageSize = try db.scalarInt("PRAGMA page_size") ?? 4096
        // Appends stop at the soft cap; acknowledgements may use a small reserve above it.
        self.maxBytes = maxBytes
        self.softCapPages = max(maxBytes / pageSize, 64)
        self.diskHeadroomBytes = min(max(maxBytes / 64, 256 * 1024), 16 * 1024 * 1024)
        // Checkpoints run off the commit path (a second connection, every 200 ms, see
        // `scheduleCheckpoint`): inside a commit they cost a third of the writer's time. The WAL
        // file is truncated back to half the disk headroom after each full checkpoint.
        try db.execute("PRAGMA wal_autocheckpoint=0")
        try db.execute("PRAGMA journal_size_limit=\(diskHeadroomBytes / 2)")
        let reservePages = max(64, softCapPages / 50)
        try db.execute("PRAGMA max_page_count=\(softCapPages + reservePages)")
        self.spaceCheckInterval = min(reservePages * pageSize, diskHeadroomBytes) / 4
        let conn = Connection(
            db: db,
            insert: try db.prepare(
                """
                INSERT INTO events(event_id, kind, event, app_id, call_id, topic, payload, received_at)
                SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                WHERE NOT EXISTS (SELECT 1 FROM dedupe_tombstones WHERE event_id = ?1)
                ON CONFLICT(event_id) DO NOTHING
                """),
            insertPending: try db.prepare("INSERT INTO pending(seq) VALUES (last_insert_rowid())"),
            removePending: try db.prepare("DELETE FROM pending WHERE seq = ?1"),
            markDelivered: try db.prepare("INSERT OR IGNORE INTO delivered(seq, delivered_at) VALUES (?1, ?2)"),
            insertDeadLetter: try db.prepare(
                "INSERT OR REPLACE INTO dead_letters(seq, reason, attempts, dead_at) VALUES (?1, ?2, ?3, ?4)"),
            fetchPending: try db.prepare(
                """
                SELECT e.seq, e.event_id, e.topic, e.payload FROM pending p JOIN events e ON e.seq = p.seq
                WHERE p.seq > ?1 ORDER BY p.seq LIMIT ?2
                """),
            begin: try db.prepare("BEGIN IMMEDIATE"),
            commit: try db.prepare("COMMIT"),
            rollback: try db.prepare("ROLLBACK"))
        connection = Mutex(conn)
        let initial = try Self.readStats(db)
        metrics.pending.store(initial.pending, ordering: .relaxed)
        metrics.oldestPendingReceivedAtMilliseconds.store(initial.oldestPendingReceivedAtMilliseconds ?? 0, ordering: .relaxed)
        metrics.deadLetters.store(initial.deadLetters, ordering: .relaxed)
        schedulePrune(after: 5)
        scheduleGaugeRefresh()
        let checkpointDB = try SQLiteDatabase(path: path, mode: .readWrite)
        try checkpointDB.execute("PRAGMA busy_timeout=0")
        checkpointer.withLock { $0 = Checkpointer(db: checkpointDB) }
        scheduleCheckpoint()
    }

    /// The checkpointing connection, confined to `checkpointQueue`.
    private struct Checkpointer: @unchecked Sendable {
        let db: SQLiteDatabase
    }

    /// Copies committed WAL frames into the database file every 200 ms, from its own connection
    /// and queue, so commits never wait for it (PASSIVE: never blocks the writer).
    private func scheduleCheckpoint() {
        checkpointQueue.asyncAfter(deadline: .now() + .milliseconds(200)) { [weak self] in
            guard let self else { return }
            let open = self.checkpointer.withLock { c -> Bool in
                guard let c else { return false }
                _ = try? c.db.scalarInt("PRAGMA wal_checkpoint(PASSIVE)")
                return true
            }
            if open { self.scheduleCheckpoint() }
        }
    }

    /// Called (on the outbox queue) after every commit that stored at least one new row.
    package func setCommittedListener(_ listener: @escaping @Sendable () -> Void) {
        waiting.withLock { $0.committedListener = listener }
    }

    /// True while the last write succeeded (for `/readyz`).
    package var isWritable: Bool { waiting.withLock { !$0.closed && !$0.lastWriteFailed } }

    // MARK: Writes (group commit)

    /// Stores `event` durably; `completion` runs on the outbox queue after the commit (or failure).
    package func append(_ event: OutboxEvent, completion: @escaping @Sendable (Result<AppendOutcome, OutboxError>) -> Void) {
        let rejected: Bool = waiting.withLock { w in
            if w.closed { return true }
            w.appends.append((event, completion))
            scheduleFlushLocked(&w)
            return false
        }
        if rejected { completion(.failure(.closed)) }
    }

    /// Records the broker's acknowledgement of `seq`; committed with the next group commit.
    package func markDelivered(_ seq: Int64) {
        waiting.withLock { w in
            w.marks.append(seq)
            scheduleFlushLocked(&w)
        }
    }

    /// Gives up on `seq` (the broker keeps refusing it): it leaves the queue and is listed as a
    /// dead letter (`callrelay status`, `callrelay replay`). Committed with the next group commit.
    package func deadLetter(_ letter: DeadLetter) {
        waiting.withLock { w in
            w.deadLetters.append(letter)
            scheduleFlushLocked(&w)
        }
    }

    private func scheduleFlushLocked(_ w: inout Waiting) {
        guard !w.flushScheduled else { return }
        w.flushScheduled = true
        queue.async { self.flush() }
    }

    private func flush() {
        let (appends, marks, dead, listener) = waiting.withLock { w in
            let take = min(w.appends.count, Self.maxBatch)
            let appends = Array(w.appends.prefix(take))
            w.appends.removeFirst(take)
            // After a failed attempt to record deliveries, wait a moment before the next one.
            let settleNow = w.settleRetryAt <= Self.monotonicSeconds()
            let marks = settleNow ? w.marks : []
            let dead = settleNow ? w.deadLetters : []
            if settleNow {
                w.marks.removeAll(keepingCapacity: true)
                w.deadLetters.removeAll()
            }
            w.flushScheduled = false
            if !w.appends.isEmpty { scheduleFlushLocked(&w) }
            return (appends, marks, dead, w.committedListener)
        }
        if appends.isEmpty && marks.isEmpty && dead.isEmpty { return }
        let started = Self.monotonicSeconds()
        let result = connection.withLock { conn -> FlushResult in
            guard let conn else { return FlushResult(appends: .failure(.closed), settled: false, marked: 0, roomAgain: false) }
            return write(conn, appends: appends.map(\.0), marks: marks, dead: dead)
        }
        if result.settled {
            if !marks.isEmpty || !dead.isEmpty {
                let recovered = waiting.withLock { w in
                    defer { w.settleRetryAt = 0 }
                    return w.settleRetryAt != 0
                }
                if recovered { logger.notice("recording deliveries works again") }
            }
            metrics.pending.subtract(result.marked, ordering: .relaxed)
            if !dead.isEmpty {
                metrics.deadLetters.add(dead.count, ordering: .relaxed)
                for letter in dead {
                    logger.error(
                        "event moved to dead letters after repeated broker refusals",
                        metadata: ["seq": "\(letter.seq)", "attempts": "\(letter.attempts)", "reason": "\(letter.reason)"])
                }
            }
        } else {
            // Acknowledgements and dead letters stay valid: keep them, and retry in a second
            // (not at once: a full disk would turn that into a busy loop).
            let first = waiting.withLock { w in
                w.marks.insert(contentsOf: marks, at: 0)
                w.deadLetters.insert(contentsOf: dead, at: 0)
                defer { w.settleRetryAt = Self.monotonicSeconds() + 1 }
                return w.settleRetryAt == 0
            }
            if first {
                logger.warning(
                    "recording deliveries failed; retrying every second",
                    metadata: ["count": "\(marks.count + dead.count)", "error": "\(result.settleError.map { "\($0)" } ?? "?")"])
            }
            queue.asyncAfter(deadline: .now() + 1) { self.flush() }
        }
        switch result.appends {
        case .success(let outcomes):
            metrics.recordCommit(seconds: Self.monotonicSeconds() - started)
            let storedCount = outcomes.reduce(0) { if case .stored = $1 { $0 + 1 } else { $0 } }
            metrics.stored.add(storedCount, ordering: .relaxed)
            metrics.duplicates.add(outcomes.count - storedCount, ordering: .relaxed)
            metrics.pending.add(storedCount, ordering: .relaxed)
            // Writable again once appends commit, or once acknowledgements freed room.
            let recovered = (!outcomes.isEmpty || result.roomAgain) && waiting.withLock { w in
                defer { w.lastWriteFailed = false }
                return w.lastWriteFailed
            }
            if recovered { logger.notice("outbox accepts webhooks again") }
            for (index, outcome) in outcomes.enumerated() { appends[index].1(.success(outcome)) }
            if storedCount > 0 { listener?() }
        case .failure(let error):
            let firstFailure = waiting.withLock { w in
                defer { w.lastWriteFailed = true }
                return !w.lastWriteFailed
            }
            metrics.writeFailures.add(1, ordering: .relaxed)
            if firstFailure {
                // One line per state change; the 503s that follow are counted in /metrics.
                logger.error("outbox refuses webhooks (HTTP 503) until space is freed", metadata: ["error": "\(error)"])
            }
            for append in appends { append.1(.failure(error)) }
        }
    }

    private struct FlushResult {
        /// The outcome for the batch's appends.
        var appends: Result<[AppendOutcome], OutboxError>
        /// Whether the acknowledgements and dead letters were committed.
        var settled: Bool
        var marked: Int
        var settleError: OutboxError? = nil
        /// Below the size cap again (after acknowledgements freed room).
        var roomAgain: Bool
    }

    /// One group commit, on the outbox queue. Space rules: appends are refused at the soft cap
    /// (`storage.max_bytes`), while acknowledgements and dead letters may use a reserve above it,
    /// so a full outbox can always record deliveries and then free room. On SQLITE_FULL (the hard
    /// cap, or the disk itself) it frees what it can and retries; if the appends still do not
    /// fit, it commits the acknowledgements alone.
    private func write(_ conn: Connection, appends: [OutboxEvent], marks: [Int64], dead: [DeadLetter]) -> FlushResult {
        var events = appends
        var refusal: OutboxError?
        // Measuring space costs two PRAGMAs and a statvfs: do it only once the bytes appended since
        // the last clean measurement could have used up a quarter of the smaller margin (the
        // reserve above the cap, or the disk headroom). Try to free room first; refuse the appends
        // only if that did not help.
        let batchBytes = events.reduce(Int64(0)) { $0 + Int64($1.payload.count) * 2 }
        conn.spaceBudget.bytes -= batchBytes
        if !events.isEmpty, conn.spaceBudget.bytes <= 0 {
            if let problem = spaceProblem(conn), makeRoom(conn) == 0 || spaceProblem(conn) != nil {
                refusal = .full(problem)
                events = []
                conn.spaceBudget.bytes = 0
            } else {
                conn.spaceBudget.bytes = spaceCheckInterval
            }
        }
        if events.isEmpty && marks.isEmpty && dead.isEmpty {
            return FlushResult(appends: refusal.map { .failure($0) } ?? .success([]), settled: true, marked: 0, roomAgain: false)
        }
        let now = Self.nowMilliseconds()
        switch Self.write(conn, appends: events, marks: marks, dead: dead, now: now) {
        case .success(let (outcomes, marked)):
            let roomAgain = marked > 0 && spaceProblem(conn) == nil
            return FlushResult(appends: refusal.map { .failure($0) } ?? .success(outcomes), settled: true, marked: marked, roomAgain: roomAgain)
        case .failure(let error):
            guard case .full = error else {
                return FlushResult(appends: .failure(error), settled: false, marked: 0, settleError: error, roomAgain: false)
            }
            // The hard cap or the disk itself: record the acknowledgements alone first (they are
            // what makes room possible), free room, then try the appends alone.
            var settled = marks.isEmpty && dead.isEmpty
            var marked = 0
            var settleError: OutboxError?
            if !settled {
                switch Self.write(conn, appends: [], marks: marks, dead: dead, now: now) {
                case .success(let (_, m)):
                    settled = true
                    marked = m
                case .failure(let e):
                    settleError = e
                }
            }
            _ = makeRoom(conn)
            guard !events.isEmpty else {
                return FlushResult(
                    appends: refusal.map { .failure($0) } ?? .success([]), settled: settled, marked: marked, settleError: settleError, roomAgain: false)
            }
            let retry = Self.write(conn, appends: events, marks: [], dead: [], now: now)
            return FlushResult(appends: retry.map(\.outcomes), settled: settled, marked: marked, settleError: settleError, roomAgain: false)
        }
    }

    /// Why appends cannot be taken now (nil: they can): the outbox at `storage.max_bytes`, or the
    /// filesystem with less free space than the headroom kept for acknowledgements, checkpoints
    /// and the WAL.
    func spaceProblem(_ conn: Connection) -> String? {
        if overSoftCap(conn) { return "storage.max_bytes (\(maxBytes) bytes) reached with undelivered events" }
        var fs = statvfs()
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        guard statvfs(directory.isEmpty ? "/" : directory, &fs) == 0 else { return nil }
        let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
        // Near a full disk the WAL must stay small, so that checkpointing it never needs more
        // space than is left: checkpoint inside commits again (slower, but safe).
        // (With hysteresis: relax again only at twice that.)
        let tight = conn.tightWAL.value ? free < 8 * diskHeadroomBytes : free < 4 * diskHeadroomBytes
        if tight != conn.tightWAL.value {
            let pages = max(16, min(1000, diskHeadroomBytes / 4096 / 4))
            try? conn.db.execute("PRAGMA wal_autocheckpoint=\(tight ? pages : 0)")
            conn.tightWAL.value = tight
            if tight { logger.warning("disk space low: checkpointing inside commits", metadata: ["free_bytes": "\(free)"]) }
        }
        if free < diskHeadroomBytes {
            return "disk nearly full: \(free) bytes free in \(directory), keeping \(diskHeadroomBytes) for deliveries"
        }
        return nil
    }

    /// Pages in use (not on the freelist) at or above the soft cap.
    func overSoftCap(_ conn: Connection) -> Bool {
        guard let pages = try? conn.db.scalarInt("PRAGMA page_count"), let free = try? conn.db.scalarInt("PRAGMA freelist_count") else {
            return false
        }
        return (pages ?? 0) - (free ?? 0) >= softCapPages
    }

    private static func write(_ c: Connection, appends: [OutboxEvent], marks: [Int64], dead: [DeadLetter], now: Int64)
        -> Result<(outcomes: [AppendOutcome], marked: Int), OutboxError>
    {
        do throws(SQLiteError) {
            try c.begin.run()
            var outcomes: [AppendOutcome] = []
            outcomes.reserveCapacity(appends.count)
            do throws(SQLiteError) {
                for e in appends {
                    c.insert.bind(1, e.id)
                    c.insert.bind(2, e.kind)
                    c.insert.bind(3, e.event)
                    c.insert.bind(4, e.appID)
                    c.insert.bind(5, e.callID)
                    c.insert.bind(6, e.topic)
                    c.insert.bind(7, blob: e.payload)
                    c.insert.bind(8, e.receivedAtMilliseconds)
                    try c.insert.run()
                    if c.db.changes > 0 {
                        try c.insertPending.run()
                        outcomes.append(.stored(id: e.id))
                    } else {
                        outcomes.append(.duplicate(id: e.id))
                    }
                }
                var marked = 0
                for seq in marks {
                    c.removePending.bind(1, seq)
                    try c.removePending.run()
                    guard c.db.changes > 0 else { continue }
                    marked += 1
                    c.markDelivered.bind(1, seq)
                    c.markDelivered.bind(2, now)
                    try c.markDelivered.run()
                }
                for letter in dead {
                    c.removePending.bind(1, letter.seq)
                    try c.removePending.run()
                    guard c.db.changes > 0 else { continue }
                    marked += 1
                    c.insertDeadLetter.bind(1, letter.seq)
                    c.insertDeadLetter.bind(2, letter.reason)
                    c.insertDeadLetter.bind(3, Int64(letter.attempts))
                    c.insertDeadLetter.bind(4, now)
                    try c.insertDeadLetter.run()
                }
                try c.commit.run()
                return .success((outcomes, marked))
            } catch {
                try? c.rollback.run()
                throw error
            }
        } catch {
            return .failure(error.isFull ? .full(error.message) : .storage(error.description))
        }
    }

    // MARK: Reads

    /// Undelivered rows with `seq > after`, oldest first. `completion` runs on the outbox queue.
    package func fetchPending(after: Int64, limit: Int, completion: @escaping @Sendable (Result<[OutboxRecord], OutboxError>) -> Void) {
        queue.async {
            // Commit waiting acknowledgements first, so an acked row is never handed out again.
            if self.waiting.withLock({ ($0.settleRetryAt == 0) && (!$0.marks.isEmpty || !$0.deadLetters.isEmpty) }) { self.flush() }
            let result: Result<[OutboxRecord], OutboxError> = self.connection.withLock { conn in
                guard let conn else { return .failure(.closed) }
                let s = conn.fetchPending
                defer { s.reset() }
                s.bind(1, after)
                s.bind(2, Int64(limit))
                var rows: [OutboxRecord] = []
                do throws(SQLiteError) {
                    while try s.step() {
                        rows.append(OutboxRecord(seq: s.int64(0), eventID: s.text(1), topic: s.text(2), payload: s.blob(3)))
                    }
                } catch {
                    return .failure(.storage(error.description))
                }
                return .success(rows)
            }
            completion(result)
        }
    }

    /// Counts by state; runs synchronously on the outbox queue.
    package func stats() throws(OutboxError) -> OutboxStats {
        let result: Result<OutboxStats, OutboxError> = queue.sync {
            connection.withLock { conn in
                guard let conn else { return .failure(.closed) }
                do throws(SQLiteError) {
                    return .success(try Self.readStats(conn.db))
                } catch {
                    return .failure(.storage(error.description))
                }
            }
        }
        return try result.get()
    }

    static func readStats(_ db: SQLiteDatabase) throws(SQLiteError) -> OutboxStats {
        let count = Int(try db.scalarInt("SELECT count(*) FROM pending") ?? 0)
        let oldest = try db.scalarInt("SELECT e.received_at FROM pending p JOIN events e ON e.seq = p.seq ORDER BY p.seq LIMIT 1")
        let d = try db.prepare("SELECT count(*), max(delivered_at) FROM delivered")
        try d.step()
        let dead = try db.scalarInt("SELECT count(*) FROM dead_letters") ?? 0
        return OutboxStats(
            pending: count, delivered: Int(d.int64(0)), deadLetters: Int(dead), oldestPendingReceivedAtMilliseconds: oldest,
            lastDeliveredAtMilliseconds: d.isNull(1) ? nil : d.int64(1))
    }

    // MARK: Gauges

    private func scheduleGaugeRefresh() {
        queue.asyncAfter(deadline: .now() + .seconds(5)) { [weak self] in
            guard let self else { return }
            let open: Bool = self.connection.withLock { conn in
                guard let conn else { return false }
                // The oldest pending row is the lowest pending seq: one index probe.
                let oldest = try? conn.db.scalarInt(
                    "SELECT e.received_at FROM pending p JOIN events e ON e.seq = p.seq ORDER BY p.seq LIMIT 1")
                self.metrics.oldestPendingReceivedAtMilliseconds.store((oldest ?? nil) ?? 0, ordering: .relaxed)
                return true
            }
            if open { self.scheduleGaugeRefresh() }
        }
    }

    // MARK: Retention

    private func schedulePrune(after seconds: Int) {
        queue.asyncAfter(deadline: .now() + .seconds(seconds)) { [weak self] in
            guard let self, self.pruneDelivered() else { return }
            self.schedulePrune(after: 60)
        }
    }

    /// Deletes delivered rows older than the retention, in batches of 1000. Returns false once closed.
    @discardableResult
    package func pruneDelivered(now: Int64 = SQLiteOutbox.nowMilliseconds()) -> Bool {
        let cutoff = now - retentionMilliseconds
        return connection.withLock { conn in
            guard let conn else { return false }
            do throws(SQLiteError) {
                // Small batches: the agent keeps answering webhooks between them.
                var deleted = 0
                repeat {
                    try conn.db.execute(
                        """
                        BEGIN IMMEDIATE;
                        CREATE TEMP TABLE IF NOT EXISTS expired(seq INTEGER PRIMARY KEY);
                        DELETE FROM expired;
                        INSERT INTO expired SELECT seq FROM delivered WHERE delivered_at < \(cutoff) ORDER BY delivered_at LIMIT 1000;
                        DELETE FROM events WHERE seq IN (SELECT seq FROM expired);
                        DELETE FROM delivered WHERE seq IN (SELECT seq FROM expired);
                        COMMIT;
                        """)
                    deleted = Int(try conn.db.scalarInt("SELECT count(*) FROM expired") ?? 0)
                    if deleted > 0 { logger.debug("pruned delivered events", metadata: ["count": "\(deleted)"]) }
                } while deleted == 1000
                try conn.db.execute(
                    "DELETE FROM dedupe_tombstones WHERE delivered_at < \(now - Self.dedupeFloorMilliseconds)")
                // Dead letters are kept as long as delivered events, then dropped too.
                try conn.db.execute(
                    """
                    BEGIN IMMEDIATE;
                    DELETE FROM events WHERE seq IN (SELECT seq FROM dead_letters WHERE dead_at < \(cutoff));
                    DELETE FROM dead_letters WHERE dead_at < \(cutoff);
                    COMMIT;
                    """)
                let droppedDead = conn.db.changes
                if droppedDead > 0 { metrics.deadLetters.subtract(droppedDead, ordering: .relaxed) }
            } catch {
                logger.warning("retention prune failed", metadata: ["error": "\(error)"])
            }
            return true
        }
    }

    // MARK: Lifecycle

    /// Refuses new appends, commits what is waiting (including delivery marks), then closes the file.
    package func close() {
        waiting.withLock { $0.closed = true }
        checkpointQueue.sync { checkpointer.withLock { $0 = nil } }
        queue.sync {
            // A few rounds at most: a failing disk must not hang the shutdown.
            for _ in 0..<4 where waiting.withLock({ !$0.appends.isEmpty || !$0.marks.isEmpty }) { flush() }
            connection.withLock { conn in
                if let conn { try? conn.db.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
                conn = nil
            }
        }
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    package static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
