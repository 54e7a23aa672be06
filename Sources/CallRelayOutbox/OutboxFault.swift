import Glibc
import Logging
import Synchronization

/// Fail-stop on a damaged outbox or a failing disk, found while running (docs/decisions.md D16).
///
/// What the trusted stores do: PostgreSQL stops (PANIC) on a failed fsync rather than retry it,
/// because the kernel may already have dropped the dirty pages; etcd raises its CORRUPT alarm and
/// refuses writes. The outbox does the same: at the first `SQLITE_CORRUPT`, `SQLITE_NOTADB` or
/// `SQLITE_IOERR_*` of a read or write it
/// 1. refuses every webhook from then on (HTTP 503 with `Retry-After`: PIOPIY retries; nothing
///    more is answered 200 on a file that cannot be trusted) and writes nothing more to the file;
/// 2. leaves a marker beside the file (`<path>.check`, fsynced with its directory);
/// 3. tells its owner (`setFaultHandler`), which stops the process with exit status 74 so that
///    systemd restarts it.
/// At the next start, the marker makes `openRecovering` run `PRAGMA quick_check`: an intact file
/// is kept (the fault was the disk's, passing); a damaged one is set aside and what it still
/// holds pending is salvaged into a fresh outbox (`OutboxSalvage`).
extension SQLiteOutbox {
    /// The marker that asks the next start to check the file.
    static func checkMarkerPath(_ path: String) -> String { path + ".check" }

    /// Registers what to do once the outbox found it cannot be trusted (called once, on the
    /// outbox queue, with the error; must not block).
    package func setFaultHandler(_ handler: @escaping @Sendable (String) -> Void) {
        waiting.withLock { $0.faultHandler = handler }
    }

    /// The storage fault found while running, if any (the outbox refuses everything since).
    package var fault: String? { waiting.withLock { $0.fault } }

    /// Records `error` when it is a storage fault (see the type's comment); true when it was.
    /// Runs on the outbox queue.
    @discardableResult
    func noteFault(_ error: SQLiteError, while activity: String) -> Bool {
        guard error.isStorageFault else { return false }
        let (first, handler) = waiting.withLock { w -> (Bool, (@Sendable (String) -> Void)?) in
            guard w.fault == nil else { return (false, nil) }
            w.fault = "\(activity): \(error.message) (sqlite code \(error.code))"
            return (true, w.faultHandler)
        }
        guard first else { return true }
        metrics.storageFaults.store(1, ordering: .relaxed)
        let marker = Self.checkMarkerPath(path)
        let marked = Self.writeDurably(marker, contents: "\(Self.nowMilliseconds()) \(activity): \(error)\n")
        logger.critical(
            "outbox storage failure: refusing webhooks (HTTP 503) and stopping; the next start checks the file",
            metadata: [
                "path": "\(path)", "while": "\(activity)", "error": "\(error)",
                "check_marker": "\(marked ? marker : "could not be written: \(String(cString: strerror(errno)))")",
            ])
        handler?("\(activity): \(error)")
        return true
    }

    /// Writes a small file and makes it and its name durable. False on any failure (errno set).
    static func writeDurably(_ file: String, contents: String) -> Bool {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        let bytes = Array(contents.utf8)
        let wrote = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
        let synced = wrote && fsync(fd) == 0
        Glibc.close(fd)
        guard synced else { return false }
        let directory = file.lastIndex(of: "/").map { String(file[..<$0]) } ?? "."
        let dfd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { return false }
        defer { Glibc.close(dfd) }
        return fsync(dfd) == 0
    }
}
