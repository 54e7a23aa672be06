import NIOCore
import Synchronization

/// One client's token bucket: `burst` tokens, refilled at `perSecond`; a request takes one.
struct TokenBucket: Sendable, Equatable {
    private(set) var tokens: Double
    private(set) var updated: NIODeadline

    init(burst: Int, now: NIODeadline) {
        tokens = Double(burst)
        updated = now
    }

    /// nil when the request may pass (a token is taken); otherwise the whole seconds until one is
    /// back, for `Retry-After` (at least 1).
    mutating func take(perSecond: Int, burst: Int, now: NIODeadline) -> Int? {
        refill(perSecond: perSecond, burst: burst, now: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        let wait = (1 - tokens) / Double(perSecond)
        return max(1, Int(wait.rounded(.up)))
    }

    mutating func refill(perSecond: Int, burst: Int, now: NIODeadline) {
        let elapsed = Double(max(0, (now - updated).nanoseconds)) / 1e9
        tokens = min(Double(burst), tokens + elapsed * Double(perSecond))
        updated = now
    }

    func isFull(perSecond: Int, burst: Int, now: NIODeadline) -> Bool {
        var copy = self
        copy.refill(perSecond: perSecond, burst: burst, now: now)
        return copy.tokens >= Double(burst)
    }
}

/// The per-client buckets of `http.rate_limit_per_second`, shared by every connection. Bounded:
/// when it holds `capacity` clients, the buckets that are full again (idle clients) are dropped;
/// if none is, the new client is limited with the shared overflow bucket.
final class RateLimiter: Sendable {
    let perSecond: Int
    let burst: Int
    let capacity: Int
    private struct Table {
        var buckets: [[UInt8]: TokenBucket] = [:]
        var overflow: TokenBucket
    }
    private let table: Mutex<Table>

    init(perSecond: Int, burst: Int, capacity: Int = 65_536, now: NIODeadline = .now()) {
        self.perSecond = perSecond
        self.burst = max(1, burst)
        self.capacity = capacity
        table = Mutex(Table(overflow: TokenBucket(burst: max(1, burst), now: now)))
    }

    /// nil: allowed. Otherwise the Retry-After seconds.
    func take(client: [UInt8], now: NIODeadline) -> Int? {
        let (perSecond, burst, capacity) = (self.perSecond, self.burst, self.capacity)
        return table.withLock { t in
            if t.buckets[client] == nil {
                if t.buckets.count >= capacity {
                    t.buckets = t.buckets.filter { !$0.value.isFull(perSecond: perSecond, burst: burst, now: now) }
                }
                if t.buckets.count >= capacity { return t.overflow.take(perSecond: perSecond, burst: burst, now: now) }
                t.buckets[client] = TokenBucket(burst: burst, now: now)
            }
            return t.buckets[client]!.take(perSecond: perSecond, burst: burst, now: now)
        }
    }

    var trackedClients: Int { table.withLock { $0.buckets.count } }
}
