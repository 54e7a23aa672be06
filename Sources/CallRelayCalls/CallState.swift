import CallRelayNormalize

/// A call's state as the join of everything its webhooks said (CONTRACT §9).
///
/// Each webhook becomes a small `CallState` of its own (`init(facts:)`), and a call's state is the
/// `merge` of all of them. `merge` is commutative, associative and idempotent (every field is a
/// maximum or a minimum over a total order), so the state never goes backwards and every arrival
/// order of the same webhooks ends in the same state; a re-sent webhook changes nothing. PIOPIY
/// gives no ordering promise: this is what makes that harmless.
package struct CallState: Sendable, Equatable {
    package enum Phase: Int, Sendable, Comparable {
        case started = 0, answered = 1, ended = 2
        package static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
        package var name: String {
            switch self {
            case .started: "started"
            case .answered: "answered"
            case .ended: "ended"
            }
        }
    }

    package enum Outcome: Int, Sendable, Comparable {
        case stale = 0, missed = 1, answered = 2
        package static func < (a: Outcome, b: Outcome) -> Bool { a.rawValue < b.rawValue }
        package var name: String {
            switch self {
            case .stale: "stale"
            case .missed: "missed"
            case .answered: "answered"
            }
        }
    }

    /// A value chosen by the earliest time (then the smallest text): `from`, `to`, `call_id`, `direction`.
    package struct Earliest: Sendable, Equatable {
        package var time: Int64
        package var value: String
        static func join(_ a: Earliest?, _ b: Earliest?) -> Earliest? {
            guard let a else { return b }
            guard let b else { return a }
            return (a.time, a.value) <= (b.time, b.value) ? a : b
        }
    }

    /// The latest event by time, then by how far it took the leg, then by name: `last_event`, `stream`.
    package struct Latest: Sendable, Equatable {
        package var time: Int64
        package var rank: Int
        package var name: String
        static func join(_ a: Latest?, _ b: Latest?) -> Latest? {
            guard let a else { return b }
            guard let b else { return a }
            return (a.time, a.rank, a.name) >= (b.time, b.rank, b.name) ? a : b
        }
    }

    package struct Leg: Sendable, Equatable {
        package var phase: Phase = .started
        package var callID: Earliest?
        package var direction: Earliest?
        package var from: Earliest?
        package var to: Earliest?
        package var lastEvent: Latest?
        package var stream: Latest?
        package var startedAt: Int64?
        package var answeredAt: Int64?
        package var endedAt: Int64?

        package init() {}

        mutating func merge(_ o: Leg) {
            phase = max(phase, o.phase)
            callID = Earliest.join(callID, o.callID)
            direction = Earliest.join(direction, o.direction)
            from = Earliest.join(from, o.from)
            to = Earliest.join(to, o.to)
            lastEvent = Latest.join(lastEvent, o.lastEvent)
            stream = Latest.join(stream, o.stream)
            startedAt = minimum(startedAt, o.startedAt)
            answeredAt = minimum(answeredAt, o.answeredAt)
            endedAt = minimum(endedAt, o.endedAt)
        }
    }

    package var appID: String?
    package var appLevel: String
    /// Legs `a` and `b` (a leg no webhook named is absent).
    package var legs = Legs()

    /// Legs `a` and `b`: two fields, not a dictionary (a webhook's state is built per webhook).
    ///
    /// Each leg is boxed: a leg is ~260 bytes inline, and a tracked call is a dictionary entry, so
    /// inline legs made every entry of the tracker ~600 bytes, in every bucket of the table's
    /// capacity, present or not (5 MB at `calls.max_calls` = 5,000, most calls having one leg).
    /// Boxed, an entry is ~190 bytes and a leg costs its box only where it exists. A box is
    /// immutable (value semantics): setting a leg allocates a new one, one per webhook.
    package struct Legs: Sendable, Equatable {
        private var boxA: LegBox?
        private var boxB: LegBox?
        package var a: Leg? {
            get { boxA?.leg }
            set { boxA = newValue.map(LegBox.init) }
        }
        package var b: Leg? {
            get { boxB?.leg }
            set { boxB = newValue.map(LegBox.init) }
        }
        package init() {}
        package static func == (l: Legs, r: Legs) -> Bool {
            LegBox.same(l.boxA, r.boxA) && LegBox.same(l.boxB, r.boxB)
        }
        /// `b` for "b", `a` for anything else (what `CallFacts.leg` says).
        package subscript(_ name: String) -> Leg? {
            get { name == "b" ? b : a }
            set { if name == "b" { b = newValue } else { a = newValue } }
        }
        /// The legs present, `a` first.
        package var named: [(name: String, leg: Leg)] {
            var out: [(name: String, leg: Leg)] = []
            if let a { out.append(("a", a)) }
            if let b { out.append(("b", b)) }
            return out
        }
        func any(_ p: (Leg) -> Bool) -> Bool { (a.map(p) ?? false) || (b.map(p) ?? false) }
        func earliest(_ f: (Leg) -> Int64?) -> Int64? { minimum(a.flatMap(f), b.flatMap(f)) }
        /// The leg call ids present.
        package var callIDs: [String] { [a?.callID?.value, b?.callID?.value].compactMap { $0 } }
    }
    /// From the CDRs: `answered` beats `missed`.
    package var cdrOutcome: Outcome?
    /// The earliest end a CDR gave.
    package var cdrEndedAt: Int64?
    /// Set by the stale sweep (agent time).
    package var staleAt: Int64?

    package init(appID: String?, appLevel: String) {
        self.appID = appID
        self.appLevel = appLevel
    }

    /// What one webhook says.
    package init(facts f: CallFacts) {
        self.init(appID: f.appID, appLevel: f.appLevel)
        let time = f.occurredAt ?? f.endedAt ?? f.startedAt ?? 0
        var leg = Leg()
        leg.callID = f.callID.map { Earliest(time: time, value: $0) }
        leg.direction = f.direction.map { Earliest(time: time, value: $0) }
        leg.from = f.from.map { Earliest(time: time, value: $0) }
        leg.to = f.to.map { Earliest(time: time, value: $0) }
        leg.startedAt = f.startedAt ?? f.occurredAt
        if f.kind == .cdr {
            let answered = f.event.hasSuffix("_answered")
            let outcome: Outcome = answered ? .answered : .missed
            cdrOutcome = outcome
            leg.phase = .ended
            // PIOPIY sends answer_time on some missed calls: only an answered CDR answers the leg.
            if answered { leg.answeredAt = f.answeredAt ?? f.startedAt ?? f.occurredAt }
            leg.endedAt = f.endedAt ?? f.occurredAt
            cdrEndedAt = leg.endedAt
            leg.lastEvent = Latest(time: time, rank: 3, name: f.event)
        } else if f.event.hasPrefix("stream_") {
            leg.stream = Latest(time: time, rank: Self.streamRank(f.event), name: String(f.event.dropFirst("stream_".count)))
        } else {
            let phase: Phase =
                f.event.hasSuffix("_hangup") ? .ended : f.event.hasSuffix("_answered") ? .answered : .started
            leg.phase = phase
            if phase == .answered { leg.answeredAt = f.occurredAt }
            if phase == .ended { leg.endedAt = f.occurredAt }
            leg.lastEvent = Latest(time: time, rank: phase.rawValue, name: f.event)
        }
        legs[f.leg] = leg
    }

    private static func streamRank(_ event: String) -> Int {
        switch event {
        case "stream_connected": 0
        case "stream_error": 1
        case "stream_disconnected": 2
        default: 1
        }
    }

    /// The join: what both say.
    package mutating func merge(_ o: CallState) {
        appID = Earliest.join(appID.map { Earliest(time: 0, value: $0) }, o.appID.map { Earliest(time: 0, value: $0) })?.value
        appLevel = min(appLevel, o.appLevel)
        if let leg = o.legs.a {
            if legs.a == nil { legs.a = leg } else { legs.a!.merge(leg) }
        }
        if let leg = o.legs.b {
            if legs.b == nil { legs.b = leg } else { legs.b!.merge(leg) }
        }
        cdrOutcome = maximum(cdrOutcome, o.cdrOutcome)
        cdrEndedAt = minimum(cdrEndedAt, o.cdrEndedAt)
        staleAt = minimum(staleAt, o.staleAt)
    }

    /// What a cleared call keeps while its key is remembered: its legs' call ids (so late events
    /// still find it), nothing else.
    package func tombstone() -> CallState {
        var t = CallState(appID: appID, appLevel: appLevel)
        if let a = legs.a {
            var leg = Leg()
            leg.callID = a.callID
            t.legs.a = leg
        }
        if let b = legs.b {
            var leg = Leg()
            leg.callID = b.callID
            t.legs.b = leg
        }
        return t
    }

    package func merged(_ o: CallState) -> CallState {
        var copy = self
        copy.merge(o)
        return copy
    }

    // MARK: What subscribers see

    /// `ended` at a hangup of leg a, at any CDR, or at the stale sweep; else `answered` once a leg
    /// answered; else `started`.
    package var phase: Phase {
        if legs.a?.phase == .ended || cdrOutcome != nil || staleAt != nil { return .ended }
        return legs.any { $0.phase >= .answered } ? .answered : .started
    }

    /// Absent until ended: the CDR's when there is one, else answered or missed by whether a leg
    /// answered before leg a hung up, else stale.
    package var outcome: Outcome? {
        guard phase == .ended else { return nil }
        if let cdrOutcome { return cdrOutcome }
        if legs.a?.phase == .ended { return legs.any { $0.answeredAt != nil || $0.phase == .answered } ? .answered : .missed }
        return .stale
    }

    package var startedAt: Int64? { legs.earliest(\.startedAt) }
    package var answeredAt: Int64? { legs.earliest(\.answeredAt) }
    package var endedAt: Int64? {
        guard phase == .ended else { return nil }
        let legA = legs.a.flatMap { $0.phase == .ended ? $0.endedAt : nil }
        return [legA, cdrEndedAt, staleAt].compactMap { $0 }.min()
    }
    /// Leg a's direction, when known.
    package var direction: String? { legs.a?.direction?.value }
}

/// One leg on the heap (see `CallState.Legs`).
final class LegBox: Sendable {
    let leg: CallState.Leg
    init(_ leg: CallState.Leg) { self.leg = leg }
    static func same(_ a: LegBox?, _ b: LegBox?) -> Bool {
        switch (a, b) {
        case (nil, nil): true
        case let (a?, b?): a === b || a.leg == b.leg
        default: false
        }
    }
}

func minimum<T: Comparable>(_ a: T?, _ b: T?) -> T? {
    guard let a else { return b }
    guard let b else { return a }
    return min(a, b)
}

func maximum<T: Comparable>(_ a: T?, _ b: T?) -> T? {
    guard let a else { return b }
    guard let b else { return a }
    return max(a, b)
}
