import Dispatch
import Logging
import Synchronization

/// One stored event the pump can publish.
package struct DeliveryItem: Sendable, Equatable {
    package var seq: Int64
    package var topic: String
    package var payload: [UInt8]
    package init(seq: Int64, topic: String, payload: [UInt8]) {
        self.seq = seq
        self.topic = topic
        self.payload = payload
    }
}

/// The outbox as the pump sees it (SQLiteOutbox in production, an in-memory twin in unit tests).
package protocol DeliveryStore: Sendable {
    /// Undelivered, not dead-lettered items with `seq > after`, in seq order, at most `limit`.
    /// Acknowledgements and dead letters reported before the call are already applied.
    func fetchPending(after: Int64, limit: Int, completion: @escaping @Sendable (Result<[DeliveryItem], any Error>) -> Void)
    /// The broker acknowledged `seq`: the row may leave the outbox.
    func markDelivered(_ seq: Int64)
    /// The pump gives up on `seq`: it leaves the queue and is kept as a dead letter.
    func deadLetter(_ seq: Int64, reason: String, attempts: Int)
}

package enum PublishAttempt: Sendable, Equatable {
    /// Handed to the MQTT client under message id `mid`; an ack follows unless the connection drops.
    case queued(mid: Int32)
    /// Not connected: try again after the next connect.
    case notConnected
    /// The client can never send this message (e.g. larger than the protocol allows): dead letter.
    case rejected(String)
    /// Any other refusal by the client library (logged; retried after the next connect).
    case failed(String)
}

/// The MQTT client as the pump sees it.
package protocol DeliveryTransport: Sendable {
    func publish(topic: String, payload: [UInt8], qos: Int32) -> PublishAttempt
}

/// Moves stored events to the broker, keeping a bounded window of unacknowledged publishes
/// continuously full.
///
/// Design constraints:
/// - The window is refilled as acknowledgements arrive, never "publish a batch, wait for all acks":
///   a stock mosquitto (Nagle + delayed ACK) stalls ~40 ms per such round.
/// - Items are published in outbox order (`seq`), so the events of one call keep the order in which
///   callrelay received them. A cursor over `seq` says what has been handed to the current
///   session.
/// - The outbox is the only retry store. When the connection drops, the MQTT client discards its
///   session (nothing is re-sent behind our back), the cursor rewinds to the oldest unacknowledged
///   item, and the window is published again after the reconnect (at-least-once). A session
///   `epoch` makes a batch that raced a disconnect count as not published.
/// - Poison events: a broker that drops the connection on a message (e.g. over its
///   `max_packet_size`) would stop the queue forever. Each drop is charged to the oldest
///   unacknowledged item; from its second charge the pump publishes one item at a time ("probe"),
///   so only the culprit collects charges; at `maxAttempts` it becomes a dead letter and the queue
///   moves on. A message the client rejects outright (too large for MQTT) is dead-lettered at once.
/// - Only one fetch is outstanding at a time, and all publishing happens in its completion. A 1 s
///   poll also picks up rows written by other processes (`callrelay replay`).
package final class DeliveryPump: Sendable {
    private struct State {
        var connected = false
        var stopping = false
        var fetching = false
        var moreMaybe = true
        var epoch = 0
        var cursor: Int64 = 0
        var inflight: [Int32: Int64] = [:]
        /// Acks that arrived for a mid not (yet) registered: a publish racing its own PUBACK, or
        /// a message that is not ours (presence). Cleared after each batch registers.
        var unmatchedAcks: Set<Int32> = []
        /// Connection drops charged to an item (only ever the head of the window).
        var charges: [Int64: Int] = [:]
        var probing = false
        var drainWaiters: [@Sendable () -> Void] = []
    }

    package let window: Int
    package let qos: Int32
    package let maxAttempts: Int
    private let store: any DeliveryStore
    private let transport: any DeliveryTransport
    private let state = Mutex(State())
    private let logger: Logger

    package let publishedCount = Atomic<Int>(0)
    package let acknowledgedCount = Atomic<Int>(0)
    /// Publishes the MQTT client refused (not counting "not connected"); each is retried.
    package let failedCount = Atomic<Int>(0)
    package let deadLetteredCount = Atomic<Int>(0)

    package init(
        store: any DeliveryStore, transport: any DeliveryTransport, qos: Int32, window: Int, maxAttempts: Int = 5,
        pollIntervalMilliseconds: Int = 1000, logger: Logger
    ) {
        self.store = store
        self.transport = transport
        self.qos = qos
        self.window = max(1, window)
        self.maxAttempts = max(1, maxAttempts)
        self.logger = logger
        if pollIntervalMilliseconds > 0 { schedulePoll(every: pollIntervalMilliseconds) }
    }

    package var inflightCount: Int { state.withLock { $0.inflight.count } }
    package var isProbing: Bool { state.withLock { $0.probing } }

    // MARK: Inputs

    package func connected() {
        state.withLock { s in
            s.connected = true
            s.moreMaybe = true
        }
        pump()
    }

    /// The session is gone, and with it every unacknowledged publish: rewind and charge the head.
    package func disconnected() {
        let verdict: (seq: Int64, charges: Int)? = state.withLock { s in
            s.connected = false
            s.epoch += 1
            s.unmatchedAcks.removeAll()
            guard let head = s.inflight.values.min() else { return nil }
            s.inflight.removeAll()
            s.cursor = min(s.cursor, head - 1)
            s.moreMaybe = true
            let charges = s.charges[head, default: 0] + 1
            s.charges[head] = charges
            if charges >= maxAttempts {
                s.charges.removeValue(forKey: head)
                s.probing = false
                return (head, charges)
            }
            if charges >= 2 && !s.probing {
                s.probing = true
                logger.warning(
                    "connection dropped twice with the same event unacknowledged; publishing one at a time",
                    metadata: ["seq": "\(head)", "drops": "\(charges)"])
            }
            return nil
        }
        if let verdict {
            deadLetter(verdict.seq, reason: "broker dropped the connection \(verdict.charges) times while this event was in flight", attempts: verdict.charges)
        }
        wakeDrainWaitersIfIdle()
    }

    /// New rows were committed to the outbox.
    package func eventsCommitted() {
        state.withLock { $0.moreMaybe = true }
        pump()
    }

    /// The broker acknowledged message `mid`.
    package func acknowledged(mid: Int32) {
        let seq: Int64? = state.withLock { s in
            guard let seq = s.inflight.removeValue(forKey: mid) else {
                s.unmatchedAcks.insert(mid)
                return nil
            }
            if s.charges.removeValue(forKey: seq) != nil { s.probing = false }
            return seq
        }
        guard let seq else { return }
        settle(seq)
    }

    private func settle(_ seq: Int64) {
        acknowledgedCount.add(1, ordering: .relaxed)
        store.markDelivered(seq)
        wakeDrainWaitersIfIdle()
        pump()
    }

    private func deadLetter(_ seq: Int64, reason: String, attempts: Int) {
        deadLetteredCount.add(1, ordering: .relaxed)
        store.deadLetter(seq, reason: reason, attempts: attempts)
    }

    private func wakeDrainWaitersIfIdle() {
        let waiters: [@Sendable () -> Void] = state.withLock { s in
            guard s.stopping, s.inflight.isEmpty else { return [] }
            defer { s.drainWaiters.removeAll() }
            return s.drainWaiters
        }
        waiters.forEach { $0() }
    }

    // MARK: The loop

    private func schedulePoll(every milliseconds: Int) {
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { [weak self] in
            guard let self, !self.state.withLock({ $0.stopping }) else { return }
            self.eventsCommitted()
            self.schedulePoll(every: milliseconds)
        }
    }

    private func pump() {
        let request: (after: Int64, limit: Int, epoch: Int)? = state.withLock { s in
            guard s.connected, !s.stopping, !s.fetching, s.moreMaybe else { return nil }
            let effectiveWindow = s.probing ? 1 : window
            let room = effectiveWindow - s.inflight.count
            // Refill when at least a quarter of the window is free (or the window is empty), so a
            // fetch carries several rows instead of one per ack.
            guard room > 0, room >= max(1, effectiveWindow / 4) || s.inflight.isEmpty else { return nil }
            s.fetching = true
            s.moreMaybe = false
            return (s.cursor, room, s.epoch)
        }
        guard let request else { return }
        store.fetchPending(after: request.after, limit: request.limit) { result in
            self.publishFetched(result, limit: request.limit, epoch: request.epoch)
        }
    }

    private func publishFetched(_ result: Result<[DeliveryItem], any Error>, limit: Int, epoch: Int) {
        let items: [DeliveryItem]
        switch result {
        case .success(let fetched): items = fetched
        case .failure(let error):
            logger.error("reading the outbox failed; retrying in 1 s", metadata: ["error": "\(error)"])
            state.withLock { s in
                s.fetching = false
                s.moreMaybe = true
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + 1) { self.pump() }
            return
        }
        var registered: [(mid: Int32, seq: Int64)] = []
        registered.reserveCapacity(items.count)
        var rejected: [(seq: Int64, reason: String)] = []
        var stoppedEarly = false
        loop: for item in items {
            switch transport.publish(topic: item.topic, payload: item.payload, qos: qos) {
            case .queued(let mid):
                registered.append((mid, item.seq))
            case .rejected(let reason):
                // Never sendable: dead-letter it and move on (the cursor passes it).
                rejected.append((item.seq, reason))
            case .notConnected:
                stoppedEarly = true
                break loop
            case .failed(let reason):
                failedCount.add(1, ordering: .relaxed)
                logger.warning("publish refused by the MQTT client; will retry", metadata: ["seq": "\(item.seq)", "error": "\(reason)"])
                stoppedEarly = true
                break loop
            }
        }
        for (seq, reason) in rejected { deadLetter(seq, reason: reason, attempts: 1) }
        let alreadyAcked: [Int64] = state.withLock { s in
            defer {
                s.unmatchedAcks.removeAll()
                s.fetching = false
            }
            guard s.epoch == epoch else {
                // A disconnect raced this batch: whatever was handed over died with the session.
                s.moreMaybe = true
                return []
            }
            var acked: [Int64] = []
            for (mid, seq) in registered {
                if s.unmatchedAcks.remove(mid) != nil {
                    acked.append(seq)
                } else {
                    s.inflight[mid] = seq
                }
            }
            let lastHandled = (registered.map(\.seq) + rejected.map(\.seq)).max()
            if let lastHandled { s.cursor = max(s.cursor, lastHandled) }
            if stoppedEarly || items.count == limit { s.moreMaybe = true }
            return acked
        }
        if registered.count > 0 { publishedCount.add(registered.count, ordering: .relaxed) }
        for seq in alreadyAcked { settle(seq) }
        pump()
    }

    // MARK: Shutdown

    /// Stops taking new items and waits until every in-flight publish is acknowledged, or until
    /// `timeoutMilliseconds`. Returns the number still unacknowledged (they stay in the outbox).
    package func drain(timeoutMilliseconds: Int) -> Int {
        let done = DispatchSemaphore(value: 0)
        let empty: Bool = state.withLock { s in
            s.stopping = true
            if s.inflight.isEmpty { return true }
            s.drainWaiters.append { done.signal() }
            return false
        }
        if !empty { _ = done.wait(timeout: .now() + .milliseconds(timeoutMilliseconds)) }
        return state.withLock { $0.inflight.count }
    }
}
