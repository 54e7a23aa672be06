import CallRelayCore
import CallRelayNormalize
import Logging
import NIOCore
import NIOHTTP1

/// Everything a connection's handler shares with the others (created once per server).
package struct IngestContext: Sendable {
    package var configuration: IngestConfiguration
    package var store: any WebhookStore
    package var metrics: IngestMetrics
    package var tracker: RequestTracker
    package var metricsText: @Sendable () -> String
    package var logger: Logger
}

/// One HTTP/1.1 connection: reads a request, routes it, answers.
///
/// Webhook path: body (bounded by `max_body_bytes`) → token check → strict JSON parse → must be an
/// object → normalize → `WebhookStore.store` → 200 only in the store's completion, i.e. after the
/// commit. Nothing here blocks the event loop: the commit runs on the outbox queue and the answer
/// hops back with `eventLoop.execute`. Pipelined requests are serialized by NIO's
/// `HTTPServerPipelineHandler`.
final class WebhookHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let shared: IngestContext
    private let tokenCheck: TokenCheck
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false
    private var respondedEarly = false

    init(shared: IngestContext) {
        self.shared = shared
        self.tokenCheck = TokenCheck(token: shared.configuration.token)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
            tooLarge = false
            respondedEarly = false
            if let declared = h.headers.first(name: "content-length").flatMap(Int.init), declared > shared.configuration.maxBodyBytes {
                rejectTooLarge(context: context)
            }
        case .body(var chunk):
            guard !tooLarge else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > shared.configuration.maxBodyBytes {
                body = nil
                rejectTooLarge(context: context)
                return
            }
            if body == nil {
                body = chunk
            } else {
                body!.writeBuffer(&chunk)
            }
        case .end:
            guard let head, !respondedEarly else { return }
            self.head = nil
            route(context: context, head: head, body: body)
            body = nil
        }
    }

    private func rejectTooLarge(context: ChannelHandlerContext) {
        tooLarge = true
        respondedEarly = true
        if let endpoint = head.flatMap({ Self.endpoint(for: splitTarget($0.uri).path) }) {
            shared.metrics.record(endpoint, .tooLarge)
        }
        let message = "body exceeds max_body_bytes (\(shared.configuration.maxBodyBytes) bytes)"
        respond(context: context, status: .payloadTooLarge, json: Self.errorBody(message), keepAlive: false)
    }

    // MARK: Routing

    static func endpoint(for path: Substring) -> IngestMetrics.Endpoint? {
        switch path {
        case "/webhooks/piopiy/cdr", "/webhooks/piopiy/cdr/": .cdr
        case "/webhooks/piopiy/live", "/webhooks/piopiy/live/": .live
        case "/webhooks/piopiy", "/webhooks/piopiy/": .combined
        default: nil
        }
    }

    private func route(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer?) {
        let (path, queryToken) = splitTarget(head.uri)
        let keepAlive = head.isKeepAlive
        if let endpoint = Self.endpoint(for: path) {
            guard head.method == .POST else {
                respond(context: context, status: .methodNotAllowed, json: Self.errorBody("use POST"), keepAlive: keepAlive, extra: [("Allow", "POST")])
                return
            }
            webhook(context: context, endpoint: endpoint, head: head, queryToken: queryToken, body: body, keepAlive: keepAlive)
            return
        }
        switch (head.method, path) {
        case (.GET, "/healthz"), (.HEAD, "/healthz"):
            respond(context: context, status: .ok, json: Array(#"{"status":"ok"}"#.utf8), keepAlive: keepAlive)
        case (.GET, "/readyz"), (.HEAD, "/readyz"):
            if shared.store.isWritable {
                respond(context: context, status: .ok, json: Array(#"{"status":"ready"}"#.utf8), keepAlive: keepAlive)
            } else {
                respond(context: context, status: .serviceUnavailable, json: Self.errorBody("outbox is not writable"), keepAlive: keepAlive)
            }
        case (.GET, "/metrics"):
            respond(
                context: context, status: .ok, body: Array(shared.metricsText().utf8),
                contentType: "text/plain; version=0.0.4; charset=utf-8", keepAlive: keepAlive)
        case (_, "/healthz"), (_, "/readyz"), (_, "/metrics"):
            respond(context: context, status: .methodNotAllowed, json: Self.errorBody("use GET"), keepAlive: keepAlive, extra: [("Allow", "GET")])
        default:
            respond(context: context, status: .notFound, json: Self.errorBody("no such endpoint"), keepAlive: keepAlive)
        }
    }

    private func webhook(
        context: ChannelHandlerContext, endpoint: IngestMetrics.Endpoint, head: HTTPRequestHead, queryToken: String?,
        body: ByteBuffer?, keepAlive: Bool
    ) {
        guard tokenCheck.accepts(queryToken: queryToken, authorization: head.headers.first(name: "authorization")) else {
            shared.metrics.record(endpoint, .unauthorized)
            let reason = queryToken == nil && !head.headers.contains(name: "authorization") ? "missing token" : "wrong token"
            respond(context: context, status: .unauthorized, json: Self.errorBody(reason), keepAlive: keepAlive, extra: [("WWW-Authenticate", "Bearer")])
            return
        }
        let parsed: JSONValue
        let bytes: [UInt8]
        do {
            guard let body, body.readableBytes > 0 else { throw BadRequest("empty body: expected a JSON object") }
            parsed = try body.withUnsafeReadableBytes { bytes throws(JSONParseError) in try JSONValue.parse(bytes) }
            bytes = Array(body.readableBytesView)
            guard case .object = parsed else { throw BadRequest("body must be a JSON object, found \(Self.typeName(parsed))") }
        } catch let error as JSONParseError {
            shared.metrics.record(endpoint, .badRequest)
            respond(context: context, status: .badRequest, json: Self.errorBody("body is not valid JSON: \(error)"), keepAlive: keepAlive)
            return
        } catch {
            shared.metrics.record(endpoint, .badRequest)
            respond(context: context, status: .badRequest, json: Self.errorBody("\(error)"), keepAlive: keepAlive)
            return
        }
        let receivedAt = Timestamp.nowMilliseconds()
        let normalized = PiopiyNormalizer.normalize(
            parsed, endpoint: endpoint == .cdr ? .cdr : endpoint == .live ? .live : .combined, receivedAtMilliseconds: receivedAt)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let metrics = shared.metrics
        shared.tracker.begin()
        shared.store.store(normalized, body: bytes, receivedAtMilliseconds: receivedAt) { result in
            eventLoop.execute {
                let (handler, context) = loopBound.value
                defer { handler.shared.tracker.end() }
                switch result {
                case .success(.stored(let id)):
                    metrics.record(endpoint, .stored)
                    handler.respond(context: context, status: .ok, json: Self.acceptedBody(id: id, duplicate: false), keepAlive: keepAlive)
                case .success(.duplicate(let id)):
                    metrics.record(endpoint, .duplicate)
                    handler.respond(context: context, status: .ok, json: Self.acceptedBody(id: id, duplicate: true), keepAlive: keepAlive)
                case .failure(let failure):
                    metrics.record(endpoint, .unavailable)
                    handler.respond(
                        context: context, status: .serviceUnavailable, json: Self.errorBody(failure.reason), keepAlive: keepAlive,
                        extra: [("Retry-After", "\(failure.retryAfterSeconds)")])
                }
            }
        }
    }

    // MARK: Answers

    private func respond(
        context: ChannelHandlerContext, status: HTTPResponseStatus, json: [UInt8], keepAlive: Bool, extra: [(String, String)] = []
    ) {
        respond(context: context, status: status, body: json, contentType: "application/json", keepAlive: keepAlive, extra: extra)
    }

    private func respond(
        context: ChannelHandlerContext, status: HTTPResponseStatus, body: [UInt8], contentType: String, keepAlive: Bool,
        extra: [(String, String)] = []
    ) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders()
        headers.reserveCapacity(4 + extra.count)
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        for (name, value) in extra { headers.add(name: name, value: value) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlushPromise(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.whenComplete { _ in context.close(promise: nil) }
        }
    }

    static func acceptedBody(id: String, duplicate: Bool) -> [UInt8] {
        JSONValue.object([JSONMember(key: "id", value: .string(id)), JSONMember(key: "duplicate", value: .bool(duplicate))]).serialized()
    }

    static func errorBody(_ reason: String) -> [UInt8] {
        JSONValue.object([JSONMember(key: "error", value: .string(reason))]).serialized()
    }

    static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.logger.debug("HTTP connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}

private extension ChannelHandlerContext {
    func writeAndFlushPromise(_ data: NIOAny) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        writeAndFlush(data, promise: promise)
        return promise.futureResult
    }
}

struct BadRequest: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
