import Logging
import NIOCore
import NIOHTTP1

/// The handlers of one accepted connection, in one place, so the server, the unit tests
/// (`EmbeddedChannel`) and the fuzz harness build exactly the same pipeline:
///
///     [NIOSSLServerHandler] → ConnectionTimeoutHandler → HTTP decoder/encoder
///         → HTTPServerPipelineHandler → WebhookHTTPHandler
package enum IngestPipeline {
    /// Adds the HTTP/1.1 handlers (after TLS, when there is TLS) to a connection's pipeline.
    package static func configureHTTP(on channel: any Channel, shared: IngestContext) throws {
        let c = shared.configuration
        let timeouts = ConnectionTimeoutHandler(
            header: TimeAmount(c.headerTimeout), body: TimeAmount(c.bodyTimeout), idle: TimeAmount(c.idleTimeout),
            now: channel.eventLoop.now, metrics: shared.metrics)
        let operations = channel.pipeline.syncOperations
        try operations.addHandler(timeouts)
        try operations.configureHTTPServerPipeline(withErrorHandling: false)
        try operations.addHandler(WebhookHTTPHandler(shared: shared, timeouts: timeouts))
    }
}

extension IngestContext {
    /// A context with its own metrics, tracker and rate limiter (tests, fuzzing).
    package init(
        configuration: IngestConfiguration, store: any WebhookStore, metricsText: @escaping @Sendable () -> String = { "" },
        logger: Logger = Logger(label: "callrelay.http")
    ) {
        self.init(
            configuration: configuration, store: store, metrics: IngestMetrics(), tracker: RequestTracker(), metricsText: metricsText,
            logger: logger)
    }

    package init(
        configuration: IngestConfiguration, store: any WebhookStore, metrics: IngestMetrics, tracker: RequestTracker,
        metricsText: @escaping @Sendable () -> String, logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.metrics = metrics
        self.tracker = tracker
        self.metricsText = metricsText
        self.logger = logger
        self.rateLimiter = configuration.rateLimit.map { RateLimiter(perSecond: $0.perSecond, burst: $0.burst) }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
