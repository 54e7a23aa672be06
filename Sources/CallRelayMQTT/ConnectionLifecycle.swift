/// What the network thread does between two sessions, as a value: events in, actions out, tested
/// step by step without a socket (`ConnectionLifecycleTests`). `MosquittoClient.runLoop` performs
/// the actions; it decides nothing itself.
///
/// - a failed connect, or a connection lost before its CONNACK (a TLS handshake failing on a
///   wrong CA, a listener closing at once), is logged once per distinct reason, reported, and
///   retried after a growing backoff;
/// - a session that ends after its CONNACK is counted as a reconnect; if it held for
///   `stableSeconds`, the backoff starts over, else it keeps growing, so a broker that drops
///   callrelay at once (a bad event, a refused client) causes no reconnect storm;
/// - a CONNACK that refuses the session is logged once per distinct reason; with
///   `mqtt.protocol = "auto"`, a refusal of MQTT 5 ("unsupported protocol version", which is also
///   what libmosquitto reports when a 3.1.1-only broker answers a v5 CONNECT with its own CONNACK)
///   switches the next CONNECT to 3.1.1, for the life of the process.
package struct ConnectionLifecycle: Sendable, Equatable {
    package enum Action: Sendable, Equatable {
        /// Log a warning: `message`, with `reason`.
        case warn(message: String, reason: String)
        /// Tell the owner the connection is gone (`MQTTClientEvent.disconnected`).
        case reportDisconnected(reason: String)
        /// A session that was up is over: mark not connected, count a reconnect.
        case sessionLost
        /// Drop the session's unacknowledged messages (the outbox re-sends them).
        case resetSession
        /// Wait the backoff of this attempt (0-based) before connecting again.
        case backOff(attempt: Int)
    }

    package static let unreachable = "broker unreachable, retrying with backoff"
    package static let failedBeforeHandshake = "broker connection failed before the MQTT handshake, retrying with backoff"
    package static let refused = "broker refused the connection, retrying with backoff"
    package static let fallingBack = "broker refused MQTT 5; connecting with MQTT 3.1.1 (mqtt.protocol = \"auto\")"
    /// CONNACK reason 0x84 (MQTT 5), the code libmosquitto also reports for a 3.1.1 broker's
    /// "unacceptable protocol version" answer to a v5 CONNECT.
    package static let unsupportedProtocolVersion = 0x84

    package static let retainNotSupported = 0x9A
    package static let willWithoutRetain =
        "broker keeps no retained messages (CONNACK 0x9a); connecting again with a last will that is not retained"

    package let preference: MQTTProtocolPreference
    /// Whether the next CONNECT's last will is retained (as configured) or not: a broker with
    /// `retain_available false` refuses a CONNECT whose will is retained.
    private(set) package var willRetained = true
    /// The CONNACK refused this CONNECT for a reason the next one fixes (the protocol fallback, a
    /// will without retain): the disconnect that follows is not a failure to report.
    private(set) package var changedForNextConnect = false
    /// The version of the next (or current) CONNECT.
    private(set) package var protocolVersion: MQTTProtocolVersion

    package let stableSeconds: Double
    private(set) package var attempt = 0
    private(set) package var lastFailure: String?
    private(set) package var connectedSince: Double?

    package init(stableSeconds: Double = 10, preference: MQTTProtocolPreference = .only(.v311)) {
        self.stableSeconds = stableSeconds
        self.preference = preference
        self.protocolVersion = preference.first
    }

    /// `mosquitto_connect` failed.
    package mutating func connectFailed(reason: String) -> [Action] {
        changedForNextConnect = false
        return failure(ConnectionLifecycle.unreachable, reason: reason)
    }

    /// The CONNACK accepted the session at `now`.
    package mutating func connected(now: Double) {
        if connectedSince == nil { connectedSince = now }
        lastFailure = nil
        changedForNextConnect = false
    }

    /// The CONNACK refused the session with `code` (`reason` is its text). The broker closes the
    /// connection next, and `sessionEnded` decides the wait.
    package mutating func connackRefused(code: Int, reason: String) -> [Action] {
        if code == Self.unsupportedProtocolVersion, protocolVersion == .v5, preference == .auto {
            protocolVersion = .v311
            lastFailure = nil
            changedForNextConnect = true
            // Not reported as a failure: the next CONNECT follows after the first backoff step.
            return [.warn(message: Self.fallingBack, reason: reason)]
        }
        if code == Self.retainNotSupported, willRetained {
            willRetained = false
            lastFailure = nil
            changedForNextConnect = true
            return [.warn(message: Self.willWithoutRetain, reason: reason)]
        }
        var actions: [Action] = []
        if reason != lastFailure {
            actions.append(.warn(message: Self.refused, reason: reason))
            lastFailure = reason
        }
        return actions + [.reportDisconnected(reason: reason)]
    }

    /// `mosquitto_loop` returned an error: the session is over. `acknowledged` says whether
    /// libmosquitto reported this attempt (CONNACK or disconnect callback).
    package mutating func sessionEnded(acknowledged: Bool, reason: String, now: Double) -> [Action] {
        changedForNextConnect = false
        guard acknowledged else {
            connectedSince = nil
            return failure(ConnectionLifecycle.failedBeforeHandshake, reason: reason)
        }
        defer { attempt += 1 }
        guard let since = connectedSince else {
            // Refused by its CONNACK (already reported): not a session that was lost.
            return [.resetSession, .backOff(attempt: attempt)]
        }
        if now - since >= stableSeconds { attempt = 0 }
        connectedSince = nil
        lastFailure = nil
        return [.sessionLost, .resetSession, .backOff(attempt: attempt)]
    }

    private mutating func failure(_ message: String, reason: String) -> [Action] {
        var actions: [Action] = []
        if reason != lastFailure {
            actions.append(.warn(message: message, reason: reason))
            lastFailure = reason
        }
        actions += [.reportDisconnected(reason: reason), .resetSession, .backOff(attempt: attempt)]
        attempt += 1
        return actions
    }
}
