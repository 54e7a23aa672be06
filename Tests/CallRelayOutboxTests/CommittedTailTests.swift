@testable import CallRelayOutbox
import Testing

@Suite struct CommittedTailTests {
    func records(_ seqs: ClosedRange<Int64>, bytes: Int = 10) -> [OutboxRecord] {
        seqs.map { OutboxRecord(seq: $0, eventID: "e\($0)", topic: "t", content: .payload(Array(repeating: 0, count: bytes))) }
    }

    @Test func servesWhatItHoldsAndDefersTheRestToTheFile() {
        var tail = CommittedTail(maxCount: 100, maxBytes: 1 << 20)
        tail.append(records(5...9))
        #expect(tail.records(after: 4, limit: 10, settled: { _ in false })?.map(\.seq) == [5, 6, 7, 8, 9])
        #expect(tail.records(after: 6, limit: 2, settled: { _ in false })?.map(\.seq) == [7, 8])
        #expect(tail.records(after: 6, limit: 10, settled: { $0 == 8 })?.map(\.seq) == [7, 9])
        // Before the run, or past its end: the file answers (rows another process added, say).
        #expect(tail.records(after: 3, limit: 10, settled: { _ in false }) == nil)
        #expect(tail.records(after: 9, limit: 10, settled: { _ in false }) == nil)
    }

    @Test func aGapStartsANewRun() {
        var tail = CommittedTail(maxCount: 100, maxBytes: 1 << 20)
        tail.append(records(1...3))
        tail.append(records(6...7))  // 4...5 written by someone else
        #expect(tail.firstSeq == 6)
        #expect(tail.records(after: 2, limit: 10, settled: { _ in false }) == nil)
        #expect(tail.records(after: 5, limit: 10, settled: { _ in false })?.map(\.seq) == [6, 7])
    }

    @Test func staysWithinItsBoundsAndDropsSettledRecords() {
        var tail = CommittedTail(maxCount: 4, maxBytes: 35)
        tail.append(records(1...3))
        #expect(tail.count == 3 && tail.bytes == 30)
        tail.append(records(4...5))
        #expect(tail.count == 3)  // 35 bytes: 3 records of 10
        #expect(tail.firstSeq == 3)
        tail.drop(through: 4)
        #expect(tail.firstSeq == 5 && tail.count == 1)
        tail.drop(through: 9)
        #expect(tail.count == 0 && tail.bytes == 0)
        tail.append(records(10...10))
        #expect(tail.records(after: 9, limit: 1, settled: { _ in false })?.map(\.seq) == [10])
    }
}
