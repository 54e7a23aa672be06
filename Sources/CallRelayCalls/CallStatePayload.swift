import CallRelayCore

/// The `callrelay.call-state.v1` payload (CONTRACT §9; docs/schema/call-state.v1.schema.json):
/// compact UTF-8 JSON, keys in a fixed order, absent values omitted.
package enum CallStatePayload {
    package static let schemaName = "callrelay.call-state.v1"

    package static func write(_ call: CallTracker.Call) -> [UInt8] {
        let s = call.state
        var w = JSONMembersWriter()
        w.out.reserveCapacity(640)
        JSONWriter.writeASCII("{\"schema\":\"callrelay.call-state.v1\"", into: &w.out)
        w.string("app_id", s.appID ?? s.appLevel)
        w.string("call_key", call.key)
        let phase = s.phase
        w.string("state", phase.name)
        w.string("outcome", s.outcome?.name)
        w.string("direction", s.direction)
        w.key("legs")
        w.out.append(0x7B)
        var firstLeg = true
        for (name, leg) in s.legs.named {
            if !firstLeg { w.out.append(0x2C) }
            firstLeg = false
            JSONWriter.writeString(name, into: &w.out)
            w.out.append(0x3A)
            var l = JSONMembersWriter(first: true)
            l.out.append(0x7B)
            l.string("call_id", leg.callID?.value)
            l.string("state", leg.phase.name)
            l.string("last_event", leg.lastEvent?.name)
            l.string("from", leg.from?.value)
            l.string("to", leg.to?.value)
            l.timestamp("started_at", leg.startedAt)
            l.timestamp("answered_at", leg.answeredAt)
            l.timestamp("ended_at", leg.phase == .ended ? leg.endedAt : nil)
            l.string("stream", leg.stream?.name)
            l.out.append(0x7D)
            w.out.append(contentsOf: l.out)
        }
        w.out.append(0x7D)
        w.timestamp("started_at", s.startedAt)
        w.timestamp("answered_at", s.answeredAt)
        w.timestamp("ended_at", s.endedAt)
        w.timestamp("updated_at", call.updatedAt)
        w.key("seq")
        JSONWriter.writeRaw(String(call.seq), into: &w.out)
        w.string("last_event_id", call.lastEventID.isEmpty ? nil : call.lastEventID)
        w.out.append(0x7D)
        return w.out
    }
}

extension JSONMembersWriter {
    /// `[time, "value"]`.
    mutating func earliest(_ k: StaticString, _ e: CallState.Earliest?) {
        guard let e else { return }
        key(k)
        out.append(0x5B)
        JSONWriter.writeRaw(String(e.time), into: &out)
        out.append(0x2C)
        JSONWriter.writeString(e.value, into: &out)
        out.append(0x5D)
    }

    /// `[time, rank, "name"]`.
    mutating func latest(_ k: StaticString, _ e: CallState.Latest?) {
        guard let e else { return }
        key(k)
        out.append(0x5B)
        JSONWriter.writeRaw(String(e.time), into: &out)
        out.append(0x2C)
        JSONWriter.writeRaw(String(e.rank), into: &out)
        out.append(0x2C)
        JSONWriter.writeString(e.name, into: &out)
        out.append(0x5D)
    }
}
