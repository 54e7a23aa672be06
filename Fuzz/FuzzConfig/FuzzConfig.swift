// libFuzzer harness: configuration file bytes -> ConfigurationLoader.load(path:environment:)
// (read, UTF-16/UTF-8 checks, TOML reader, key table, validator, RelayConfiguration).
// Built and run by scripts/fuzz.sh; oracles are listed in docs/fuzzing.md.
//
// The input is written to a scratch file (in /dev/shm when it exists) and loaded from there, so
// the real entry point the CLI and daemon use is fuzzed, including the byte-level checks.
//
// Oracles, for every input:
//  1. load never traps (RelayConfiguration.init(values:) has preconditions that trap when the
//     validator lets an invalid value through).
//  2. configuration is nil exactly when issues contain an error.
//  3. Every issue names the given path; its line is nil or within the text (1...newlines+1);
//     issues are in line order, those without a line last.
//  4. Line tracking (metamorphic): the same text after a leading comment line "# fuzz\n" gives an
//     equal configuration and the same issues (severity, key) with every line one higher (checked
//     for inputs whose length is a multiple of 4: it doubles the cost of an input).
//  5. Secrets: in a valid configuration, a non-trivial http.token or mqtt.password that appears
//     only once in the text appears in no issue message.

import CFuzzDriver
import CallRelayConfig

#if canImport(Glibc)
    import Glibc
#endif

@inline(never)
func fail(_ message: String, _ count: Int) -> Never {
    fatalError("FuzzConfig oracle failed: \(message) (input \(count) bytes)")
}

let scratchPath: String = {
    var s = stat()
    let directory = stat("/dev/shm", &s) == 0 ? "/dev/shm" : "/tmp"
    return "\(directory)/callrelay-fuzzconfig-\(getpid()).toml"
}()

let scratchDescriptor: Int32 = {
    let fd = open(scratchPath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { fatalError("cannot create \(scratchPath): errno \(errno)") }
    atexit { unlink(scratchPath) }
    return fd
}()

func writeScratch(_ prefix: [UInt8], _ bytes: UnsafeRawBufferPointer) {
    guard ftruncate(scratchDescriptor, 0) == 0 else { fatalError("ftruncate: errno \(errno)") }
    var offset = 0
    prefix.withUnsafeBytes { raw in
        if raw.count > 0 { writeAll(raw, at: &offset) }
    }
    if bytes.count > 0 { writeAll(bytes, at: &offset) }
}

func writeAll(_ raw: UnsafeRawBufferPointer, at offset: inout Int) {
    var done = 0
    while done < raw.count {
        let n = pwrite(scratchDescriptor, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
        if n < 0 {
            if errno == EINTR { continue }
            fatalError("pwrite: errno \(errno)")
        }
        done += n
    }
    offset += done
}

let commentLine: [UInt8] = Array("# fuzz\n".utf8)

func checkBasics(_ result: ConfigurationLoadResult, lineCount: Int, count: Int) {
    let hasError = result.issues.contains { $0.severity == .error }
    if hasError == (result.configuration != nil) {
        fail("configuration is \(result.configuration == nil ? "nil" : "set") with errors = \(hasError)", count)
    }
    var previous = 0
    for issue in result.issues {
        if issue.path != scratchPath { fail("issue with path \(issue.path): \(issue)", count) }
        if issue.message.isEmpty { fail("issue with an empty message", count) }
        let line = issue.line ?? Int.max
        if let l = issue.line, l < 1 || l > lineCount { fail("line \(l) outside 1...\(lineCount): \(issue)", count) }
        if line < previous { fail("issues are not in line order: \(issue)", count) }
        previous = line
    }
}

func occurrences(of needle: String, in haystack: [UInt8]) -> Int {
    let n = Array(needle.utf8)
    guard !n.isEmpty, n.count <= haystack.count else { return 0 }
    var found = 0
    var i = 0
    while i + n.count <= haystack.count {
        if haystack[i] == n[0] && Array(haystack[i..<(i + n.count)]) == n { found += 1 }
        i += 1
    }
    return found
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: start, count: count)
    // Larger than the loader reads: rejected before parsing, nothing to learn.
    guard count <= ConfigurationLoader.maximumFileBytes - commentLine.count else { return 0 }
    let lineCount = input.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }

    writeScratch([], input)
    let result = ConfigurationLoader.load(path: scratchPath, environment: [:])
    checkBasics(result, lineCount: lineCount, count: count)

    // 5. secrets stay out of messages
    if let configuration = result.configuration {
        let bytes = Array(input)
        for secret in [configuration.http.token, configuration.mqtt.password]
        where secret.utf8.count >= 8 && occurrences(of: secret, in: bytes) == 1 {
            if let leak = result.issues.first(where: { $0.message.contains(secret) }) {
                fail("a secret appears in the message \(leak)", count)
            }
        }
    }

    // 4. a leading comment line shifts every line by one and changes nothing else. Skipped when the
    // text starts with a byte order mark (it is only one at the very start).
    // It costs a second load, so it runs for one input length in four (deterministic per input).
    let startsWithMark = count >= 2 && (input[0] == 0xFF || input[0] == 0xFE || input[0] == 0xEF)
    if !startsWithMark && count % 4 == 0 {
        writeScratch(commentLine, input)
        let shifted = ConfigurationLoader.load(path: scratchPath, environment: [:])
        checkBasics(shifted, lineCount: lineCount + 1, count: count)
        if shifted.configuration != result.configuration {
            fail("a leading comment line changed the configuration", count)
        }
        if shifted.issues.count != result.issues.count {
            fail(
                "a leading comment line changed the number of issues: \(result.issues) vs \(shifted.issues)", count)
        }
        for (a, b) in zip(result.issues, shifted.issues) {
            if a.severity != b.severity || a.key != b.key || a.line.map({ $0 + 1 }) != b.line {
                fail("a leading comment line changed an issue: \(a) vs \(b)", count)
            }
        }
    }
    return 0
}

/// SwiftPM links executables with `--defsym main=FuzzConfig_main`, which displaces libFuzzer's main:
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
