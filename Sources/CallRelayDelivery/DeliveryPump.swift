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
    /// Undelivered items with `seq > after`, in seq order, at most `limit`.
    func fetchPending(after: Int64, limit: Int, completion: @escaping @Sendable (Result<[DeliveryItem], any Error>) -> Void)
    /// The broker acknowledged `seq`: the row may leave the outbox.
    func markDelivered(_ seq: Int64)
}

package enum PublishAttempt: Sendable, Equatable {
    /// Handed to the MQTT client under message id `mid`; an ack will follow (even across reconnects).
    case queued(mid: Int32)
    /// Not connected: try again after the next connect.
    case notConnected
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
/// - The window is refilled as each acknowledgement arrives, never "publish a batch, wait for all
///   acks": a stock mosquitto (Nagle + delayed ACK) stalls ~40 ms per such round.
/// - Items are published in outbox order (`seq`), so the events of one call keep the order in which
///   callrelay received them. libmosquitto sends in call order and re-sends unacknowledged
///   messages in order after a reconnect.
/// - Each item is handed to the client once per process lifetime (a cursor over `seq`); the client
///   keeps it until the broker acknowledges. After a restart the cursor starts at 0, so everything
///   not marked delivered is published again (at-least-once).
/// - Only one fetch is outstanding at a time, and all publishing happens in its completion.
package final class DeliveryPump: Sendable {
    private struct State {
        var connected = false
        var stopping = false
        var fetching = false
        var moreMaybe = true
        var cursor: Int64 = 0
        var inflight: [Int32: Int64] = [:]
        /// Acks that arrived for a mid not (yet) registered: a publish racing its own PUBACK, or
        /// a message that is not ours (presence). Cleared after each batch registers.
        var unmatchedAcks: Set<Int32> = []
        var drainWaiters: [@Sendable () -> Void] = []
    }

    package let window: Int
    package let qos: Int32
    private let store: any DeliveryStore
    private let transport: any DeliveryTransport
    private let state = Mutex(State())
    private let logger: Logger

    package let publishedCount = Atomic<Int>(0)
    package let acknowledgedCount = Atomic<Int>(0)
    /// Publishes the MQTT client refused (not counting "not connected"); each is retried.
    package let failedCount = Atomic<Int>(0)

    package init(store: any DeliveryStore, transport: any DeliveryTransport, qos: Int32, window: Int, logger: Logger) {
        self.store = store
        self.transport = transport
        self.qos = qos
        self.window = max(1, window)
        self.logger = logger
    }

    package var inflightCount: Int { state.withLock { $0.inflight.count } }

    // MARK: Inputs

    package func connected() {
        state.withLock { s in
            s.connected = true
            s.moreMaybe = true
        }
        pump()
    }

    package func disconnected() {
        // In-flight messages stay with the MQTT client, which re-sends them after reconnecting.
        state.withLock { $0.connected = false }
    }

    /// New rows were committed to the outbox.
    package func eventsCommitted() {
        state.withLock { $0.moreMaybe = true }
        pump()
    }

    /// The broker acknowledged message `mid`.
    package func acknowledged(mid: Int32) {
        let seq: Int64? = state.withLock { s in
            if let seq = s.inflight.removeValue(forKey: mid) { return seq }
            s.unmatchedAcks.insert(mid)
            return nil
        }
        guard let seq else { return }
        settle(seq)
    }

    private func settle(_ seq: Int64) {
        acknowledgedCount.add(1, ordering: .relaxed)
        store.markDelivered(seq)
        let waiters: [@Sendable () -> Void] = state.withLock { s in
            guard s.stopping, s.inflight.isEmpty else { return [] }
            defer { s.drainWaiters.removeAll() }
            return s.drainWaiters
        }
        waiters.forEach { $0() }
        pump()
    }

    // MARK: The loop

    private func pump() {
        let request: (after: Int64, limit: Int)? = state.withLock { s in
            guard s.connected, !s.stopping, !s.fetching, s.moreMaybe else { return nil }
            let room = window - s.inflight.count
            // Refill when at least a quarter of the window is free (or the window is tiny), so a
            // fetch carries several rows instead of one per ack.
            guard room > 0, room >= max(1, window / 4) || s.inflight.isEmpty else { return nil }
            s.fetching = true
            s.moreMaybe = false
            return (s.cursor, room)
        }
        guard let request else { return }
        store.fetchPending(after: request.after, limit: request.limit) { result in
            self.publishFetched(result, limit: request.limit)
        }
    }

    private func publishFetched(_ result: Result<[DeliveryItem], any Error>, limit: Int) {
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
        var registered: [(Int32, Int64)] = []
        registered.reserveCapacity(items.count)
        var stoppedEarly = false
        for item in items {
            switch transport.publish(topic: item.topic, payload: item.payload, qos: qos) {
            case .queued(let mid):
                registered.append((mid, item.seq))
            case .notConnected:
                stoppedEarly = true
            case .failed(let reason):
                failedCount.add(1, ordering: .relaxed)
                logger.warning("publish refused by the MQTT client; will retry", metadata: ["seq": "\(item.seq)", "error": "\(reason)"])
                stoppedEarly = true
            }
            if stoppedEarly { break }
        }
        publishedCount.add(registered.count, ordering: .relaxed)
        let alreadyAcked: [Int64] = state.withLock { s in
            var acked: [Int64] = []
            for (mid, seq) in registered {
                if s.unmatchedAcks.remove(mid) != nil {
                    acked.append(seq)
                } else {
                    s.inflight[mid] = seq
                }
                s.cursor = seq
            }
            s.unmatchedAcks.removeAll()
            s.fetching = false
            if stoppedEarly || items.count == limit { s.moreMaybe = true }
            return acked
        }
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
