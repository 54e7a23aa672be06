import CSQLite
import Glibc
import Logging
import Synchronization

extension SQLiteOutbox {
    /// Dedupe floor: even under space pressure, delivered rows younger than this are kept, so a
    /// CDR re-sent by PIOPIY (up to ~30 minutes after the first delivery) is still recognised.
    static let dedupeFloorMilliseconds: Int64 = 3_600_000

    /// Opens the database and brings its schema up to date. A file that is not a database, is
    /// damaged, or cannot be opened is renamed aside (`<path>.corrupt-<UTC time>`, with its
    /// `-wal`/`-shm`) and a fresh outbox is created, so the agent starts instead of crash-looping.
    /// The renamed file keeps whatever it held for forensics.
    static func openRecovering(path: String, logger: Logger) throws(SQLiteError) -> SQLiteDatabase {
        do {
            return try openAndMigrate(path: path)
        } catch where error.isCorrupt || (error.primaryCode == SQLITE_CANTOPEN && access(path, F_OK) == 0) {
            let aside = "\(path).corrupt-\(compactUTC(nowMilliseconds()))"
            guard rename(path, aside) == 0 else {
                throw SQLiteError(
                    code: error.code, message: "\(error.message); renaming it aside failed: \(String(cString: strerror(errno)))",
                    context: "open \(path)")
            }
            for suffix in ["-wal", "-shm"] where access(path + suffix, F_OK) == 0 {
                _ = rename(path + suffix, aside + suffix)
            }
            logger.error(
                "outbox unreadable; moved aside and starting with an empty outbox",
                metadata: ["path": "\(path)", "moved_to": "\(aside)", "error": "\(error)"])
            return try openAndMigrate(path: path)
        }
    }

    private static func openAndMigrate(path: String) throws(SQLiteError) -> SQLiteDatabase {
        let db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA busy_timeout=5000")
        // Debian builds SQLite with SECURE_DELETE, which writes every freed page again (zeros):
        // twice the I/O for pruning, and the WAL growth a nearly full disk cannot afford.
        try db.execute("PRAGMA secure_delete=OFF")
        // The first read of the header: a non-database file fails here with SQLITE_NOTADB.
        _ = try db.scalarText("PRAGMA journal_mode=WAL")
        if try db.scalarInt("PRAGMA user_version") == 0 {
            // Before the first table: lets `makeRoom` give freed pages back to the filesystem.
            try db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        }
        try migrate(db)
        // Reads the schema and the first pages: damaged files usually fail here.
        _ = try db.scalarInt("SELECT count(*) FROM (SELECT seq FROM events ORDER BY seq DESC LIMIT 1)")
        return db
    }

    /// Schema versions, keyed by `PRAGMA user_version`.
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
                    received_at INTEGER NOT NULL
                );
                -- No index on call_id: random keys cost a page write per event; `replay --call`
                -- filters inside its time window (events_received) instead.
                CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
                -- Delivery state lives in small tables: events rows are never updated (an UPDATE
                -- rewrites a row's overflow pages, which a nearly full disk cannot afford).
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
                """)
        }
    }

    /// Called on the outbox queue when a write hit the size cap. Frees space by deleting delivered
    /// events, oldest delivery first, up to 10,000:
    /// 1. those past the dedupe floor (1 h), which nothing needs any more;
    /// 2. else younger ones too, leaving a small tombstone (event id + time) for each so a CDR
    ///    re-send within the floor is still recognised as a duplicate.
    /// Pending events are never touched. Returns how many events were deleted.
    func makeRoom(_ conn: Connection) -> Int {
        let floor = Self.nowMilliseconds() - Self.dedupeFloorMilliseconds
        do throws(SQLiteError) {
            try conn.db.execute(
                """
                BEGIN IMMEDIATE;
                CREATE TEMP TABLE IF NOT EXISTS make_room(seq INTEGER PRIMARY KEY, event_id TEXT, delivered_at INTEGER);
                DELETE FROM make_room;
                INSERT INTO make_room SELECT seq, NULL, delivered_at FROM delivered
                    WHERE delivered_at < \(floor) ORDER BY delivered_at LIMIT 10000;
                DELETE FROM events WHERE seq IN (SELECT seq FROM make_room);
                DELETE FROM delivered WHERE seq IN (SELECT seq FROM make_room);
                COMMIT;
                """)
            var deleted = try conn.db.scalarInt("SELECT count(*) FROM make_room").map(Int.init) ?? 0
            if deleted == 0 {
                try conn.db.execute(
                    """
                    BEGIN IMMEDIATE;
                    CREATE TEMP TABLE IF NOT EXISTS make_room(seq INTEGER PRIMARY KEY, event_id TEXT, delivered_at INTEGER);
                    DELETE FROM make_room;
                    INSERT INTO make_room
                        SELECT d.seq, e.event_id, d.delivered_at FROM delivered d JOIN events e ON e.seq = d.seq
                        ORDER BY d.delivered_at LIMIT 10000;
                    DELETE FROM events WHERE seq IN (SELECT seq FROM make_room);
                    DELETE FROM delivered WHERE seq IN (SELECT seq FROM make_room);
                    INSERT OR IGNORE INTO dedupe_tombstones(event_id, delivered_at) SELECT event_id, delivered_at FROM make_room;
                    COMMIT;
                    """)
                deleted = try conn.db.scalarInt("SELECT count(*) FROM make_room").map(Int.init) ?? 0
            }
            if deleted > 0 {
                // Give the freed pages back to the filesystem (a full disk needs it), and shrink the WAL.
                try? conn.db.execute("PRAGMA incremental_vacuum")
                _ = try? conn.db.scalarText("PRAGMA wal_checkpoint(TRUNCATE)")
                metrics.prunedForSpace.add(deleted, ordering: .relaxed)
                logger.warning(
                    "outbox at storage.max_bytes: dropped delivered events before their retention ended",
                    metadata: ["count": "\(deleted)"])
            }
            return deleted
        } catch {
            try? conn.db.execute("ROLLBACK")
            logger.error("making room in the outbox failed", metadata: ["error": "\(error)"])
            return 0
        }
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
