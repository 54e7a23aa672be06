import Synchronization

/// Counters and gauges of the outbox, kept in memory so `/metrics` never queries SQLite on an
/// event loop. Updated on the outbox queue; read from anywhere.
package final class OutboxMetrics: Sendable {
    /// Upper bounds (seconds) of the commit latency histogram buckets; the last bucket is +Inf.
    package static let commitBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

    private let bucketCounts: [Cell]
    private let commitMicrosSum = Atomic<Int>(0)
    package let commits = Atomic<Int>(0)
    package let stored = Atomic<Int>(0)
    package let duplicates = Atomic<Int>(0)
    package let writeFailures = Atomic<Int>(0)
    /// Events in the dead-letter table.
    package let deadLetters = Atomic<Int>(0)
    /// Delivered rows dropped before their retention ended to make room (outbox at its cap).
    package let prunedForSpace = Atomic<Int>(0)
    /// Events stored and not yet acknowledged by the broker (exact: set at open, then counted).
    package let pending = Atomic<Int>(0)
    /// `received_at` (ms) of the oldest pending event, 0 when none; refreshed every few seconds.
    package let oldestPendingReceivedAtMilliseconds = Atomic<Int64>(0)
    /// Events handed to the delivery pump from memory (just committed) and read back from the file.
    package let fetchedFromMemory = Atomic<Int>(0)
    package let fetchedFromDisk = Atomic<Int>(0)
    /// Checkpoints the writer ran to restart the WAL, their total time, and those a reader blocked.
    package let checkpoints = Atomic<Int>(0)
    package let checkpointMicros = Atomic<Int>(0)
    package let checkpointsBusy = Atomic<Int>(0)
    /// Bytes in the WAL after the last commit (its frames; the file is truncated when idle).
    package let walBytes = Atomic<Int>(0)
    /// WAL frames (page + 24-byte header) the writer's commits wrote: what the outbox writes to
    /// disk besides the checkpoints that copy them into the database file.
    package let walFramesWritten = Atomic<Int>(0)
    /// 1 once a storage fault was found while running (the agent then stops; see `OutboxFault`).
    package let storageFaults = Atomic<Int>(0)
    /// What this start did with a damaged outbox (nil: it opened the file as it was).
    package let recovery = Mutex<OutboxRecovery?>(nil)

    package init() {
        bucketCounts = (0...Self.commitBuckets.count).map { _ in Cell() }
    }

    func recordCommit(seconds: Double) {
        let index = Self.commitBuckets.firstIndex { seconds <= $0 } ?? Self.commitBuckets.count
        bucketCounts[index].value.add(1, ordering: .relaxed)
        commitMicrosSum.add(Int(seconds * 1_000_000), ordering: .relaxed)
        commits.add(1, ordering: .relaxed)
    }

    /// Cumulative bucket counts (Prometheus `le` semantics), the sum in seconds, and the count.
    package func commitHistogram() -> (buckets: [(le: Double, count: Int)], sum: Double, count: Int) {
        var running = 0
        var buckets: [(Double, Int)] = []
        for (i, bound) in (Self.commitBuckets + [Double.infinity]).enumerated() {
            running += bucketCounts[i].value.load(ordering: .relaxed)
            buckets.append((bound, running))
        }
        return (buckets, Double(commitMicrosSum.load(ordering: .relaxed)) / 1_000_000, commits.load(ordering: .relaxed))
    }
}

private final class Cell: Sendable {
    let value = Atomic<Int>(0)
}
