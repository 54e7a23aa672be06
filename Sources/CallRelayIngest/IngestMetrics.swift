import Synchronization

/// Counters of the HTTP edge, created once and shared by every connection.
package final class IngestMetrics: Sendable {
    package enum Result: String, CaseIterable, Sendable {
        case stored, duplicate, badRequest = "bad_request", unauthorized, tooLarge = "too_large", unavailable
    }
    package enum Endpoint: String, CaseIterable, Sendable {
        case cdr, live, combined
    }

    /// What happened to a connection or a request before it reached a webhook handler.
    package enum Refusal: String, CaseIterable, Sendable {
        /// 403: the client address is outside `http.allow`.
        case forbidden
        /// 429: over `http.rate_limit_per_second`.
        case rateLimited = "rate_limited"
        /// 400: the HTTP parser refused the request.
        case malformed
        /// 405/501: CONNECT, an unknown method, an unsupported transfer coding; 417 an unknown expectation.
        case unsupported
        /// 408: the head did not arrive in time.
        case headerTimeout = "header_timeout"
        /// 408: the body did not arrive in time.
        case bodyTimeout = "body_timeout"
        /// A keep-alive connection closed after `http.idle_timeout_seconds` of silence.
        case idleTimeout = "idle_timeout"
        /// A connection closed at once because `http.max_connections` were open.
        case overConnectionLimit = "over_connection_limit"
        /// A TLS handshake that failed (no certificate, wrong protocol, plain HTTP on the HTTPS port).
        case tlsHandshake = "tls_handshake"
    }

    private let counters: [Counter]
    private let refusals: [Counter]
    /// Connections open now on the webhook listener.
    package let openConnections = Atomic<Int>(0)
    /// `accept` failures (EMFILE, ENFILE, ENOBUFS, ENOMEM), each followed by a pause in accepting.
    package let acceptErrors = Atomic<Int>(0)
    /// Successful and failed certificate reloads (SIGHUP).
    package let tlsReloads = Atomic<Int>(0)
    package let tlsReloadFailures = Atomic<Int>(0)

    package init() {
        counters = (0..<(Result.allCases.count * Endpoint.allCases.count)).map { _ in Counter() }
        refusals = Refusal.allCases.map { _ in Counter() }
    }

    package func record(_ refusal: Refusal) {
        refusals[Refusal.allCases.firstIndex(of: refusal)!].value.add(1, ordering: .relaxed)
    }

    package func count(_ refusal: Refusal) -> Int {
        refusals[Refusal.allCases.firstIndex(of: refusal)!].value.load(ordering: .relaxed)
    }

    private func index(_ endpoint: Endpoint, _ result: Result) -> Int {
        Endpoint.allCases.firstIndex(of: endpoint)! * Result.allCases.count + Result.allCases.firstIndex(of: result)!
    }

    package func record(_ endpoint: Endpoint, _ result: Result) {
        counters[index(endpoint, result)].value.add(1, ordering: .relaxed)
    }

    package func count(_ endpoint: Endpoint, _ result: Result) -> Int {
        counters[index(endpoint, result)].value.load(ordering: .relaxed)
    }
}

/// A shareable atomic counter (an `Atomic` cannot be stored in an array).
package final class Counter: Sendable {
    package let value = Atomic<Int>(0)
    package init() {}
}
