import NIOCore

/// The deadlines of one HTTP connection, as a value: events in (with the time), a deadline out.
///
/// - a request head must be complete `header` after the connection opened, or after the first
///   byte of a keep-alive connection's next request;
/// - its body must be complete `body` after the head;
/// - while the request is being stored and answered there is no deadline (the outbox answers);
/// - between requests, a keep-alive connection may stay silent for `idle`.
///
/// Bytes that arrive while a request is processed (pipelining) start the header clock as soon as
/// its answer is written. The shell (`ConnectionTimeoutHandler`) keeps one timer per connection
/// and re-arms it only when the deadline comes earlier than the armed one.
struct ConnectionTimeouts: Sendable, Equatable {
    enum Phase: Sendable, Equatable {
        case awaitingHead, readingBody, processing, idle
    }
    enum Expiry: Sendable, Equatable {
        /// The head did not arrive in time: answer 408, close.
        case header
        /// The body did not arrive in time: answer 408, close.
        case body
        /// A keep-alive connection stayed silent: close without an answer.
        case idle
    }

    let header: TimeAmount
    let body: TimeAmount
    let idle: TimeAmount
    private(set) var phase: Phase = .awaitingHead
    /// nil while processing.
    private(set) var deadline: NIODeadline?
    private var bytesWhileProcessing = false

    init(header: TimeAmount, body: TimeAmount, idle: TimeAmount, now: NIODeadline) {
        self.header = header
        self.body = body
        self.idle = idle
        deadline = now + header
    }

    mutating func bytesArrived(now: NIODeadline) {
        switch phase {
        case .idle:
            phase = .awaitingHead
            deadline = now + header
        case .processing:
            bytesWhileProcessing = true
        case .awaitingHead, .readingBody:
            break
        }
    }

    mutating func headReceived(now: NIODeadline) {
        phase = .readingBody
        deadline = now + body
    }

    mutating func requestEnded() {
        phase = .processing
        deadline = nil
        bytesWhileProcessing = false
    }

    /// The answer is written and the connection stays open.
    mutating func responseSent(now: NIODeadline) {
        if bytesWhileProcessing {
            phase = .awaitingHead
            deadline = now + header
        } else {
            phase = .idle
            deadline = now + idle
        }
        bytesWhileProcessing = false
    }

    /// What expired at `now`, if anything.
    func expired(now: NIODeadline) -> Expiry? {
        guard let deadline, now >= deadline else { return nil }
        switch phase {
        case .awaitingHead: return .header
        case .readingBody: return .body
        case .idle: return .idle
        case .processing: return nil
        }
    }
}

/// The I/O shell of `ConnectionTimeouts`: first in the pipeline after TLS, so it sees every byte
/// that arrives; the HTTP handler reports heads, request ends and answers to it.
final class ConnectionTimeoutHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var state: ConnectionTimeouts
    private var context: ChannelHandlerContext?
    private var armed: Scheduled<Void>?
    private var armedFor: NIODeadline?
    private let metrics: IngestMetrics

    init(header: TimeAmount, body: TimeAmount, idle: TimeAmount, now: NIODeadline, metrics: IngestMetrics) {
        state = ConnectionTimeouts(header: header, body: body, idle: idle, now: now)
        self.metrics = metrics
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        rearm()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        armed?.cancel()
        armed = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        armed?.cancel()
        armed = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        state.bytesArrived(now: context.eventLoop.now)
        rearm()
        context.fireChannelRead(data)
    }

    func headReceived() {
        guard let context else { return }
        state.headReceived(now: context.eventLoop.now)
        rearm()
    }

    func requestEnded() { state.requestEnded() }

    func responseSent() {
        guard let context else { return }
        state.responseSent(now: context.eventLoop.now)
        rearm()
    }

    /// Arms the timer when the deadline is earlier than the armed one (or none is armed); a timer
    /// that fires early re-arms itself for the current deadline.
    private func rearm() {
        guard let context, let deadline = state.deadline else { return }
        if let armedFor, armedFor <= deadline { return }
        armed?.cancel()
        armedFor = deadline
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        armed = context.eventLoop.scheduleTask(deadline: deadline) { bound.value.fire() }
    }

    private func fire() {
        armed = nil
        armedFor = nil
        guard let context else { return }
        guard let expiry = state.expired(now: context.eventLoop.now) else {
            rearm()
            return
        }
        switch expiry {
        case .header:
            metrics.record(.headerTimeout)
            answerTimeoutAndClose(context: context, "the request head did not arrive within http.header_timeout_seconds")
        case .body:
            metrics.record(.bodyTimeout)
            answerTimeoutAndClose(context: context, "the request body did not arrive within http.body_timeout_seconds")
        case .idle:
            metrics.record(.idleTimeout)
            context.close(promise: nil)
        }
    }

    /// A 408 written below the HTTP encoder (no answer is under way in these phases), then close.
    private func answerTimeoutAndClose(context: ChannelHandlerContext, _ reason: String) {
        writeAndClose(HTTPAnswer.rawResponse(status: 408, reason: "Request Timeout", json: HTTPAnswer.errorBody(reason)))
    }

    /// Writes a whole response below the HTTP encoder, then closes the connection.
    func writeAndClose(_ bytes: [UInt8]) {
        guard let context else { return }
        armed?.cancel()
        armed = nil
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
        // The write never completes while a TLS handshake is pending (NIOSSL holds it back) or
        // when the client does not read: close regardless after a short grace.
        context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
    }
}
