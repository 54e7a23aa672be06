import CallRelayNormalize

/// What the HTTP edge needs from storage: store an event durably, say whether it is writable.
package protocol WebhookStore: Sendable {
    /// Calls `completion` (on any thread) only after the event is committed, or with a failure.
    /// `body` is the webhook body as received (what is stored; the payload is derived from it).
    func store(
        _ event: NormalizedEvent, body: [UInt8], receivedAtMilliseconds: Int64,
        completion: @escaping @Sendable (Result<StoreOutcome, StoreFailure>) -> Void)
    /// False while writes fail (disk full, outbox at its cap, closed): `/readyz` answers 503.
    var isWritable: Bool { get }
}

package enum StoreOutcome: Sendable, Equatable {
    case stored(id: String)
    case duplicate(id: String)
}

/// A webhook that could not be stored: answered 503 with `Retry-After`.
package struct StoreFailure: Error, Sendable {
    package var reason: String
    package var retryAfterSeconds: Int
    package init(reason: String, retryAfterSeconds: Int) {
        self.reason = reason
        self.retryAfterSeconds = retryAfterSeconds
    }
}
