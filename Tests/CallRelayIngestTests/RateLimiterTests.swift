@testable import CallRelayIngest
import NIOCore
import Testing

@Suite struct RateLimiterTests {
    let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)

    @Test func bucketAllowsBurstThenRefillsAtTheRate() {
        var bucket = TokenBucket(burst: 3, now: t0)
        for _ in 0..<3 { #expect(bucket.take(perSecond: 2, burst: 3, now: t0) == nil) }
        #expect(bucket.take(perSecond: 2, burst: 3, now: t0) == 1)  // 0.5 s to the next token, rounded up
        #expect(bucket.take(perSecond: 2, burst: 3, now: t0 + .milliseconds(500)) == nil)
        #expect(bucket.take(perSecond: 2, burst: 3, now: t0 + .milliseconds(500)) == 1)
    }

    @Test func retryAfterCoversASlowRate() {
        var bucket = TokenBucket(burst: 1, now: t0)
        #expect(bucket.take(perSecond: 1, burst: 1, now: t0) == nil)
        #expect(bucket.take(perSecond: 1, burst: 1, now: t0 + .milliseconds(100)) == 1)
    }

    @Test func clientsHaveTheirOwnBuckets() {
        let limiter = RateLimiter(perSecond: 1, burst: 1, now: t0)
        #expect(limiter.take(client: [10, 0, 0, 1], now: t0) == nil)
        #expect(limiter.take(client: [10, 0, 0, 1], now: t0) != nil)
        #expect(limiter.take(client: [10, 0, 0, 2], now: t0) == nil)
    }

    @Test func tableStaysBoundedAndDropsIdleClients() {
        let limiter = RateLimiter(perSecond: 10, burst: 1, capacity: 100, now: t0)
        for i in 0..<100 { _ = limiter.take(client: [10, 0, 0, UInt8(i)], now: t0) }
        #expect(limiter.trackedClients == 100)
        // A second later every bucket is full again: a new client sweeps them out.
        #expect(limiter.take(client: [10, 0, 1, 0], now: t0 + .seconds(1)) == nil)
        #expect(limiter.trackedClients == 1)
    }

    @Test func overflowBucketLimitsNewClientsWhenTheTableIsFullOfBusyOnes() {
        let limiter = RateLimiter(perSecond: 1, burst: 1, capacity: 2, now: t0)
        _ = limiter.take(client: [1, 1, 1, 1], now: t0)
        _ = limiter.take(client: [2, 2, 2, 2], now: t0)
        #expect(limiter.take(client: [3, 3, 3, 3], now: t0) == nil)  // the shared overflow token
        #expect(limiter.take(client: [4, 4, 4, 4], now: t0) != nil)
        #expect(limiter.trackedClients == 2)
    }
}
