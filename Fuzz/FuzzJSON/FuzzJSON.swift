// libFuzzer harness: the strict JSON parser (CallRelayCore/JSONParser.swift) and its writer.
// Built and run by scripts/fuzz.sh; oracles are listed in docs/fuzzing.md.
//
// Oracles, for every input:
//  1. parse never traps (ASan: no out-of-bounds read, no stack overflow); a rejection's offset is
//     within the input.
//  2. Depth cap consistency: parsing with maxDepth = maxDepthCap accepts whatever the default
//     (64) accepts, with an equal value; when only the deeper parse accepts, the default parse
//     failed because of the nesting limit.
//  3. Round trip (documented on JSONValue: "a parsed value serializes back to the same data"):
//     parse(serialized(v)) == v, and serialization is a fixed point:
//     serialized(parse(serialized(v))) == serialized(v), byte for byte.
//  4. Canonical form (writeCanonical, used for dedupe keys) re-parses and is a fixed point too.

import CFuzzDriver
import CallRelayCore

#if canImport(Glibc)
    import Glibc
#endif

@inline(never)
func fail(_ message: String, _ input: UnsafeRawBufferPointer) -> Never {
    fatalError("FuzzJSON oracle failed: \(message) (input \(input.count) bytes)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)

    let shallow: Result<JSONValue, JSONParseError>
    do throws(JSONParseError) {
        shallow = .success(try JSONValue.parse(input))
    } catch {
        if error.offset < 0 || error.offset > count { fail("error offset \(error.offset) outside the input", input) }
        shallow = .failure(error)
    }

    let deep: Result<JSONValue, JSONParseError>
    do throws(JSONParseError) {
        deep = .success(try JSONValue.parse(input, maxDepth: JSONValue.maxDepthCap))
    } catch {
        if error.offset < 0 || error.offset > count { fail("error offset \(error.offset) outside the input", input) }
        deep = .failure(error)
    }

    switch (shallow, deep) {
    case (.success(let a), .success(let b)):
        if a != b { fail("maxDepth 64 and maxDepthCap parse to different values", input) }
    case (.success, .failure(let error)):
        fail("accepted at maxDepth 64 but rejected at maxDepthCap: \(error)", input)
    case (.failure(let error), .success):
        if !error.reason.hasPrefix("nesting deeper than") {
            fail("rejected at maxDepth 64 for a reason other than nesting: \(error)", input)
        }
    case (.failure(let a), .failure(let b)):
        // Same bytes, same first problem, unless the shallow parse stopped at the nesting limit first.
        if a != b && !a.reason.hasPrefix("nesting deeper than") {
            fail("different rejections: \(a) vs \(b)", input)
        }
    }

    guard case .success(let value) = deep else { return 0 }

    // 3. Round trip through the compact writer.
    let once = value.serialized()
    let reparsed: JSONValue
    do throws(JSONParseError) {
        reparsed = try JSONValue.parse(once, maxDepth: JSONValue.maxDepthCap)
    } catch {
        fail("serialized output does not parse: \(error)", input)
    }
    if reparsed != value { fail("parse(serialized(v)) != v", input) }
    if reparsed.serialized() != once { fail("serialized(parse(serialized(v))) != serialized(v)", input) }

    // 4. Canonical writer.
    var canonical: [UInt8] = []
    value.writeCanonical(into: &canonical)
    let canonicalValue: JSONValue
    do throws(JSONParseError) {
        canonicalValue = try JSONValue.parse(canonical, maxDepth: JSONValue.maxDepthCap)
    } catch {
        fail("canonical output does not parse: \(error)", input)
    }
    var canonicalAgain: [UInt8] = []
    canonicalValue.writeCanonical(into: &canonicalAgain)
    if canonicalAgain != canonical { fail("writeCanonical is not a fixed point", input) }
    return 0
}

/// SwiftPM links executables with `--defsym main=FuzzJSON_main`, which displaces libFuzzer's main:
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
