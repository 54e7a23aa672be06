/// What the network thread does between two sessions, as a value: events in, actions out, tested
/// step by step without a socket (`ConnectionLifecycleTests`). `MosquittoClient.runLoop` performs
/// the actions; it decides nothing itself.
///
/// - a failed connect, or a connection lost before its CONNACK (a TLS handshake failing on a
///   wrong CA, a listener closing at once), is logged once per distinct reason, reported, and
///   retried after a growing backoff;
/// - a session that ends after its CONNACK is counted as a reconnect; if it held for
///   `stableSeconds`, the backoff starts over, else it keeps growing, so a broker that drops
///   callrelay at once (a bad event, a refused client) causes no reconnect storm.
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

    package let stableSeconds: Double
    private(set) package var attempt = 0
    private(set) package var lastFailure: String?
    private(set) package var connectedSince: Double?

    package init(stableSeconds: Double = 10) { self.stableSeconds = stableSeconds }

    /// `mosquitto_connect` failed.
    package mutating func connectFailed(reason: String) -> [Action] {
        failure(ConnectionLifecycle.unreachable, reason: reason)
    }

    /// The CONNACK accepted the session (first seen by the loop at `now`).
    package mutating func connected(now: Double) {
        if connectedSince == nil { connectedSince = now }
    }

    /// `mosquitto_loop` returned an error: the session is over. `acknowledged` says whether
    /// libmosquitto reported this attempt (CONNACK or disconnect callback).
    package mutating func sessionEnded(acknowledged: Bool, reason: String, now: Double) -> [Action] {
        guard acknowledged else {
            connectedSince = nil
            return failure(ConnectionLifecycle.failedBeforeHandshake, reason: reason)
        }
        if let since = connectedSince, now - since >= stableSeconds { attempt = 0 }
        connectedSince = nil
        lastFailure = nil
        defer { attempt += 1 }
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
