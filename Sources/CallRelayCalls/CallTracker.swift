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
        /// oldest are forgotten in one batch down to three quarters: tombstones first, then the calls
        /// least recently active, whose retained messages are cleared.
        package var maxCalls: Int

        package init(clearAfterSeconds: Int, staleAfterSeconds: Int, tombstoneSeconds: Int = 3600, maxCalls: Int = 5_000) {
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
        /// Whether its newest state message may be on the broker already (the delivery read its
        /// row). Only then does forgetting it need a clearing row: a state row still waiting is
        /// published as a clearing when its call is no longer tracked. Not persisted: a rebuilt
        /// call says yes.
        package var handedOut = true

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
        /// A name for the message: `<key>#<seq>` for a state, `<key>#clear` or `<key>#evict` for a clearing.
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
        /// What happened to the change sets, in order (recorded, not copied: they hold up to a
        /// snapshot interval of keys).
        var changes: [ChangeStep] = []
        var earliestDeadline: Int64?
        var nextSlot: Int64
        var evictedCount: Int
    }

    private enum ChangeStep: Sendable, Equatable {
        case marked(String), unmarked(String), slotRemoved(Int64), slotTaken(Int64)
        case took(changed: Set<String>, removedSlots: Set<Int64>)
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
        undo = Undo(earliestDeadline: earliestDeadline, nextSlot: nextSlot, evictedCount: evictedCount)
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
        for step in u.changes.reversed() {
            switch step {
            case .marked(let key): changed.remove(key)
            case .unmarked(let key): markChanged(key)
            case .slotRemoved(let slot): removedSlots.remove(slot)
            case .slotTaken(let slot): removedSlots.insert(slot)
            case .took(let c, let r): (changed, removedSlots) = (c, r)
            }
        }
        earliestDeadline = u.earliestDeadline
        nextSlot = u.nextSlot
        evictedCount = u.evictedCount
        // A failed snapshot chunk ends its round: the next one plans again from the change sets.
        snapshotPlan = []
        planPosition = 0
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
            markChanged(callID)
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
        markChanged(key)
        lower(deadline(call))
        if calls.count > settings.maxCalls && !replaying { out += evict(keeping: key) }
        return out
    }

    /// Calls forgotten to stay within `maxCalls`, since the tracker was made.
    package private(set) var evictedCount = 0
    /// While the tracker is rebuilt from stored rows: no eviction (their `evict` rows say what was
    /// forgotten), and every message counts as handed out (the rebuild cannot know).
    package var replaying = false

    /// The delivery read the state row `seq` of `key`: that state may now be on the broker.
    package mutating func handedOut(key: String, seq: Int64) {
        guard let call = calls[key], call.seq == seq, !call.handedOut else { return }
        calls[key]!.handedOut = true
    }

    /// Forgets the oldest calls down to three quarters of `maxCalls` (one sort per batch, so a
    /// webhook pays O(log n) on average): tombstones by when they were cleared, then the others by
    /// their last webhook. A forgotten call with a retained message gets a clearing.
    private mutating func evict(keeping current: String) -> [Message] {
        let target = settings.maxCalls - settings.maxCalls / 4
        let excess = calls.count - max(target, 1)
        guard excess > 0 else { return [] }
        let victims = oldest(excess, except: current)
        var out: [Message] = []
        for key in victims {
            guard let call = calls[key] else { continue }
            forget(call)
            evictedCount += 1
            // A state still waiting in the outbox is published as a clearing (its call is gone).
            if call.clearedAt == nil && call.handedOut {
                out.append(Message(appLevel: call.state.appLevel, key: call.key, call: nil, rowID: "\(call.key)#evict", evicted: true))
            }
        }
        return out
    }

    /// The keys of the `count` oldest calls, tombstones first: small sort keys by dictionary
    /// position (no copy of a call, no string compared until a tie). In a function of its own so
    /// that no view of the dictionary outlives it: one alive while calls are forgotten would make
    /// the dictionary copy itself whole.
    private func oldest(_ count: Int, except current: String) -> [String] {
        var order: [(tombstone: Int, at: Int64, index: Dictionary<String, Call>.Index)] = []
        order.reserveCapacity(calls.count)
        var i = calls.startIndex
        while i != calls.endIndex {
            let cleared = calls.values[i].clearedAt
            order.append((cleared == nil ? 1 : 0, cleared ?? calls.values[i].lastActivityAt, i))
            calls.formIndex(after: &i)
        }
        order.sort { a, b in
            (a.tombstone, a.at) != (b.tombstone, b.at) ? (a.tombstone, a.at) < (b.tombstone, b.at) : calls.keys[a.index] < calls.keys[b.index]
        }
        return Array(order.lazy.map { calls.keys[$0.index] }.filter { $0 != current }.prefix(count))
    }

    /// Removes a call and its leg ids; its record goes at the next `takeChanges`.
    private mutating func forget(_ call: Call) {
        setCall(call.key, nil)
        for id in call.state.legs.callIDs where keyByCallID[id] == call.key { setKey(id, nil) }
        if keyByCallID[call.key] == call.key { setKey(call.key, nil) }
        if changed.remove(call.key) != nil { undo?.changes.append(.unmarked(call.key)) }
        if removedSlots.insert(call.slot).inserted { undo?.changes.append(.slotRemoved(call.slot)) }
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
                    markChanged(key)
                    out.append(Message(appLevel: call.state.appLevel, key: key, call: nil, rowID: "\(key)#clear"))
                }
            } else if now - call.lastActivityAt >= settings.staleAfterMilliseconds {
                call.state.staleAt = now
                out.append(publish(&call, eventID: call.lastEventID, now: now))
                setCall(key, call)
                markChanged(key)
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

    private mutating func markChanged(_ key: String) {
        if changed.insert(key).inserted { undo?.changes.append(.marked(key)) }
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
            markChanged(key)
            lower(deadline(call))
        default:
            guard let seq = Int64(head), var call = calls[key], call.clearedAt == nil, call.seq < seq else { return }
            // Only the stale sweep stores a message no webhook caused.
            call.state.staleAt = call.state.staleAt ?? at
            call.seq = seq - 1
            _ = publish(&call, eventID: call.lastEventID, now: at)
            setCall(key, call)
            markChanged(key)
            lower(deadline(call))
        }
    }

    /// The records changed since the last call (nil: forget the key), for the outbox to persist.
    package mutating func takeChanges() -> [(slot: Int64, call: Call?)] {
        defer {
            if undo != nil {
                undo!.changes.append(.took(changed: changed, removedSlots: removedSlots))
                changed = []
                removedSlots = []
            } else {
                changed.removeAll(keepingCapacity: true)
                removedSlots.removeAll(keepingCapacity: true)
            }
        }
        let kept: [(slot: Int64, call: Call?)] = changed.compactMap { calls[$0] }.map { ($0.slot, $0) }
        return (kept + removedSlots.map { ($0, nil) }).sorted { $0.slot < $1.slot }
    }

    /// The changed records a snapshot round writes, lowest slots first (`planSnapshot`), and how
    /// far `takeChanges(limit:)` got.
    private var snapshotPlan: [PlanEntry] = []
    private var planPosition = 0
    private struct PlanEntry: Sendable, Equatable {
        var slot: Int64
        var key: String?
    }

    /// Starts a snapshot round: the records changed now, in slot order, so each chunk covers
    /// neighbouring slots and rewrites a run of pages instead of pages all over the table.
    /// Returns how many.
    package mutating func planSnapshot() -> Int {
        var plan: [PlanEntry] = removedSlots.map { PlanEntry(slot: $0, key: nil) }
        plan.reserveCapacity(changed.count + removedSlots.count)
        for key in changed { if let call = calls[key] { plan.append(PlanEntry(slot: call.slot, key: key)) } }
        plan.sort { $0.slot < $1.slot }
        snapshotPlan = plan
        planPosition = 0
        return plan.count
    }

    /// The next at most `limit` records of the round, taken out of the change sets (a record
    /// taken earlier in the round, or no longer changed, is passed over). Empty: the round is done.
    package mutating func takeChanges(limit: Int) -> [(slot: Int64, call: Call?)] {
        var out: [(slot: Int64, call: Call?)] = []
        while out.count < limit, planPosition < snapshotPlan.count {
            let entry = snapshotPlan[planPosition]
            planPosition += 1
            if let key = entry.key {
                guard changed.remove(key) != nil else { continue }
                undo?.changes.append(.unmarked(key))
                out.append((entry.slot, calls[key]))
            } else {
                guard removedSlots.remove(entry.slot) != nil else { continue }
                undo?.changes.append(.slotTaken(entry.slot))
                out.append((entry.slot, nil))
            }
        }
        if planPosition >= snapshotPlan.count {
            snapshotPlan = []
            planPosition = 0
        }
        return out
    }

    private mutating func newCall(_ key: String, _ state: CallState, _ now: Int64) -> Call {
        var call = Call(key: key, state: state, lastActivityAt: now)
        call.slot = nextSlot
        nextSlot += 1
        return call
    }

    private mutating func publish(_ call: inout Call, eventID: String, now: Int64) -> Message {
        call.handedOut = replaying
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
