import CallRelayMQTT
import Testing

/// The network thread's decisions, step by step, without a socket.
@Suite struct ConnectionLifecycleTests {
    typealias L = ConnectionLifecycle

    @Test func aRefusedConnectIsLoggedOnceReportedAndRetriedWithAGrowingBackoff() {
        var l = L()
        #expect(l.connectFailed(reason: "Connection refused") == [
            .warn(message: L.unreachable, reason: "Connection refused"), .reportDisconnected(reason: "Connection refused"), .resetSession,
            .backOff(attempt: 0),
        ])
        #expect(l.connectFailed(reason: "Connection refused") == [
            .reportDisconnected(reason: "Connection refused"), .resetSession, .backOff(attempt: 1),
        ], "the same reason is not logged again")
        #expect(l.connectFailed(reason: "No route to host").first == .warn(message: L.unreachable, reason: "No route to host"))
        #expect(l.attempt == 3)
    }

    @Test func aConnectionLostBeforeItsCONNACKSaysSo() {
        var l = L()
        #expect(l.sessionEnded(acknowledged: false, reason: "certificate verify failed", now: 1) == [
            .warn(message: L.failedBeforeHandshake, reason: "certificate verify failed"),
            .reportDisconnected(reason: "certificate verify failed"), .resetSession, .backOff(attempt: 0),
        ])
    }

    @Test func aStableSessionStartsTheBackoffOver() {
        var l = L(stableSeconds: 10)
        _ = l.connectFailed(reason: "refused")
        _ = l.connectFailed(reason: "refused")
        l.connected(now: 100)
        #expect(l.sessionEnded(acknowledged: true, reason: "connection lost", now: 111) == [.sessionLost, .resetSession, .backOff(attempt: 0)])
        #expect(l.lastFailure == nil, "the next failure is logged again")
        #expect(l.connectFailed(reason: "refused").first == .warn(message: L.unreachable, reason: "refused"))
    }

    @Test func aSessionDroppedAtOnceKeepsTheBackoffGrowing() {
        var l = L(stableSeconds: 10)
        var waits: [Int] = []
        for round in 0..<4 {
            l.connected(now: Double(round * 3))
            for case .backOff(let attempt) in l.sessionEnded(acknowledged: true, reason: "dropped", now: Double(round * 3 + 1)) {
                waits.append(attempt)
            }
        }
        #expect(waits == [0, 1, 2, 3], "no reconnect storm against a broker that drops the client at once")
    }

    @Test func connectedKeepsTheFirstTime() {
        var l = L()
        l.connected(now: 5)
        l.connected(now: 9)
        #expect(l.connectedSince == 5)
    }

    @Test func autoFallsBackTo311WhenTheCONNACKRefusesTheProtocolVersion() {
        var l = L(preference: .auto)
        #expect(l.protocolVersion == .v5)
        #expect(l.connackRefused(code: 0x84, reason: "unsupported protocol version") == [
            .warn(message: L.fallingBack, reason: "unsupported protocol version")
        ], "not reported as a failure: send-test and check-config keep waiting for the 3.1.1 CONNACK")
        #expect(l.protocolVersion == .v311)
        #expect(l.changedForNextConnect, "the disconnect that follows is expected")
        #expect(l.sessionEnded(acknowledged: true, reason: "protocol error", now: 1) == [.resetSession, .backOff(attempt: 0)],
            "a refused CONNACK is not a lost session")
        #expect(l.connackRefused(code: 0x84, reason: "unsupported protocol version") == [
            .warn(message: L.refused, reason: "unsupported protocol version"),
            .reportDisconnected(reason: "unsupported protocol version"),
        ], "3.1.1 refused too: no further fallback")
        #expect(l.protocolVersion == .v311)
    }

    @Test func anExplicitVersionNeverFallsBack() {
        var l = L(preference: .only(.v5))
        #expect(l.connackRefused(code: 0x84, reason: "unsupported protocol version").first
            == .warn(message: L.refused, reason: "unsupported protocol version"))
        #expect(l.protocolVersion == .v5)
        var old = L(preference: .only(.v311))
        #expect(old.protocolVersion == .v311)
        _ = old.connackRefused(code: 0x84, reason: "x")
        #expect(old.protocolVersion == .v311)
    }

    @Test func otherRefusalsAreLoggedOnceUntilASessionSucceeds() {
        var l = L(preference: .auto)
        #expect(l.connackRefused(code: 0x86, reason: "bad user name or password").count == 2)
        _ = l.sessionEnded(acknowledged: true, reason: "closed", now: 1)
        #expect(l.connackRefused(code: 0x86, reason: "bad user name or password") == [.reportDisconnected(reason: "bad user name or password")])
        #expect(l.protocolVersion == .v5, "only a protocol refusal changes the version")
        l.connected(now: 2)
        #expect(l.connackRefused(code: 0x86, reason: "bad user name or password").count == 2, "logged again after a good session")
    }

    @Test func aBrokerWithoutRetainGetsAWillThatIsNotRetained() {
        var l = L(preference: .auto)
        #expect(l.willRetained)
        #expect(l.connackRefused(code: 0x9A, reason: "Retain not supported") == [.warn(message: L.willWithoutRetain, reason: "Retain not supported")])
        #expect(!l.willRetained)
        #expect(l.protocolVersion == .v5)
        #expect(l.connackRefused(code: 0x9A, reason: "Retain not supported").first == .warn(message: L.refused, reason: "Retain not supported"),
            "once only")
    }
}
