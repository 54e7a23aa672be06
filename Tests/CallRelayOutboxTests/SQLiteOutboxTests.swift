import CSQLite
import CallRelayOutbox
import Foundation
import Testing

private func tempDB() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("outbox.sqlite3").path
}

private func event(_ n: Int, id: String? = nil, call: String = "call-1", payloadBytes: Int = 32) -> OutboxEvent {
    OutboxEvent(
        id: id ?? "id-\(n)", dedupeOrder: 0, callID: call, topic: "piopiy/42/live/out_started", kind: "live",
        body: Array(repeating: UInt8(ascii: "x"), count: payloadBytes), payload: Array("payload-\(n)".utf8),
        receivedAtMilliseconds: 1_700_000_000_000 + Int64(n))
}

private func append(_ outbox: SQLiteOutbox, _ e: OutboxEvent) async -> Result<AppendOutcome, OutboxError> {
    await withCheckedContinuation { done in outbox.append(e) { done.resume(returning: $0) } }
}

private func pending(_ outbox: SQLiteOutbox, after: Int64 = 0, limit: Int = 10_000) async throws -> [OutboxRecord] {
    try await withCheckedContinuation { done in outbox.fetchPending(after: after, limit: limit) { done.resume(returning: $0) } }.get()
}

/// Counts rows through a second, independent connection (what survives in the file).
private func countRowsOnDisk(_ path: String, table: String = "events", whereClause: String = "1") -> Int {
    var db: OpaquePointer?
    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil)
    defer { sqlite3_close(db) }
    var stmt: OpaquePointer?
    sqlite3_prepare_v2(db, "SELECT count(*) FROM \(table) WHERE \(whereClause)", -1, &stmt, nil)
    defer { sqlite3_finalize(stmt) }
    guard sqlite3_step(stmt) == SQLITE_ROW else { return -1 }
    return Int(sqlite3_column_int64(stmt, 0))
}

@Suite struct SQLiteOutboxTests {
    @Test func appendIsOnDiskWhenCompletionRuns() async throws {
        let path = tempDB()
        let outbox = try SQLiteOutbox(path: path)
        defer { outbox.close() }
        let result = await append(outbox, event(1))
        #expect(result == .success(.stored(id: "id-1")))
        // Another connection sees the committed row at the moment the completion ran.
        #expect(countRowsOnDisk(path) == 1)
    }

    @Test func sameIDIsADuplicateAndStoredOnce() async throws {
        let path = tempDB()
        let outbox = try SQLiteOutbox(path: path)
        #expect(await append(outbox, event(1, id: "cdr-x")) == .success(.stored(id: "cdr-x")))
        #expect(await append(outbox, event(2, id: "cdr-x")) == .success(.duplicate(id: "cdr-x")))
        outbox.close()
        // Also after a restart.
        let reopened = try SQLiteOutbox(path: path)
        defer { reopened.close() }
        #expect(await append(reopened, event(3, id: "cdr-x")) == .success(.duplicate(id: "cdr-x")))
        #expect(countRowsOnDisk(path) == 1)
    }

    @Test func concurrentAppendsShareCommitsAndAllSucceed() async throws {
        let path = tempDB()
        let outbox = try SQLiteOutbox(path: path)
        defer { outbox.close() }
        let outcomes = await withTaskGroup(of: Result<AppendOutcome, OutboxError>.self) { group in
            for n in 0..<500 { group.addTask { await append(outbox, event(n)) } }
            var all: [Result<AppendOutcome, OutboxError>] = []
            for await r in group { all.append(r) }
            return all
        }
        #expect(outcomes.count == 500)
        #expect(outcomes.allSatisfy { if case .success(.stored) = $0 { true } else { false } })
        #expect(countRowsOnDisk(path) == 500)
    }

    @Test func pendingSurvivesReopenInOrderAndDeliveredLeaves() async throws {
        let path = tempDB()
        var outbox = try SQLiteOutbox(path: path)
        for n in 1...5 { _ = await append(outbox, event(n)) }
        let rows = try await pending(outbox)
        #expect(rows.map(\.eventID) == ["id-1", "id-2", "id-3", "id-4", "id-5"])
        // Just committed: served from memory with the payload built at ingest.
        #expect(rows[1].content == .payload(Array("payload-2".utf8)))
        outbox.markDelivered(rows[0].seq)
        outbox.markDelivered(rows[2].seq)
        outbox.close()

        outbox = try SQLiteOutbox(path: path)
        defer { outbox.close() }
        let left = try await pending(outbox)
        #expect(left.map(\.eventID) == ["id-2", "id-4", "id-5"])
        // Read back from the file: the body as stored, with what rebuilds its payload.
        #expect(left[0].content == .body(Array(repeating: UInt8(ascii: "x"), count: 32), kind: "live", receivedAtMilliseconds: 1_700_000_000_002))
        #expect(try await pending(outbox, after: left[1].seq).map(\.eventID) == ["id-5"])
        let stats = try outbox.stats()
        #expect(stats.pending == 3)
        #expect(stats.delivered == 2)
        #expect(stats.oldestPendingReceivedAtMilliseconds == 1_700_000_000_002)
    }

    @Test func fullOutboxRefusesNewEventsAndKeepsStoredOnes() async throws {
        let path = tempDB()
        // 1 MiB cap, 64 KiB payloads: fills after a few rows.
        let outbox = try SQLiteOutbox(path: path, maxBytes: 1 << 20)
        defer { outbox.close() }
        var stored = 0
        var sawFull = false
        for n in 0..<40 {
            switch await append(outbox, event(n, payloadBytes: 64 * 1024)) {
            case .success: stored += 1
            case .failure(.full): sawFull = true
            case .failure(let other): Issue.record("unexpected \(other)")
            }
            if sawFull { break }
        }
        #expect(sawFull)
        #expect(stored > 0)
        #expect(!outbox.isWritable)
        #expect(try await pending(outbox).count == stored)
        #expect(countRowsOnDisk(path) == stored)
    }

    @Test func retentionPrunesOnlyOldDeliveredRows() async throws {
        let path = tempDB()
        let outbox = try SQLiteOutbox(path: path, retentionHours: 1)
        defer { outbox.close() }
        for n in 1...3 { _ = await append(outbox, event(n)) }
        let rows = try await pending(outbox)
        outbox.markDelivered(rows[0].seq)
        _ = await append(outbox, event(99))  // forces the mark's commit
        let twoHoursLater = SQLiteOutbox.nowMilliseconds() + 2 * 3_600_000
        outbox.pruneDelivered(now: twoHoursLater)
        #expect(countRowsOnDisk(path) == 3)
        #expect(countRowsOnDisk(path, whereClause: "event_id = 'id-1'") == 0)
        outbox.pruneDelivered(now: SQLiteOutbox.nowMilliseconds())
        #expect(countRowsOnDisk(path) == 3)
    }

    @Test func anIDIsRememberedWhileItsEventIsRetainedWhateverItsAge() async throws {
        let path = tempDB()
        let outbox = try SQLiteOutbox(path: path, retentionHours: 1)
        defer { outbox.close() }
        // Received long ago (the helper's timestamps are from 2023) and still pending.
        #expect(await append(outbox, event(1, id: "old-cdr")) == .success(.stored(id: "old-cdr")))
        outbox.pruneDelivered(now: SQLiteOutbox.nowMilliseconds() + 48 * 3_600_000)
        #expect(await append(outbox, event(2, id: "old-cdr")) == .success(.duplicate(id: "old-cdr")))
    }

    @Test func replayCopiesDeliveredEventsInChunksAndOnlyOnce() async throws {
        let path = tempDB()
        let first = try SQLiteOutbox(path: path)
        await withTaskGroup(of: Void.self) { group in
            for lane in 0..<50 {
                group.addTask { for n in stride(from: lane, to: 4500, by: 50) { _ = await append(first, event(n)) } }
            }
        }
        var outbox = first
        var after: Int64 = 0
        while true {
            let rows = try await pending(outbox, after: after, limit: 1000)
            guard let last = rows.last else { break }
            for r in rows { outbox.markDelivered(r.seq) }
            after = last.seq
        }
        outbox.close()
        // Three transactions of at most 2,000 copies; the copies themselves are not copied again.
        let copied = try SQLiteOutbox.replay(path: path, sinceMilliseconds: 0, untilMilliseconds: nil, callID: nil)
        #expect(copied.copied == 4500 && !copied.stoppedAtCap)
        outbox = try SQLiteOutbox(path: path)
        defer { outbox.close() }
        #expect(try outbox.stats().pending == 4500)
        #expect(try outbox.stats().delivered == 4500)
        let copies = try await pending(outbox, limit: 5000)
        #expect(copies.count == 4500)
        #expect(copies.allSatisfy { $0.eventID.contains("#replay-") })
        #expect(Set(copies.map { $0.eventID.prefix { $0 != "#" } }).count == 4500)
    }

    @Test func anEventTimedInTheFarFutureIsStillDedupedAndCanBePruned() async throws {
        let path = tempDB()
        let outbox = try SQLiteOutbox(path: path)
        defer { outbox.close() }
        var e = event(1, id: "future")
        e.dedupeOrder = e.receivedAtMilliseconds + 3 * 86_400_000  // a sender's clock (or unit) gone wrong
        #expect(await withCheckedContinuation { done in outbox.append(e) { done.resume(returning: $0) } } == .success(.stored(id: "future")))
        e.receivedAtMilliseconds += 2 * 86_400_000  // re-sent two days later: its time now looks plausible
        #expect(await withCheckedContinuation { done in outbox.append(e) { done.resume(returning: $0) } } == .success(.duplicate(id: "future")))
        // Stored under order 0, where the prune's `ord < cutoff` reaches it.
        #expect(countRowsOnDisk(path, table: "dedupe", whereClause: "ord = 0 AND id = 'future'") == 1)
    }

    @Test func closedOutboxRefusesAppends() async throws {
        let outbox = try SQLiteOutbox(path: tempDB())
        outbox.close()
        let result = await append(outbox, event(1))
        guard case .failure(.closed) = result else {
            Issue.record("expected closed, got \(result)")
            return
        }
    }
}
