import CallRelayCore
import CallRelayNormalize
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// Everything a connection's handler shares with the others (created once per listener).
package struct IngestContext: Sendable {
    package var configuration: IngestConfiguration
    package var store: any WebhookStore
    package var metrics: IngestMetrics
    package var tracker: RequestTracker
    package var metricsText: @Sendable () -> String
    package var logger: Logger
    var rateLimiter: RateLimiter?
}

/// One HTTP/1.1 connection: reads a request, admits or refuses it at its head, routes it, answers.
///
/// At the head (before any body is read): framing and method (`RequestAdmission`), the client
/// address (`http.allow`, behind `http.trusted_proxies`), the rate limit, the route and the token.
/// A refusal that must not wait for the body (413, 429, 403, 501, or any refusal of an
/// `Expect: 100-continue` request) is answered at once and the connection closed; the others
/// (401, 404, 405) are answered after the body is read and discarded, keeping the connection.
///
/// Webhook path: body (bounded by `max_body_bytes`) → strict JSON parse → must be an object →
/// normalize → `WebhookStore.store` → 200 only in the store's completion, i.e. after the commit.
/// Nothing here blocks the event loop: the commit runs on the outbox queue and the answer hops
/// back with `eventLoop.execute`. Pipelined requests are serialized by NIO's
/// `HTTPServerPipelineHandler`; parser errors arrive here as `HTTPParserError` and are answered
/// with a JSON 400.
final class WebhookHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Route: Equatable {
        case webhook(IngestMetrics.Endpoint)
        case health, ready, metrics
    }

    private enum State {
        /// Waiting for a request head.
        case idle
        /// Head admitted; reading the body of a request for `route`.
        case reading(HTTPRequestHead, Route, body: ByteBuffer?)
        /// Refused: the answer is given once the body has been read (nil: already answered).
        case discarding(HTTPAnswer?)
        /// The answer is being stored or written.
        case answering
        /// Answered with `Connection: close`; nothing more is read.
        case closing
    }

    private let shared: IngestContext
    private let tokenCheck: TokenCheck
    private let timeouts: ConnectionTimeoutHandler?
    private var state = State.idle
    private var peer: [UInt8]?
    private var client: [UInt8]?

    init(shared: IngestContext, timeouts: ConnectionTimeoutHandler?) {
        self.shared = shared
        self.tokenCheck = TokenCheck(token: shared.configuration.token)
        self.timeouts = timeouts
    }

    func handlerAdded(context: ChannelHandlerContext) {
        peer = ClientAddress.bytes(of: context.channel.remoteAddress)
    }

    func channelActive(context: ChannelHandlerContext) {
        peer = ClientAddress.bytes(of: context.channel.remoteAddress)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            timeouts?.headReceived()
            admit(context: context, head: head)
        case .body(var chunk):
            if case .discarding(.some) = state {
                // A refused request's body is read and dropped, within the same limit.
                discarded += chunk.readableBytes
                if discarded > shared.configuration.maxBodyBytes {
                    state = .discarding(nil)
                    respond(context: context, .error(.payloadTooLarge, "body exceeds max_body_bytes (\(shared.configuration.maxBodyBytes) bytes)", close: true), keepAlive: false)
                }
                return
            }
            guard case .reading(let head, let route, var body) = state else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > shared.configuration.maxBodyBytes {
                if case .webhook(let endpoint) = route { shared.metrics.record(endpoint, .tooLarge) }
                state = .discarding(nil)
                respond(context: context, .error(.payloadTooLarge, "body exceeds max_body_bytes (\(shared.configuration.maxBodyBytes) bytes)", close: true), keepAlive: false)
                return
            }
            if route == .health || route == .ready || route == .metrics { return }  // bodies of GETs are ignored
            state = .answering  // drops the enum's reference, so the buffer grows in place instead of being copied
            if body == nil {
                body = chunk
            } else {
                body!.writeBuffer(&chunk)
            }
            state = .reading(head, route, body: body)
        case .end:
            switch state {
            case .reading(let head, let route, let body):
                timeouts?.requestEnded()
                state = .answering
                answer(context: context, head: head, route: route, body: body)
            case .discarding(let deferred?):
                timeouts?.requestEnded()
                state = .answering
                respond(context: context, deferred, keepAlive: pendingKeepAlive && !deferred.close)
            case .discarding(nil), .idle, .answering, .closing:
                break
            }
        }
    }

    /// Keep-alive of the request being refused after its body (set at its head).
    private var pendingKeepAlive = true
    /// Bytes of a refused request's body dropped so far.
    private var discarded = 0

    // MARK: Admission

    private func admit(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let configuration = shared.configuration
        let (path, queryToken) = splitTarget(head.uri)
        pendingKeepAlive = head.isKeepAlive
        discarded = 0
        client = ClientAddress.resolve(
            peer: peer, forwardedFor: configuration.trustedProxies.isEmpty ? [] : head.headers["x-forwarded-for"],
            trusted: configuration.trustedProxies)
        let route = Self.route(path, routes: configuration.routes)

        func refuse(_ answer: HTTPAnswer, _ refusal: IngestMetrics.Refusal?, immediately: Bool) {
            if let refusal { shared.metrics.record(refusal) }
            if case .webhook(let endpoint)? = route, answer.status == .payloadTooLarge { shared.metrics.record(endpoint, .tooLarge) }
            if case .webhook(let endpoint)? = route, answer.status == .unauthorized { shared.metrics.record(endpoint, .unauthorized) }
            let mustClose = immediately || answer.close || RequestAdmission.expectation(head) != .none
            if mustClose {
                state = .discarding(nil)
                var closing = answer
                closing.close = true
                // NIO's encoder drops the body of any answer to CONNECT: write it as bytes.
                if head.method == .CONNECT { closing.raw = true }
                respond(context: context, closing, keepAlive: false)
            } else {
                state = .discarding(answer)
            }
        }

        if case .reject(let answer, let refusal, let immediately) = RequestAdmission.decide(
            head: head, path: path, maxBodyBytes: configuration.maxBodyBytes)
        {
            refuse(answer, refusal, immediately: immediately)
            return
        }
        if !configuration.allow.isEmpty, !(client.map(configuration.allow.containsAddress) ?? false) {
            shared.logger.debug("refused: client outside http.allow", metadata: ["client": "\(ClientAddress.text(client))"])
            refuse(.error(.forbidden, "client address \(ClientAddress.text(client)) is not allowed (http.allow)", close: true), .forbidden, immediately: true)
            return
        }
        if let limiter = shared.rateLimiter, let client, let retryAfter = limiter.take(client: client, now: context.eventLoop.now) {
            refuse(
                .error(.tooManyRequests, "rate limit of \(limiter.perSecond) requests per second exceeded; retry after \(retryAfter) s", close: true,
                    headers: [("Retry-After", "\(retryAfter)")]),
                .rateLimited, immediately: true)
            return
        }
        guard let route else {
            refuse(.error(.notFound, "no such endpoint"), nil, immediately: false)
            return
        }
        switch route {
        case .webhook:
            guard head.method == .POST else {
                refuse(.error(.methodNotAllowed, "use POST", headers: [("Allow", "POST")]), nil, immediately: false)
                return
            }
            guard tokenCheck.accepts(queryToken: queryToken, authorization: head.headers.first(name: "authorization")) else {
                let reason = queryToken == nil && !head.headers.contains(name: "authorization") ? "missing token" : "wrong token"
                refuse(.error(.unauthorized, reason, headers: [("WWW-Authenticate", "Bearer")]), nil, immediately: false)
                return
            }
        case .health, .ready, .metrics:
            let allowed: [HTTPMethod] = route == .metrics ? [.GET] : [.GET, .HEAD]
            guard allowed.contains(head.method) else {
                refuse(.error(.methodNotAllowed, "use GET", headers: [("Allow", "GET")]), nil, immediately: false)
                return
            }
        }
        state = .reading(head, route, body: nil)
        if RequestAdmission.expectation(head) == .continue {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
    }

    private static func route(_ path: Substring, routes: IngestConfiguration.Routes) -> Route? {
        if routes != .admin, let endpoint = endpoint(for: path) { return .webhook(endpoint) }
        guard routes != .webhooks else { return nil }
        switch path {
        case "/healthz": return .health
        case "/readyz": return .ready
        case "/metrics": return .metrics
        default: return nil
        }
    }

    static func endpoint(for path: Substring) -> IngestMetrics.Endpoint? {
        switch path {
        case "/webhooks/piopiy/cdr", "/webhooks/piopiy/cdr/": .cdr
        case "/webhooks/piopiy/live", "/webhooks/piopiy/live/": .live
        case "/webhooks/piopiy", "/webhooks/piopiy/": .combined
        default: nil
        }
    }

    // MARK: Answers

    private func answer(context: ChannelHandlerContext, head: HTTPRequestHead, route: Route, body: ByteBuffer?) {
        let keepAlive = head.isKeepAlive
        switch route {
        case .health:
            respond(context: context, .json(.ok, Array(#"{"status":"ok"}"#.utf8)), keepAlive: keepAlive)
        case .ready:
            if shared.store.isWritable {
                respond(context: context, .json(.ok, Array(#"{"status":"ready"}"#.utf8)), keepAlive: keepAlive)
            } else {
                respond(context: context, .error(.serviceUnavailable, "outbox is not writable"), keepAlive: keepAlive)
            }
        case .metrics:
            respond(
                context: context,
                HTTPAnswer(status: .ok, body: Array(shared.metricsText().utf8), contentType: "text/plain; version=0.0.4; charset=utf-8"),
                keepAlive: keepAlive)
        case .webhook(let endpoint):
            webhook(context: context, endpoint: endpoint, body: body, keepAlive: keepAlive)
        }
    }

    private func webhook(context: ChannelHandlerContext, endpoint: IngestMetrics.Endpoint, body: ByteBuffer?, keepAlive: Bool) {
        let parsed: JSONValue
        let bytes: [UInt8]
        do {
            guard let body, body.readableBytes > 0 else { throw BadRequest("empty body: expected a JSON object") }
            parsed = try body.withUnsafeReadableBytes { bytes throws(JSONParseError) in try JSONValue.parse(bytes) }
            bytes = Array(body.readableBytesView)
            guard case .object = parsed else { throw BadRequest("body must be a JSON object, found \(Self.typeName(parsed))") }
        } catch let error as JSONParseError {
            shared.metrics.record(endpoint, .badRequest)
            respond(context: context, .error(.badRequest, "body is not valid JSON: \(error)"), keepAlive: keepAlive)
            return
        } catch {
            shared.metrics.record(endpoint, .badRequest)
            respond(context: context, .error(.badRequest, "\(error)"), keepAlive: keepAlive)
            return
        }
        let receivedAt = Timestamp.nowMilliseconds()
        let normalized = PiopiyNormalizer.normalize(
            parsed, endpoint: endpoint == .cdr ? .cdr : endpoint == .live ? .live : .combined, receivedAtMilliseconds: receivedAt,
            bodyBytes: bytes.count)
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
                    handler.respond(context: context, .json(.ok, HTTPAnswer.acceptedBody(id: id, duplicate: false)), keepAlive: keepAlive)
                case .success(.duplicate(let id)):
                    metrics.record(endpoint, .duplicate)
                    handler.respond(context: context, .json(.ok, HTTPAnswer.acceptedBody(id: id, duplicate: true)), keepAlive: keepAlive)
                case .failure(let failure):
                    metrics.record(endpoint, .unavailable)
                    handler.respond(
                        context: context, .error(.serviceUnavailable, failure.reason, headers: [("Retry-After", "\(failure.retryAfterSeconds)")]),
                        keepAlive: keepAlive)
                }
            }
        }
    }

    /// Writes one framed answer. After it the connection closes (`close`, or the client asked
    /// for it), or the next request may come.
    private func respond(context: ChannelHandlerContext, _ answer: HTTPAnswer, keepAlive requested: Bool) {
        guard context.channel.isActive else { return }
        let keepAlive = requested && !answer.close
        if !keepAlive { state = .closing }
        if answer.raw, let timeouts {
            timeouts.writeAndClose(answer.rawBytes)
            return
        }
        if keepAlive {
            // Before `.end` is written: writing it makes NIO's pipelining handler deliver the
            // next buffered request to this handler at once.
            if case .answering = state { state = .idle }
            timeouts?.responseSent()
        }
        context.write(wrapOutboundOut(.head(answer.responseHead(keepAlive: keepAlive))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: answer.body.count)
        buffer.writeBytes(answer.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
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
        if let parserError = error as? HTTPParserError {
            shared.metrics.record(.malformed)
            switch state {
            case .idle, .reading, .discarding(.some):
                // No answer is under way for this request: explain, then close.
                state = .discarding(nil)
                respond(context: context, .error(.badRequest, parserError.reason, close: true), keepAlive: false)
                return
            case .discarding(nil), .answering, .closing:
                break
            }
        } else if error is NIOSSLError || error is BoringSSLError {
            shared.metrics.record(.tlsHandshake)
        }
        shared.logger.debug("HTTP connection error", metadata: ["error": "\(error)", "client": "\(ClientAddress.text(client ?? peer))"])
        context.close(promise: nil)
    }
}

struct BadRequest: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
