@testable import CallRelayIngest
import NIOCore
import Testing

/// The deadline state machine, step by step, without sockets or sleeps.
@Suite struct ConnectionTimeoutsTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    func at(_ seconds: Int64) -> NIODeadline { t0 + .seconds(seconds) }
    func fresh() -> ConnectionTimeouts { ConnectionTimeouts(header: .seconds(10), body: .seconds(30), idle: .seconds(60), now: t0) }

    @Test func headMustArriveWithinTheHeaderTimeout() {
        let state = fresh()
        #expect(state.phase == .awaitingHead)
        #expect(state.deadline == at(10))
        #expect(state.expired(now: at(9)) == nil)
        #expect(state.expired(now: at(10)) == .header)
    }

    @Test func bytesOfAPartialHeadDoNotExtendTheHeaderDeadline() {
        var state = fresh()
        state.bytesArrived(now: at(5))
        state.bytesArrived(now: at(9))
        #expect(state.deadline == at(10))
        #expect(state.expired(now: at(10)) == .header)
    }

    @Test func bodyDeadlineStartsAtTheHead() {
        var state = fresh()
        state.headReceived(now: at(3))
        #expect(state.phase == .readingBody)
        #expect(state.expired(now: at(32)) == nil)
        #expect(state.expired(now: at(33)) == .body)
    }

    @Test func noDeadlineWhileTheRequestIsProcessed() {
        var state = fresh()
        state.headReceived(now: at(1))
        state.requestEnded()
        #expect(state.deadline == nil)
        #expect(state.expired(now: at(10_000)) == nil)
    }

    @Test func keepAliveConnectionGetsTheIdleTimeoutThenTheHeaderTimeoutAtItsFirstByte() {
        var state = fresh()
        state.headReceived(now: at(1))
        state.requestEnded()
        state.responseSent(now: at(2))
        #expect(state.phase == .idle)
        #expect(state.deadline == at(62))
        #expect(state.expired(now: at(62)) == .idle)
        state.bytesArrived(now: at(50))
        #expect(state.phase == .awaitingHead)
        #expect(state.deadline == at(60))
        #expect(state.expired(now: at(60)) == .header)
    }

    @Test func pipelinedBytesStartTheHeaderClockWhenTheAnswerIsWritten() {
        var state = fresh()
        state.headReceived(now: at(1))
        state.requestEnded()
        state.bytesArrived(now: at(2))  // the next request, while this one is stored
        state.responseSent(now: at(4))
        #expect(state.phase == .awaitingHead)
        #expect(state.deadline == at(14))
    }
}
