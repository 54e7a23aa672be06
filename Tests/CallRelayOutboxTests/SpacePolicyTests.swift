import CallRelayOutbox
import Testing

@Suite struct SpacePolicyTests {
    @Test(arguments: [Int64(1) << 20, 8 << 20, 64 << 20, 1 << 30, 16 << 30])
    func theBudgetsAddUpToTheCap(maxBytes: Int64) {
        let p = SpacePolicy(maxBytes: maxBytes)
        #expect(p.hardPages * p.pageSize + p.walLimitBytes + p.shmBudgetBytes <= maxBytes)
        #expect(p.softPages < p.hardPages)
        #expect(p.checkpointAtBytes < p.walLimitBytes)
        #expect(p.walLimitBytes >= 256 << 10 && p.walLimitBytes <= 32 << 20)
        // After a restart, the largest batch fits in the WAL (so the writer never has to refuse
        // a batch for the WAL alone, only wait for a checkpoint).
        #expect(p.walHasRoom(walFrames: 0, batchFrames: p.estimatedFrames(payloadBytes: p.batchBytes, rows: 512)))
        // The SHM: 32 KiB per 4096 frames, plus its header block.
        #expect(p.shmBudgetBytes >= (p.walLimitBytes / p.frameBytes / 4096 + 1) * 32_768)
    }

    @Test func appendsStopAtTheSoftCapAndAtTheDiskHeadroom() {
        let p = SpacePolicy(maxBytes: 64 << 20)
        #expect(p.spaceRefusal(livePages: p.softPages - 1, freeDiskBytes: 1 << 40) == nil)
        #expect(p.spaceRefusal(livePages: p.softPages, freeDiskBytes: 1 << 40)?.contains("storage.max_bytes") == true)
        #expect(p.spaceRefusal(livePages: 10, freeDiskBytes: p.diskHeadroomBytes - 1)?.contains("disk nearly full") == true)
        #expect(p.spaceRefusal(livePages: 10, freeDiskBytes: nil) == nil)
    }

    @Test func theWALIsCheckpointedBeforeItWouldPassItsLimit() {
        let p = SpacePolicy(maxBytes: 64 << 20)
        let limitFrames = p.walLimitBytes / p.frameBytes
        #expect(p.walHasRoom(walFrames: 0, batchFrames: 10))
        #expect(!p.walHasRoom(walFrames: limitFrames - 5, batchFrames: 10))
        #expect(!p.shouldCheckpoint(walFrames: 1))
        #expect(p.shouldCheckpoint(walFrames: p.checkpointAtBytes / p.frameBytes + 1))
        #expect(p.walBytes(frames: 0) == 0)
    }
}
