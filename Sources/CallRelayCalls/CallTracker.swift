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
        /// How many calls (tombstones included) are kept at once (`calls.max_calls`). Past it the
        /// oldest are forgotten in one batch down to nine tenths: tombstones first, then the calls
        /// least recently active, whose retained messages are cleared.
        package var maxCalls: Int

        package init(clearAfterSeconds: Int, staleAfterSeconds: Int, tombstoneSeconds: Int = 3600, maxCalls: Int = 10_000) {
            clearAfterMilliseconds = Int64(clearAfterSeconds) * 1000
            staleAfterMilliseconds = Int64(staleAfterSeconds) * 1000
            tombstoneMilliseconds = Int64(max(tombstoneSeconds, 1)) * 1000
            self.maxCalls = max(maxCalls, 1)
        }
    }

    /// One call: its state and its envelope.
    package struct Call: Sendable, Equatable {
        package var key: String
        /// Where the record is kept: numbered in order of first sight, so the records of current
        /// calls sit together at the end of the table instead of at random keys.
        package var slot: Int64 = 0
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
        /// The call as this message shows it; nil: the call's retained message is cleared.
        package var call: Call?
        /// The outbox row's id: `<key>#<seq>` for a state, `<key>#clear` for a clearing.
        package var rowID: String
        /// A clearing because the call was forgotten to stay within `maxCalls` (not because it ended).
        package var evicted = false
        /// The `callrelay.call-state.v1` payload (built on demand); empty for a clearing.
        package var payload: [UInt8] { call.map(CallStatePayload.write) ?? [] }
        /// The message's `seq`, nil for a clearing.
        package var seq: Int64? { call?.seq }
    }

    /// The current state of `key` when `seq` is still its newest message; nil when a newer one
    /// exists (or the call is forgotten): the delivery then skips the older one.
    package func current(key: String, seq: Int64) -> Call? {
        guard let call = calls[key], call.seq == seq, call.clearedAt == nil else { return nil }
        return call
    }

    package let settings: Settings
    package private(set) var calls: [String: Call] = [:]
    /// Leg `call_id` → the call's key (how stream events and events without a conversation id find their call).
    private var keyByCallID: [String: String] = [:]
    /// Keys whose record changed since `takeChanges`.
    private var changed: Set<String> = []
    /// Slots of records forgotten since `takeChanges`.
    private var removedSlots: Set<Int64> = []
    /// Never later than the earliest deadline of any call: kept as a minimum over the calls each
    /// webhook touches (a webhook only moves its call's deadline later, or adds one), recomputed
    /// in full by `sweep`. So a commit costs nothing per tracked call.
    private var earliestDeadline: Int64?
    /// The next record slot.
    private var nextSlot: Int64 = 1
    /// While a transaction is open: the first value of every entry it touched, to put back at a
    /// rollback. The tracker is changed in place (a copy per commit would cost every call).
    private var undo: Undo?

    private struct Undo: Sendable, Equatable {
        var calls: [String: Call?] = [:]
        var keys: [String: String?] = [:]
        var changed: Set<String>
        var removedSlots: Set<Int64>
        var earliestDeadline: Int64?
        var nextSlot: Int64
        var evictedCount: Int
    }

    package init(settings: Settings, calls: [Call] = []) {
        self.settings = settings
        for call in calls {
            self.calls[call.key] = call
            count(call, 1)
            index(call)
        }
        earliestDeadline = Self.fullDeadline(self.calls.values, settings)
        nextSlot = (calls.map(\.slot).max() ?? 0) + 1
    }

    // MARK: Transactions

    /// Starts recording what the next changes replace.
    package mutating func begin() {
        undo = Undo(
            changed: changed, removedSlots: removedSlots, earliestDeadline: earliestDeadline, nextSlot: nextSlot, evictedCount: evictedCount)
    }

    /// Keeps the changes since `begin`.
    package mutating func commit() { undo = nil }

    /// Puts back what was there at `begin`.
    package mutating func rollback() {
        guard let u = undo else { return }
        undo = nil
        for (key, old) in u.calls {
            count(calls[key], -1)
            count(old, 1)
            calls[key] = old
        }
        for (id, old) in u.keys { keyByCallID[id] = old }
        changed = u.changed
        removedSlots = u.removedSlots
        earliestDeadline = u.earliestDeadline
        nextSlot = u.nextSlot
        evictedCount = u.evictedCount
    }

    private mutating func setCall(_ key: String, _ call: Call?) {
        if undo != nil, undo!.calls[key] == nil { undo!.calls[key] = .some(calls[key]) }
        count(calls[key], -1)
        count(call, 1)
        calls[key] = call
    }

    private mutating func setKey(_ id: String, _ key: String?) {
        if undo != nil, undo!.keys[id] == nil { undo!.keys[id] = .some(keyByCallID[id]) }
        keyByCallID[id] = key
    }

    /// Calls not ended (what `status` and `/metrics` call active).
    package private(set) var activeCount = 0
    /// Calls with a retained state (active or ended and not yet cleared).
    package private(set) var retainedCount = 0

    /// Keeps the two counts exact as a record is replaced (O(1) per change).
    private mutating func count(_ call: Call?, _ sign: Int) {
        guard let call, call.clearedAt == nil else { return }
        retainedCount += sign
        if call.state.phase != .ended { activeCount += sign }
    }

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
            orphan.state = orphan.state.tombstone()
            setCall(callID, orphan)
            changed.insert(callID)
            lower(deadline(orphan))
            out.append(Message(appLevel: orphan.state.appLevel, key: callID, call: nil, rowID: "\(callID)#clear"))
        }
        if let callID, keyByCallID[callID] != key { setKey(callID, key) }
        var call = calls[key] ?? newCall(key, incoming, now)
        if call.clearedAt != nil { return out }
        let before = call.seq == 0 ? nil : call.state
        call.state.merge(incoming)
        call.lastActivityAt = now
        if call.state != before { out.append(publish(&call, eventID: eventID, now: now)) }
        setCall(key, call)
        changed.insert(key)
        lower(deadline(call))
        if calls.count > settings.maxCalls && evictionEnabled { out += evict(keeping: key) }
        return out
    }

    /// Calls forgotten to stay within `maxCalls`, since the tracker was made.
    package private(set) var evictedCount = 0
    /// Off while the tracker is rebuilt from stored rows (their clearings say what was evicted).
    package var evictionEnabled = true

    /// Forgets the oldest calls down to nine tenths of `maxCalls` (one sort per batch, so a
    /// webhook pays O(log n) on average): tombstones by when they were cleared, then the others by
    /// their last webhook. A forgotten call with a retained message gets a clearing.
    private mutating func evict(keeping current: String) -> [Message] {
        let target = settings.maxCalls - settings.maxCalls / 10
        let excess = calls.count - max(target, 1)
        guard excess > 0 else { return [] }
        let order = calls.values.lazy.filter { $0.key != current }.map { c in
            (tombstone: c.clearedAt == nil ? 1 : 0, at: c.clearedAt ?? c.lastActivityAt, key: c.key)
        }.sorted { ($0.tombstone, $0.at, $0.key) < ($1.tombstone, $1.at, $1.key) }
        var out: [Message] = []
        for victim in order.prefix(excess) {
            guard let call = calls[victim.key] else { continue }
            forget(call)
            evictedCount += 1
            if call.clearedAt == nil {
                out.append(Message(appLevel: call.state.appLevel, key: call.key, call: nil, rowID: "\(call.key)#evict", evicted: true))
            }
        }
        return out
    }

    /// Removes a call and its leg ids; its record goes at the next `takeChanges`.
    private mutating func forget(_ call: Call) {
        setCall(call.key, nil)
        for id in call.state.legs.callIDs where keyByCallID[id] == call.key { setKey(id, nil) }
        if keyByCallID[call.key] == call.key { setKey(call.key, nil) }
        changed.remove(call.key)
        removedSlots.insert(call.slot)
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
                if now - cleared >= settings.tombstoneMilliseconds { forget(call) }
            } else if call.state.phase == .ended {
                if now - (call.endedLocallyAt ?? now) >= settings.clearAfterMilliseconds {
                    call.clearedAt = now
                    call.state = call.state.tombstone()
                    setCall(key, call)
                    changed.insert(key)
                    out.append(Message(appLevel: call.state.appLevel, key: key, call: nil, rowID: "\(key)#clear"))
                }
            } else if now - call.lastActivityAt >= settings.staleAfterMilliseconds {
                call.state.staleAt = now
                out.append(publish(&call, eventID: call.lastEventID, now: now))
                setCall(key, call)
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

    /// Whether records changed since the last `takeChanges`.
    package var hasChanges: Bool { !changed.isEmpty || !removedSlots.isEmpty }

    // MARK: Rebuilding from stored rows

    /// A stored call-state row seen again at open (`<seq> <key>`, `clear <key>`, `evict <key>`,
    /// stored at agent time `at`), after the webhooks before it were ingested again: what the
    /// timers did (the stale sweep's message, a clearing) and what the bound forgot is applied; a
    /// row the ingests already explain changes nothing.
    package mutating func replayStored(head: String, key: String, at: Int64) {
        switch head {
        case "evict":
            if let call = calls[key] { forget(call) }
        case "clear":
            guard var call = calls[key], call.clearedAt == nil else { return }
            call.clearedAt = at
            call.state = call.state.tombstone()
            setCall(key, call)
            changed.insert(key)
            lower(deadline(call))
        default:
            guard let seq = Int64(head), var call = calls[key], call.clearedAt == nil, call.seq < seq else { return }
            // Only the stale sweep stores a message no webhook caused.
            call.state.staleAt = call.state.staleAt ?? at
            call.seq = seq - 1
            _ = publish(&call, eventID: call.lastEventID, now: at)
            setCall(key, call)
            changed.insert(key)
            lower(deadline(call))
        }
    }

    /// The records changed since the last call (nil: forget the key), for the outbox to persist.
    package mutating func takeChanges() -> [(slot: Int64, call: Call?)] {
        defer {
            changed.removeAll(keepingCapacity: true)
            removedSlots.removeAll(keepingCapacity: true)
        }
        let kept: [(slot: Int64, call: Call?)] = changed.compactMap { calls[$0] }.map { ($0.slot, $0) }
        return (kept + removedSlots.map { ($0, nil) }).sorted { $0.slot < $1.slot }
    }

    private mutating func newCall(_ key: String, _ state: CallState, _ now: Int64) -> Call {
        var call = Call(key: key, state: state, lastActivityAt: now)
        call.slot = nextSlot
        nextSlot += 1
        return call
    }

    private mutating func publish(_ call: inout Call, eventID: String, now: Int64) -> Message {
        if call.state.phase == .ended && call.endedLocallyAt == nil { call.endedLocallyAt = now }
        call.seq += 1
        call.lastEventID = eventID
        call.updatedAt = now
        return Message(appLevel: call.state.appLevel, key: call.key, call: call, rowID: "\(call.key)#\(call.seq)")
    }

    private mutating func index(_ call: Call) {
        for id in call.state.legs.callIDs where keyByCallID[id] == nil { keyByCallID[id] = call.key }
        if keyByCallID[call.key] == nil, call.state.legs.callIDs.contains(call.key) {
            keyByCallID[call.key] = call.key
        }
    }
}
