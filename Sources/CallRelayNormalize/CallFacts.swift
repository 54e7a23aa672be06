import CallRelayCore

/// What one webhook says about its call, for the call-state machine (CONTRACT §9): extracted
/// once at ingest beside the payload, from the same fields and with the same rules.
package struct CallFacts: Sendable, Equatable {
    package var kind: WebhookKind
    /// The event name (docs/payload-format.md §4): `out_answered`, `in_missed`, `stream_connected`…
    package var event: String
    /// `app_id` as published (text as received) and as a topic level (sanitized).
    package var appID: String?
    package var appLevel: String
    /// The leg's `cmiuuid`.
    package var callID: String?
    package var conversationID: String?
    /// `a` or `b`; any other leg text, and none, count as leg `a`.
    package var leg: String
    /// The leg's `direction`, as received.
    package var direction: String?
    package var from: String?
    package var to: String?
    /// Epoch milliseconds of `time`, `start_time`, `answer_time`, `end_time` (CDRs carry the last three).
    package var occurredAt: Int64?
    package var startedAt: Int64?
    package var answeredAt: Int64?
    package var endedAt: Int64?

    package init(
        kind: WebhookKind, event: String, appID: String?, appLevel: String, callID: String?, conversationID: String?, leg: String,
        direction: String? = nil, from: String? = nil, to: String? = nil, occurredAt: Int64? = nil, startedAt: Int64? = nil,
        answeredAt: Int64? = nil, endedAt: Int64? = nil
    ) {
        self.kind = kind
        self.event = event
        self.appID = appID
        self.appLevel = appLevel
        self.callID = callID
        self.conversationID = conversationID
        self.leg = leg
        self.direction = direction
        self.from = from
        self.to = to
        self.occurredAt = occurredAt
        self.startedAt = startedAt
        self.answeredAt = answeredAt
        self.endedAt = endedAt
    }
}

extension PiopiyNormalizer {
    /// The call facts of a webhook; nil when it names no call (neither `conversation_uuid` nor `cmiuuid`).
    static func callFacts(_ f: Fields, kind: WebhookKind, event: String, appLevel: String, callID: String?) -> CallFacts? {
        let conversation = FieldConversion.isPresentText(f.conversationUUID) ? FieldConversion.text(f.conversationUUID) : nil
        guard callID != nil || conversation != nil else { return nil }
        return CallFacts(
            kind: kind, event: event, appID: FieldConversion.text(f.appID), appLevel: appLevel, callID: callID,
            conversationID: conversation, leg: f.legText == "b" ? "b" : "a", direction: FieldConversion.text(f.direction),
            from: FieldConversion.phoneNumber(f.from), to: FieldConversion.phoneNumber(f.to),
            occurredAt: FieldConversion.epochMilliseconds(f.time), startedAt: FieldConversion.epochMilliseconds(f.startTime),
            answeredAt: FieldConversion.epochMilliseconds(f.answerTime), endedAt: FieldConversion.epochMilliseconds(f.endTime))
    }
}
