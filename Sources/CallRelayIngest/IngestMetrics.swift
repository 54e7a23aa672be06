import Synchronization

/// Counters of the HTTP edge, created once and shared by every connection.
package final class IngestMetrics: Sendable {
    package enum Result: String, CaseIterable, Sendable {
        case stored, duplicate, badRequest = "bad_request", unauthorized, tooLarge = "too_large", unavailable
    }
    package enum Endpoint: String, CaseIterable, Sendable {
        case cdr, live, combined
    }

    private let counters: [Counter]

    package init() {
        counters = (0..<(Result.allCases.count * Endpoint.allCases.count)).map { _ in Counter() }
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
