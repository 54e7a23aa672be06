import CallRelayCore

/// How a tracked call is kept in the outbox (the companion's keyed state): every field of the
/// join, with the times that order it, and the envelope. Not a contract: only this build reads it
/// (a record it cannot read is dropped, and that call starts again from its next webhook).
package enum CallRecordCoding {
    /// Written directly (no `JSONValue` tree): once per changed call per commit.
    package static func encode(_ call: CallTracker.Call) -> [UInt8] {
        var w = JSONMembersWriter(first: true)
        w.out.reserveCapacity(512)
        w.out.append(0x7B)
        w.string("k", call.key)
        w.int("slot", call.slot)
        w.int("seq", call.seq)
        w.string("ev", call.lastEventID)
        w.int("up", call.updatedAt)
        w.int("act", call.lastActivityAt)
        w.int("endl", call.endedLocallyAt)
        w.int("clr", call.clearedAt)
        let s = call.state
        w.string("app", s.appID)
        w.string("lvl", s.appLevel)
        w.int("cdr", s.cdrOutcome.map { Int64($0.rawValue) })
        w.int("cdre", s.cdrEndedAt)
        w.int("stale", s.staleAt)
        w.key("legs")
        w.out.append(0x7B)
        var firstLeg = true
        for (name, l) in s.legs.named {
            if !firstLeg { w.out.append(0x2C) }
            firstLeg = false
            JSONWriter.writeString(name, into: &w.out)
            w.out.append(0x3A)
            var lw = JSONMembersWriter(first: true)
            lw.out.append(0x7B)
            lw.int("ph", Int64(l.phase.rawValue))
            lw.earliest("cid", l.callID)
            lw.earliest("dir", l.direction)
            lw.earliest("from", l.from)
            lw.earliest("to", l.to)
            lw.latest("last", l.lastEvent)
            lw.latest("str", l.stream)
            lw.int("sa", l.startedAt)
            lw.int("aa", l.answeredAt)
            lw.int("ea", l.endedAt)
            lw.out.append(0x7D)
            w.out.append(contentsOf: lw.out)
        }
        w.out.append(0x7D)
        w.out.append(0x7D)
        return w.out
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
