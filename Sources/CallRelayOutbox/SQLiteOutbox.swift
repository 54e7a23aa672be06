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
    package var oldestPendingReceivedAtMilliseconds: Int64?
    package var lastDeliveredAtMilliseconds: Int64?
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
        var flushScheduled = false
        var closed = false
        var lastWriteFailed = false
        var committedListener: (@Sendable () -> Void)?
    }

    private struct Connection: @unchecked Sendable {
        // Confined to `queue`.
        let db: SQLiteDatabase
        let insert: SQLiteStatement
        let markDelivered: SQLiteStatement
        let fetchPending: SQLiteStatement
        let begin: SQLiteStatement
        let commit: SQLiteStatement
        let rollback: SQLiteStatement
    }

    package let path: String
    private let queue = DispatchQueue(label: "callrelay.outbox")
    private let connection: Mutex<Connection?>
    private let waiting = Mutex(Waiting())
    private let retentionMilliseconds: Int64
    private let logger: Logger
    /// In-memory counters for `/metrics`.
    package let metrics = OutboxMetrics()

    /// Opens (creating if needed) the outbox at `path`.
    package init(
        path: String, synchronous: SynchronousMode = .full, maxBytes: Int64 = 1 << 30, retentionHours: Int = 168,
        logger: Logger = Logger(label: "callrelay.outbox")
    ) throws(SQLiteError) {
        self.path = path
        self.logger = logger
        self.retentionMilliseconds = Int64(retentionHours) * 3_600_000
        let db = try SQLiteDatabase(path: path)
        try Self.migrate(db)
        _ = try db.scalarText("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=\(synchronous.rawValue)")
        try db.execute("PRAGMA busy_timeout=5000")
        let pageSize = try db.scalarInt("PRAGMA page_size") ?? 4096
        try db.execute("PRAGMA max_page_count=\(max(maxBytes / pageSize, 64))")
        let conn = Connection(
            db: db,
            insert: try db.prepare(
                """
                INSERT INTO events(event_id, kind, event, app_id, call_id, topic, payload, received_at)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(event_id) DO NOTHING
                """),
            markDelivered: try db.prepare("UPDATE events SET delivered_at = ?2 WHERE seq = ?1 AND delivered_at IS NULL"),
            fetchPending: try db.prepare(
                "SELECT seq, event_id, topic, payload FROM events WHERE delivered_at IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2"),
            begin: try db.prepare("BEGIN IMMEDIATE"),
            commit: try db.prepare("COMMIT"),
            rollback: try db.prepare("ROLLBACK"))
        connection = Mutex(conn)
        let initial = try Self.readStats(db)
        metrics.pending.store(initial.pending, ordering: .relaxed)
        metrics.oldestPendingReceivedAtMilliseconds.store(initial.oldestPendingReceivedAtMilliseconds ?? 0, ordering: .relaxed)
        schedulePrune(after: 5)
        scheduleGaugeRefresh()
    }

    static func migrate(_ db: SQLiteDatabase) throws(SQLiteError) {
        let version = try db.scalarInt("PRAGMA user_version") ?? 0
        if version < 1 {
            try db.execute(
                """
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS events(
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL UNIQUE,
                    kind TEXT NOT NULL,
                    event TEXT NOT NULL,
                    app_id TEXT NOT NULL,
                    call_id TEXT,
                    topic TEXT NOT NULL,
                    payload BLOB NOT NULL,
                    received_at INTEGER NOT NULL,
                    delivered_at INTEGER
                );
                CREATE INDEX IF NOT EXISTS events_pending ON events(seq) WHERE delivered_at IS NULL;
                CREATE INDEX IF NOT EXISTS events_delivered ON events(delivered_at) WHERE delivered_at IS NOT NULL;
                CREATE INDEX IF NOT EXISTS events_call ON events(call_id, seq);
                PRAGMA user_version = 1;
                COMMIT;
                """)
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

    private func scheduleFlushLocked(_ w: inout Waiting) {
        guard !w.flushScheduled else { return }
        w.flushScheduled = true
        queue.async { self.flush() }
    }

    private func flush() {
        let (appends, marks, listener) = waiting.withLock { w in
            let take = min(w.appends.count, Self.maxBatch)
            let appends = Array(w.appends.prefix(take))
            w.appends.removeFirst(take)
            let marks = w.marks
            w.marks.removeAll(keepingCapacity: true)
            w.flushScheduled = false
            if !w.appends.isEmpty { scheduleFlushLocked(&w) }
            return (appends, marks, w.committedListener)
        }
        if appends.isEmpty && marks.isEmpty { return }
        let started = Self.monotonicSeconds()
        let result = connection.withLock { conn -> Result<(outcomes: [AppendOutcome], marked: Int), OutboxError> in
            guard let conn else { return .failure(.closed) }
            return Self.write(conn, appends: appends.map(\.0), marks: marks, now: Self.nowMilliseconds())
        }
        switch result {
        case .success(let (outcomes, marked)):
            metrics.recordCommit(seconds: Self.monotonicSeconds() - started)
            let storedCount = outcomes.reduce(0) { if case .stored = $1 { $0 + 1 } else { $0 } }
            metrics.stored.add(storedCount, ordering: .relaxed)
            metrics.duplicates.add(outcomes.count - storedCount, ordering: .relaxed)
            metrics.pending.add(storedCount - marked, ordering: .relaxed)
            waiting.withLock { $0.lastWriteFailed = false }
            for (index, outcome) in outcomes.enumerated() { appends[index].1(.success(outcome)) }
            if outcomes.contains(where: { if case .stored = $0 { true } else { false } }) { listener?() }
        case .failure(let error):
            waiting.withLock { w in
                w.lastWriteFailed = !appends.isEmpty
                // Marks stay valid: keep them for the next flush.
                w.marks.insert(contentsOf: marks, at: 0)
            }
            metrics.writeFailures.add(1, ordering: .relaxed)
            logger.error("outbox write failed", metadata: ["error": "\(error)", "batch": "\(appends.count)"])
            for append in appends { append.1(.failure(error)) }
        }
    }

    private static func write(_ c: Connection, appends: [OutboxEvent], marks: [Int64], now: Int64)
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
                    outcomes.append(c.db.changes > 0 ? .stored(id: e.id) : .duplicate(id: e.id))
                }
                var marked = 0
                for seq in marks {
                    c.markDelivered.bind(1, seq)
                    c.markDelivered.bind(2, now)
                    try c.markDelivered.run()
                    marked += c.db.changes
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
        let s = try db.prepare(
            "SELECT count(*), min(received_at) FROM events WHERE delivered_at IS NULL")
        try s.step()
        let count = Int(s.int64(0))
        let oldest: Int64? = s.isNull(1) ? nil : s.int64(1)
        let d = try db.prepare("SELECT count(*), max(delivered_at) FROM events WHERE delivered_at IS NOT NULL")
        try d.step()
        return OutboxStats(
            pending: count, delivered: Int(d.int64(0)), oldestPendingReceivedAtMilliseconds: oldest,
            lastDeliveredAtMilliseconds: d.isNull(1) ? nil : d.int64(1))
    }

    // MARK: Gauges

    private func scheduleGaugeRefresh() {
        queue.asyncAfter(deadline: .now() + .seconds(5)) { [weak self] in
            guard let self else { return }
            let open: Bool = self.connection.withLock { conn in
                guard let conn else { return false }
                // The oldest pending row is the lowest pending seq: one index probe.
                let oldest = try? conn.db.scalarInt("SELECT received_at FROM events WHERE delivered_at IS NULL ORDER BY seq LIMIT 1")
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
                let s = try conn.db.prepare(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NOT NULL AND delivered_at < ?1 LIMIT 1000)")
                var deleted = 0
                repeat {
                    s.bind(1, cutoff)
                    try s.run()
                    deleted = conn.db.changes
                    if deleted > 0 { logger.debug("pruned delivered events", metadata: ["count": "\(deleted)"]) }
                } while deleted == 1000
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
