/// How `storage.max_bytes` is split between the database file, its `-wal` and its `-shm`, and
/// when a write may proceed. A value computed once from the cap and the page size; no I/O, so the
/// rules are unit-tested directly.
///
/// The footprint (database + WAL + SHM) never exceeds `maxBytes`:
/// - the database file is held to `hardPages` by SQLite itself (`PRAGMA max_page_count`);
/// - the WAL never holds more than `walLimitBytes`: a batch that would take it past the limit
///   first checkpoints and restarts the WAL (the writer yields for that long), and if a reader
///   keeps the checkpoint from finishing, new webhooks are refused rather than the WAL grown;
/// - the SHM grows 32 KiB per 4096 WAL frames, so a bounded WAL bounds it (`shmBudgetBytes`).
/// Appends stop at `softPages` of live (non-free) pages; acknowledgements and dead letters may use
/// the reserve above it, so a full outbox can always record deliveries and then free room.
package struct SpacePolicy: Sendable, Equatable {
    package let maxBytes: Int64
    package let pageSize: Int64
    /// The WAL's largest allowed size.
    package let walLimitBytes: Int64
    /// Past this many bytes in the WAL the writer checkpoints and restarts it after its commit.
    package let checkpointAtBytes: Int64
    /// Largest payload total one group commit takes (a single larger event still goes alone).
    package let batchBytes: Int64
    package let shmBudgetBytes: Int64
    /// `max_page_count`: the database file's hard limit.
    package let hardPages: Int64
    /// Live pages at which appends are refused.
    package let softPages: Int64
    /// Free filesystem space kept for acknowledgements and checkpoints: appends stop below it.
    package let diskHeadroomBytes: Int64

    /// Bytes one WAL frame takes: a page plus its 24-byte frame header.
    package var frameBytes: Int64 { pageSize + 24 }

    package init(maxBytes: Int64, pageSize: Int64 = 4096) {
        self.maxBytes = maxBytes
        self.pageSize = pageSize
        // An eighth of the cap, between 256 KiB and 32 MiB: small enough to leave the database
        // most of the cap, large enough that a checkpoint writes each hot page once per few
        // thousand commits rather than once per commit.
        let wal = min(max(maxBytes / 8, 256 << 10), 32 << 20)
        walLimitBytes = wal
        checkpointAtBytes = wal / 2
        batchBytes = max(wal / 4, 16 << 10)
        let frames = wal / (pageSize + 24) + 1
        shmBudgetBytes = ((frames + 4095) / 4096) * 32_768 + 32_768
        let dbBytes = max(maxBytes - wal - shmBudgetBytes, 128 * pageSize)
        hardPages = dbBytes / pageSize
        let reserve = max(32, hardPages / 50)
        softPages = max(hardPages - reserve, 16)
        diskHeadroomBytes = min(max(maxBytes / 64, 256 << 10), 16 << 20)
    }

    /// Bytes of a WAL holding `frames` frames (its file may be larger until the next restart,
    /// never larger than `walLimitBytes` after it: `journal_size_limit`).
    package func walBytes(frames: Int64) -> Int64 { frames == 0 ? 0 : 32 + frames * frameBytes }

    /// WAL frames a batch of appends with `payloadBytes` in all may add: its rows, their indexes,
    /// the pages they split, the tail pages every commit rewrites, and one dedupe leaf for each id
    /// without an order (`unordered`: CDRs land on a random leaf of the dedupe index).
    package func estimatedFrames(payloadBytes: Int64, rows: Int, unordered: Int = 0) -> Int64 {
        let rowBytes = payloadBytes + Int64(rows) * 160
        return rowBytes * 5 / 4 / pageSize + 8 + Int64(unordered)
    }

    /// Why appends cannot be taken now (nil: they can), from the live pages of the database and
    /// the free space of its filesystem.
    package func spaceRefusal(livePages: Int64, freeDiskBytes: Int64?) -> String? {
        if livePages >= softPages {
            return "storage.max_bytes (\(maxBytes) bytes) reached with undelivered events"
        }
        if let free = freeDiskBytes, free < diskHeadroomBytes {
            return "disk nearly full: \(free) bytes free, keeping \(diskHeadroomBytes) for deliveries"
        }
        return nil
    }

    /// Whether a batch estimated at `batchFrames` fits in the WAL holding `walFrames`: if not, the
    /// writer checkpoints first (restarting the WAL); if the WAL is empty and it still does not
    /// fit, the batch is split by the caller (`batchBytes` keeps that from happening).
    package func walHasRoom(walFrames: Int64, batchFrames: Int64) -> Bool {
        walBytes(frames: walFrames + batchFrames) <= walLimitBytes
    }

    /// Whether the writer should checkpoint right after a commit that left `walFrames` frames.
    package func shouldCheckpoint(walFrames: Int64) -> Bool { walBytes(frames: walFrames) >= checkpointAtBytes }
}
