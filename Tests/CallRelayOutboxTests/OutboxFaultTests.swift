import CSQLite
import CallRelayOutbox
import Foundation
import Synchronization
import Testing

/// A damaged outbox found while running (issue 11, item 4; docs/decisions.md D16): the outbox
/// stops writing and refuses appends, leaves a check marker, tells its owner; the next open checks
/// the file, sets it aside and salvages the pending events it can still read.
@Suite struct OutboxFaultTests {
    static func directory() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-fault-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    static func event(_ n: Int) -> OutboxEvent {
        OutboxEvent(
            id: "fault-\(n)", dedupeOrder: 0, callID: "call-\(n % 7)", topic: "piopiy/42/live/out_started", kind: "live",
            body: Array("{\"n\":\(n),\"pad\":\"\(String(repeating: "p", count: 1400))\"}".utf8), payload: Array("payload-\(n)".utf8),
            receivedAtMilliseconds: 1_700_000_000_000 + Int64(n))
    }

    static func append(_ outbox: SQLiteOutbox, _ e: OutboxEvent) async -> Result<AppendOutcome, OutboxError> {
        await withCheckedContinuation { done in outbox.append(e) { done.resume(returning: $0) } }
    }

    static func fetch(_ outbox: SQLiteOutbox, after: Int64, limit: Int) async -> Result<[OutboxRecord], OutboxError> {
        await withCheckedContinuation { done in outbox.fetchPending(after: after, limit: limit) { done.resume(returning: $0) } }
    }

    /// Stores `count` events (about 1.4 KB each, far more than SQLite's page cache), moves them all
    /// into the database file, and returns the file's size.
    static func fill(_ outbox: SQLiteOutbox, path: String, count: Int) async throws -> Int {
        for start in stride(from: 0, to: count, by: 500) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in start..<min(start + 500, count) {
                    group.addTask { if case .failure(let e) = await append(outbox, event(n)) { throw e } }
                }
                try await group.waitForAll()
            }
        }
        let other = try SQLiteDatabase(path: path, mode: .readWrite)
        try other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Int(try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64)
    }

    /// Overwrites the pages covering [from, to) of the file with 0xFF (no valid b-tree page starts
    /// so), then commits a harmless change through another connection: the outbox's connection
    /// drops its page cache at its next read, so it reads the damage.
    static func damage(path: String, from: Int, to: Int) throws {
        let page = 4096
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(from / page * page))
        try handle.write(contentsOf: Data(repeating: 0xFF, count: (to - from) / page * page))
        try handle.synchronize()
        try handle.close()
        let other = try SQLiteDatabase(path: path, mode: .readWrite)
        try other.execute("PRAGMA user_version = 2")
    }

    @Test func aDamagedPageFoundWhileRunningStopsWritesAndTheNextOpenSalvagesWhatIsReadable() async throws {
        let path = Self.directory() + "/outbox.sqlite3"
        let total = 6000
        var outbox: SQLiteOutbox? = try SQLiteOutbox(path: path)
        let faults = Mutex<[String]>([])
        outbox!.setFaultHandler { reason in faults.withLock { $0.append(reason) } }
        let size = try await Self.fill(outbox!, path: path, count: total)
        guard case .success(let stored) = await Self.fetch(outbox!, after: 0, limit: total), stored.count == total else {
            Issue.record("the filled outbox cannot be read")
            return
        }
        let storedOrder = stored.map(\.eventID)
        try Self.damage(path: path, from: size * 4 / 10, to: size * 6 / 10)

        // The delivery reads the backlog from the middle: the damage is found.
        guard case .failure(.storage(let detail)) = await Self.fetch(outbox!, after: Int64(total / 2), limit: 100) else {
            Issue.record("reading damaged pages did not fail")
            return
        }
        #expect(detail.contains("malformed") || detail.contains("corrupt"), "\(detail)")
        #expect(faults.withLock { $0.count } == 1)
        #expect(outbox!.fault != nil)
        #expect(!outbox!.isWritable)
        #expect(FileManager.default.fileExists(atPath: path + ".check"), "the next start is asked to check the file")
        // Nothing more is answered 200 on a file that cannot be trusted, and nothing more is written.
        let sizeBefore = try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64
        guard case .failure(.storage(let refusal)) = await Self.append(outbox!, Self.event(total + 1)) else {
            Issue.record("an append after the fault was not refused")
            return
        }
        #expect(refusal.contains("cannot be trusted"), "\(refusal)")
        // A second failing read does not report the fault again.
        _ = await Self.fetch(outbox!, after: Int64(total / 2), limit: 100)
        #expect(faults.withLock { $0.count } == 1)
        outbox!.close()
        outbox = nil
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64 == sizeBefore)

        // The next start: quick_check finds the damage, the file goes aside, the readable pending
        // events come back in order, and their ids still recognize re-sends.
        let reopened = try SQLiteOutbox(path: path)
        defer { reopened.close() }
        let recovery = try #require(reopened.metrics.recovery.withLock { $0 })
        #expect(recovery.reason.contains("quick_check"), "\(recovery.reason)")
        #expect(FileManager.default.fileExists(atPath: recovery.movedTo))
        #expect(!FileManager.default.fileExists(atPath: path + ".check"))
        let unreadable = try #require(recovery.unreadable)
        #expect(recovery.salvaged > total / 2, "most of the file was readable: \(recovery)")
        #expect(unreadable > 0, "a fifth of the file was damaged: \(recovery)")
        #expect(recovery.salvaged + unreadable == total, "\(recovery)")
        #expect(try reopened.stats().pending == recovery.salvaged)
        guard case .success(let rows) = await Self.fetch(reopened, after: 0, limit: total) else {
            Issue.record("the salvaged outbox cannot be read")
            return
        }
        // The salvaged ids are the stored order with the unreadable stretch left out.
        let salvagedIDs = rows.map(\.eventID)
        var position = storedOrder.startIndex
        let inOrder = salvagedIDs.allSatisfy { id in
            guard let found = storedOrder[position...].firstIndex(of: id) else { return false }
            position = found + 1
            return true
        }
        #expect(inOrder, "salvaged events keep their order")
        #expect(salvagedIDs.first == storedOrder.first && salvagedIDs.last == storedOrder.last, "the head and the tail of the backlog were readable")
        #expect(rows.count == recovery.salvaged)
        let firstNumber = Int(storedOrder[0].dropFirst("fault-".count))!
        if let first = rows.first, case .body(let body, let kind, let at) = first.content {
            #expect(body == Self.event(firstNumber).body && kind == "live" && at == Self.event(firstNumber).receivedAtMilliseconds)
        } else {
            Issue.record("salvaged row without its body")
        }
        #expect(await Self.append(reopened, Self.event(firstNumber)) == .success(.duplicate(id: storedOrder[0])))
        #expect(await Self.append(reopened, Self.event(total + 5)) == .success(.stored(id: "fault-\(total + 5)")))
    }

    @Test func anIntactFileIsKeptWhenTheCheckFindsNothing() async throws {
        let path = Self.directory() + "/outbox.sqlite3"
        let outbox = try SQLiteOutbox(path: path)
        for n in 0..<20 { _ = await Self.append(outbox, Self.event(n)) }
        outbox.close()
        // As if the last run had met a disk error that left the file intact.
        try "1 writing a commit: disk I/O error\n".write(toFile: path + ".check", atomically: false, encoding: .utf8)
        let reopened = try SQLiteOutbox(path: path)
        defer { reopened.close() }
        #expect(reopened.metrics.recovery.withLock { $0 } == nil)
        #expect(!FileManager.default.fileExists(atPath: path + ".check"))
        #expect(try reopened.stats().pending == 20)
        let siblings = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        #expect(!siblings.contains { $0.contains(".corrupt-") }, "\(siblings)")
    }

    @Test func aFileWhoseHeaderIsGoneIsSetAsideWithAnUnknownLoss() throws {
        let path = Self.directory() + "/outbox.sqlite3"
        try Data(repeating: 0xFF, count: 16384).write(to: URL(fileURLWithPath: path))
        let outbox = try SQLiteOutbox(path: path)
        defer { outbox.close() }
        let recovery = try #require(outbox.metrics.recovery.withLock { $0 })
        #expect(recovery.salvaged == 0)
        #expect(recovery.unreadable == nil)
        #expect(try outbox.stats().pending == 0)
    }

    @Test func whichErrorsAreStorageFaults() {
        func error(_ code: Int32) -> SQLiteError { SQLiteError(code: code, message: "", context: "") }
        #expect(error(SQLITE_CORRUPT).isStorageFault)
        #expect(error(SQLITE_NOTADB).isStorageFault)
        #expect(error(SQLITE_IOERR | (4 << 8)).isStorageFault, "SQLITE_IOERR_FSYNC")
        #expect(error(SQLITE_IOERR | (3 << 8)).isStorageFault, "SQLITE_IOERR_WRITE")
        #expect(!error(SQLITE_IOERR | (12 << 8)).isStorageFault, "SQLITE_IOERR_NOMEM")
        #expect(!error(SQLITE_FULL).isStorageFault, "a full disk is the space policy's (503 until room)")
        #expect(!error(SQLITE_BUSY).isStorageFault)
        #expect(!error(SQLITE_CONSTRAINT).isStorageFault)
    }
}
