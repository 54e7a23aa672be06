import CallRelayCalls
import CallRelayConfig
import CallRelayDelivery
import CallRelayIngest
import CallRelayMQTT
import CallRelayOutbox
import Dispatch
import Logging
import NIOPosix
import Synchronization

/// The running agent: outbox, MQTT client, delivery pump and HTTP intake, wired together.
///
/// Start order is dependency order (outbox → MQTT → pump → HTTP); `shutdown` runs in reverse:
/// intake stops first, in-flight publishes get their acknowledgement (up to a timeout), the outbox
/// commits its last marks and closes, `offline` is published, the client disconnects.
package final class Daemon: Sendable {
    package let configuration: RelayConfiguration
    package let outbox: SQLiteOutbox
    package let client: MosquittoClient
    package let pump: DeliveryPump
    package let ingest: IngestServer
    /// The `http.admin_listen` listener (/metrics, /healthz, /readyz), when configured.
    package let admin: IngestServer?
    package let ingestMetrics: IngestMetrics
    /// Yields once when the outbox finds its file damaged or the disk failing while running: the
    /// agent must then stop (exit 74) so that the next start checks the file (docs/decisions.md D16).
    package let storageFaults: AsyncStream<String>
    private let presence: Presence
    private let logger: Logger

    /// The port the HTTP server bound (differs from the configuration when it says 0).
    package var httpPort: Int { ingest.localPort }
    /// The port the admin listener bound, when there is one.
    package var adminPort: Int? { admin?.localPort }

    /// - Parameter retryDelayMilliseconds: the wait before re-publishing an event the broker
    ///   refused, by attempt (tests shorten it; default `DeliveryPump.defaultRetryDelay`).
    package static func start(
        configuration: RelayConfiguration, logger: Logger,
        retryDelayMilliseconds: @escaping @Sendable (Int) -> Int = DeliveryPump.defaultRetryDelay
    ) async throws -> Daemon {
        let c = configuration
        // Opening (migration, recovery) and counting block: they run on NIO's blocking pool,
        // never on the Swift concurrency pool.
        let calls =
            c.calls.enabled
            ? CallStateCompanion(
                settings: .init(
                    clearAfterSeconds: c.calls.clearAfterSeconds, staleAfterSeconds: c.calls.staleAfterSeconds, maxCalls: c.calls.maxCalls),
                topicPrefix: c.mqtt.topicPrefix) : nil
        let outbox = try await blocking {
            try SQLiteOutbox(
                path: c.storage.path, synchronous: c.storage.synchronous == .normal ? .normal : .full, maxBytes: c.storage.maxBytes,
                retentionHours: c.storage.retentionHours, companion: calls, logger: logger.with(label: "outbox"))
        }
        let (storageFaults, faultFound) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(1))
        outbox.setFaultHandler { faultFound.yield($0) }
        let stats = try? await blocking { try outbox.stats() }
        logger.info(
            "outbox open",
            metadata: ["path": "\(c.storage.path)", "pending": "\(stats?.pending ?? 0)", "synchronous": "\(c.storage.synchronous)"])

        let presence = Presence(topic: "\(c.mqtt.topicPrefix)/agents/\(c.mqtt.clientID)/status")
        var options = MQTTConnectionOptions(configuration: c.mqtt)
        options.will = .init(topic: presence.topic, payload: Array("offline".utf8), qos: .atLeastOnce, retain: true)
        let qos = MQTTQoS(rawValue: c.mqtt.qos) ?? .atLeastOnce

        let pumpBox = PumpBox()
        let client = try MosquittoClient(options: options, logger: logger.with(label: "mqtt")) { event in
            switch event {
            case .connected(let session):
                presence.announce(online: true)
                pumpBox.pump?.connected(window: session.inflightWindow(configured: c.mqtt.maxInflight, qos: qos))
            case .disconnected:
                pumpBox.pump?.disconnected()
            case .published(let mid, let reason):
                if !presence.acknowledged(mid: mid) {
                    pumpBox.pump?.acknowledged(mid: mid, refusal: reason.isFailure ? reason.description : nil)
                }
            case .message:
                break
            }
        }
        presence.client = client
        let pump = DeliveryPump(
            store: OutboxDeliveryStore(outbox: outbox, calls: calls),
            transport: MosquittoTransport(client: client, qos: qos, messageExpirySeconds: c.mqtt.messageExpirySeconds),
            window: c.mqtt.maxInflight, retryDelayMilliseconds: retryDelayMilliseconds, logger: logger.with(label: "delivery"))
        pumpBox.pump = pump
        outbox.setCommittedListener { pump.eventsCommitted() }
        client.start()

        let metrics = IngestMetrics()
        let metricsText = MetricsText(ingest: metrics, pump: pump, client: client, outbox: outbox, calls: calls)
        let ingest: IngestServer
        var admin: IngestServer?
        let store = OutboxWebhookStore(outbox: outbox, topicPrefix: c.mqtt.topicPrefix)
        do {
            ingest = try await IngestServer.start(
                configuration: IngestConfiguration(http: c.http, routes: c.http.adminPort == nil ? .all : .webhooks),
                store: store, metrics: metrics, metricsText: { metricsText.render() }, logger: logger.with(label: "http"))
            if let host = c.http.adminHost, let port = c.http.adminPort {
                var adminConfiguration = IngestConfiguration(http: c.http, routes: .admin)
                (adminConfiguration.host, adminConfiguration.port) = (host, port)
                do {
                    admin = try await IngestServer.start(
                        configuration: adminConfiguration, store: store, metrics: metrics, metricsText: { metricsText.render() },
                        logger: logger.with(label: "admin"))
                } catch {
                    await ingest.shutdown(timeoutMilliseconds: 0)
                    throw error
                }
            }
        } catch {
            await blocking {
                client.stop()
                outbox.close()
            }
            throw error
        }
        return Daemon(
            configuration: c, outbox: outbox, client: client, pump: pump, ingest: ingest, admin: admin, ingestMetrics: metrics,
            storageFaults: storageFaults, presence: presence, logger: logger)
    }

    private init(
        configuration: RelayConfiguration, outbox: SQLiteOutbox, client: MosquittoClient, pump: DeliveryPump, ingest: IngestServer,
        admin: IngestServer?, ingestMetrics: IngestMetrics, storageFaults: AsyncStream<String>, presence: Presence, logger: Logger
    ) {
        self.storageFaults = storageFaults
        self.admin = admin
        self.configuration = configuration
        self.outbox = outbox
        self.client = client
        self.pump = pump
        self.ingest = ingest
        self.ingestMetrics = ingestMetrics
        self.presence = presence
        self.logger = logger
    }

    /// Graceful stop, in reverse start order. Nothing answered 200 is lost: whatever is not
    /// acknowledged by the broker within `drainTimeoutMilliseconds` stays in the outbox.
    package func shutdown(drainTimeoutMilliseconds: Int = 10_000) async {
        logger.info("shutting down")
        await ingest.shutdown()
        let pump = self.pump
        let left = await blocking { pump.drain(timeoutMilliseconds: drainTimeoutMilliseconds) }
        if left > 0 {
            logger.warning("stopping with unacknowledged publishes; they stay in the outbox and are sent at next start", metadata: ["count": "\(left)"])
        }
        let (outbox, presence, client) = (self.outbox, self.presence, self.client)
        await blocking {
            outbox.close()
            presence.announceOfflineAndWait(timeoutMilliseconds: 2000)
            client.stop()
        }
        await admin?.shutdown(timeoutMilliseconds: 1000)
        logger.info("stopped", metadata: ["published": "\(pump.publishedCount.load(ordering: .relaxed))", "acknowledged": "\(pump.acknowledgedCount.load(ordering: .relaxed))"])
    }

    /// SIGHUP: reads the HTTPS certificate and key again. False when the new pair is bad (the old stays).
    @discardableResult
    package func reload() -> Bool {
        logger.info("reload requested (SIGHUP)")
        guard ingest.tls != nil else {
            logger.info("nothing to reload: the webhook listener has no TLS certificate")
            return true
        }
        return ingest.reloadTLS(metrics: ingestMetrics)
    }
}

/// Runs blocking work (SQLite, fsync, joins, libmosquitto's stop) on NIO's blocking thread pool,
/// so it never holds a thread of the Swift concurrency pool.
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive(work)
}

func blocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (done: CheckedContinuation<T, Never>) in
        NIOThreadPool.singleton.submit { _ in done.resume(returning: work()) }
    }
}

extension IngestConfiguration {
    /// The listener settings of `[http]`.
    init(http: RelayConfiguration.HTTP, routes: Routes) {
        self.init(host: http.listenHost, port: http.listenPort, token: http.token, maxBodyBytes: http.maxBodyBytes)
        self.routes = routes
        self.headerTimeout = .seconds(http.headerTimeoutSeconds)
        self.bodyTimeout = .seconds(http.bodyTimeoutSeconds)
        self.idleTimeout = .seconds(http.idleTimeoutSeconds)
        guard routes != .admin else { return }
        if let cert = http.tlsCertFile, let key = http.tlsKeyFile {
            tls = TLSFiles(certificateChain: cert, privateKey: key, clientCA: http.tlsClientCAFile)
        }
        allow = http.allow
        trustedProxies = http.trustedProxies
        maxConnections = http.maxConnections
        if http.rateLimitPerSecond > 0 {
            rateLimit = RateLimit(perSecond: http.rateLimitPerSecond, burst: http.rateLimitBurst)
        }
    }
}

/// Lets the MQTT event closure reach the pump, which is created after the client.
private final class PumpBox: Sendable {
    private let value = Mutex<DeliveryPump?>(nil)
    var pump: DeliveryPump? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

extension Logger {
    func with(label suffix: String) -> Logger {
        var copy = Logger(label: "\(label).\(suffix)")
        copy.logLevel = logLevel
        for (key, value) in handler.metadata { copy[metadataKey: key] = value }
        return copy
    }
}
