/// Capped exponential backoff with jitter for broker reconnects.
///
/// Attempt n waits `min(max, min * 2^n)` scaled by a random factor in [0.5, 1.0] ("equal jitter"),
/// so a fleet of gateways that lost the same broker does not come back in lockstep.
package struct ReconnectBackoff: Sendable, Equatable {
    package var minimumMilliseconds: Int
    package var maximumMilliseconds: Int

    package init(minimumMilliseconds: Int, maximumMilliseconds: Int) {
        self.minimumMilliseconds = max(1, minimumMilliseconds)
        self.maximumMilliseconds = max(self.minimumMilliseconds, maximumMilliseconds)
    }

    /// The cap before jitter for `attempt` (0-based).
    package func ceiling(attempt: Int) -> Int {
        let shift = min(max(attempt, 0), 30)
        let (value, overflow) = minimumMilliseconds.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? maximumMilliseconds : min(value, maximumMilliseconds)
    }

    package func delay(attempt: Int, unit: Double = Double.random(in: 0.5...1.0)) -> Int {
        let cap = ceiling(attempt: attempt)
        return max(1, Int(Double(cap) * min(max(unit, 0.5), 1.0)))
    }
}
