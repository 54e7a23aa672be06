import CallRelayCore
import Dispatch
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Counts webhooks between "body complete" and "answer written", so shutdown can wait for them.
package final class RequestTracker: Sendable {
    private let count = Atomic<Int>(0)
    package init() {}
    func begin() { count.add(1, ordering: .relaxed) }
    func end() { count.subtract(1, ordering: .relaxed) }
    package var inFlight: Int { count.load(ordering: .relaxed) }
}

/// Open connections, so a shutdown that outlasts its timeout can close them.
final class ChildChannels: Sendable {
    let map = Mutex<[ObjectIdentifier: any Channel]>([:])
}

/// One listener: a SwiftNIO HTTP/1.1 server (HTTPS when `configuration.tls` is set) on the
/// shared event loop group.
///
/// Per connection, before any byte is read: `http.max_connections` (over it: closed at once) and,
/// with TLS, `http.allow` on the peer address (refused before the handshake). Accept errors
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM) pause accepting for a second (`AcceptPauseHandler`) instead
/// of spinning on a listening socket that stays readable. Shutdown quiesces
/// (`ServerQuiescingHelper`): idle keep-alive connections close at once, a connection with a
/// request in progress closes after its answer.
package final class IngestServer: Sendable {
    private let channel: any Channel
    private let children: ChildChannels
    private let tracker: RequestTracker
    private let quiesce: ServerQuiescingHelper
    private let logger: Logger
    package let tls: ServerTLS?

    /// The port actually bound (useful when the configuration says 0).
    package let localPort: Int

    package static func start(
        configuration: IngestConfiguration, store: any WebhookStore, metrics: IngestMetrics,
        metricsText: @escaping @Sendable () -> String = { "" },
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) async throws -> IngestServer {
        let tls = try configuration.tls.map { files throws(TLSFileProblem) in try ServerTLS(files: files) }
        let tracker = RequestTracker()
        let children = ChildChannels()
        let quiesce = ServerQuiescingHelper(group: group)
        let shared = IngestContext(
            configuration: configuration, store: store, metrics: metrics, tracker: tracker, metricsText: metricsText, logger: logger)
        let acceptLog = AcceptErrorLog(logger: logger)
        let counted = configuration.routes != .admin
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { server in
                server.eventLoop.makeCompletedFuture {
                    try server.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: server))
                    try server.pipeline.syncOperations.addHandler(
                        AcceptPauseHandler(onPause: { error in
                            metrics.acceptErrors.add(1, ordering: .relaxed)
                            acceptLog.note(error)
                        }))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                if counted {
                    let open = metrics.openConnections.wrappingAdd(1, ordering: .relaxed).newValue
                    channel.closeFuture.whenComplete { _ in metrics.openConnections.subtract(1, ordering: .relaxed) }
                    if open > configuration.maxConnections {
                        metrics.record(.overConnectionLimit)
                        return channel.close()
                    }
                }
                if tls != nil, !configuration.allow.isEmpty, let peer = ClientAddress.bytes(of: channel.remoteAddress),
                    !configuration.allow.containsAddress(peer), !configuration.trustedProxies.containsAddress(peer)
                {
                    metrics.record(.forbidden)
                    return channel.close()
                }
                let id = ObjectIdentifier(channel)
                children.map.withLock { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in _ = children.map.withLock { $0.removeValue(forKey: id) } }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                    }
                    try IngestPipeline.configureHTTP(on: channel, shared: shared)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        let port = channel.localAddress?.port ?? configuration.port
        let what = configuration.routes == .admin ? "listening for /metrics, /healthz, /readyz" : "listening for webhooks"
        var metadata: Logger.Metadata = ["address": "\(configuration.host):\(port)", "scheme": "\(tls == nil ? "http" : "https")"]
        if configuration.routes != .admin {
            metadata["auth"] = "\(configuration.token.isEmpty ? "off" : "token")"
            if tls?.files.clientCA != nil { metadata["client_certificates"] = "required" }
        }
        logger.info("\(what)", metadata: metadata)
        return IngestServer(channel: channel, children: children, tracker: tracker, quiesce: quiesce, tls: tls, localPort: port, logger: logger)
    }

    private init(
        channel: any Channel, children: ChildChannels, tracker: RequestTracker, quiesce: ServerQuiescingHelper, tls: ServerTLS?, localPort: Int,
        logger: Logger
    ) {
        self.channel = channel
        self.children = children
        self.tracker = tracker
        self.quiesce = quiesce
        self.tls = tls
        self.localPort = localPort
        self.logger = logger
    }

    /// Re-reads the certificate and key (SIGHUP). New connections use the new pair; open ones keep
    /// theirs. A bad pair is logged and the old one stays.
    @discardableResult
    package func reloadTLS(metrics: IngestMetrics) -> Bool {
        guard let tls else { return true }
        do {
            try tls.reload()
            metrics.tlsReloads.add(1, ordering: .relaxed)
            logger.notice("TLS certificate reloaded", metadata: ["cert": "\(tls.files.certificateChain)"])
            return true
        } catch {
            metrics.tlsReloadFailures.add(1, ordering: .relaxed)
            logger.error("TLS reload failed; the previous certificate stays in use", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Stops accepting and quiesces: idle connections close now, a request in progress gets its
    /// answer (with `Connection: close`). Whatever is still open after the timeout is closed.
    package func shutdown(timeoutMilliseconds: Int = 5000) async {
        let done = channel.eventLoop.makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: done)
        let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeoutMilliseconds))) {
            done.succeed(())
        }
        try? await done.futureResult.get()
        timeout.cancel()
        let open = children.map.withLock { Array($0.values) }
        for child in open { try? await child.close() }
        logger.info("HTTP intake stopped", metadata: ["unanswered": "\(tracker.inFlight)", "closed_after_timeout": "\(open.count)"])
    }
}

/// Says once per 10 seconds that accepting fails, with how often it did meanwhile.
private final class AcceptErrorLog: Sendable {
    private let logger: Logger
    private let state = Mutex<(last: DispatchTime?, suppressed: Int)>((nil, 0))

    init(logger: Logger) { self.logger = logger }

    func note(_ error: IOError) {
        let now = DispatchTime.now()
        let report: Int? = state.withLock { s in
            if let last = s.last, now.uptimeNanoseconds - last.uptimeNanoseconds < 10_000_000_000 {
                s.suppressed += 1
                return nil
            }
            let count = s.suppressed
            s = (now, 0)
            return count
        }
        if let report {
            logger.warning(
                "cannot accept connections; pausing 1 s (raise LimitNOFILE or lower http.max_connections)",
                metadata: ["error": "\(error)", "since_last_report": "\(report)"])
        }
    }
}
