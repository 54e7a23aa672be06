import Dispatch
import Synchronization

/// Copies committed WAL frames into the database file from its own connection and queue, so most
/// of a checkpoint's work overlaps the writer's commits (PASSIVE: it never blocks the writer).
/// The writer still restarts the WAL itself once it is half full (`SpacePolicy`): a passive
/// checkpoint alone can be starved by a writer that never pauses.
final class WALCheckpointer: Sendable {
    private struct State: @unchecked Sendable {
        // The connection is confined to `queue`.
        var db: SQLiteDatabase?
        var running = false
    }

    private let queue = DispatchQueue(label: "callrelay.outbox.checkpoint")
    private let state: Mutex<State>

    init(path: String) throws(SQLiteError) {
        let db = try SQLiteDatabase(path: path, mode: .readWrite)
        try db.execute("PRAGMA busy_timeout=0")
        state = Mutex(State(db: db))
    }

    /// Starts one passive checkpoint unless one is running.
    func copyInBackground() {
        let start = state.withLock { s -> Bool in
            guard s.db != nil, !s.running else { return false }
            s.running = true
            return true
        }
        guard start else { return }
        queue.async {
            let db = self.state.withLock { $0.db }
            db?.checkpoint(.passive)
            self.state.withLock { $0.running = false }
        }
    }

    /// Waits until no background checkpoint runs. Always true (a condition to chain on).
    @discardableResult
    func waitUntilIdle() -> Bool {
        queue.sync {}
        return true
    }

    func close() {
        queue.sync { state.withLock { $0.db = nil } }
    }
}
