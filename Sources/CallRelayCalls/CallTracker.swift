import CallRelayNormalize

/// Every current call, keyed by `call_key`, with what subscribers were told (`seq`) and when each
/// call must be swept or cleared (CONTRACT §9). A value: the outbox companion runs it inside the
/// commit that stores the webhooks, on a copy that becomes the state only once the commit is on
/// disk (`CallStateCompanion` in the daemon). No clock, no I/O: `now` comes in.
package struct CallTracker: Sendable, Equatable {
    package struct Settings: Sendable, Equatable {
        package var clearAfterMilliseconds: Int64
        package var staleAfterMilliseconds: Int64
        /// How long a cleared call's key is remembered, so a late webhook does not bring it back.
        package var tombstoneMilliseconds: Int64

        package init(clearAfterSeconds: Int, staleAfterSeconds: Int, tombstoneSeconds: Int = 3600) {
            clearAfterMilliseconds = Int64(clearAfterSeconds) * 1000
            staleAfterMilliseconds = Int64(staleAfterSeconds) * 1000
            tombstoneMilliseconds = Int64(max(tombstoneSeconds, 1)) * 1000
        }
    }

    /// One call: its state and its envelope.
    package struct Call: Sendable, Equatable {
        package var key: String
        package var state: CallState
        /// Of the last state message (0: none yet).
        package var seq: Int64 = 0
        package var lastEventID: String = ""
        package var updatedAt: Int64 = 0
        /// Agent time of the last webhook of the call (the stale sweep's clock).
        package var lastActivityAt: Int64
        /// Agent time the call became `ended` (the clearing's clock).
        package var endedLocallyAt: Int64?
        /// Set once its retained message was cleared: the key is only remembered (a tombstone).
        package var clearedAt: Int64?

        package init(key: String, state: CallState, lastActivityAt: Int64) {
            self.key = key
            self.state = state
            self.lastActivityAt = lastActivityAt
        }
    }

    /// A message to publish, retained, on `{prefix}/{app level}/calls/{key}`.
    package struct Message: Sendable, Equatable {
        package var appLevel: String
        package var key: String
        /// The `callrelay.call-state.v1` payload; empty: the call's retained message is cleared.
        package var payload: [UInt8]
        /// The outbox row's id: `<key>#<seq>` for a state, `<key>#clear` for a clearing.
        package var rowID: String
    }

    package let settings: Settings
    package private(set) var calls: [String: Call] = [:]
    /// Leg `call_id` → the call's key (how stream events and events without a conversation id find their call).
    private var keyByCallID: [String: String] = [:]
    /// Keys whose record changed since `takeChanges`.
    private var changed: Set<String> = []
    /// Never later than the earliest deadline of any call: kept as a minimum over the calls each
    /// webhook touches (a webhook only moves its call's deadline later, or adds one), recomputed
    /// in full by `sweep`. So a commit costs nothing per tracked call.
    private var earliestDeadline: Int64?

    package init(settings: Settings, calls: [Call] = []) {
        self.settings = settings
        for call in calls {
            self.calls[call.key] = call
            index(call)
        }
        earliestDeadline = Self.fullDeadline(self.calls.values, settings)
    }

    /// Calls not ended (what `status` and `/metrics` call active).
    package var activeCount: Int { calls.values.reduce(0) { $0 + ($1.clearedAt == nil && $1.state.phase != .ended ? 1 : 0) } }
    /// Calls with a retained state (active or ended and not yet cleared).
    package var retainedCount: Int { calls.values.reduce(0) { $0 + ($1.clearedAt == nil ? 1 : 0) } }

    // MARK: Events

    /// A stored webhook's facts: the messages it causes (none when it changes nothing).
    package mutating func ingest(_ facts: CallFacts, eventID: String, now: Int64) -> [Message] {
        let callID = facts.callID
        let key: String
        if facts.event.hasPrefix("stream_"), let callID, let known = keyByCallID[callID] {
            key = known
        } else if let conversation = facts.conversationID {
            key = conversation
        } else if let callID {
            key = keyByCallID[callID] ?? callID
        } else {
            return []
        }
        var out: [Message] = []
        var incoming = CallState(facts: facts)
        // A call first seen through a leg's call_id alone (a stream event before the leg's other
        // events) joins its conversation once one names it; its own retained message is cleared.
        if let callID, callID != key, var orphan = calls[callID], orphan.clearedAt == nil, keyByCallID[callID] == callID {
            incoming.merge(orphan.state)
            orphan.clearedAt = now
            calls[callID] = orphan
            changed.insert(callID)
            lower(deadline(orphan))
            out.append(Message(appLevel: orphan.state.appLevel, key: callID, payload: [], rowID: "\(callID)#clear"))
        }
        if let callID { keyByCallID[callID] = key }
        var call = calls[key] ?? Call(key: key, state: incoming, lastActivityAt: now)
        if call.clearedAt != nil { return out }
        let before = call.seq == 0 ? nil : call.state
        call.state.merge(incoming)
        call.lastActivityAt = now
        calls[key] = call
        changed.insert(key)
        if call.state != before {
            out.append(publish(&call, eventID: eventID, now: now))
            calls[key] = call
        }
        lower(deadline(call))
        return out
    }

    // MARK: Time

    /// The stale sweep, the clearing of ended calls and the forgetting of tombstones due at `now`.
    package mutating func sweep(now: Int64) -> [Message] {
        var out: [Message] = []
        defer { earliestDeadline = Self.fullDeadline(calls.values, settings) }
        let due = calls.values.filter { deadline($0) <= now }.map(\.key).sorted()
        for key in due {
            guard var call = calls[key] else { continue }
            if let cleared = call.clearedAt {
                if now - cleared >= settings.tombstoneMilliseconds {
                    calls[key] = nil
                    for leg in call.state.legs.values {
                        if let id = leg.callID?.value, keyByCallID[id] == key { keyByCallID[id] = nil }
                    }
                    if keyByCallID[key] == key { keyByCallID[key] = nil }
                    changed.insert(key)
                }
            } else if call.state.phase == .ended {
                if now - (call.endedLocallyAt ?? now) >= settings.clearAfterMilliseconds {
                    call.clearedAt = now
                    calls[key] = call
                    changed.insert(key)
                    out.append(Message(appLevel: call.state.appLevel, key: key, payload: [], rowID: "\(key)#clear"))
                }
            } else if now - call.lastActivityAt >= settings.staleAfterMilliseconds {
                call.state.staleAt = now
                out.append(publish(&call, eventID: call.lastEventID, now: now))
                calls[key] = call
                changed.insert(key)
            }
        }
        return out
    }

    /// When `sweep` may have something to do next (agent time; never later than the truth, at
    /// worst earlier: the sweep then finds nothing and looks again), nil when nothing is tracked.
    package var nextDeadline: Int64? { earliestDeadline }

    private func deadline(_ call: Call) -> Int64 { Self.deadline(call, settings) }

    private static func deadline(_ call: Call, _ settings: Settings) -> Int64 {
        if let cleared = call.clearedAt { return cleared + settings.tombstoneMilliseconds }
        if call.state.phase == .ended { return (call.endedLocallyAt ?? 0) + settings.clearAfterMilliseconds }
        return call.lastActivityAt + settings.staleAfterMilliseconds
    }

    private static func fullDeadline(_ calls: Dictionary<String, Call>.Values, _ settings: Settings) -> Int64? {
        calls.lazy.map { deadline($0, settings) }.min()
    }

    private mutating func lower(_ deadline: Int64) {
        earliestDeadline = min(earliestDeadline ?? deadline, deadline)
    }

    /// The records changed since the last call (nil: forget the key), for the outbox to persist.
    package mutating func takeChanges() -> [(key: String, call: Call?)] {
        defer { changed.removeAll(keepingCapacity: true) }
        return changed.sorted().map { ($0, calls[$0]) }
    }

    private mutating func publish(_ call: inout Call, eventID: String, now: Int64) -> Message {
        if call.state.phase == .ended && call.endedLocallyAt == nil { call.endedLocallyAt = now }
        call.seq += 1
        call.lastEventID = eventID
        call.updatedAt = now
        return Message(
            appLevel: call.state.appLevel, key: call.key, payload: CallStatePayload.write(call), rowID: "\(call.key)#\(call.seq)")
    }

    private mutating func index(_ call: Call) {
        for leg in call.state.legs.values {
            if let id = leg.callID?.value, keyByCallID[id] == nil { keyByCallID[id] = call.key }
        }
        if keyByCallID[call.key] == nil, call.state.legs.values.contains(where: { $0.callID?.value == call.key }) {
            keyByCallID[call.key] = call.key
        }
    }
}
