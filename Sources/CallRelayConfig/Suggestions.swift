// "did you mean ...?" for typos in key names, table names and choices.

enum Suggestions {
    /// The largest edit distance still offered as a suggestion.
    static let maximumDistance = 2

    /// The candidate equal to `text` ignoring case, else the nearest within `maximumDistance`
    /// edits (ignoring case; the first in `candidates` on a tie), else nil.
    static func closest(to text: String, among candidates: [String]) -> String? {
        let lowered = text.lowercased()
        if let same = candidates.first(where: { $0.lowercased() == lowered }) { return same }
        let length = lowered.count
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            // The distance is at least the difference in length: most candidates are ruled out
            // without the quadratic alignment (a file of unknown keys stays cheap to check).
            let candidateLowered = candidate.lowercased()
            guard abs(candidateLowered.count - length) <= maximumDistance,
                let distance = editDistance(lowered, candidateLowered, limit: maximumDistance), distance < candidate.count
            else { continue }
            if best == nil || distance < best!.distance { best = (candidate, distance) }
        }
        return best?.candidate
    }

    /// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
    /// neighbouring characters each cost 1 (so "prot" is 1 away from "port").
    static func editDistance(_ a: String, _ b: String) -> Int {
        editDistance(a, b, limit: Int.max)!
    }

    /// The distance when it is at most `limit`, else nil (stops once every alignment of a row
    /// costs more).
    static func editDistance(_ a: String, _ b: String, limit: Int) -> Int? {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count <= limit ? b.count : nil }
        if b.isEmpty { return a.count <= limit ? a.count : nil }
        var previousPrevious = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    value = min(value, previousPrevious[j - 2] + 1)
                }
                current[j] = value
            }
            // A swap reaches back two rows, so stop only when both rows exceed the limit.
            if current.min()! > limit && previous.min()! > limit { return nil }
            (previousPrevious, previous, current) = (previous, current, previousPrevious)
        }
        return previous[b.count] <= limit ? previous[b.count] : nil
    }
}
