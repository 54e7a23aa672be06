import CallRelayCore

/// PIOPIY webhook body → `callrelay.call-event.v1`. Every rule is documented in
/// docs/payload-format.md; keep the two in step.
package enum PiopiyNormalizer {
    package static let schemaName = "callrelay.call-event.v1"

    /// Normalizes one webhook body. `body` should be a JSON object (the caller rejects
    /// non-objects); anything else is treated as an object without members. Never throws,
    /// never traps: every input yields an event. `bodyBytes`, the body's size when the caller
    /// knows it, sizes the payload's buffer (it is kept in memory until delivery: a fixed 2 KB
    /// buffer was twice what a typical live event needs).
    package static func normalize(
        _ body: JSONValue, endpoint: WebhookEndpoint, receivedAtMilliseconds: Int64, bodyBytes: Int? = nil
    ) -> NormalizedEvent {
        let fields = Fields(body)
        let kind = classify(fields, endpoint: endpoint)
        let event = eventName(fields, kind: kind, outbound: isOutbound(fields))
        let appValue = fields.appID
        let appLevel = FieldConversion.text(appValue).map(FieldConversion.sanitizeLevel) ?? "unknown"
        let callID = Self.callID(fields)
        let dedupeKey = makeDedupeKey(fields, body: body, kind: kind, hasCallID: callID != nil)
        let id = EventID.make(fromKey: dedupeKey)
        let payload = writePayload(
            fields, body: body, id: id, kind: kind, event: event, callID: callID,
            receivedAtMilliseconds: receivedAtMilliseconds, bodyBytes: bodyBytes)
        return NormalizedEvent(
            id: id, dedupeKey: dedupeKey, dedupeOrder: dedupeOrder(fields, kind: kind, hasCallID: callID != nil), kind: kind,
            event: event, appID: appLevel, callID: callID, payload: payload,
            call: callFacts(fields, kind: kind, event: event, appLevel: appLevel, callID: callID))
    }

    /// The payload alone, for a stored body whose event id is known: what `normalize` gives as
    /// `payload` when `id` is the id it computes (the delivery of rows read back from the file,
    /// which skips the dedupe key, the id's hash and the call facts). With a stored id from an
    /// older build whose dedupe key differed, the payload carries the stored id: the one PIOPIY
    /// was answered with and the MQTT 5 `id` property says.
    package static func payload(
        _ body: JSONValue, endpoint: WebhookEndpoint, receivedAtMilliseconds: Int64, id: String, bodyBytes: Int? = nil
    ) -> [UInt8] {
        let fields = Fields(body)
        let kind = classify(fields, endpoint: endpoint)
        let event = eventName(fields, kind: kind, outbound: isOutbound(fields))
        return writePayload(
            fields, body: body, id: id, kind: kind, event: event, callID: callID(fields),
            receivedAtMilliseconds: receivedAtMilliseconds, bodyBytes: bodyBytes)
    }

    static func callID(_ fields: Fields) -> String? {
        FieldConversion.isPresentText(fields.cmiuuid) ? FieldConversion.text(fields.cmiuuid) : nil
    }

    // MARK: Input fields

    /// The known top-level members (last occurrence wins) and everything else, in one pass.
    struct Fields {
        var appid: JSONValue?
        var appIDAlternative: JSONValue?
        var cmiuuid: JSONValue?
        var conversationUUID: JSONValue?
        var requestID: JSONValue?
        var leg: JSONValue?
        var direction: JSONValue?
        var status: JSONValue?
        var time: JSONValue?
        var startTime: JSONValue?
        var endTime: JSONValue?
        var answerTime: JSONValue?
        var duration: JSONValue?
        var callRate: JSONValue?
        var balance: JSONValue?
        var from: JSONValue?
        var to: JSONValue?
        var callerID: JSONValue?
        var virtualNumber: JSONValue?
        var extraParams: JSONValue?
        var wsStatus: JSONValue?
        /// Not known inputs (they go to `other_fields`), but read for classification.
        var type: JSONValue?
        var out: JSONValue?
        /// Members whose key is not a known input, in received order.
        var others: [JSONMember] = []

        init(_ body: JSONValue) {
            guard case .object(let members) = body else { return }
            for member in members {
                let v = member.value
                switch member.key {
                case "appid": appid = v
                case "app_id": appIDAlternative = v
                case "cmiuuid": cmiuuid = v
                case "conversation_uuid": conversationUUID = v
                case "request_id": requestID = v
                case "leg": leg = v
                case "direction": direction = v
                case "status": status = v
                case "time": time = v
                case "start_time": startTime = v
                case "end_time": endTime = v
                case "answer_time": answerTime = v
                case "duration": duration = v
                case "call_rate": callRate = v
                case "balance": balance = v
                case "from": from = v
                case "to": to = v
                case "callerid": callerID = v
                case "vn": virtualNumber = v
                case "extra_params": extraParams = v
                case "ws_status": wsStatus = v
                default:
                    if member.key == "type" {
                        type = v
                    } else if member.key == "out" {
                        out = v
                    }
                    others.append(member)
                }
            }
        }

        /// `appid`, or `app_id` when `appid` is absent (or null).
        var appID: JSONValue? {
            if let appid, appid != .null { return appid }
            return appIDAlternative
        }

        /// `leg` as published: "a"/"b" lower-cased, any other text as received.
        var legText: String? {
            guard let text = FieldConversion.text(leg) else { return nil }
            if FieldConversion.equalsIgnoringASCIICase(text, "a") { return "a" }
            if FieldConversion.equalsIgnoringASCIICase(text, "b") { return "b" }
            return text
        }
    }

    @inline(__always) private static func isPresent(_ value: JSONValue?) -> Bool {
        guard let value else { return false }
        return value != .null
    }

    // MARK: Kind, direction, event name

    static func classify(_ f: Fields, endpoint: WebhookEndpoint) -> WebhookKind {
        switch endpoint {
        case .cdr: return .cdr
        case .live: return .live
        case .combined: break
        }
        if case .string(let type)? = f.type {
            if FieldConversion.equalsIgnoringASCIICase(type, "cdr") { return .cdr }
            if FieldConversion.equalsIgnoringASCIICase(type, "event") { return .live }
        }
        if isPresent(f.duration) || isPresent(f.startTime) || isPresent(f.endTime) || isPresent(f.answerTime)
            || isPresent(f.callRate) || isPresent(f.balance)
        {
            return .cdr
        }
        if let status = FieldConversion.text(f.status), FieldConversion.equalsIgnoringASCIICase(status, "missed") {
            return .cdr
        }
        return .live
    }

    /// Direction of the call (not of the leg). Leg b reports its own leg direction, which is
    /// "outbound" even on an inbound call, so leg b is outbound only with an outbound-API marker.
    static func isOutbound(_ f: Fields) -> Bool {
        let apiMarker: Bool
        switch f.out {
        case .bool(true)?: apiMarker = true
        case .string(let s)?: apiMarker = FieldConversion.equalsIgnoringASCIICase(s, "true")
        default: apiMarker = false
        }
        let hasRequestID = FieldConversion.isPresentText(f.requestID)
        if f.legText == "b" {
            return hasRequestID || apiMarker
        }
        if case .string(let direction)? = f.direction {
            if FieldConversion.equalsIgnoringASCIICase(direction, "inbound") { return false }
            if FieldConversion.equalsIgnoringASCIICase(direction, "outbound") { return true }
        }
        return hasRequestID
    }

    static func eventName(_ f: Fields, kind: WebhookKind, outbound: Bool) -> String {
        let dir = outbound ? "out" : "in"
        let status = FieldConversion.text(f.status).map(FieldConversion.sanitizeLevel)
        switch kind {
        case .cdr:
            guard let status else { return "\(dir)_unknown" }
            switch status {
            case "answered", "missed": return "\(dir)_\(status)"
            default:
                if status.hasPrefix("in_") || status.hasPrefix("out_") { return status }
                return FieldConversion.sanitizeLevel("\(dir)_\(status)")
            }
        case .live:
            guard let status else { return "unknown" }
            switch status {
            case "out_bridged": return "out_answered"
            case "answered", "hangup", "started": return "\(dir)_\(status)"
            default: return status  // the 8 documented names and unknown statuses, sanitized
            }
        }
    }

    // MARK: Dedupe key

    static func makeDedupeKey(_ f: Fields, body: JSONValue, kind: WebhookKind, hasCallID: Bool) -> String {
        guard hasCallID else {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(512)
            body.writeCanonical(into: &bytes)
            return "\(kind.rawValue)|body|" + String(decoding: bytes, as: UTF8.self)
        }
        let app = FieldConversion.keyComponent(f.appID)
        let call = FieldConversion.keyComponent(f.cmiuuid)
        let leg = FieldConversion.escapeKeyComponent(f.legText ?? "")
        switch kind {
        case .cdr:
            return "cdr|\(app)|\(call)|\(leg)"
        case .live:
            let status = FieldConversion.escapeKeyComponent(FieldConversion.rawKeyComponent(f.status).lowercased())
            let time = FieldConversion.keyComponent(f.time)
            return "live|\(app)|\(call)|\(leg)|\(status)|\(time)"
        }
    }

    /// The `time` component of a live event's dedupe key as an integer (0 when the key has none,
    /// or it is not a plain non-negative integer). Derived from the key, so every re-send of an
    /// event carries the same value; the outbox orders its dedupe index by it, so the index grows
    /// at its right edge like the events do, instead of at random places.
    static func dedupeOrder(_ f: Fields, kind: WebhookKind, hasCallID: Bool) -> Int64 {
        guard hasCallID, kind == .live else { return 0 }
        let component = FieldConversion.rawKeyComponent(f.time)
        guard component.utf8.count <= 18, let value = Int64(component), value > 0 else { return 0 }
        return value
    }

    // MARK: Payload

    static func writePayload(
        _ f: Fields, body: JSONValue, id: String, kind: WebhookKind, event: String, callID: String?,
        receivedAtMilliseconds: Int64, bodyBytes: Int? = nil
    ) -> [UInt8] {
        var w = JSONMembersWriter()
        // The envelope is ~600 bytes beside `raw`; unknown members come twice (`other_fields`).
        w.out.reserveCapacity(bodyBytes.map { $0 + 640 + (f.others.isEmpty ? 0 : $0) } ?? 2048)
        JSONWriter.writeASCII("{\"schema\":\"callrelay.call-event.v1\"", into: &w.out)
        w.string("id", id)
        JSONWriter.writeASCII(",\"source\":\"piopiy\"", into: &w.out)
        w.string("kind", kind.rawValue)
        w.string("event", event)
        w.string("status", FieldConversion.text(f.status))
        w.string("app_id", FieldConversion.text(f.appID))
        w.string("call_id", callID)
        w.string("conversation_id", FieldConversion.text(f.conversationUUID))
        w.string("request_id", FieldConversion.text(f.requestID))
        w.string("leg", f.legText)
        w.string("direction", FieldConversion.text(f.direction))
        w.string("from", FieldConversion.phoneNumber(f.from))
        w.string("to", FieldConversion.phoneNumber(f.to))
        w.string("caller_id", FieldConversion.phoneNumber(f.callerID))
        w.string("virtual_number", FieldConversion.phoneNumber(f.virtualNumber))
        w.timestamp("occurred_at", FieldConversion.epochMilliseconds(f.time))
        w.timestamp("received_at", receivedAtMilliseconds)
        w.timestamp("started_at", FieldConversion.epochMilliseconds(f.startTime))
        w.timestamp("answered_at", FieldConversion.epochMilliseconds(f.answerTime))
        w.timestamp("ended_at", FieldConversion.epochMilliseconds(f.endTime))
        if let digits = FieldConversion.durationDigits(f.duration) {
            w.key("duration_seconds")
            w.out.append(contentsOf: digits)
        }
        w.string("call_rate", FieldConversion.decimalText(f.callRate))
        w.string("balance", FieldConversion.decimalText(f.balance))
        w.value("extra_params", FieldConversion.embeddedJSON(f.extraParams))
        w.value("stream", FieldConversion.embeddedJSON(f.wsStatus))
        if !f.others.isEmpty {
            w.key("other_fields")
            otherFields(f.others).write(into: &w.out)
        }
        w.key("raw")
        body.write(into: &w.out)
        w.out.append(0x7D)
        return w.out
    }

    /// Unknown members with sanitized keys. When two keys sanitize to the same name, the last
    /// value wins at the position of the first (what `JSON.parse` does with duplicate keys).
    static func otherFields(_ others: [JSONMember]) -> JSONValue {
        var result: [JSONMember] = []
        result.reserveCapacity(others.count)
        // Few unknown keys is the normal case: a linear scan beats hashing there.
        let useIndex = others.count > 16
        var positions: [String: Int] = [:]
        for member in others {
            let key = FieldConversion.sanitizeLevel(member.key)
            let existing = useIndex ? positions[key] : result.firstIndex { $0.key == key }
            if let existing {
                result[existing].value = member.value
            } else {
                if useIndex { positions[key] = result.count }
                result.append(JSONMember(key: key, value: member.value))
            }
        }
        return .object(result)
    }
}
