import CSQLite
import Glibc
import Logging

/// Opening the outbox file: recovery from an unreadable file, and the schema with its migrations.
extension SQLiteOutbox {
    /// Dedupe floor: even under space pressure, the ids of events received within this are kept,
    /// so a CDR re-sent by PIOPIY (up to ~30 minutes after the first delivery) is still recognised.
    static let dedupeFloorMilliseconds: Int64 = 3_600_000

    /// The schema this build writes (`PRAGMA user_version`).
    static let schemaVersion: Int64 = 2

    /// Opens the database and brings its schema up to date. A file that is not a database, is
    /// damaged, or cannot be opened is renamed aside (`<path>.corrupt-<UTC time>`, with its
    /// `-wal`/`-shm`), a fresh outbox is created, and the pending events still readable in the
    /// damaged file are stored again in it (`salvage`), so the agent starts instead of
    /// crash-looping and strands as little as the damage allows. The renamed file keeps whatever
    /// it held, for forensics.
    ///
    /// After a storage fault found while running (`OutboxFault`: the `.check` marker), the file
    /// is checked first (`PRAGMA quick_check`, about a second per 100 MB) and kept when intact.
    static func openRecovering(path: String, logger: Logger) throws(SQLiteError) -> (SQLiteDatabase, OutboxRecovery?) {
        let marker = checkMarkerPath(path)
        let checkRequested = access(marker, F_OK) == 0
        let problem: SQLiteError
        do {
            let db = try openAndMigrate(path: path, logger: logger)
            guard checkRequested else { return (db, nil) }
            let started = monotonicSeconds()
            guard let finding = try quickCheck(db) else {
                unlink(marker)
                logger.notice(
                    "outbox checked after a storage failure: intact, kept",
                    metadata: ["path": "\(path)", "seconds": "\(Int((monotonicSeconds() - started) * 1000)) ms"])
                return (db, nil)
            }
            problem = SQLiteError(code: SQLITE_CORRUPT, message: finding, context: "PRAGMA quick_check of \(path)")
        } catch where error.isCorrupt || (error.primaryCode == SQLITE_CANTOPEN && access(path, F_OK) == 0)
            || (checkRequested && error.isStorageFault)
        {
            problem = error
        }
        let aside = "\(path).corrupt-\(compactUTC(nowMilliseconds()))"
        guard rename(path, aside) == 0 else {
            throw SQLiteError(
                code: problem.code, message: "\(problem.message); renaming it aside failed: \(String(cString: strerror(errno)))",
                context: "open \(path)")
        }
        for suffix in ["-wal", "-shm"] where access(path + suffix, F_OK) == 0 {
            _ = rename(path + suffix, aside + suffix)
        }
        let fresh = try openAndMigrate(path: path, logger: logger)
        let recovery = try salvage(from: aside, into: fresh, reason: "\(problem)", logger: logger)
        unlink(marker)
        logger.error(
            "outbox unreadable; moved aside, its readable pending events stored again in a fresh outbox",
            metadata: [
                "path": "\(path)", "moved_to": "\(aside)", "error": "\(problem)", "salvaged": "\(recovery.salvaged)",
                "unreadable": "\(recovery.unreadable.map(String.init) ?? "unknown")", "dedupe_ids": "\(recovery.dedupeIDs)",
                "dead_letters_left": "\(recovery.deadLettersLeft)",
            ])
        return (fresh, recovery)
    }

    /// `PRAGMA quick_check`: nil when the file is intact, else its first findings.
    private static func quickCheck(_ db: SQLiteDatabase) throws(SQLiteError) -> String? {
        let check = try db.prepare("PRAGMA quick_check(5)")
        var findings: [String] = []
        while try check.step() { findings.append(check.text(0)) }
        return findings == ["ok"] ? nil : findings.joined(separator: "; ")
    }

    private static func openAndMigrate(path: String, logger: Logger) throws(SQLiteError) -> SQLiteDatabase {
        let db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA busy_timeout=5000")
        // Debian builds SQLite with SECURE_DELETE, which writes every freed page again (zeros):
        // twice the I/O for pruning, and the WAL growth a nearly full disk cannot afford.
        try db.execute("PRAGMA secure_delete=OFF")
        // The first read of the header: a non-database file fails here with SQLITE_NOTADB.
        _ = try db.scalarText("PRAGMA journal_mode=WAL")
        try migrate(db, logger: logger)
        // The companion's keyed state (the call state): a table older builds ignore.
        try db.execute("CREATE TABLE IF NOT EXISTS companion_state(slot INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        // The last seq the records cover (no row: they cover every stored row, as builds before
        // snapshots wrote them in every commit).
        try db.execute("CREATE TABLE IF NOT EXISTS companion_meta(id INTEGER PRIMARY KEY CHECK (id = 1), through_seq INTEGER NOT NULL)")
        // Reads the schema and the first pages: damaged files usually fail here.
        _ = try db.scalarInt("SELECT count(*) FROM (SELECT seq FROM events ORDER BY seq DESC LIMIT 1)")
        return db
    }

    /// Schema versions, keyed by `PRAGMA user_version`. Version 1 is what v0.1.0 wrote.
    ///
    /// Version 2 (see docs/storage.md for where each byte goes):
    /// - `events`: written once, never updated; `seq` is assigned by the writer (one above both
    ///   the highest row and the delivered watermark), with no index but the rowid. `data` is the
    ///   webhook body as received, `kind` (`cdr`/`live`) says how to build its payload; rows from
    ///   schema 1 keep their published payload in `data`, with `kind` NULL.
    /// - `dedupe`: one small row per event id, keyed by (`ord`, `id`) where `ord` is the live
    ///   event's own `time` (0 for CDRs), so the index grows at its right edge.
    /// - Delivery state is a watermark: `delivery_marks` holds one row per minute in which it moved
    ///   (all seqs up to `seq_hi` settled by `delivered_at`, `delivered` of them delivered in that
    ///   minute rather than dead-lettered); the newest row's `seq_hi` is the watermark.
    ///   `acked_above` holds the few acknowledged out of order when the agent stopped (and, with
    ///   `delivered` 0, seqs that have no row);
    ///   `dead_letters` as before.
    static func migrate(_ db: SQLiteDatabase, logger: Logger) throws(SQLiteError) {
        var version = try db.scalarInt("PRAGMA user_version") ?? 0
        if version >= schemaVersion && version != movingFromVersion1 { return }
        if version == 0 {
            try transaction(db) { () throws(SQLiteError) in
                try db.execute(createVersion2)
                try db.execute("PRAGMA user_version = \(schemaVersion)")
            }
            return
        }
        let started = monotonicSeconds()
        if version == 1 {
            try transaction(db) { () throws(SQLiteError) in try beginMigrationFromVersion1(db, logger: logger) }
            version = movingFromVersion1
        }
        // Rows move in chunks, each its own transaction with a checkpoint after it: the WAL stays
        // small and freed pages of the old table take the new rows, so the file barely grows. A
        // migration stopped half-way (power cut) resumes here at the next start.
        var moved = 0
        while true {
            var n = 0
            try transaction(db) { () throws(SQLiteError) in
                try db.execute(
                    """
                    CREATE TEMP TABLE IF NOT EXISTS moving(seq INTEGER PRIMARY KEY);
                    DELETE FROM moving;
                    INSERT INTO moving SELECT seq FROM events_v1 ORDER BY seq LIMIT 2000;
                    INSERT OR IGNORE INTO events(seq, event_id, call_id, topic, kind, data, received_at)
                        SELECT seq, event_id, call_id, topic, NULL, payload, received_at FROM events_v1 WHERE seq IN (SELECT seq FROM moving);
                    INSERT OR IGNORE INTO dedupe(ord, id, seen_at)
                        SELECT 0, event_id, received_at FROM events_v1
                        WHERE seq IN (SELECT seq FROM moving) AND instr(event_id, '#replay-') = 0;
                    DELETE FROM events_v1 WHERE seq IN (SELECT seq FROM moving);
                    """)
                n = db.changes
                if n == 0 {
                    try db.execute("DROP TABLE events_v1; PRAGMA user_version = \(schemaVersion)")
                }
            }
            db.checkpoint(.restart)
            moved += n
            if n == 0 { break }
        }
        db.checkpoint(.truncate)
        logger.notice(
            "outbox migrated from schema 1 to 2", metadata: ["events": "\(moved)", "seconds": "\(monotonicSeconds() - started)"])
    }

    /// `user_version` while schema 1's events move to the new table.
    static let movingFromVersion1: Int64 = 101

    static func transaction(_ db: SQLiteDatabase, _ body: () throws(SQLiteError) -> Void) throws(SQLiteError) {
        try db.execute("BEGIN IMMEDIATE")
        do throws(SQLiteError) {
            try body()
            try db.execute("COMMIT")
        } catch {
            try? db.execute("ROLLBACK")
            throw error
        }
    }

    private static let createVersion2 = """
        CREATE TABLE events(
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            call_id TEXT,
            topic TEXT NOT NULL,
            kind TEXT,
            data BLOB NOT NULL,
            received_at INTEGER NOT NULL
        );
        CREATE TABLE dedupe(
            ord INTEGER NOT NULL,
            id TEXT NOT NULL,
            seen_at INTEGER NOT NULL,
            PRIMARY KEY(ord, id)
        ) WITHOUT ROWID;
        CREATE TABLE delivery_marks(
            minute INTEGER PRIMARY KEY,
            seq_hi INTEGER NOT NULL,
            delivered_at INTEGER NOT NULL,
            delivered INTEGER NOT NULL
        );
        CREATE TABLE acked_above(seq INTEGER PRIMARY KEY, delivered INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE IF NOT EXISTS dead_letters(
            seq INTEGER PRIMARY KEY,
            reason TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            dead_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS dead_letters_at ON dead_letters(dead_at);
        """

    /// v0.1.0's outbox → version 2, first step (one transaction): the delivery state moves to the
    /// watermark tables (pending events stay pending, delivered ones delivered with their delivery
    /// times), dead letters and tombstones are kept, and the old events table is renamed so its
    /// rows can move in chunks (`migrate`).
    private static func beginMigrationFromVersion1(_ db: SQLiteDatabase, logger: Logger) throws(SQLiteError) {
        try db.execute(
            """
            ALTER TABLE events RENAME TO events_v1;
            DROP INDEX IF EXISTS events_received;
            """)
        try db.execute(createVersion2)
        // The watermark: everything below the oldest pending event is settled (delivered or dead).
        let maxSeq = try db.scalarInt("SELECT max(seq) FROM events_v1") ?? 0
        let watermark = try db.scalarInt("SELECT min(seq) - 1 FROM pending").flatMap { $0 } ?? maxSeq
        let now = nowMilliseconds()
        try db.execute(
            """
            INSERT OR IGNORE INTO dedupe(ord, id, seen_at) SELECT 0, event_id, delivered_at FROM dedupe_tombstones;
            INSERT INTO delivery_marks(minute, seq_hi, delivered_at, delivered)
                SELECT \(now / 60000), \(watermark), coalesce((SELECT max(delivered_at) FROM delivered), \(now)),
                    (SELECT count(*) FROM delivered WHERE seq <= \(watermark))
                WHERE \(watermark) > 0;
            INSERT INTO acked_above(seq) SELECT seq FROM delivered WHERE seq > \(watermark);
            """)
        // Seqs above the watermark with no row (pruned by v0.1.0 while an older event waited) count
        // as settled, so that everything above the watermark is a pending row or in `acked_above`.
        let rows = try db.prepare("SELECT seq FROM events_v1 WHERE seq > ?1 ORDER BY seq")
        rows.bind(1, watermark)
        let gap = try db.prepare("INSERT OR IGNORE INTO acked_above(seq, delivered) VALUES (?1, 0)")
        var expected = watermark + 1
        while try rows.step() {
            let seq = rows.int64(0)
            while expected < seq {
                gap.bind(1, expected)
                try gap.run()
                expected += 1
            }
            expected = seq + 1
        }
        rows.reset()
        try db.execute(
            """
            DROP TABLE pending;
            DROP TABLE delivered;
            DROP TABLE dedupe_tombstones;
            PRAGMA user_version = \(movingFromVersion1);
            """)
        logger.notice("migrating the outbox from schema 1 to 2", metadata: ["events": "\(maxSeq)", "watermark": "\(watermark)"])
    }
}

/// `20240910T043431Z` for file names.
func compactUTC(_ milliseconds: Int64) -> String {
    var seconds = time_t(milliseconds / 1000)
    var tm = tm()
    gmtime_r(&seconds, &tm)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(tm.tm_year + 1900)\(two(tm.tm_mon + 1))\(two(tm.tm_mday))T\(two(tm.tm_hour))\(two(tm.tm_min))\(two(tm.tm_sec))Z"
}
