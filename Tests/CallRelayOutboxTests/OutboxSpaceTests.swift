import CallRelayOutbox
import Foundation
import Synchronization
import Testing

/// `storage.max_bytes` bounds the database, its WAL and its SHM together, at every moment, with a
/// small cap in a temp directory (no root, no tmpfs).
@Suite(.serialized) struct OutboxSpaceTests {
    func directory() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-space-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    func footprint(_ path: String) -> (db: Int64, wal: Int64, shm: Int64) {
        func size(_ p: String) -> Int64 { ((try? FileManager.default.attributesOfItem(atPath: p))?[.size] as? NSNumber)?.int64Value ?? 0 }
        return (size(path), size(path + "-wal"), size(path + "-shm"))
    }

    func event(_ n: Int, bytes: Int = 900) -> OutboxEvent {
        OutboxEvent(
            id: "space-\(n)", dedupeOrder: 1_725_942_871_000 + Int64(n), callID: "call-\(n)", topic: "piopiy/1/live/out_started",
            kind: "live", body: Array(repeating: UInt8(ascii: "p"), count: bytes), payload: [],
            receivedAtMilliseconds: SQLiteOutbox.nowMilliseconds())
    }

    @Test func theWholeFootprintStaysInsideTheCapUnderLoadAndTheWALShrinksWhenIdle() async throws {
        let path = directory() + "/outbox.sqlite3"
        let cap: Int64 = 4 << 20
        let outbox = try SQLiteOutbox(path: path, maxBytes: cap)
        let peak = Mutex<(Int64, Int64, Int64)>((0, 0, 0))
        let sampling = Atomic<Bool>(true)
        let sampler = Thread {
            while sampling.load(ordering: .relaxed) {
                let f = self.footprint(path)
                peak.withLock { if f.db + f.wal + f.shm > $0.0 + $0.1 + $0.2 { $0 = f } }
                usleep(500)
            }
        }
        sampler.start()

        // Fill past the cap: the first refusals come from the soft cap, nothing beyond it.
        var refused = 0
        var stored = 0
        var n = 0
        while refused == 0 && n < 20_000 {
            let results = await withTaskGroup(of: Result<AppendOutcome, OutboxError>.self) { group in
                for i in n..<(n + 64) {
                    group.addTask { await withCheckedContinuation { done in outbox.append(self.event(i)) { done.resume(returning: $0) } } }
                }
                var all: [Result<AppendOutcome, OutboxError>] = []
                for await r in group { all.append(r) }
                return all
            }
            n += 64
            for r in results {
                switch r {
                case .success(.stored): stored += 1
                case .failure(.full): refused += 1
                default: Issue.record("unexpected \(r)")
                }
            }
        }
        #expect(refused > 0, "the cap was never reached")
        #expect(stored > 2000, "a 4 MiB outbox holds thousands of 900-byte events, not \(stored)")
        #expect(!outbox.isWritable)

        // Deliver everything: deliveries are recorded at the cap, then new events make room.
        var seqs: [Int64] = []
        var after: Int64 = 0
        while true {
            let rows = try await withCheckedContinuation { done in outbox.fetchPending(after: after, limit: 1000) { done.resume(returning: $0) } }.get()
            guard let last = rows.last else { break }
            seqs += rows.map(\.seq)
            after = last.seq
        }
        #expect(seqs.count == stored)
        for seq in seqs { outbox.markDelivered(seq) }
        var accepted = 0
        for i in 0..<(stored / 2) {
            let r = await withCheckedContinuation { done in outbox.append(self.event(100_000 + i)) { done.resume(returning: $0) } }
            if case .success(.stored) = r { accepted += 1 }
        }
        #expect(accepted == stored / 2, "after the deliveries, delivered events make room for new ones")
        #expect(outbox.isWritable)
        // A re-send of an event whose row made room is still recognised.
        let resend = await withCheckedContinuation { done in outbox.append(self.event(0)) { done.resume(returning: $0) } }
        #expect(resend == .success(.duplicate(id: "space-0")))

        // Idle for over a second: the WAL file is truncated (the checkpointer's 1 s idle timer;
        // up to 6 s allowed for a loaded machine, where the timer fires late).
        try await Task.sleep(for: .milliseconds(1600))
        var waited = 0
        while footprint(path).wal != 0, waited < 4400 {
            try await Task.sleep(for: .milliseconds(100))
            waited += 100
        }
        sampling.store(false, ordering: .relaxed)
        while !sampler.isFinished { usleep(1000) }
        let idle = footprint(path)
        #expect(idle.wal == 0, "WAL \(idle.wal) bytes after a second idle")
        let parts = peak.withLock { $0 }
        let worst = parts.0 + parts.1 + parts.2
        #expect(worst <= cap, "peak footprint \(worst) bytes (database, WAL, SHM: \(parts)) over the \(cap)-byte cap")
        #expect(idle.db + idle.wal + idle.shm <= cap)
        print("footprint at a \(cap)-byte cap: peak \(worst), stored \(stored) before the first refusal, idle \(idle)")
        outbox.close()
    }

    /// At the cap, acknowledgements and dead letters still reach the file (the reserve above the
    /// soft cap), and a full outbox recovers once they freed room.
    @Test func deliveriesAndDeadLettersAreRecordedAtTheCap() async throws {
        let path = directory() + "/outbox.sqlite3"
        var outbox = try SQLiteOutbox(path: path, maxBytes: 1 << 20)
        var stored = 0
        for n in 0..<10_000 {
            let r = await withCheckedContinuation { done in outbox.append(self.event(n)) { done.resume(returning: $0) } }
            guard case .success(.stored) = r else { break }
            stored += 1
        }
        #expect(stored > 100 && !outbox.isWritable)
        let rows = try await withCheckedContinuation { done in outbox.fetchPending(after: 0, limit: 100_000) { done.resume(returning: $0) } }.get()
        #expect(rows.count == stored)
        outbox.deadLetter(DeadLetter(seq: rows[0].seq, reason: "refused by the broker", attempts: 5))
        for r in rows.dropFirst() { outbox.markDelivered(r.seq) }
        outbox.close()
        #expect(footprint(path).db + footprint(path).wal + footprint(path).shm <= 1 << 20)

        outbox = try SQLiteOutbox(path: path, maxBytes: 1 << 20)
        defer { outbox.close() }
        let stats = try outbox.stats()
        #expect(stats.pending == 0)
        #expect(stats.deadLetters == 1)
        #expect(stats.delivered == stored - 1)
        let letters = try SQLiteOutbox.deadLetters(path: path)
        #expect(letters.map(\.reason) == ["refused by the broker"])
        // Room again: delivered events give way to new ones; the dead letter stays.
        let again = await withCheckedContinuation { done in outbox.append(self.event(50_000)) { done.resume(returning: $0) } }
        #expect(again == .success(.stored(id: "space-50000")))
        #expect(try SQLiteOutbox.deadLetters(path: path).count == 1)
    }

    /// A dead letter decided while webhooks wait for room keeps its row: the room is made from
    /// delivered events only (the watermark written for that never passes an unwritten dead letter).
    @Test func aDeadLetterDecidedAtTheCapIsNotDeletedToMakeRoom() async throws {
        let path = directory() + "/outbox.sqlite3"
        let outbox = try SQLiteOutbox(path: path, maxBytes: 1 << 20)
        defer { outbox.close() }
        var stored = 0
        for n in 0..<10_000 {
            let r = await withCheckedContinuation { done in outbox.append(self.event(n)) { done.resume(returning: $0) } }
            guard case .success(.stored) = r else { break }
            stored += 1
        }
        let rows = try await withCheckedContinuation { done in outbox.fetchPending(after: 0, limit: 100_000) { done.resume(returning: $0) } }.get()
        #expect(rows.count == stored && stored > 100)
        for r in rows.dropFirst() { outbox.markDelivered(r.seq) }
        // The dead letter and a webhook that needs room, in the same group commit.
        outbox.deadLetter(DeadLetter(seq: rows[0].seq, reason: "poison", attempts: 5))
        let r = await withCheckedContinuation { done in outbox.append(self.event(90_000)) { done.resume(returning: $0) } }
        #expect(r == .success(.stored(id: "space-90000")))
        try await Task.sleep(for: .milliseconds(300))
        let letters = try SQLiteOutbox.deadLetters(path: path)
        #expect(letters.map(\.eventID) == [rows[0].eventID], "the dead letter's event must still be there for replay")
    }

    /// `callrelay replay` obeys the cap too: it stops at the soft cap instead of growing the file.
    @Test func replayStopsAtTheCap() async throws {
        let path = directory() + "/outbox.sqlite3"
        let cap: Int64 = 1 << 20
        var outbox = try SQLiteOutbox(path: path, maxBytes: cap)
        // About 70 % full (a 1 MiB outbox takes ~530 of these events), then all delivered.
        let stored = 370
        for n in 0..<stored {
            let r = await withCheckedContinuation { done in outbox.append(self.event(n)) { done.resume(returning: $0) } }
            #expect(r == .success(.stored(id: "space-\(n)")))
        }
        let rows = try await withCheckedContinuation { done in outbox.fetchPending(after: 0, limit: 100_000) { done.resume(returning: $0) } }.get()
        for r in rows { outbox.markDelivered(r.seq) }
        outbox.close()
        let result = try SQLiteOutbox.replay(path: path, sinceMilliseconds: 0, untilMilliseconds: nil, callID: nil, maxBytes: cap)
        #expect(result.stoppedAtCap)
        #expect(result.copied > 0 && result.copied < stored)
        let f = footprint(path)
        #expect(f.db + f.wal + f.shm <= cap, "\(f)")
        outbox = try SQLiteOutbox(path: path, maxBytes: cap)
        defer { outbox.close() }
        #expect(try outbox.stats().pending == result.copied)
    }
}

