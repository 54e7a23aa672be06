// libFuzzer harness: PiopiyNormalizer.normalize on whatever parses as JSON (as the HTTP handler
// does: JSONValue.parse with the default depth), on all three endpoints.
// Built and run by scripts/fuzz.sh; oracles are listed in docs/fuzzing.md.
//
// Oracles, for every body and endpoint:
//  1. normalize never traps ("every input yields an event").
//  2. id is 32 lowercase hex digits and equals EventID.make(fromKey: dedupeKey).
//  3. event and app_id are sanitized topic levels: 1-64 bytes of [a-z0-9_-], no leading or trailing
//     "_", no "__"; the topic has exactly four levels; callID is nil or non-empty.
//  4. kind: .cdr endpoint -> cdr, .live endpoint -> live.
//  5. payload is strict JSON (parsed with maxDepthCap), an object with unique top-level keys, first
//     member "schema": "callrelay.call-event.v1", and "id", "kind", "event", "received_at" matching
//     the event; "raw" equals the body.
//  6. Identity does not depend on the receive time: id, dedupeKey, dedupeOrder, kind, event, appID,
//     callID are the same for another receivedAt.
//  7. Re-normalizing a stored row (CallRelayDaemon/Adapters.swift: endpoint .cdr when the stored
//     kind is "cdr", else .live) gives the same payload bytes as at ingest.

import CFuzzDriver
import CallRelayCore
import CallRelayNormalize

#if canImport(Glibc)
    import Glibc
#endif

@inline(never)
func fail(_ message: String, _ count: Int) -> Never {
    fatalError("FuzzNormalize oracle failed: \(message) (input \(count) bytes)")
}

let receivedAt: Int64 = 1_725_942_871_456  // 2024-09-10T04:34:31.456Z
let otherReceivedAt: Int64 = 1_725_942_871_456 + 86_400_123
let hexDigits = Set("0123456789abcdef".utf8)

func isSanitizedLevel(_ s: String) -> Bool {
    let u = Array(s.utf8)
    guard !u.isEmpty, u.count <= 64, u.first != 0x5F, u.last != 0x5F else { return false }
    var previous: UInt8 = 0
    for c in u {
        switch c {
        case 0x61...0x7A, 0x30...0x39, 0x2D, 0x5F: break
        default: return false
        }
        if c == 0x5F && previous == 0x5F { return false }
        previous = c
    }
    return true
}

func check(_ e: NormalizedEvent, body: JSONValue, bodyBytes: [UInt8], endpoint: WebhookEndpoint, count: Int) {
    // 2. id
    if e.id.utf8.count != 32 || !e.id.utf8.allSatisfy(hexDigits.contains) { fail("id \(e.id) is not 32 hex digits", count) }
    if EventID.make(fromKey: e.dedupeKey) != e.id { fail("id != EventID.make(fromKey: dedupeKey)", count) }
    // 3. topic levels
    if !isSanitizedLevel(e.event) { fail("event \(e.event.debugDescription) is not a sanitized level", count) }
    if !isSanitizedLevel(e.appID) { fail("appID \(e.appID.debugDescription) is not a sanitized level", count) }
    let topic = e.topic(prefix: "piopiy")
    if topic.split(separator: "/", omittingEmptySubsequences: false).count != 4 { fail("topic \(topic) has not 4 levels", count) }
    if let callID = e.callID, callID.isEmpty { fail("callID is empty, not nil", count) }
    if e.dedupeOrder < 0 { fail("negative dedupeOrder", count) }
    // 4. kind
    switch endpoint {
    case .cdr: if e.kind != .cdr { fail("cdr endpoint gave kind \(e.kind)", count) }
    case .live: if e.kind != .live { fail("live endpoint gave kind \(e.kind)", count) }
    case .combined: break
    }
    // 5. payload
    let payload: JSONValue
    do throws(JSONParseError) {
        payload = try JSONValue.parse(e.payload, maxDepth: JSONValue.maxDepthCap)
    } catch {
        fail("payload is not strict JSON: \(error)", count)
    }
    guard case .object(let members) = payload else { fail("payload is not an object", count) }
    var keys = Set<String>()
    for member in members where !keys.insert(member.key).inserted {
        fail("payload has the key \(member.key) twice", count)
    }
    guard let first = members.first, first.key == "schema", first.value == .string(PiopiyNormalizer.schemaName) else {
        fail("payload does not start with the schema member", count)
    }
    if payload["id"] != .string(e.id) { fail("payload id differs from the event id", count) }
    if payload["kind"] != .string(e.kind.rawValue) { fail("payload kind differs", count) }
    if payload["event"] != .string(e.event) { fail("payload event differs", count) }
    if payload["received_at"] != .string(Timestamp.rfc3339(millisecondsSinceEpoch: receivedAt)) {
        fail("payload received_at differs", count)
    }
    guard let raw = payload["raw"] else { fail("payload has no raw member", count) }
    if raw.serialized() != bodyBytes { fail("payload raw differs from the body", count) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)
    // What the HTTP handler accepts (it also requires an object; the normalizer must cope with any value).
    guard let body = try? JSONValue.parse(input) else { return 0 }
    let bodyBytes = body.serialized()

    for endpoint in [WebhookEndpoint.cdr, .live, .combined] {
        let e = PiopiyNormalizer.normalize(body, endpoint: endpoint, receivedAtMilliseconds: receivedAt)
        check(e, body: body, bodyBytes: bodyBytes, endpoint: endpoint, count: count)

        // 6. identity independent of the receive time
        let later = PiopiyNormalizer.normalize(body, endpoint: endpoint, receivedAtMilliseconds: otherReceivedAt)
        if later.id != e.id || later.dedupeKey != e.dedupeKey || later.dedupeOrder != e.dedupeOrder || later.kind != e.kind
            || later.event != e.event || later.appID != e.appID || later.callID != e.callID
        {
            fail("identity depends on receivedAt (endpoint \(endpoint))", count)
        }

        // 7. re-normalization of a stored row, as CallRelayDaemon/Adapters.swift does it
        let stored = PiopiyNormalizer.normalize(
            body, endpoint: e.kind == .cdr ? .cdr : .live, receivedAtMilliseconds: receivedAt)
        if stored.payload != e.payload || stored.id != e.id || stored.dedupeKey != e.dedupeKey {
            fail("re-normalizing the stored body (kind \(e.kind)) differs from ingest (endpoint \(endpoint))", count)
        }
    }
    return 0
}

/// SwiftPM links executables with `--defsym main=FuzzNormalize_main`, which displaces libFuzzer's main:
/// hand the arguments and the callback to libFuzzer's driver instead.
@main
enum FuzzMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(
            LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                // libFuzzer passes a valid pointer even for the empty input; be safe anyway.
                fuzz(UnsafeRawPointer(data) ?? UnsafeRawPointer(bitPattern: 1)!, size)
            })
    }
}
