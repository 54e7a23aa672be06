import CallRelayCore

/// How a tracked call is kept in the outbox (the companion's keyed state): every field of the
/// join, with the times that order it, and the envelope. Not a contract: only this build reads it
/// (a record it cannot read is dropped, and that call starts again from its next webhook).
package enum CallRecordCoding {
    package static func encode(_ call: CallTracker.Call) -> [UInt8] {
        var m: [JSONMember] = []
        func put(_ k: String, _ v: JSONValue?) { if let v { m.append(JSONMember(key: k, value: v)) } }
        put("k", .string(call.key))
        put("slot", number(call.slot))
        put("seq", number(call.seq))
        put("ev", .string(call.lastEventID))
        put("up", number(call.updatedAt))
        put("act", number(call.lastActivityAt))
        put("endl", call.endedLocallyAt.map(number))
        put("clr", call.clearedAt.map(number))
        let s = call.state
        put("app", s.appID.map(JSONValue.string))
        put("lvl", .string(s.appLevel))
        put("cdr", s.cdrOutcome.map { number(Int64($0.rawValue)) })
        put("cdre", s.cdrEndedAt.map(number))
        put("stale", s.staleAt.map(number))
        put("legs", .object(s.legs.keys.sorted().map { JSONMember(key: $0, value: leg(s.legs[$0]!)) }))
        return JSONValue.object(m).serialized()
    }

    package static func decode(_ bytes: [UInt8]) -> CallTracker.Call? {
        guard let v = try? JSONValue.parse(bytes), let key = v["k"]?.stringValue, let level = v["lvl"]?.stringValue,
            let activity = int(v["act"])
        else { return nil }
        var state = CallState(appID: v["app"]?.stringValue, appLevel: level)
        state.cdrOutcome = int(v["cdr"]).flatMap { CallState.Outcome(rawValue: Int($0)) }
        state.cdrEndedAt = int(v["cdre"])
        state.staleAt = int(v["stale"])
        if case .object(let legs)? = v["legs"] {
            for member in legs { state.legs[member.key] = leg(member.value) }
        }
        var call = CallTracker.Call(key: key, state: state, lastActivityAt: activity)
        call.slot = int(v["slot"]) ?? 0
        call.seq = int(v["seq"]) ?? 0
        call.lastEventID = v["ev"]?.stringValue ?? ""
        call.updatedAt = int(v["up"]) ?? 0
        call.endedLocallyAt = int(v["endl"])
        call.clearedAt = int(v["clr"])
        return call
    }

    private static func leg(_ l: CallState.Leg) -> JSONValue {
        var m: [JSONMember] = []
        func put(_ k: String, _ v: JSONValue?) { if let v { m.append(JSONMember(key: k, value: v)) } }
        put("ph", number(Int64(l.phase.rawValue)))
        put("cid", l.callID.map(earliest))
        put("dir", l.direction.map(earliest))
        put("from", l.from.map(earliest))
        put("to", l.to.map(earliest))
        put("last", l.lastEvent.map(latest))
        put("str", l.stream.map(latest))
        put("sa", l.startedAt.map(number))
        put("aa", l.answeredAt.map(number))
        put("ea", l.endedAt.map(number))
        return .object(m)
    }

    private static func leg(_ v: JSONValue) -> CallState.Leg {
        var l = CallState.Leg()
        l.phase = int(v["ph"]).flatMap { CallState.Phase(rawValue: Int($0)) } ?? .started
        l.callID = earliest(v["cid"])
        l.direction = earliest(v["dir"])
        l.from = earliest(v["from"])
        l.to = earliest(v["to"])
        l.lastEvent = latest(v["last"])
        l.stream = latest(v["str"])
        l.startedAt = int(v["sa"])
        l.answeredAt = int(v["aa"])
        l.endedAt = int(v["ea"])
        return l
    }

    private static func number(_ n: Int64) -> JSONValue { .number(String(n)) }
    private static func earliest(_ e: CallState.Earliest) -> JSONValue { .array([number(e.time), .string(e.value)]) }
    private static func latest(_ e: CallState.Latest) -> JSONValue { .array([number(e.time), number(Int64(e.rank)), .string(e.name)]) }

    private static func int(_ v: JSONValue?) -> Int64? {
        guard case .number(let text)? = v else { return nil }
        return Int64(text)
    }

    private static func earliest(_ v: JSONValue?) -> CallState.Earliest? {
        guard case .array(let a)? = v, a.count == 2, let t = int(a[0]), let s = a[1].stringValue else { return nil }
        return CallState.Earliest(time: t, value: s)
    }

    private static func latest(_ v: JSONValue?) -> CallState.Latest? {
        guard case .array(let a)? = v, a.count == 3, let t = int(a[0]), let r = int(a[1]), let s = a[2].stringValue else { return nil }
        return CallState.Latest(time: t, rank: Int(r), name: s)
    }
}
