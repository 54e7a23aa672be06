/// Which stored events have left the queue, as a value: every `seq` at or below `watermark`, plus
/// the few above it in `settledAbove` (acknowledged out of order, dead-lettered, or seqs that do not
/// exist). No I/O: the outbox persists what `takeCommit` returns, one small row per commit,
/// instead of rewriting a `pending` and a `delivered` row per event.
///
/// Invariant the outbox keeps: every seq in `(watermark, lastSeq]` is either a stored event
/// waiting for delivery or in `settledAbove` (rows above the watermark are never deleted).
struct DeliveryLedger: Equatable {
    private(set) var watermark: Int64
    /// Settled seqs above the watermark; the value says whether it counts as delivered (false: a
    /// dead letter, or a seq with no event).
    private(set) var settledAbove: [Int64: Bool]
    /// The watermark as last persisted, and the delivered events passed since then.
    private(set) var committedWatermark: Int64
    private(set) var deliveredSinceCommit = 0

    init(watermark: Int64, settledAbove: [Int64: Bool] = [:]) {
        self.watermark = watermark
        self.settledAbove = settledAbove
        self.committedWatermark = watermark
        advance()
        // Whatever the start moved over was settled before: nothing new to persist for it, except
        // the moved watermark itself.
        deliveredSinceCommit = 0
    }

    func isSettled(_ seq: Int64) -> Bool { seq <= watermark || settledAbove[seq] != nil }

    /// Records that `seq` left the queue (`delivered`: acknowledged, else dead-lettered). Returns
    /// false when it was settled already (a repeated acknowledgement).
    @discardableResult
    mutating func settle(_ seq: Int64, delivered: Bool) -> Bool {
        guard !isSettled(seq) else { return false }
        settledAbove[seq] = delivered
        advance()
        return true
    }

    private mutating func advance() {
        while let delivered = settledAbove.removeValue(forKey: watermark + 1) {
            watermark += 1
            if delivered { deliveredSinceCommit += 1 }
        }
    }

    /// Events waiting for delivery when the newest stored seq is `lastSeq`.
    func pending(lastSeq: Int64) -> Int {
        guard lastSeq > watermark else { return 0 }
        let above = settledAbove.isEmpty ? 0 : settledAbove.keys.reduce(0) { $1 <= lastSeq ? $0 + 1 : $0 }
        return Int(lastSeq - watermark) - above
    }

    /// The lowest unsettled seq at or below `lastSeq`, if any.
    func firstPending(lastSeq: Int64) -> Int64? {
        var seq = watermark + 1
        while seq <= lastSeq {
            if settledAbove[seq] == nil { return seq }
            seq += 1
        }
        return nil
    }

    /// What the next commit must persist: the new watermark and how many delivered events it
    /// passed since the last commit; nil when the watermark did not move.
    func pendingCommit() -> (watermark: Int64, delivered: Int)? {
        watermark > committedWatermark ? (watermark, deliveredSinceCommit) : nil
    }

    /// The commit that persisted `pendingCommit()` succeeded.
    mutating func committed(_ persisted: (watermark: Int64, delivered: Int)) {
        committedWatermark = persisted.watermark
        deliveredSinceCommit -= persisted.delivered
    }

    /// Acknowledged seqs above the watermark (persisted at close so they are not published again).
    var acknowledgedAbove: [Int64] { settledAbove.filter(\.value).keys.sorted() }
}
