import CallRelayCore

/// Which family a webhook belongs to; the MQTT topic's `{kind}` level.
package enum WebhookKind: String, Sendable {
    case cdr
    case live
}

/// The URL a webhook arrived on.
package enum WebhookEndpoint: Sendable {
    /// `POST /webhooks/piopiy/cdr`: always a CDR.
    case cdr
    /// `POST /webhooks/piopiy/live`: always a live event.
    case live
    /// `POST /webhooks/piopiy`: classified from the payload (see docs/payload-format.md).
    case combined
}

/// One webhook, normalized: what the outbox stores and MQTT publishes.
package struct NormalizedEvent: Sendable {
    /// `EventID.make(fromKey: dedupeKey)`: 32 lowercase hex characters.
    package let id: String
    /// Identity of the event; re-sends of the same event have the same key.
    package let dedupeKey: String
    /// An integer that orders events roughly by time and is equal for equal dedupe keys (the live
    /// event's `time`; 0 for CDRs and key-less events). See `PiopiyNormalizer.dedupeOrder`.
    package let dedupeOrder: Int64
    package let kind: WebhookKind
    /// Sanitized event name (a topic level).
    package let event: String
    /// Sanitized app id (a topic level); `unknown` when absent.
    package let appID: String
    /// `cmiuuid` as text, if present and non-empty.
    package let callID: String?
    /// The complete `callrelay.call-event.v1` JSON object, compact UTF-8.
    package let payload: [UInt8]
    /// What the webhook says about its call (nil when it names none), for the call state.
    package let call: CallFacts?

    package init(
        id: String, dedupeKey: String, dedupeOrder: Int64 = 0, kind: WebhookKind, event: String, appID: String, callID: String?,
        payload: [UInt8], call: CallFacts? = nil
    ) {
        self.call = call
        self.id = id
        self.dedupeKey = dedupeKey
        self.dedupeOrder = dedupeOrder
        self.kind = kind
        self.event = event
        self.appID = appID
        self.callID = callID
        self.payload = payload
    }

    /// `{prefix}/{app_id}/{kind}/{event}`, e.g. `piopiy/2222224/live/out_answered`.
    package func topic(prefix: String) -> String {
        "\(prefix)/\(appID)/\(kind.rawValue)/\(event)"
    }
}
