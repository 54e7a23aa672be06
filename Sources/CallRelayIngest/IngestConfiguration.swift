import CallRelayCore

/// The HTTP edge's settings (mapped from `[http]` by the daemon).
package struct IngestConfiguration: Sendable {
    /// Which routes a listener serves.
    package enum Routes: Sendable, Equatable {
        /// Webhooks plus /metrics, /healthz, /readyz (no `admin_listen`).
        case all
        /// Webhooks only: the public listener when `admin_listen` is set.
        case webhooks
        /// /metrics, /healthz, /readyz only: the `admin_listen` listener.
        case admin
    }

    package var host: String
    /// 0 picks a free port (tests).
    package var port: Int
    /// Empty: no authentication.
    package var token: String
    package var maxBodyBytes: Int
    package var routes: Routes = .all
    /// HTTPS when set.
    package var tls: TLSFiles?
    /// Empty: everyone.
    package var allow: [CIDR] = []
    package var trustedProxies: [CIDR] = []
    package var headerTimeout: Duration = .seconds(10)
    package var bodyTimeout: Duration = .seconds(30)
    package var idleTimeout: Duration = .seconds(60)
    package var maxConnections = 1024
    /// nil: no rate limit.
    package var rateLimit: RateLimit?

    package struct RateLimit: Sendable, Equatable {
        package var perSecond: Int
        package var burst: Int
        package init(perSecond: Int, burst: Int) {
            self.perSecond = perSecond
            self.burst = max(1, burst)
        }
    }

    package init(host: String, port: Int, token: String, maxBodyBytes: Int) {
        self.host = host
        self.port = port
        self.token = token
        self.maxBodyBytes = maxBodyBytes
    }

    var servesWebhooks: Bool { routes != .admin }
    var servesAdmin: Bool { routes != .webhooks }
}

/// The certificate files of the HTTPS listener (read at start and at every reload).
package struct TLSFiles: Sendable, Equatable {
    package var certificateChain: String
    package var privateKey: String
    /// Clients must present a certificate signed by one of these when set.
    package var clientCA: String?

    package init(certificateChain: String, privateKey: String, clientCA: String? = nil) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.clientCA = clientCA
    }
}
