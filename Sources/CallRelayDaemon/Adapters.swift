import CallRelayCalls
import CallRelayCore
import CallRelayDelivery
import CallRelayIngest
import CallRelayMQTT
import CallRelayNormalize
import CallRelayOutbox
import Synchronization

/// The HTTP edge's view of the outbox.
struct OutboxWebhookStore: WebhookStore {
    let outbox: SQLiteOutbox
    let topicPrefix: String

    func store(
        _ event: NormalizedEvent, body: [UInt8], receivedAtMilliseconds: Int64,
        completion: @escaping @Sendable (Result<StoreOutcome, StoreFailure>) -> Void
    ) {
        let row = OutboxEvent(
            id: event.id, dedupeOrder: event.dedupeOrder, callID: event.callID, topic: event.topic(prefix: topicPrefix),
            kind: event.kind.rawValue, body: body, payload: event.payload, receivedAtMilliseconds: receivedAtMilliseconds,
            companionInput: event.call)
        outbox.append(row) { result in
            switch result {
            case .success(.stored(let id)): completion(.success(.stored(id: id)))
            case .success(.duplicate(let id)): completion(.success(.duplicate(id: id)))
            case .failure(.full(let detail)):
                completion(.failure(StoreFailure(reason: "outbox full (storage.max_bytes or disk): \(detail)", retryAfterSeconds: 60)))
            case .failure(.closed):
                completion(.failure(StoreFailure(reason: "callrelay is shutting down", retryAfterSeconds: 5)))
            case .failure(.storage(let detail)):
                completion(.failure(StoreFailure(reason: "storage failure: \(detail)", retryAfterSeconds: 10)))
            }
        }
    }

    var isWritable: Bool { outbox.isWritable }
}

/// The delivery pump's view of the outbox.
struct OutboxDeliveryStore: DeliveryStore {
    let outbox: SQLiteOutbox
    /// Builds the payloads of call-state rows (nil: call state off; such rows are then skipped).
    let calls: CallStateCompanion?

    func fetchPending(after: Int64, limit: Int, completion: @escaping @Sendable (Result<[DeliveryItem], any Error>) -> Void) {
        fetch(after: after, limit: limit, into: [], completion: completion)
    }

    /// Call-state rows that a newer state of their call replaced are marked done without being
    /// published; the fetch goes on until it has `limit` items or the outbox has no more.
    private func fetch(
        after: Int64, limit: Int, into items: [DeliveryItem], completion: @escaping @Sendable (Result<[DeliveryItem], any Error>) -> Void
    ) {
        let want = limit - items.count
        outbox.fetchPending(after: after, limit: want) { result in
            switch result {
            case .failure(let error):
                completion(items.isEmpty ? .failure(error) : .success(items))
            case .success(let rows):
                var items = items
                for r in rows {
                    let payload: [UInt8]
                    var topic = r.topic
                    if r.kind == CallStateCompanion.rowKind {
                        let data = Self.data(r.content)
                        guard let calls, case .publish(let p) = calls.deliveryPayload(data) else {
                            calls?.skipped.add(1, ordering: .relaxed)
                            outbox.markDelivered(r.seq)
                            continue
                        }
                        payload = p
                        topic = calls.topic(of: data, stored: r.topic)
                    } else {
                        payload = Self.payload(r.content, eventID: r.eventID)
                    }
                    items.append(DeliveryItem(seq: r.seq, topic: topic, payload: payload, eventID: r.eventID, callID: r.callID, kind: r.kind))
                }
                if rows.count == want, items.count < limit, let last = rows.last {
                    fetch(after: last.seq, limit: limit, into: items, completion: completion)
                } else {
                    completion(.success(items))
                }
            }
        }
    }

    static func data(_ content: OutboxRecord.Content) -> [UInt8] {
        switch content {
        case .payload(let p): p
        case .body(let b, _, _): b
        }
    }

    /// The payload of a stored row: rows read back from the file keep the webhook body, and the
    /// payload is normalized again from it (deterministic: same body, kind and receive time give
    /// the same bytes as at ingest), with the row's event id (a replayed row's without its
    /// `#replay-…` suffix) instead of computing it again.
    static func payload(_ content: OutboxRecord.Content, eventID: String) -> [UInt8] {
        switch content {
        case .payload(let payload):
            return payload
        case .body(let body, let kind, let receivedAt):
            // The body was parsed when it was accepted; failing now means the file is damaged:
            // publish what is stored rather than stop the queue.
            guard let parsed = try? JSONValue.parse(body) else { return body }
            return PiopiyNormalizer.payload(
                parsed, endpoint: kind == "cdr" ? .cdr : .live, receivedAtMilliseconds: receivedAt,
                id: originalID(eventID), bodyBytes: body.count)
        }
    }

    /// A replayed row's id is the original's plus `#replay-…`.
    static func originalID(_ eventID: String) -> String {
        eventID.firstIndex(of: "#").map { String(eventID[..<$0]) } ?? eventID
    }

    func markDelivered(_ seq: Int64) { outbox.markDelivered(seq) }

    func deadLetter(_ seq: Int64, reason: String, attempts: Int) {
        outbox.deadLetter(DeadLetter(seq: seq, reason: reason, attempts: attempts))
    }
}

/// The delivery pump's view of the MQTT client: the QoS, and on MQTT 5 the properties of
/// CONTRACT §8 (payload format UTF-8, content type, user properties `schema`, `id`, `call_id`,
/// message expiry for live events).
struct MosquittoTransport: DeliveryTransport {
    let client: MosquittoClient
    let qos: MQTTQoS
    /// `mqtt.message_expiry_seconds` (0: none).
    let messageExpirySeconds: Int

    func publish(_ item: DeliveryItem) -> PublishAttempt {
        guard client.isConnected else { return .notConnected }
        // Call-state messages are retained: a subscriber that connects later gets every current call.
        let retain = item.kind == CallStateCompanion.rowKind
        switch client.publish(topic: item.topic, payload: item.payload, qos: qos, retain: retain, properties: properties(of: item)) {
        case .success(let mid): return .queued(mid: mid)
        case .failure(let error) where error.isNotConnected: return .notConnected
        case .failure(let error) where error.isOversize:
            let limit = client.session?.maximumPacketSize.map { " (broker maximum packet size \($0) bytes)" } ?? ""
            return .rejected("\(error.description): larger than the broker accepts\(limit)")
        case .failure(let error) where error.isPermanent: return .rejected(error.description)
        case .failure(let error): return .failed(error.description)
        }
    }

    func properties(of item: DeliveryItem) -> MQTTPublishProperties {
        if item.kind == CallStateCompanion.rowKind {
            // A clearing (empty payload) carries no properties: it only deletes the retained message.
            guard !item.payload.isEmpty else { return MQTTPublishProperties() }
            return MQTTPublishProperties(
                payloadIsUTF8: true, contentType: "application/json", userProperties: [("schema", CallStatePayload.schemaName)])
        }
        // A replayed row's id is the original's plus "#replay-…"; the payload keeps the original.
        let id = OutboxDeliveryStore.originalID(item.eventID)
        var user: [(name: String, value: String)] = [("schema", PiopiyNormalizer.schemaName), ("id", id)]
        if let callID = item.callID { user.append(("call_id", callID)) }
        // `{prefix}/{app_id}/{kind}/{event}`: rows of v0.1.0 say their kind only in the topic.
        let live = (item.kind ?? item.topic.split(separator: "/").dropLast().last.map(String.init)) == "live"
        return MQTTPublishProperties(
            payloadIsUTF8: true, contentType: "application/json", userProperties: user,
            messageExpirySeconds: live && messageExpirySeconds > 0 ? UInt32(clamping: messageExpirySeconds) : nil)
    }
}
