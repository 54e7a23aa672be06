import CallRelayDelivery
import Foundation
import Logging
import Synchronization
import Testing

/// In-memory twin of the outbox.
final class MemoryStore: DeliveryStore {
    private let rows = Mutex<[DeliveryItem]>([])
    private let delivered = Mutex<[Int64]>([])

    func add(_ count: Int, call: String = "c") {
        rows.withLock { r in
            let start = (r.last?.seq ?? 0) + 1
            for seq in start..<(start + Int64(count)) {
                r.append(DeliveryItem(seq: seq, topic: "p/1/live/\(call)", payload: Array("\(seq)".utf8)))
            }
        }
    }

    func fetchPending(after: Int64, limit: Int, completion: @escaping @Sendable (Result<[DeliveryItem], any Error>) -> Void) {
        let done = delivered.withLock { Set($0) }
        let items = rows.withLock { $0.filter { $0.seq > after && !done.contains($0.seq) }.prefix(limit) }
        DispatchQueue.global().async { completion(.success(Array(items))) }
    }

    func markDelivered(_ seq: Int64) { delivered.withLock { $0.append(seq) } }
    var deliveredSeqs: [Int64] { delivered.withLock { $0 } }

    private let dead = Mutex<[(seq: Int64, attempts: Int, reason: String)]>([])
    func deadLetter(_ seq: Int64, reason: String, attempts: Int) {
        dead.withLock { $0.append((seq, attempts, reason)) }
        delivered.withLock { $0.append(seq) }  // gone from the queue, like the outbox does
    }
    var deadSeqs: [Int64] { dead.withLock { $0.map(\.seq) } }
    var deadLetters: [(seq: Int64, attempts: Int, reason: String)] { dead.withLock { $0 } }
}

/// A transport that records publishes; acks are released by the test (or immediately).
final class RecordingTransport: DeliveryTransport {
    struct State {
        var connected = true
        var nextMid: Int32 = 1
        var published: [(mid: Int32, seq: Int64)] = []
        var maxInflight = 0
        var unacked: Set<Int32> = []
    }
    let state = Mutex(State())
    let ackInsidePublish: Bool
    let pumpRef = PumpRef()

    init(ackInsidePublish: Bool = false) { self.ackInsidePublish = ackInsidePublish }

    func publish(_ item: DeliveryItem) -> PublishAttempt {
        let payload = item.payload
        let mid: Int32? = state.withLock { s in
            guard s.connected else { return nil }
            let mid = s.nextMid
            s.nextMid += 1
            s.published.append((mid, Int64(String(decoding: payload, as: UTF8.self))!))
            s.unacked.insert(mid)
            s.maxInflight = max(s.maxInflight, s.unacked.count)
            return mid
        }
        guard let mid else { return .notConnected }
        if ackInsidePublish {
            // The PUBACK races ahead of the pump's registration of this mid.
            state.withLock { _ = $0.unacked.remove(mid) }
            pumpRef.pump?.acknowledged(mid: mid)
        }
        return .queued(mid: mid)
    }

    /// Acks the oldest unacked publishes.
    func ack(_ count: Int, pump: DeliveryPump) {
        let mids: [Int32] = state.withLock { s in
            let mids = Array(s.unacked.sorted().prefix(count))
            mids.forEach { s.unacked.remove($0) }
            return mids
        }
        mids.forEach { pump.acknowledged(mid: $0) }
    }

    var publishedSeqs: [Int64] { state.withLock { $0.published.map(\.seq) } }

    /// Answers the unacked publishes of `seq` with a refusal, the others with an ack.
    func answer(refusing seq: Int64, reason: String, pump: DeliveryPump) {
        let answers: [(mid: Int32, refuse: Bool)] = state.withLock { s in
            let bySeq = Dictionary(s.published.map { ($0.mid, $0.seq) }, uniquingKeysWith: { a, _ in a })
            let mids = s.unacked.sorted()
            s.unacked.removeAll()
            return mids.map { ($0, bySeq[$0] == seq) }
        }
        for a in answers { pump.acknowledged(mid: a.mid, refusal: a.refuse ? reason : nil) }
    }
}

final class PumpRef: @unchecked Sendable {
    var pump: DeliveryPump?
}

private func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(2000)
    }
    return condition()
}

@Suite struct DeliveryPumpTests {
    let logger = Logger(label: "test")

    @Test func publishesInOrderAndNeverExceedsTheWindow() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(store: store, transport: transport, window: 8, pollIntervalMilliseconds: 0, logger: logger)
        store.add(100)
        pump.connected()
        for _ in 0..<200 {
            _ = eventually(1) { transport.state.withLock { !$0.unacked.isEmpty } || store.deliveredSeqs.count == 100 }
            transport.ack(3, pump: pump)
        }
        #expect(eventually { store.deliveredSeqs.count == 100 })
        #expect(transport.publishedSeqs == Array(1...100))
        #expect(transport.state.withLock { $0.maxInflight } <= 8)
        #expect(Set(store.deliveredSeqs) == Set(1...100))
    }

    @Test func nothingIsPublishedWhileDisconnectedAndEverythingAfterConnect() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(store: store, transport: transport, window: 50, logger: logger)
        store.add(10)
        pump.eventsCommitted()
        usleep(50_000)
        #expect(transport.publishedSeqs.isEmpty)
        pump.connected()
        #expect(eventually { transport.publishedSeqs.count == 10 })
        transport.ack(10, pump: pump)
        #expect(eventually { store.deliveredSeqs.count == 10 })
    }

    @Test func afterAReconnectTheUnacknowledgedArePublishedAgainThenTheRestInOrder() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(store: store, transport: transport, window: 100, logger: logger)
        pump.connected()
        store.add(5)
        pump.eventsCommitted()
        #expect(eventually { transport.publishedSeqs.count == 5 })
        transport.state.withLock { $0.connected = false }
        pump.disconnected()
        store.add(5)
        pump.eventsCommitted()
        usleep(50_000)
        #expect(transport.publishedSeqs.count == 5)
        transport.state.withLock { $0.connected = true }
        pump.connected()
        #expect(eventually { transport.publishedSeqs.count == 15 })
        // The session that carried 1...5 is gone: they go again, before 6...10.
        #expect(transport.publishedSeqs == Array(1...5) + Array(1...10))
    }

    @Test func anAckArrivingBeforeRegistrationIsNotLost() {
        let store = MemoryStore()
        let transport = RecordingTransport(ackInsidePublish: true)
        let pump = DeliveryPump(store: store, transport: transport, window: 4, logger: logger)
        transport.pumpRef.pump = pump
        store.add(50)
        pump.connected()
        #expect(eventually { store.deliveredSeqs.count == 50 })
        #expect(pump.inflightCount == 0)
    }

    @Test func aDroppedSessionRewindsAndRepublishesTheUnacknowledgedWindow() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(store: store, transport: transport, window: 10, logger: logger)
        store.add(6)
        pump.connected()
        #expect(eventually { transport.publishedSeqs.count == 6 })
        transport.ack(2, pump: pump)  // seqs 1, 2 acknowledged
        #expect(eventually { store.deliveredSeqs.count == 2 })
        pump.disconnected()
        transport.state.withLock { $0.unacked.removeAll() }
        pump.connected()
        #expect(eventually { transport.publishedSeqs.count == 10 })
        #expect(transport.publishedSeqs == [1, 2, 3, 4, 5, 6, 3, 4, 5, 6])
        transport.ack(4, pump: pump)
        #expect(eventually { Set(store.deliveredSeqs) == Set(1...6) })
    }

    @Test func aPoisonEventBecomesADeadLetterAndTheQueueMovesOn() {
        // The "broker" drops the connection whenever seq 3 is in flight.
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(store: store, transport: transport, window: 10, maxAttempts: 4, logger: logger)
        store.add(8)
        pump.connected()
        for _ in 0..<20 {
            _ = eventually(1) { transport.state.withLock { !$0.unacked.isEmpty } }
            let inflight = transport.state.withLock { s in s.published.filter { s.unacked.contains($0.mid) }.map(\.seq) }
            if inflight.contains(3) {
                // Messages before the poison are processed, then the broker hangs up.
                let before = transport.state.withLock { s in s.published.filter { s.unacked.contains($0.mid) && $0.seq < 3 }.map(\.mid) }
                transport.state.withLock { s in before.forEach { s.unacked.remove($0) } }
                before.forEach { pump.acknowledged(mid: $0) }
                pump.disconnected()
                transport.state.withLock { $0.unacked.removeAll() }
                pump.connected()
            } else {
                transport.ack(10, pump: pump)
            }
            if Set(store.deliveredSeqs) == Set(1...8) { break }
        }
        #expect(store.deadSeqs == [3])
        #expect(Set(store.deliveredSeqs) == Set(1...8))
        #expect(!pump.isProbing)
        #expect(pump.deadLetteredCount.load(ordering: .relaxed) == 1)
    }

    @Test func anUnsendableEventIsDeadLetteredAtOnce() {
        final class Rejecting: DeliveryTransport {
            let inner = RecordingTransport()
            func publish(_ item: DeliveryItem) -> PublishAttempt {
                String(decoding: item.payload, as: UTF8.self) == "2" ? .rejected("payload too large") : inner.publish(item)
            }
        }
        let store = MemoryStore()
        let transport = Rejecting()
        let pump = DeliveryPump(store: store, transport: transport, window: 10, logger: logger)
        store.add(3)
        pump.connected()
        #expect(eventually { transport.inner.publishedSeqs == [1, 3] })
        transport.inner.ack(2, pump: pump)
        #expect(eventually { Set(store.deliveredSeqs) == Set(1...3) })
        #expect(store.deadSeqs == [2])
    }

    @Test func drainWaitsForAcknowledgementsThenReportsWhatIsLeft() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(store: store, transport: transport, window: 10, logger: logger)
        store.add(6)
        pump.connected()
        #expect(eventually { transport.publishedSeqs.count == 6 })
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(100)) { transport.ack(6, pump: pump) }
        #expect(pump.drain(timeoutMilliseconds: 5000) == 0)
        #expect(store.deliveredSeqs.count == 6)

        let stuck = DeliveryPump(store: MemoryStore(), transport: RecordingTransport(), window: 10, logger: logger)
        #expect(stuck.drain(timeoutMilliseconds: 10) == 0)
    }

    @Test func aRefusedEventIsRetriedThenDeadLetteredWhileOthersFlow() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(
            store: store, transport: transport, window: 10, maxAttempts: 3, pollIntervalMilliseconds: 0,
            retryDelayMilliseconds: { attempt in attempt * 20 }, logger: logger)
        store.add(5)
        pump.connected()
        #expect(eventually { transport.publishedSeqs == [1, 2, 3, 4, 5] })
        transport.answer(refusing: 2, reason: "not authorized (0x87)", pump: pump)
        #expect(eventually { Set(store.deliveredSeqs) == [1, 3, 4, 5] }, "the others are delivered; the refused one is not")
        #expect(pump.retryingCount == 1 || transport.publishedSeqs.count == 6)
        // Two more refusals: the third is the last attempt.
        #expect(eventually { transport.publishedSeqs.count == 6 })
        #expect(transport.publishedSeqs.last == 2, "published again after its wait")
        store.add(1)
        pump.eventsCommitted()
        #expect(eventually { transport.publishedSeqs.count == 7 })
        transport.answer(refusing: 2, reason: "not authorized (0x87)", pump: pump)
        #expect(eventually { transport.publishedSeqs.count == 8 })
        #expect(store.deadSeqs.isEmpty)
        transport.answer(refusing: 2, reason: "not authorized (0x87)", pump: pump)
        #expect(eventually { store.deadSeqs == [2] })
        #expect(store.deadLetters.first?.attempts == 3)
        #expect(store.deadLetters.first?.reason == "broker refused it: not authorized (0x87)")
        #expect(Set(store.deliveredSeqs) == Set(1...6))
        #expect(pump.refusedCount.load(ordering: .relaxed) == 3)
        #expect(pump.acknowledgedCount.load(ordering: .relaxed) == 5, "a refusal is never counted delivered")
        #expect(pump.inflightCount == 0 && pump.retryingCount == 0)
    }

    @Test func aRefusalThatOvertakesItsRegistrationIsStillARefusal() {
        final class RefusingAtOnce: DeliveryTransport {
            let inner = RecordingTransport()
            let pump = PumpRef()
            func publish(_ item: DeliveryItem) -> PublishAttempt {
                let attempt = inner.publish(item)
                if case .queued(let mid) = attempt {
                    _ = inner.state.withLock { $0.unacked.remove(mid) }
                    pump.pump?.acknowledged(mid: mid, refusal: item.seq == 1 ? "quota exceeded (0x97)" : nil)
                }
                return attempt
            }
        }
        let store = MemoryStore()
        let transport = RefusingAtOnce()
        let pump = DeliveryPump(
            store: store, transport: transport, window: 4, maxAttempts: 2, pollIntervalMilliseconds: 0, retryDelayMilliseconds: { _ in 5 },
            logger: logger)
        transport.pump.pump = pump
        store.add(3)
        pump.connected()
        #expect(eventually { store.deadSeqs == [1] })
        #expect(Set(store.deliveredSeqs) == Set(1...3))
        #expect(transport.inner.publishedSeqs.filter { $0 == 1 }.count == 2)
        #expect(pump.inflightCount == 0, "no window slot leaks")
    }

    @Test func theSessionWindowBoundsTheInflightPublishes() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(store: store, transport: transport, window: 100, pollIntervalMilliseconds: 0, logger: logger)
        store.add(60)
        pump.connected(window: 20)
        #expect(pump.sessionWindow == 20)
        for _ in 0..<100 {
            _ = eventually(1) { transport.state.withLock { !$0.unacked.isEmpty } || store.deliveredSeqs.count == 60 }
            transport.ack(7, pump: pump)
            if store.deliveredSeqs.count == 60 { break }
        }
        #expect(eventually { store.deliveredSeqs.count == 60 })
        #expect(transport.state.withLock { $0.maxInflight } == 20)
        pump.disconnected()
        pump.connected(window: 500)
        #expect(pump.sessionWindow == 100, "never above mqtt.max_inflight")
    }

    @Test func refusedEventsWaitingForARetryAreRepublishedAfterAReconnect() {
        let store = MemoryStore()
        let transport = RecordingTransport()
        let pump = DeliveryPump(
            store: store, transport: transport, window: 10, maxAttempts: 5, pollIntervalMilliseconds: 0,
            retryDelayMilliseconds: { _ in 60_000 }, logger: logger)
        store.add(3)
        pump.connected()
        #expect(eventually { transport.publishedSeqs == [1, 2, 3] })
        transport.answer(refusing: 2, reason: "x", pump: pump)
        #expect(eventually { pump.retryingCount == 1 })
        pump.disconnected()
        pump.connected()
        #expect(eventually { transport.publishedSeqs == [1, 2, 3, 2] }, "fetched again from the outbox, not lost with the retry timer")
        transport.ack(1, pump: pump)
        #expect(eventually { Set(store.deliveredSeqs) == Set(1...3) })
    }
}
