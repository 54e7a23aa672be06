@testable import CallRelayOutbox
import Testing

/// The watermark and its exceptions, step by step (no file).
@Suite struct DeliveryLedgerTests {
    @Test func inOrderAcknowledgementsMoveTheWatermarkAndCountDeliveries() {
        var l = DeliveryLedger(watermark: 10)
        #expect(l.pending(lastSeq: 15) == 5)
        #expect(l.pendingCommit() == nil)
        do { let r = l.settle(11, delivered: true); #expect(r) }
        do { let r = l.settle(12, delivered: true); #expect(r) }
        #expect(l.watermark == 12)
        #expect(l.settledAbove.isEmpty)
        #expect(l.pendingCommit()! == (12, 2))
        #expect(l.pending(lastSeq: 15) == 3)
    }

    @Test func outOfOrderAcknowledgementsWaitAboveTheWatermark() {
        var l = DeliveryLedger(watermark: 0)
        l.settle(3, delivered: true)
        l.settle(2, delivered: true)
        #expect(l.watermark == 0)
        #expect(l.isSettled(2) && l.isSettled(3) && !l.isSettled(1))
        #expect(l.pending(lastSeq: 4) == 2)
        #expect(l.firstPending(lastSeq: 4) == 1)
        #expect(l.acknowledgedAbove == [2, 3])
        l.settle(1, delivered: true)
        #expect(l.watermark == 3)
        #expect(l.firstPending(lastSeq: 4) == 4)
        #expect(l.pendingCommit()! == (3, 3))
    }

    @Test func deadLettersAreSettledButNotCountedDelivered() {
        var l = DeliveryLedger(watermark: 0)
        l.settle(1, delivered: false)
        l.settle(2, delivered: true)
        #expect(l.watermark == 2)
        #expect(l.pendingCommit()! == (2, 1))
        #expect(l.acknowledgedAbove.isEmpty)
    }

    @Test func aRepeatedAcknowledgementChangesNothing() {
        var l = DeliveryLedger(watermark: 5)
        do { let r = l.settle(5, delivered: true); #expect(!r) }
        do { let r = l.settle(7, delivered: true); #expect(r) }
        do { let r = l.settle(7, delivered: true); #expect(!r) }
        #expect(l.pending(lastSeq: 8) == 2)
    }

    @Test func aCommitKeepsWhatArrivedWhileItRan() {
        var l = DeliveryLedger(watermark: 0)
        l.settle(1, delivered: true)
        let commit = l.pendingCommit()!
        l.settle(2, delivered: true)  // arrives between the write and its success
        l.committed(commit)
        #expect(l.committedWatermark == 1)
        #expect(l.pendingCommit()! == (2, 1))
    }

    @Test func openingWithExceptionsAdvancesOverTheContiguousOnes() {
        let l = DeliveryLedger(watermark: 4, settledAbove: [5: true, 6: false, 8: true])
        #expect(l.watermark == 6)
        #expect(l.settledAbove == [8: true])
        // The move itself is persisted with the next commit, with no deliveries to count.
        #expect(l.pendingCommit()! == (6, 0))
        #expect(l.pending(lastSeq: 9) == 2)
    }
}
