import CallRelayMQTT
import Testing

@Suite struct ReconnectBackoffTests {
    let backoff = ReconnectBackoff(minimumMilliseconds: 500, maximumMilliseconds: 30_000)

    @Test func theCeilingDoublesFromTheMinimumUpToTheCap() {
        #expect((0..<8).map { backoff.ceiling(attempt: $0) } == [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000])
        #expect(backoff.ceiling(attempt: 10_000) == 30_000, "no overflow for a broker that stays away for days")
        #expect(backoff.ceiling(attempt: -3) == 500)
    }

    @Test func jitterKeepsEachDelayBetweenHalfAndAllOfItsCeiling() {
        for attempt in 0..<12 {
            let cap = backoff.ceiling(attempt: attempt)
            #expect(backoff.delay(attempt: attempt, unit: 0.5) == cap / 2)
            #expect(backoff.delay(attempt: attempt, unit: 1.0) == cap)
            for _ in 0..<50 {
                let d = backoff.delay(attempt: attempt)
                #expect(d >= cap / 2 && d <= cap)
            }
        }
    }

    @Test func delaysAreSpreadSoGatewaysDoNotReconnectInLockstep() {
        let delays = Set((0..<200).map { _ in backoff.delay(attempt: 5) })
        #expect(delays.count > 50)
    }

    @Test func nonsenseBoundsAreRepaired() {
        let odd = ReconnectBackoff(minimumMilliseconds: 0, maximumMilliseconds: -5)
        #expect(odd.minimumMilliseconds == 1)
        #expect(odd.maximumMilliseconds == 1)
    }
}
