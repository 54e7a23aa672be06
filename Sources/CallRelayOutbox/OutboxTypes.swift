/// An event ready to be stored: the webhook body as received (what the file keeps), and the
/// normalized payload built from it (kept in memory for a delivery that keeps up; rebuilt from the
/// body when a backlog is read back, see `OutboxRecord.Content`).
package struct OutboxEvent: Sendable {
    /// The stable event id (32 hex characters from the normalizer; any text in tests).
    package var id: String
    /// Orders the dedupe index (the live event's `time`; 0 when there is none). Must be equal for
    /// equal ids: see `NormalizedEvent.dedupeOrder`.
    package var dedupeOrder: Int64
    package var callID: String?
    package var topic: String
    /// `cdr` or `live`: with the body and the time, all the payload is built from.
    package var kind: String
    package var body: [UInt8]
    package var payload: [UInt8]
    package var receivedAtMilliseconds: Int64
    /// What the companion needs from this event (the call facts), never stored.
    package var companionInput: (any Sendable)?

    package init(
        id: String, dedupeOrder: Int64 = 0, callID: String?, topic: String, kind: String, body: [UInt8], payload: [UInt8],
        receivedAtMilliseconds: Int64, companionInput: (any Sendable)? = nil
    ) {
        self.companionInput = companionInput
        self.id = id
        self.dedupeOrder = dedupeOrder
        self.callID = callID
        self.topic = topic
        self.kind = kind
        self.body = body
        self.payload = payload
        self.receivedAtMilliseconds = receivedAtMilliseconds
    }
}

/// A stored, not yet delivered event, in outbox order.
package struct OutboxRecord: Sendable, Equatable {
    package var seq: Int64
    package var eventID: String
    package var topic: String
    package var content: Content
    package var callID: String?
    /// `cdr` or `live`; nil for rows written by v0.1.0, which did not say.
    package var kind: String?

    package init(seq: Int64, eventID: String, topic: String, content: Content, callID: String? = nil, kind: String? = nil) {
        self.seq = seq
        self.eventID = eventID
        self.topic = topic
        self.content = content
        self.callID = callID
        self.kind = kind
    }

    package enum Content: Sendable, Equatable {
        /// The payload to publish (just committed, from memory; or a row written by v0.1.0).
        case payload([UInt8])
        /// The webhook body as stored: the payload is `PiopiyNormalizer.normalize` of it with
        /// this kind and receive time (the caller builds it: the outbox knows no payloads).
        case body([UInt8], kind: String, receivedAtMilliseconds: Int64)

        var byteCount: Int {
            switch self {
            case .payload(let p): p.count
            case .body(let b, _, _): b.count
            }
        }
    }
}

/// What `append` did: stored a new row, or found the same event id already stored (a re-send).
package enum AppendOutcome: Sendable, Equatable {
    case stored(id: String)
    case duplicate(id: String)
}

package enum OutboxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `storage.max_bytes` reached or the disk is full: try again later (HTTP 503).
    case full(String)
    /// Any other storage failure (HTTP 503).
    case storage(String)
    /// The outbox was closed (shutdown).
    case closed

    package var description: String {
        switch self {
        case .full(let detail): "outbox full: \(detail)"
        case .storage(let detail): "storage failure: \(detail)"
        case .closed: "outbox closed"
        }
    }
}

package struct OutboxStats: Sendable, Equatable {
    package var pending: Int
    package var delivered: Int
    package var deadLetters: Int
    package var oldestPendingReceivedAtMilliseconds: Int64?
    package var lastDeliveredAtMilliseconds: Int64?
}

/// A row the delivery gave up on (the broker kept refusing it); kept for `replay`.
package struct DeadLetter: Sendable, Equatable {
    package var seq: Int64
    package var reason: String
    package var attempts: Int
    package init(seq: Int64, reason: String, attempts: Int) {
        self.seq = seq
        self.reason = reason
        self.attempts = attempts
    }
}

package enum SynchronousMode: String, Sendable {
    case full = "FULL"
    case normal = "NORMAL"
}
