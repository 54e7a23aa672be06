import CSQLite
import CallRelayOutbox
import Foundation
import Testing

/// An outbox written by v0.1.0 (schema 1) is migrated in place: pending stays pending, delivered
/// stays delivered, dead letters and dedupe memory are kept.
@Suite struct MigrationTests {
    /// Schema 1 exactly as v0.1.0 created it.
    static let schema1 = """
        PRAGMA journal_mode=WAL;
        PRAGMA auto_vacuum=INCREMENTAL;
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
            received_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
        CREATE TABLE IF NOT EXISTS pending(seq INTEGER PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS delivered(seq INTEGER PRIMARY KEY, delivered_at INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS delivered_at ON delivered(delivered_at);
        CREATE TABLE IF NOT EXISTS dead_letters(
            seq INTEGER PRIMARY KEY,
            reason TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            dead_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS dead_letters_at ON dead_letters(dead_at);
        CREATE TABLE IF NOT EXISTS dedupe_tombstones(
            event_id TEXT PRIMARY KEY,
            delivered_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        PRAGMA user_version = 1;
        COMMIT;
        """

    func exec(_ db: OpaquePointer?, _ sql: String) {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        #expect(rc == SQLITE_OK, "\(err.map { String(cString: $0) } ?? "")")
        sqlite3_free(err)
    }

    /// Seqs 1...8 and 10 (9 was pruned by v0.1.0 while 3 waited); 1, 2 and 4 delivered, 7 a dead
    /// letter, 3, 5, 6, 8, 10 pending; one tombstone.
    func writeVersion1(_ path: String, now: Int64) {
        var db: OpaquePointer?
        #expect(sqlite3_open(path, &db) == SQLITE_OK)
        defer { sqlite3_close(db) }
        exec(db, Self.schema1)
        var sql = "BEGIN;"
        for seq in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] {
            sql += """
                INSERT INTO events(seq, event_id, kind, event, app_id, call_id, topic, payload, received_at)
                VALUES (\(seq), 'e\(seq)', 'live', 'out_started', '1', 'call-\(seq)', 'piopiy/1/live/out_started', X'7B7D', \(now - 600_000 + Int64(seq)));
                """
        }
        sql += """
            DELETE FROM events WHERE seq = 9;
            INSERT INTO delivered VALUES (1, \(now - 300_000)), (2, \(now - 200_000)), (4, \(now - 100_000));
            INSERT INTO pending VALUES (3), (5), (6), (8), (10);
            INSERT INTO dead_letters VALUES (7, 'broker refused', 5, \(now - 50_000));
            INSERT INTO dedupe_tombstones VALUES ('gone-id', \(now - 400_000));
            COMMIT;
            """
        exec(db, sql)
    }

    func append(_ outbox: SQLiteOutbox, id: String, order: Int64 = 0) async -> Result<AppendOutcome, OutboxError> {
        let e = OutboxEvent(
            id: id, dedupeOrder: order, callID: "c", topic: "piopiy/1/live/out_started", kind: "live", body: Array("{}".utf8),
            payload: Array("{}".utf8),
            receivedAtMilliseconds: SQLiteOutbox.nowMilliseconds())
        return await withCheckedContinuation { done in outbox.append(e) { done.resume(returning: $0) } }
    }

    @Test func aVersion1OutboxKeepsEveryStateAndItsDedupeMemory() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("outbox.sqlite3").path
        let now = SQLiteOutbox.nowMilliseconds()
        writeVersion1(path, now: now)

        let outbox = try SQLiteOutbox(path: path)
        let stats = try outbox.stats()
        #expect(stats.pending == 5)
        #expect(stats.delivered == 3)
        #expect(stats.deadLetters == 1)
        #expect(stats.oldestPendingReceivedAtMilliseconds == now - 600_000 + 3)
        let rows = try await withCheckedContinuation { done in outbox.fetchPending(after: 0, limit: 100) { done.resume(returning: $0) } }.get()
        #expect(rows.map(\.eventID) == ["e3", "e5", "e6", "e8", "e10"])
        #expect(rows.map(\.seq) == [3, 5, 6, 8, 10])
        // Schema 1 rows keep the payload v0.1.0 built: published as it is.
        #expect(rows[0].content == .payload(Array("{}".utf8)))

        // Dedupe memory: retained ids, tombstones, and a live event (ordered key) whose id came
        // from schema 1 (stored unordered).
        #expect(await append(outbox, id: "e1") == .success(.duplicate(id: "e1")))
        #expect(await append(outbox, id: "gone-id") == .success(.duplicate(id: "gone-id")))
        #expect(await append(outbox, id: "e5", order: 1_725_942_871_000) == .success(.duplicate(id: "e5")))
        #expect(await append(outbox, id: "new", order: 1_725_942_871_000) == .success(.stored(id: "new")))
        let next = try await withCheckedContinuation { done in outbox.fetchPending(after: 10, limit: 10) { done.resume(returning: $0) } }.get()
        #expect(next.map(\.seq) == [11])

        // Delivering the oldest pending event moves the watermark over the dead letter and the gap.
        for seq: Int64 in [3, 5, 6, 8] { outbox.markDelivered(seq) }
        outbox.close()
        let reopened = try SQLiteOutbox(path: path)
        defer { reopened.close() }
        let after = try reopened.stats()
        #expect(after.pending == 2)  // 10 and 11
        #expect(after.delivered == 7)
        #expect(after.deadLetters == 1)
        let left = try await withCheckedContinuation { done in reopened.fetchPending(after: 0, limit: 100) { done.resume(returning: $0) } }.get()
        #expect(left.map(\.eventID) == ["e10", "new"])
    }

    @Test func aVersion1OutboxWithNothingPendingKeepsItsDeliveredEvents() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("migrate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("outbox.sqlite3").path
        var db: OpaquePointer?
        #expect(sqlite3_open(path, &db) == SQLITE_OK)
        exec(db, Self.schema1)
        let now = SQLiteOutbox.nowMilliseconds()
        exec(
            db,
            """
            INSERT INTO events(seq, event_id, kind, event, app_id, call_id, topic, payload, received_at)
                VALUES (1, 'd1', 'live', 'x', '1', 'c', 't', X'7B7D', \(now - 60_000)), (2, 'd2', 'live', 'x', '1', 'c', 't', X'7B7D', \(now - 50_000));
            INSERT INTO delivered VALUES (1, \(now - 40_000)), (2, \(now - 30_000));
            """)
        sqlite3_close(db)

        let outbox = try SQLiteOutbox(path: path)
        defer { outbox.close() }
        let stats = try outbox.stats()
        #expect(stats.pending == 0)
        #expect(stats.delivered == 2)
        #expect(stats.lastDeliveredAtMilliseconds == now - 30_000)
        #expect(await append(outbox, id: "after") == .success(.stored(id: "after")))
        let rows = try await withCheckedContinuation { done in outbox.fetchPending(after: 0, limit: 10) { done.resume(returning: $0) } }.get()
        #expect(rows.map(\.seq) == [3])
        #expect(await append(outbox, id: "d2") == .success(.duplicate(id: "d2")))
    }
}
