import Dispatch
import Glibc
import Logging
import Synchronization

/// The group commit: one flush takes what is waiting, applies the space rules and writes one
/// transaction. Runs on the outbox queue only.
extension SQLiteOutbox {
    func flush(final: Bool = false) {
        let now = Self.monotonicSeconds()
        if let fault {
            // Nothing more is written to a file that cannot be trusted: every waiting webhook is refused.
            let appends = waiting.withLock { w in
                defer {
                    w.appends.removeAll()
                    w.flushScheduled = false
                }
                return w.appends
            }
            let error = OutboxError.storage("the outbox file cannot be trusted (\(fault)); the agent is restarting")
            metrics.writeFailures.add(appends.isEmpty ? 0 : 1, ordering: .relaxed)
            for append in appends { append.1(.failure(error)) }
            return
        }
        let (appends, marks, dead, listener) = waiting.withLock { w in
            // A batch fits a quarter of the WAL (by its estimated pages), so the writer never has to
            // refuse one for the WAL alone: at worst it checkpoints first.
            var take = 0
            var bytes: Int64 = 0
            var unordered = 0
            let maxFrames = space.batchBytes / space.frameBytes
            while take < w.appends.count, take < Self.maxBatch {
                let e = w.appends[take].0
                let size = Int64(e.body.count)
                let extra = Writer.dedupeOrder(e) == 0 ? 1 : 0
                if take > 0,
                    bytes + size > space.batchBytes
                        || space.estimatedFrames(payloadBytes: bytes + size, rows: take + 1, unordered: unordered + extra) > maxFrames
                {
                    break
                }
                bytes += size
                unordered += extra
                take += 1
            }
            let appends = Array(w.appends.prefix(take))
            w.appends.removeFirst(take)
            // After a failed attempt to record dead letters, wait a moment before the next one.
            let settleNow = final || w.settleRetryAt <= now
            let marks = w.marks
            let dead = settleNow ? w.deadLetters : []
            w.marks.removeAll(keepingCapacity: true)
            if settleNow { w.deadLetters.removeAll() }
            w.flushScheduled = false
            if !w.appends.isEmpty { scheduleFlushLocked(&w) }
            return (appends, marks, dead, w.committedListener)
        }
        connection.withLock { writer in
            guard let writer else {
                for append in appends { append.1(.failure(.closed)) }
                return
            }
            writer.settle(marks: marks, dead: dead)
            // The watermark is written at most every `markDelaySeconds` (riding on appends when there
            // are any): one page write per tenth of a second, however fast deliveries go.
            let markPending = writer.ledger.pendingCommit() != nil
            let markDue = markPending && (final || now - writer.lastMarkCommitAt >= Self.markDelaySeconds)
            if markPending && !markDue {
                waiting.withLock { scheduleFlushLocked(&$0, after: Self.markDelaySeconds) }
            }
            let companionDue = writer.companion?.isDue(now: Self.nowMilliseconds()) ?? false
            if !(appends.isEmpty && dead.isEmpty && !markDue && !companionDue) {
                commit(writer, appends: appends, dead: dead, mark: markDue, listener: listener, started: now)
            }
            if fault == nil, writer.snapshotDue(now: now) {
                snapshotCompanion(writer, whole: false)
                // The next chunk rides on the next flush.
                waiting.withLock { scheduleFlushLocked(&$0) }
            }
        }
    }

    /// Writes the companion's snapshot, whole or its next chunk (a failure is logged; the rows stay
    /// foldable, so nothing is lost).
    func snapshotCompanion(_ writer: Writer, whole: Bool = true) {
        do throws(SQLiteError) {
            if whole { try writer.snapshotCompanion() } else { try writer.snapshotStep() }
        } catch {
            if !noteFault(error, while: "writing the call-state snapshot") {
                logger.warning("could not write the call-state snapshot; retrying later", metadata: ["error": "\(error)"])
            }
        }
    }

    private func commit(
        _ writer: Writer, appends: [(OutboxEvent, @Sendable (Result<AppendOutcome, OutboxError>) -> Void)], dead: [DeadLetter],
        mark: Bool, listener: (@Sendable () -> Void)?, started: Double
    ) {
        var events = appends.map(\.0)
        var deadSettled = dead.isEmpty
        var written: Written? = nil
        var deadToWrite = dead
        // Before delivered events are deleted to make room, the dead letters and the watermark of
        // this batch are written: deleting goes by the written watermark, which never passes an
        // unwritten dead letter, so without them nothing below it could go.
        var appendsFailure: OutboxError? =
            events.isEmpty
            ? nil
            : admissionRefusal(writer, events) {
                guard case .success(let w) = attempt(writer, [], dead: deadToWrite, mark: true) else { return }
                written = w
                deadSettled = true
                deadToWrite = []
            }.map { .full($0) }
        if appendsFailure != nil { events = [] }
        switch attempt(writer, events, dead: deadToWrite, mark: mark) {
        case .success(let w):
            written = merge(written, w)
            deadSettled = true
        case .failure(.full) where !events.isEmpty:
            // The hard cap or the disk itself: record the dead letters and the watermark alone
            // first, free room, then try the appends alone.
            if case .success(let w) = attempt(writer, [], dead: deadToWrite, mark: true) {
                written = merge(written, w)
                deadSettled = true
            }
            _ = makeRoom(writer)
            switch attempt(writer, events, dead: [], mark: false) {
            case .success(let w): written = merge(written, w)
            case .failure(let e): appendsFailure = e
            }
        case .failure(let e):
            if !events.isEmpty { appendsFailure = e }
        }
        if let written {
            if written.mark != nil { writer.lastMarkCommitAt = started }
            writer.tail.append(written.stored)
            afterCommit(writer)
            metrics.recordCommit(seconds: Self.monotonicSeconds() - started)
            // Webhooks stored (the companion's rows are counted apart).
            let storedCount = written.outcomes.reduce(0) { n, o in if case .stored = o { n + 1 } else { n } }
            metrics.stored.add(storedCount, ordering: .relaxed)
            metrics.duplicates.add(written.outcomes.count - storedCount, ordering: .relaxed)
            metrics.pending.store(writer.ledger.pending(lastSeq: writer.lastSeq), ordering: .relaxed)
        }
        if deadSettled && !dead.isEmpty {
            waiting.withLock { $0.settleRetryAt = 0 }
            metrics.deadLetters.add(dead.count, ordering: .relaxed)
            for letter in dead {
                logger.error(
                    "event moved to dead letters after repeated broker refusals",
                    metadata: ["seq": "\(letter.seq)", "attempts": "\(letter.attempts)", "reason": "\(letter.reason)"])
            }
        } else if !deadSettled {
            // Dead letters stay valid: keep them, and retry in a second (not at once: a full disk
            // would turn that into a busy loop). The watermark is retried with the next commit.
            let first = waiting.withLock { w in
                w.deadLetters.insert(contentsOf: dead, at: 0)
                defer { w.settleRetryAt = Self.monotonicSeconds() + 1 }
                return w.settleRetryAt == 0
            }
            if first { logger.warning("recording dead letters failed; retrying every second", metadata: ["count": "\(dead.count)"]) }
            queue.asyncAfter(deadline: .now() + 1) { self.flush() }
        }
        if !appends.isEmpty {
            if let appendsFailure {
                refuse(appends, appendsFailure)
            } else if let written {
                let recovered = waiting.withLock { w in
                    defer { w.lastWriteFailed = false }
                    return w.lastWriteFailed
                }
                if recovered { logger.notice("outbox accepts webhooks again") }
                for (index, outcome) in written.outcomes.enumerated() { appends[index].1(.success(outcome)) }
            }
        } else if written?.mark != nil, roomAgain(writer) {
            waiting.withLock { $0.lastWriteFailed = false }
            logger.notice("outbox accepts webhooks again")
        }
        if (written?.stored.count ?? 0) > 0 { listener?() }
    }

    typealias Written = (outcomes: [AppendOutcome], stored: [OutboxRecord], mark: (watermark: Int64, delivered: Int)?)

    private func merge(_ a: Written?, _ b: Written) -> Written {
        guard let a else { return b }
        return (a.outcomes + b.outcomes, a.stored + b.stored, b.mark ?? a.mark)
    }

    private func attempt(_ writer: Writer, _ events: [OutboxEvent], dead: [DeadLetter], mark: Bool) -> Result<Written, OutboxError> {
        if events.isEmpty && dead.isEmpty && (!mark || writer.ledger.pendingCommit() == nil)
            && !(writer.companion?.isDue(now: Self.nowMilliseconds()) ?? false)
        {
            return .success(([], [], nil))
        }
        do throws(SQLiteError) {
            return .success(try writer.write(events, dead: dead, mark: mark, now: Self.nowMilliseconds()))
        } catch {
            noteFault(error, while: "writing a commit")
            return .failure(error.isFull ? .full(error.message) : .storage(error.description))
        }
    }

    /// Fails every waiting webhook of the batch (HTTP 503), logging once per state change.
    private func refuse(_ appends: [(OutboxEvent, @Sendable (Result<AppendOutcome, OutboxError>) -> Void)], _ error: OutboxError) {
        let firstFailure = waiting.withLock { w in
            defer { w.lastWriteFailed = true }
            return !w.lastWriteFailed
        }
        metrics.writeFailures.add(1, ordering: .relaxed)
        if firstFailure && fault == nil {
            // One line per state change; the 503s that follow are counted in /metrics.
            logger.error("outbox refuses webhooks (HTTP 503) until space is freed", metadata: ["error": "\(error)"])
        }
        for append in appends { append.1(.failure(error)) }
    }

    /// Why this batch of appends cannot be written now (nil: it can). Space is measured (two
    /// PRAGMAs and a statvfs) only once the bytes appended since the last measurement could have
    /// used a quarter of the reserve; the WAL is checked on every batch (a counter in memory).
    private func admissionRefusal(_ writer: Writer, _ events: [OutboxEvent], beforeMakingRoom: () -> Void) -> String? {
        let payloadBytes = events.reduce(Int64(0)) { $0 + Int64($1.body.count) }
        writer.spaceBudget -= payloadBytes * 2
        if writer.spaceBudget <= 0 {
            if spaceProblem(writer) != nil, writer.lowDisk, writer.db.walFrames > 0 {
                // Near a full disk, the WAL's own space comes back first.
                writer.db.checkpoint(.truncate)
                publishWALGauge(writer)
            }
            if let problem = spaceProblem(writer) {
                beforeMakingRoom()
                guard makeRoom(writer) > 0, spaceProblem(writer) == nil else {
                    writer.spaceBudget = 0
                    return problem
                }
            }
            writer.spaceBudget = (space.hardPages - space.softPages) * space.pageSize / 4
        }
        let frames = space.estimatedFrames(
            payloadBytes: payloadBytes, rows: events.count, unordered: events.reduce(0) { $0 + (Writer.dedupeOrder($1) == 0 ? 1 : 0) })
        if !space.walHasRoom(walFrames: writer.db.walFrames, batchFrames: frames) {
            // The writer yields for one checkpoint: the WAL restarts from its beginning.
            let started = Self.monotonicSeconds()
            // SQLite does not wait for another checkpointer: let the background copy finish first.
            if writer.db.checkpoint(.restart) || (checkpointer.waitUntilIdle() && writer.db.checkpoint(.restart)) {
                metrics.checkpoints.add(1, ordering: .relaxed)
                metrics.checkpointMicros.add(Int((Self.monotonicSeconds() - started) * 1e6), ordering: .relaxed)
            } else {
                metrics.checkpointsBusy.add(1, ordering: .relaxed)
            }
            if !space.walHasRoom(walFrames: writer.db.walFrames, batchFrames: frames) {
                return writer.db.walFrames == 0
                    ? "a batch larger than the WAL allows (\(space.walLimitBytes) bytes)"
                    : "the WAL is full and a reader keeps it from being checkpointed"
            }
        }
        return nil
    }

    /// Why appends cannot be taken now, measured.
    func spaceProblem(_ writer: Writer) -> String? {
        var fs = statvfs()
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let fsFree: Int64? =
            statvfs(directory.isEmpty ? "/" : directory, &fs) == 0 ? Int64(fs.f_bavail) * Int64(fs.f_frsize) : nil
        let pages = (try? writer.db.pageCounts()) ?? (total: 0, free: 0)
        let live = pages.total - pages.free
        // Free pages inside the file take new rows without growing it: they count as free space.
        let free = fsFree.map { $0 + pages.free * space.pageSize }
        // Near a full disk (less than four times the headroom left) the WAL is kept small: the
        // writer checkpoints after every commit that leaves more than a quarter of the headroom.
        writer.lowDisk = fsFree.map { $0 < 4 * space.diskHeadroomBytes } ?? false
        return space.spaceRefusal(livePages: live, freeDiskBytes: free).map { $0 + " (in \(directory))" }
    }

    /// After acknowledgements were recorded while refusing: is there room again? (Delivered events
    /// are deleted to make room only when a webhook needs it, not here: they stay for `replay`.)
    private func roomAgain(_ writer: Writer) -> Bool {
        guard waiting.withLock({ $0.lastWriteFailed }) else { return false }
        return spaceProblem(writer) == nil
    }
}
