import Dispatch
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Counts webhooks between "body complete" and "answer written", so shutdown can wait for them.
package final class RequestTracker: Sendable {
    private let count = Atomic<Int>(0)
    package init() {}
    func begin() { count.add(1, ordering: .relaxed) }
    func end() { count.subtract(1, ordering: .relaxed) }
    package var inFlight: Int { count.load(ordering: .relaxed) }
}

/// Open connections, so shutdown can close them.
final class ChildChannels: Sendable {
    let map = Mutex<[ObjectIdentifier: any Channel]>([:])
}

/// The HTTP edge: a SwiftNIO HTTP/1.1 server on the shared event loop group.
package final class IngestServer: Sendable {
    private let channel: any Channel
    private let children: ChildChannels
    private let tracker: RequestTracker
    private let logger: Logger

    /// The port actually bound (useful when the configuration says 0).
    package let localPort: Int

    package static func start(
        configuration: IngestConfiguration, store: any WebhookStore, metrics: IngestMetrics,
        metricsText: @escaping @Sendable () -> String = { "" },
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) async throws -> IngestServer {
        let tracker = RequestTracker()
        let children = ChildChannels()
        let shared = IngestContext(
            configuration: configuration, store: store, metrics: metrics, tracker: tracker, metricsText: metricsText, logger: logger)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                children.map.withLock { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in _ = children.map.withLock { $0.removeValue(forKey: id) } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(WebhookHTTPHandler(shared: shared))
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        let port = channel.localAddress?.port ?? configuration.port
        logger.info("listening for webhooks", metadata: ["address": "\(configuration.host):\(port)", "auth": "\(configuration.token.isEmpty ? "off" : "token")"])
        return IngestServer(channel: channel, children: children, tracker: tracker, localPort: port, logger: logger)
    }

    private init(channel: any Channel, children: ChildChannels, tracker: RequestTracker, localPort: Int, logger: Logger) {
        self.channel = channel
        self.children = children
        self.tracker = tracker
        self.localPort = localPort
        self.logger = logger
    }

    /// Stops accepting, lets webhooks already being stored get their answer (up to the timeout),
    /// then closes every connection.
    package func shutdown(timeoutMilliseconds: Int = 5000) async {
        try? await channel.close()
        var waited = 0
        while tracker.inFlight > 0 && waited < timeoutMilliseconds {
            try? await Task.sleep(for: .milliseconds(10))
            waited += 10
        }
        let open = children.map.withLock { Array($0.values) }
        for child in open { try? await child.close() }
        logger.info("HTTP intake stopped", metadata: ["unanswered": "\(tracker.inFlight)"])
    }
}
