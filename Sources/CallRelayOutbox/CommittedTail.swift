/// The most recently committed events, kept in memory so that a delivery pump that keeps up
/// publishes them without reading them back from the file. A value; bounded by count and bytes.
///
/// It only ever holds one contiguous run of seqs: an append that does not continue the run (rows
/// written by another process, e.g. `callrelay replay`, came in between) starts a new run, so a
/// read that the run covers is exactly what the database would answer.
struct CommittedTail {
    let maxCount: Int
    let maxBytes: Int
    private var records: [OutboxRecord] = []
    private var start = 0
    private(set) var bytes = 0

    init(maxCount: Int, maxBytes: Int) {
        self.maxCount = maxCount
        self.maxBytes = maxBytes
    }

    var count: Int { records.count - start }
    var firstSeq: Int64? { start < records.count ? records[start].seq : nil }
    var lastSeq: Int64? { records.last.map(\.seq) }

    /// Adds freshly committed records (ascending seqs).
    mutating func append(_ new: [OutboxRecord]) {
        guard let first = new.first else { return }
        if let last = lastSeq, first.seq != last + 1 { removeAll() }
        for r in new {
            records.append(r)
            bytes += r.content.byteCount
        }
        while count > maxCount || (bytes > maxBytes && count > 1) { dropFirst() }
        compact()
    }

    /// Forgets records at or below `seq` (settled: never needed again).
    mutating func drop(through seq: Int64) {
        while let first = firstSeq, first <= seq { dropFirst() }
        compact()
    }

    mutating func removeAll() {
        records.removeAll(keepingCapacity: true)
        start = 0
        bytes = 0
    }

    /// Records with seq > `after`, not `settled`, at most `limit`: nil when the run does not hold
    /// `after + 1` or holds nothing unsettled after it (the caller reads the database instead).
    func records(after: Int64, limit: Int, settled: (Int64) -> Bool) -> [OutboxRecord]? {
        guard let first = firstSeq, let last = lastSeq, after + 1 >= first, after + 1 <= last else { return nil }
        var out: [OutboxRecord] = []
        out.reserveCapacity(min(limit, Int(last - after)))
        var i = start + Int(after + 1 - first)
        while i < records.count, out.count < limit {
            if !settled(records[i].seq) { out.append(records[i]) }
            i += 1
        }
        // Nothing left in memory: the file may hold rows past the run (written by `replay`).
        return out.isEmpty ? nil : out
    }

    private mutating func dropFirst() {
        bytes -= records[start].content.byteCount
        start += 1
    }

    private mutating func compact() {
        if start == records.count {
            records.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 1024 && start * 2 > records.count {
            records.removeFirst(start)
            start = 0
        }
    }
}
