import CallRelayConfig
import Foundation
import Testing

/// A small deterministic random number generator (SplitMix64), so a failure can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Robustness: no input crashes the reader")
struct RobustnessTests {
    static let pieces: [String] = [
        "\"", "'", "\"\"\"", "[", "]", "[[", "{", "}", "=", ".", ",", "#", "\n", "\r", "\r\n", "\t", " ", "\\", "\\u",
        "\\U0011FFFF",
        "0x", "_", "+", "-", "1e", "inf", "nan", "true", "é", "😀", "\u{0}", "\u{A0}", "\u{201C}",
        "9999999999999999999999",
        "2024-01-01", "07:00", "[mqtt]", "mqtt.port = ", "= 1", "a.b.c", "{ x = 1 }", "[1, [2, [3", "'''",
    ]

    @Test("2000 truncated and mutated variations of a valid file: no crash, and results stay consistent")
    func fuzz() throws {
        let base = try Fixture.text("valid-full.toml") + ConfigurationDocs.sampleFile()
        let scalars = Array(base.unicodeScalars)
        var random = SplitMix64(state: 0xC0FF_EE00_1234_5678)
        for round in 0..<2000 {
            var text = scalars
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                switch Int.random(in: 0..<5, using: &random) {
                case 0:
                    text = Array(text.prefix(Int.random(in: 0...text.count, using: &random)))
                case 1:
                    let piece = Self.pieces.randomElement(using: &random)!
                    text.insert(contentsOf: piece.unicodeScalars, at: Int.random(in: 0...text.count, using: &random))
                case 2 where !text.isEmpty:
                    let start = Int.random(in: 0..<text.count, using: &random)
                    let end = min(text.count, start + Int.random(in: 1...40, using: &random))
                    text.removeSubrange(start..<end)
                case 3 where !text.isEmpty:
                    let position = Int.random(in: 0..<text.count, using: &random)
                    text[position] = Unicode.Scalar(UInt8.random(in: 0...127, using: &random))
                default:
                    let start = Int.random(in: 0...text.count, using: &random)
                    let length = Int.random(in: 0...60, using: &random)
                    text.insert(
                        contentsOf: text[start..<min(text.count, start + length)],
                        at: Int.random(in: 0...text.count, using: &random))
                }
            }
            var string = ""
            string.unicodeScalars.append(contentsOf: text)
            let result = ConfigurationLoader.parse(text: string, path: "fuzz.toml", environment: [:])
            let lineCount = string.utf8.filter { $0 == UInt8(ascii: "\n") }.count + 1
            #expect((result.configuration == nil) == result.issues.contains { $0.severity == .error }, "round \(round)")
            for issue in result.issues {
                #expect(issue.line.map { (1...lineCount).contains($0) } ?? true, "round \(round): \(issue)")
                #expect(!issue.message.isEmpty)
            }
        }
    }

    @Test("random bytes from disk: no crash")
    func randomBytes() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var random = SplitMix64(state: 42)
        let file = directory.appendingPathComponent("random.toml")
        for _ in 0..<200 {
            let count = Int.random(in: 0...300, using: &random)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            try Data(bytes).write(to: file)
            let result = ConfigurationLoader.load(path: file.path, environment: [:])
            #expect((result.configuration == nil) == !result.errors.isEmpty)
        }
    }
}
