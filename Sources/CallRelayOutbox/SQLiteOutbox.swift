import CSQLite
import Dispatch
import Glibc
import Logging
import Synchronization

/// The durable outbox: one SQLite file in WAL mode, one writing connection, one serial queue.
///
/// Design constraints:
/// - Every SQLite call runs on `queue`, a serial dispatch queue: never on a NIO event loop or the
///   Swift concurrency pool, because `fsync` blocks. (The background checkpointer has its own
///   connection and queue, see `WALCheckpointer`.)
/// - Group commit: `append`, `markDelivered` and `deadLetter` only enqueue; one flush takes
///   everything waiting (up to `maxBatch` appends and `SpacePolicy.batchBytes`) into ONE
///   transaction, so concurrent webhooks share one fsync. While a flush is in its fsync, the next
///   batch gathers.
/// - Each webhook is written about once: one `events` row (never updated), one small `dedupe` row
///   at the right edge of its index, and its share of one watermark row per commit (see
///   `DeliveryLedger`); see docs/storage.md for the bytes.
/// - The footprint stays inside `storage.max_bytes` (`SpacePolicy`).
/// - Committed events stay in memory for a while (`CommittedTail`): a delivery pump that keeps up
///   publishes them without reading them back.
///
/// Delivery guarantees:
/// - An `append` completion reports `.stored`/`.duplicate` only after `COMMIT` returned, with
///   `synchronous=FULL` by default (the WAL is fsynced at every commit).
/// - A row leaves the queue only through `markDelivered` (the broker's acknowledgement) or
///   `deadLetter`. Acknowledgements apply in memory at once (the pump never gets the row again)
///   and reach the file with the next commit, at most `markDelay` later; losing them in a crash
///   causes a re-publish (at-least-once), never a loss.
/// - The event id is unique: a re-sent event inserts nothing and reports `.duplicate` with the
///   same id, for as long as its dedupe row is kept (the retention, and at least an hour).
package final class SQLiteOutbox: Sendable {
    package static let maxBatch = 512
    /// How long acknowledgements alone wait for a commit to ride on.
    static let markDelaySeconds = 0.1

    struct Waiting {
        var appends: [(OutboxEvent, @Sendable (Result<AppendOutcome, OutboxError>) -> Void)] = []
        var marks: [Int64] = []
        var deadLetters: [DeadLetter] = []
        var flushScheduled = false
        var delayedFlushScheduled = false
        var closed = false
        var lastWriteFailed = false
        /// Monotonic time before which waiting acknowledgements are not retried (0: no failure).
        var settleRetryAt: Double = 0
        var committedListener: (@Sendable () -> Void)?
        /// Set at the first storage fault (`noteFault`): from then on nothing is written.
        var fault: String?
        var faultHandler: (@Sendable (String) -> Void)?
    }

    package let path: String
    let queue = DispatchQueue(label: "callrelay.outbox")
    let connection: Mutex<Writer?>
    let checkpointer: WALCheckpointer
    let waiting = Mutex(Waiting())
    let retentionMilliseconds: Int64
    let logger: Logger
    /// In-memory counters for `/metrics`.
    package let metrics = OutboxMetrics()
    package let space: SpacePolicy

    /// Opens (creating if needed) the outbox at `path`.
    package init(
        path: String, synchronous: SynchronousMode = .full, maxBytes: Int64 = 1 << 30, retentionHours: Int = 168,
        companion: (any OutboxCompanion)? = nil, logger: Logger = Logger(label: "callrelay.outbox")
    ) throws(SQLiteError) {
        self.path = path
        self.logger = logger
        self.retentionMilliseconds = Int64(retentionHours) * 3_600_000
        let (db, recovery) = try Self.openRecovering(path: path, logger: logger)
        try db.execute("PRAGMA synchronous=\(synchronous.rawValue)")
        let policy = SpacePolicy(maxBytes: maxBytes, pageSize: try db.scalarInt("PRAGMA page_size") ?? 4096)
        space = policy
        // No `PRAGMA wal_autocheckpoint` here: it would replace the WAL hook that counts frames
        // (`SQLiteDatabase`), which already turns SQLite's own checkpoints off.
        try db.execute("PRAGMA journal_size_limit=\(policy.walLimitBytes)")
        try db.execute("PRAGMA max_page_count=\(policy.hardPages)")
        let writer = try Writer(db: db, policy: policy)
        if let companion {
            let replayed = try writer.attach(companion)
            if replayed > 0 {
                // The fold is done once: the next start begins from here.
                try writer.snapshotCompanion()
                logger.info("call state rebuilt from the rows stored after its last snapshot", metadata: ["rows": "\(replayed)"])
            }
        }
        connection = Mutex(writer)
        checkpointer = try WALCheckpointer(path: path)
        let stats = try Self.readStats(db)
        metrics.pending.store(stats.pending, ordering: .relaxed)
        metrics.oldestPendingReceivedAtMilliseconds.store(stats.oldestPendingReceivedAtMilliseconds ?? 0, ordering: .relaxed)
        metrics.deadLetters.store(stats.deadLetters, ordering: .relaxed)
        metrics.recovery.withLock { $0 = recovery }
        publishWALGauge(writer)
        schedulePrune(after: 5)
        scheduleGaugeRefresh()
        if companion != nil { scheduleCompanionTick() }
    }

    /// Every second: a commit when the companion has rows due (its timers), riding on the group commit.
    private func scheduleCompanionTick() {
        queue.asyncAfter(deadline: .now() + .seconds(1)) { [weak self] in
            guard let self else { return }
            let open: Bool = self.connection.withLock { writer in
                guard let writer else { return false }
                if self.fault == nil,
                    writer.companion?.isDue(now: Self.nowMilliseconds()) == true || writer.snapshotDue(now: Self.monotonicSeconds())
                {
                    self.waiting.withLock { self.scheduleFlushLocked(&$0) }
                }
                return true
            }
            if open { self.scheduleCompanionTick() }
        }
    }

    /// Called (on the outbox queue) after every commit that stored at least one new row.
    package func setCommittedListener(_ listener: @escaping @Sendable () -> Void) {
        waiting.withLock { $0.committedListener = listener }
    }

    /// True while the last write succeeded (for `/readyz`).
    package var isWritable: Bool { waiting.withLock { !$0.closed && !$0.lastWriteFailed && $0.fault == nil } }

    // MARK: Inputs

    /// Stores `event` durably; `completion` runs on the outbox queue after the commit (or failure).
    package func append(_ event: OutboxEvent, completion: @escaping @Sendable (Result<AppendOutcome, OutboxError>) -> Void) {
        let rejected: OutboxError? = waiting.withLock { w in
            if let fault = w.fault { return .storage("the outbox file cannot be trusted (\(fault)); the agent is restarting") }
            if w.closed { return .closed }
            w.appends.append((event, completion))
            scheduleFlushLocked(&w)
            return nil
        }
        if let rejected { completion(.failure(rejected)) }
    }

    /// Records the broker's acknowledgement of `seq`.
    package func markDelivered(_ seq: Int64) {
        waiting.withLock { w in
            w.marks.append(seq)
            scheduleFlushLocked(&w, after: Self.markDelaySeconds)
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

    /// Schedules a flush now, or (`delay`) one that only writes the watermark: the two are
    /// tracked apart so a waiting watermark never delays a webhook's commit.
    func scheduleFlushLocked(_ w: inout Waiting, after delay: Double = 0) {
        if delay > 0 {
            guard !w.delayedFlushScheduled else { return }
            w.delayedFlushScheduled = true
            queue.asyncAfter(deadline: .now() + delay) {
                self.waiting.withLock { $0.delayedFlushScheduled = false }
                self.flush()
            }
        } else {
            guard !w.flushScheduled else { return }
            w.flushScheduled = true
            queue.async { self.flush() }
        }
    }

    // MARK: Reads

    /// Undelivered rows with `seq > after`, oldest first, from memory when the committed tail
    /// holds them, else from the file. `completion` runs on the outbox queue. Acknowledgements
    /// and dead letters reported before the call are already applied.
    package func fetchPending(after: Int64, limit: Int, completion: @escaping @Sendable (Result<[OutboxRecord], OutboxError>) -> Void) {
        queue.async {
            let (marks, dead) = self.waiting.withLock { w in
                defer {
                    w.marks.removeAll(keepingCapacity: true)
                }
                return (w.marks, w.deadLetters)
            }
            let result: Result<[OutboxRecord], OutboxError> = self.connection.withLock { writer in
                guard let writer else { return .failure(.closed) }
                if let fault = self.fault { return .failure(.storage(fault)) }
                writer.settle(marks: marks, dead: dead)
                if let fromMemory = writer.tail.records(after: after, limit: limit, settled: writer.isDone) {
                    self.metrics.fetchedFromMemory.add(fromMemory.count, ordering: .relaxed)
                    return .success(fromMemory)
                }
                do throws(SQLiteError) {
                    let rows = try writer.readPending(after: after, limit: limit)
                    self.metrics.fetchedFromDisk.add(rows.count, ordering: .relaxed)
                    return .success(rows)
                } catch {
                    self.noteFault(error, while: "reading pending events")
                    return .failure(.storage(error.description))
                }
            }
            if !marks.isEmpty { self.waiting.withLock { self.scheduleFlushLocked(&$0, after: Self.markDelaySeconds) } }
            completion(result)
        }
    }

    /// Counts by state; runs synchronously on the outbox queue, after committing what waits
    /// (acknowledgements included), so it is exact for this process. (`inspect`, from another
    /// process, sees the watermark up to ~100 ms late.)
    package func stats() throws(OutboxError) -> OutboxStats {
        let result: Result<OutboxStats, OutboxError> = queue.sync {
            flush(final: true)
            return connection.withLock { writer in
                guard let writer else { return .failure(.closed) }
                do throws(SQLiteError) {
                    return .success(try Self.readStats(writer.db))
                } catch {
                    noteFault(error, while: "counting events")
                    return .failure(.storage(error.description))
                }
            }
        }
        return try result.get()
    }

    /// Counts by state from the file alone (the agent's acknowledgements not yet committed are
    /// not in it). Cost independent of the backlog: a few index probes.
    static func readStats(_ db: SQLiteDatabase) throws(SQLiteError) -> OutboxStats {
        let watermark = try db.scalarInt("SELECT max(seq_hi) FROM delivery_marks") ?? 0
        let lastSeq = try db.scalarInt("SELECT max(seq) FROM events") ?? 0
        let ackedAbove = try db.scalarInt("SELECT count(*) FROM acked_above WHERE seq > \(watermark) AND seq <= \(lastSeq)") ?? 0
        let deadAbove = try db.scalarInt("SELECT count(*) FROM dead_letters WHERE seq > \(watermark) AND seq <= \(lastSeq)") ?? 0
        let pending = max(0, lastSeq - watermark) - ackedAbove - deadAbove
        let oldest = try db.scalarInt(
            """
            SELECT received_at FROM events WHERE seq > \(watermark)
              AND seq NOT IN (SELECT seq FROM acked_above) AND seq NOT IN (SELECT seq FROM dead_letters)
            ORDER BY seq LIMIT 1
            """)
        let deliveredAbove = try db.scalarInt("SELECT count(*) FROM acked_above WHERE seq > \(watermark) AND delivered != 0") ?? 0
        let delivered = (try db.scalarInt("SELECT coalesce(sum(delivered), 0) FROM delivery_marks") ?? 0) + deliveredAbove
        let last = try db.scalarInt("SELECT delivered_at FROM delivery_marks ORDER BY minute DESC LIMIT 1")
        let dead = try db.scalarInt("SELECT count(*) FROM dead_letters") ?? 0
        return OutboxStats(
            pending: Int(max(0, pending)), delivered: Int(delivered), deadLetters: Int(dead),
            oldestPendingReceivedAtMilliseconds: pending > 0 ? oldest : nil, lastDeliveredAtMilliseconds: last)
    }

    // MARK: Background work

    /// After a commit: let the checkpointer copy the WAL in the background once it is a quarter
    /// full, and restart it from the writer (which then yields briefly) once it is half full.
    func afterCommit(_ writer: Writer) {
        let frames = writer.db.walFrames
        let lowDiskCheckpoint = writer.lowDisk && space.walBytes(frames: frames) > space.diskHeadroomBytes / 4
        if space.shouldCheckpoint(walFrames: frames) || lowDiskCheckpoint {
            let started = Self.monotonicSeconds()
            // Near a full disk, truncate: the WAL file's own size is what the disk lacks.
            if writer.db.checkpoint(writer.lowDisk ? .truncate : .restart) {
                metrics.checkpoints.add(1, ordering: .relaxed)
                metrics.checkpointMicros.add(Int((Self.monotonicSeconds() - started) * 1e6), ordering: .relaxed)
            } else {
                metrics.checkpointsBusy.add(1, ordering: .relaxed)
            }
        } else if space.walBytes(frames: frames) >= space.checkpointAtBytes / 2 {
            checkpointer.copyInBackground()
        }
        publishWALGauge(writer)
        scheduleIdleShrink(writer)
    }

    func publishWALGauge(_ writer: Writer) {
        metrics.walBytes.store(Int(space.walBytes(frames: writer.db.walFrames)), ordering: .relaxed)
        metrics.walFramesWritten.store(Int(writer.db.walFramesWritten), ordering: .relaxed)
    }

    /// Once no commit happened for a second, truncate the WAL file to nothing.
    private func scheduleIdleShrink(_ writer: Writer) {
        writer.lastCommitAt = Self.monotonicSeconds()
        guard !writer.shrinkScheduled else { return }
        writer.shrinkScheduled = true
        queue.asyncAfter(deadline: .now() + 1) { [weak self] in self?.shrinkIfIdle() }
    }

    private func shrinkIfIdle() {
        connection.withLock { writer in
            guard let writer else { return }
            let idle = Self.monotonicSeconds() - writer.lastCommitAt
            guard idle >= 1 else {
                queue.asyncAfter(deadline: .now() + (1 - idle)) { [weak self] in self?.shrinkIfIdle() }
                return
            }
            writer.shrinkScheduled = false
            if fault == nil, writer.db.checkpoint(.truncate) { publishWALGauge(writer) }
        }
    }

    private func scheduleGaugeRefresh() {
        queue.asyncAfter(deadline: .now() + .seconds(5)) { [weak self] in
            guard let self else { return }
            let open: Bool = self.connection.withLock { writer in
                guard let writer else { return false }
                // Picks up rows other processes (`callrelay replay`) added, too.
                try? writer.refreshLastSeq()
                self.metrics.pending.store(writer.ledger.pending(lastSeq: writer.lastSeq), ordering: .relaxed)
                let oldest = writer.ledger.firstPending(lastSeq: writer.lastSeq).flatMap { try? writer.receivedAt(seq: $0) }
                self.metrics.oldestPendingReceivedAtMilliseconds.store(oldest ?? 0, ordering: .relaxed)
                return true
            }
            if open { self.scheduleGaugeRefresh() }
        }
    }

    // MARK: Lifecycle

    /// Refuses new appends, commits what is waiting (including delivery marks and acknowledgements
    /// above the watermark), then checkpoints and closes the file.
    package func close() {
        waiting.withLock { $0.closed = true }
        checkpointer.close()
        queue.sync {
            // A few rounds at most: a failing disk must not hang the shutdown.
            // After a storage fault nothing more is written to the file (the next start checks it).
            let faulted = fault != nil
            for _ in 0..<4 where !faulted && waiting.withLock({ !$0.appends.isEmpty || !$0.marks.isEmpty || !$0.deadLetters.isEmpty }) {
                flush(final: true)
            }
            flush(final: true)
            connection.withLock { writer in
                if let writer, !faulted {
                    do throws(SQLiteError) {
                        // The next start then has nothing to fold again.
                        try writer.snapshotCompanion()
                    } catch {
                        logger.warning("could not write the call-state snapshot; the next start rebuilds it", metadata: ["error": "\(error)"])
                    }
                    do throws(SQLiteError) {
                        try writer.persistAcknowledgedAbove()
                    } catch {
                        logger.warning("could not record out-of-order acknowledgements; they will be published again", metadata: ["error": "\(error)"])
                    }
                    writer.db.checkpoint(.truncate)
                }
                writer = nil
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
