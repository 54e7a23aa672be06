import CSQLite

/// A SQLite error with the library's result code and message.
package struct SQLiteError: Error, Sendable, CustomStringConvertible {
    package let code: Int32
    package let message: String
    package let context: String

    package init(code: Int32, message: String, context: String) {
        self.code = code
        self.message = message
        self.context = context
    }

    /// The primary result code (extended codes carry more bits).
    package var primaryCode: Int32 { code & 0xff }
    /// The disk or the outbox cap (`max_page_count`) is full.
    package var isFull: Bool { primaryCode == SQLITE_FULL }
    /// The file is not a database or is damaged.
    package var isCorrupt: Bool { primaryCode == SQLITE_CORRUPT || primaryCode == SQLITE_NOTADB }
    /// The file is damaged or the disk failed a read, write or fsync (`SQLITE_IOERR_*`, but not
    /// its out-of-memory code): retrying on the same file cannot be trusted (after a failed
    /// fsync the kernel may have dropped the dirty pages and report the next fsync clean).
    package var isStorageFault: Bool {
        let ioerrNoMemory = SQLITE_IOERR | (12 << 8)  // SQLITE_IOERR_NOMEM
        return isCorrupt || (primaryCode == SQLITE_IOERR && code != ioerrNoMemory)
    }

    package var description: String { "\(context): \(message) (sqlite code \(code))" }
}

/// One SQLite connection. Every `sqlite3_*` call of callrelay goes through this file.
///
/// Not thread-safe by itself: the outbox confines a connection to one serial queue. Opened with
/// `SQLITE_OPEN_NOMUTEX` for that reason.
package final class SQLiteDatabase {
    private let handle: OpaquePointer
    private let wal = WALCounter()

    package enum Mode: Sendable {
        case readOnly
        /// Read and write an existing file; never create one.
        case readWrite
        case readWriteCreate
    }

    package init(path: String, mode: Mode = .readWriteCreate) throws(SQLiteError) {
        var db: OpaquePointer?
        let access: Int32 = switch mode {
        case .readOnly: SQLITE_OPEN_READONLY
        case .readWrite: SQLITE_OPEN_READWRITE
        case .readWriteCreate: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        }
        let flags = access | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: message, context: "open \(path)")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        // Counts the WAL's frames after each commit of this connection. (Replaces SQLite's own
        // auto-checkpoint hook: the outbox checkpoints by itself, see `SpacePolicy`.)
        sqlite3_wal_hook(
            db,
            { context, _, _, frames in
                Unmanaged<WALCounter>.fromOpaque(context!).takeUnretainedValue().committed(frames: Int64(frames))
                return SQLITE_OK
            }, Unmanaged.passUnretained(wal).toOpaque())
    }

    /// Frames in the WAL after this connection's last commit (0 after a checkpoint that let the
    /// next commit restart the WAL).
    package var walFrames: Int64 { wal.frames }
    /// WAL frames this connection's commits wrote since it was opened (a page and its header each).
    package var walFramesWritten: Int64 { wal.written }

    package enum CheckpointMode: Sendable {
        case passive, restart, truncate
    }

    /// Runs a checkpoint of the main database. Returns true when every frame was copied and (for
    /// restart and truncate) the next commit starts the WAL from its beginning; false when a
    /// reader or another checkpointer kept it from completing.
    @discardableResult
    package func checkpoint(_ mode: CheckpointMode) -> Bool {
        let m: Int32 = switch mode {
        case .passive: SQLITE_CHECKPOINT_PASSIVE
        case .restart: SQLITE_CHECKPOINT_RESTART
        case .truncate: SQLITE_CHECKPOINT_TRUNCATE
        }
        var log: Int32 = 0
        var done: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, m, &log, &done)
        guard rc == SQLITE_OK, log == done || log <= 0 else { return false }
        if mode != .passive { wal.frames = 0 }
        return true
    }

    /// `PRAGMA page_count` and `PRAGMA freelist_count`: the file's pages, and those free for reuse.
    package func pageCounts() throws(SQLiteError) -> (total: Int64, free: Int64) {
        (try scalarInt("PRAGMA page_count") ?? 0, try scalarInt("PRAGMA freelist_count") ?? 0)
    }

    deinit { sqlite3_close_v2(handle) }

    package func execute(_ sql: String) throws(SQLiteError) {
        var errmsg: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errmsg)
        if rc != SQLITE_OK {
            let message = errmsg.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(errmsg)
            throw SQLiteError(code: rc, message: message, context: sql)
        }
    }

    package func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql) }
        return SQLiteStatement(handle: stmt, database: self, sql: sql)
    }

    /// Runs a statement that returns one integer (e.g. a PRAGMA), or nil when it returns no row
    /// or NULL (`max()` of an empty table).
    package func scalarInt(_ sql: String) throws(SQLiteError) -> Int64? {
        let stmt = try prepare(sql)
        guard try stmt.step(), !stmt.isNull(0) else { return nil }
        return stmt.int64(0)
    }

    package func scalarText(_ sql: String) throws(SQLiteError) -> String? {
        let stmt = try prepare(sql)
        guard try stmt.step() else { return nil }
        return stmt.text(0)
    }

    package var changes: Int { Int(sqlite3_changes(handle)) }

    func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), context: context)
    }
}

private final class WALCounter {
    var frames: Int64 = 0
    var written: Int64 = 0

    func committed(frames now: Int64) {
        // After a restart the WAL starts again from frame 0.
        written += now >= frames ? now - frames : now
        frames = now
    }
}

/// A prepared statement, reset and reused (statements are prepared once per connection).
package final class SQLiteStatement {
    private let handle: OpaquePointer
    private let database: SQLiteDatabase
    private let sql: String

    init(handle: OpaquePointer, database: SQLiteDatabase, sql: String) {
        self.handle = handle
        self.database = database
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    package func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    package func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(handle, index, value) }
    package func bindNull(_ index: Int32) { sqlite3_bind_null(handle, index) }
    package func bind(_ index: Int32, _ value: String) {
        sqlite3_bind_text(handle, index, value, -1, csqlite_transient)
    }
    package func bind(_ index: Int32, _ value: String?) {
        if let value { bind(index, value) } else { bindNull(index) }
    }
    package func bind(_ index: Int32, blob: [UInt8]) {
        // An empty array has no base address, which SQLite would bind as NULL.
        if blob.isEmpty {
            sqlite3_bind_zeroblob(handle, index, 0)
            return
        }
        blob.withUnsafeBytes { buffer in
            _ = sqlite3_bind_blob(handle, index, buffer.baseAddress, Int32(buffer.count), csqlite_transient)
        }
    }

    /// Steps once. Returns true when a row is available, false when done.
    @discardableResult
    package func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let err = database.error(rc, sql)
            sqlite3_reset(handle)
            throw err
        }
    }

    /// Runs a statement that returns no rows, then resets it.
    package func run() throws(SQLiteError) {
        defer { reset() }
        try step()
    }

    package func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    package func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    package func text(_ column: Int32) -> String {
        guard let p = sqlite3_column_text(handle, column) else { return "" }
        return String(cString: p)
    }
    package func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let p = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }
}
