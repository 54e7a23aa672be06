import Dispatch
import Logging
import Synchronization

/// One stored event the pump can publish.
package struct DeliveryItem: Sendable, Equatable {
    package var seq: Int64
    package var topic: String
    package var payload: [UInt8]
    /// The event id (the payload's `id`; an MQTT 5 user property).
    package var eventID: String
    /// The payload's `call_id`, when it has one (an MQTT 5 user property).
    package var callID: String?
    /// `live` or `cdr`; nil when the row does not say (rows written by v0.1.0).
    package var kind: String?
    package init(seq: Int64, topic: String, payload: [UInt8], eventID: String = "", callID: String? = nil, kind: String? = nil) {
        self.seq = seq
        self.topic = topic
        self.payload = payload
        self.eventID = eventID
        self.callID = callID
        self.kind = kind
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

/// The MQTT client as the pump sees it (it knows the QoS and the session's protocol).
package protocol DeliveryTransport: Sendable {
    func publish(_ item: DeliveryItem) -> PublishAttempt
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
///   moves on. A message the client rejects outright (too large for MQTT, or for the broker's MQTT 5
///   Maximum Packet Size) is dead-lettered at once.
/// - Refusals (MQTT 5): an acknowledgement whose reason code is 0x80 or more ("not authorized",
///   "quota exceeded", ...) is a failed attempt, not a delivery. The item leaves the window, waits
///   `retryDelayMilliseconds(attempt)` (1, 2, 4, 8 s ... by default) and is published again, while
///   the items behind it go on; at `maxAttempts` refusals it becomes a dead letter with the reason.
/// - The window is `window` (`mqtt.max_inflight`), bounded per session by what the broker takes
///   (`connected(window:)`: its Receive Maximum on MQTT 5).
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
        var inflight: [Int32: DeliveryItem] = [:]
        /// The session's window (≤ `window`).
        var sessionWindow: Int
        /// Refused items waiting for their retry (never also in `inflight`).
        var retries: [(item: DeliveryItem, due: DispatchTime)] = []
        /// Refusals per item so far (kept across reconnects).
        var refusals: [Int64: Int] = [:]
        /// Acks that arrived for a mid not (yet) registered: a publish racing its own PUBACK, or
        /// a message that is not ours (presence). Cleared after each batch registers.
        var unmatchedAcks: Set<Int32> = []
        /// The same for refusals, with their reason.
        var unmatchedRefusals: [Int32: String] = [:]
        /// Connection drops charged to an item (only ever the head of the window).
        var charges: [Int64: Int] = [:]
        var probing = false
        var drainWaiters: [@Sendable () -> Void] = []

        /// A batch registered: answers for mids not ours (presence) are forgotten, and the next
        /// batch may start.
        mutating func endBatch() {
            unmatchedAcks.removeAll()
            unmatchedRefusals.removeAll()
            fetching = false
        }
    }

    package let window: Int
    package let maxAttempts: Int
    private let retryDelayMilliseconds: @Sendable (Int) -> Int
    private let store: any DeliveryStore
    private let transport: any DeliveryTransport
    private let state: Mutex<State>
    private let logger: Logger

    package let publishedCount = Atomic<Int>(0)
    package let acknowledgedCount = Atomic<Int>(0)
    /// Publishes the MQTT client refused (not counting "not connected"); each is retried.
    package let failedCount = Atomic<Int>(0)
    package let deadLetteredCount = Atomic<Int>(0)
    /// Acknowledgements that refused the item (MQTT 5 reason code ≥ 0x80); each is retried.
    package let refusedCount = Atomic<Int>(0)

    /// 1 s, 2 s, 4 s ... up to 30 s after the n-th refusal (1-based).
    package static let defaultRetryDelay: @Sendable (Int) -> Int = { attempt in min(30_000, 1000 << min(max(attempt - 1, 0), 5)) }

    package init(
        store: any DeliveryStore, transport: any DeliveryTransport, window: Int, maxAttempts: Int = 5,
        pollIntervalMilliseconds: Int = 1000, retryDelayMilliseconds: @escaping @Sendable (Int) -> Int = DeliveryPump.defaultRetryDelay,
        logger: Logger
    ) {
        self.store = store
        self.transport = transport
        self.window = max(1, window)
        self.maxAttempts = max(1, maxAttempts)
        self.retryDelayMilliseconds = retryDelayMilliseconds
        self.state = Mutex(State(sessionWindow: max(1, window)))
        self.logger = logger
        if pollIntervalMilliseconds > 0 { schedulePoll(every: pollIntervalMilliseconds) }
    }

    package var inflightCount: Int { state.withLock { $0.inflight.count } }
    package var isProbing: Bool { state.withLock { $0.probing } }
    /// The current session's window.
    package var sessionWindow: Int { state.withLock { $0.sessionWindow } }
    /// Refused items waiting for their next attempt.
    package var retryingCount: Int { state.withLock { $0.retries.count } }

    // MARK: Inputs

    /// A session is up; `window` is what the broker takes at once (nil: `window` as configured).
    package func connected(window sessionLimit: Int? = nil) {
        state.withLock { s in
            s.connected = true
            s.moreMaybe = true
            s.sessionWindow = max(1, min(window, sessionLimit ?? window))
        }
        pump()
    }

    /// The session is gone, and with it every unacknowledged publish: rewind and charge the head.
    package func disconnected() {
        let verdict: (seq: Int64, charges: Int)? = state.withLock { s in
            s.connected = false
            s.epoch += 1
            s.unmatchedAcks.removeAll()
            s.unmatchedRefusals.removeAll()
            // Refused items waiting for a retry are fetched again with the rest (their refusals
            // stay counted).
            if let oldestRetry = s.retries.map(\.item.seq).min() {
                s.cursor = min(s.cursor, oldestRetry - 1)
                s.retries.removeAll()
                s.moreMaybe = true
            }
            guard let head = s.inflight.values.map(\.seq).min() else { return nil }
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

    /// The broker answered message `mid`: took it, or (`refusal`, an MQTT 5 reason code ≥ 0x80
    /// described for the log and the dead letter) refused it.
    package func acknowledged(mid: Int32, refusal: String? = nil) {
        let item: DeliveryItem? = state.withLock { s in
            guard let item = s.inflight.removeValue(forKey: mid) else {
                if let refusal { s.unmatchedRefusals[mid] = refusal } else { s.unmatchedAcks.insert(mid) }
                return nil
            }
            if s.charges.removeValue(forKey: item.seq) != nil { s.probing = false }
            return item
        }
        guard let item else { return }
        if let refusal {
            refused(item, reason: refusal)
        } else {
            state.withLock { _ = $0.refusals.removeValue(forKey: item.seq) }
            settle(item.seq)
        }
    }

    private func refused(_ item: DeliveryItem, reason: String) {
        refusedCount.add(1, ordering: .relaxed)
        let attempts: Int = state.withLock { s in
            let n = s.refusals[item.seq, default: 0] + 1
            if n >= maxAttempts {
                s.refusals.removeValue(forKey: item.seq)
            } else {
                s.refusals[item.seq] = n
            }
            return n
        }
        if attempts >= maxAttempts {
            logger.error(
                "the broker refused an event \(attempts) times; it is kept as a dead letter (see callrelay replay)",
                metadata: ["seq": "\(item.seq)", "topic": "\(item.topic)", "reason": "\(reason)"])
            deadLetter(item.seq, reason: "broker refused it: \(reason)", attempts: attempts)
            wakeDrainWaitersIfIdle()
            pump()
            return
        }
        let delay = retryDelayMilliseconds(attempts)
        logger.warning(
            "the broker refused an event; retrying it later", metadata: [
                "seq": "\(item.seq)", "topic": "\(item.topic)", "reason": "\(reason)", "attempt": "\(attempts)", "retry_in_ms": "\(delay)",
            ])
        state.withLock { $0.retries.append((item, .now() + .milliseconds(delay))) }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delay)) { [weak self] in self?.pump() }
        wakeDrainWaitersIfIdle()
        pump()
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
        publishDueRetries()
        let request: (after: Int64, limit: Int, epoch: Int)? = state.withLock { s in
            guard s.connected, !s.stopping, !s.fetching, s.moreMaybe else { return nil }
            let effectiveWindow = s.probing ? 1 : s.sessionWindow
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

    /// Publishes the refused items whose wait is over, within the window. Uses the `fetching`
    /// flag so it never publishes alongside a batch.
    private func publishDueRetries() {
        let due: (items: [DeliveryItem], epoch: Int)? = state.withLock { s in
            guard s.connected, !s.stopping, !s.fetching, !s.retries.isEmpty else { return nil }
            let now = DispatchTime.now()
            var room = (s.probing ? 1 : s.sessionWindow) - s.inflight.count
            var items: [DeliveryItem] = []
            s.retries.removeAll { entry in
                guard room > 0, entry.due <= now else { return false }
                room -= 1
                items.append(entry.item)
                return true
            }
            guard !items.isEmpty else { return nil }
            s.fetching = true
            return (items, s.epoch)
        }
        guard let due else { return }
        let handed = handOver(due.items)
        let answered: Answered = state.withLock { s in
            defer { s.endBatch() }
            guard s.epoch == due.epoch else {
                // The session died meanwhile: `disconnected` rewound the cursor below these.
                s.cursor = min(s.cursor, (due.items.map(\.seq).min() ?? s.cursor + 1) - 1)
                s.moreMaybe = true
                return Answered()
            }
            for item in due.items[handed.handled...] { s.retries.append((item, .now())) }
            return Self.register(handed.registered, in: &s)
        }
        finish(handed, answered)
    }

    /// What publishing a batch did: published (`registered`), never sendable (`rejected`), and
    /// `handled` items from the start of the batch (the rest waits: not connected, or refused by
    /// the client library).
    private struct HandOver {
        var registered: [(mid: Int32, item: DeliveryItem)] = []
        var rejected: [(seq: Int64, reason: String)] = []
        var handled = 0
        var stoppedEarly = false
    }

    /// Acknowledgements and refusals that overtook their registration.
    private struct Answered {
        var acked: [Int64] = []
        var refused: [(DeliveryItem, String)] = []
    }

    /// Hands `items` to the transport in order, stopping at the first that cannot go now.
    private func handOver(_ items: [DeliveryItem]) -> HandOver {
        var h = HandOver()
        h.registered.reserveCapacity(items.count)
        loop: for item in items {
            switch transport.publish(item) {
            case .queued(let mid):
                h.registered.append((mid, item))
            case .rejected(let reason):
                // Never sendable: dead-letter it and move on (the cursor passes it).
                h.rejected.append((item.seq, reason))
            case .notConnected:
                h.stoppedEarly = true
                break loop
            case .failed(let reason):
                failedCount.add(1, ordering: .relaxed)
                logger.warning("publish refused by the MQTT client; will retry", metadata: ["seq": "\(item.seq)", "error": "\(reason)"])
                h.stoppedEarly = true
                break loop
            }
            h.handled += 1
        }
        for (seq, reason) in h.rejected { deadLetter(seq, reason: reason, attempts: 1) }
        return h
    }

    /// After registration: counts the batch and settles what was answered before it registered.
    private func finish(_ handed: HandOver, _ answered: Answered) {
        if handed.registered.count > 0 { publishedCount.add(handed.registered.count, ordering: .relaxed) }
        for seq in answered.acked {
            state.withLock { _ = $0.refusals.removeValue(forKey: seq) }
            settle(seq)
        }
        for (item, reason) in answered.refused { refused(item, reason: reason) }
    }

    /// Puts published items in flight, except those whose answer already arrived.
    private static func register(_ registered: [(mid: Int32, item: DeliveryItem)], in s: inout State) -> Answered {
        var answered = Answered()
        for (mid, item) in registered {
            if s.unmatchedAcks.remove(mid) != nil {
                answered.acked.append(item.seq)
            } else if let reason = s.unmatchedRefusals.removeValue(forKey: mid) {
                answered.refused.append((item, reason))
            } else {
                s.inflight[mid] = item
            }
        }
        return answered
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
        let handed = handOver(items)
        let answered: Answered = state.withLock { s in
            defer { s.endBatch() }
            guard s.epoch == epoch else {
                // A disconnect raced this batch: whatever was handed over died with the session.
                s.moreMaybe = true
                return Answered()
            }
            let answered = Self.register(handed.registered, in: &s)
            let lastHandled = (handed.registered.map(\.item.seq) + handed.rejected.map(\.seq)).max()
            if let lastHandled { s.cursor = max(s.cursor, lastHandled) }
            if handed.stoppedEarly || items.count == limit { s.moreMaybe = true }
            return answered
        }
        finish(handed, answered)
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
