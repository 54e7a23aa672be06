import CallRelayCore
import CallRelayNormalize
import Foundation
import Testing

/// The fixed receive time used by every golden output: 2023-11-14T22:13:20.000Z.
let goldenReceivedAt: Int64 = 1_700_000_000_000

/// The PIOPIY fixtures shipped with this test target (copied from /work/shared/piopiy/fixtures).
enum Fixtures {
    /// `Fixtures/` inside the test bundle.
    static var bundleRoot: URL {
        get throws {
            try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures not bundled")
        }
    }

    /// `Fixtures/` in the source tree (where the golden generator writes).
    static let sourceRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// Every `*.json` under `Fixtures/piopiy/`, as relative paths (`variants/x.json`), sorted.
    static let all: [String] = {
        guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else { return [] }
        return jsonFiles(under: root.appendingPathComponent("piopiy"))
    }()

    /// Every `*.json` under `Fixtures/expected/` (in the bundle), as relative paths, sorted.
    static var allExpected: [String] {
        guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else { return [] }
        return jsonFiles(under: root.appendingPathComponent("expected"))
    }

    static func jsonFiles(under directory: URL) -> [String] {
        let base = directory.resolvingSymlinksInPath().standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
        var result: [String] = []
        while let relative = walker.nextObject() as? String {
            if relative.hasSuffix(".json") { result.append(relative) }
        }
        return result.sorted()
    }

    static func bytes(_ relativePath: String) throws -> [UInt8] {
        let url = try bundleRoot.appendingPathComponent("piopiy").appendingPathComponent(relativePath)
        return [UInt8](try Data(contentsOf: url))
    }

    static func body(_ relativePath: String) throws -> JSONValue {
        try JSONValue.parse(bytes(relativePath))
    }

    /// The fixture normalized the golden way: endpoint `.combined`, received at `goldenReceivedAt`.
    static func normalized(_ relativePath: String, endpoint: WebhookEndpoint = .combined) throws -> NormalizedEvent {
        PiopiyNormalizer.normalize(try body(relativePath), endpoint: endpoint, receivedAtMilliseconds: goldenReceivedAt)
    }

    /// File name without directories and `.json`.
    static func stem(_ relativePath: String) -> String {
        let name = relativePath.split(separator: "/").last.map(String.init) ?? relativePath
        return name.hasSuffix(".json") ? String(name.dropLast(5)) : name
    }
}

extension NormalizedEvent {
    /// The payload parsed back (fails the test if it is not valid JSON).
    func payloadValue() throws -> JSONValue {
        try JSONValue.parse(payload)
    }
}

extension JSONValue {
    /// Human-reviewable rendering: two-space indent, members in stored order, number literals kept.
    func prettyPrinted() -> String {
        var out = ""
        pretty(into: &out, indent: "")
        return out + "\n"
    }

    private func pretty(into out: inout String, indent: String) {
        let inner = indent + "  "
        switch self {
        case .array(let values) where !values.isEmpty:
            out += "[\n"
            for (i, value) in values.enumerated() {
                out += inner
                value.pretty(into: &out, indent: inner)
                out += i == values.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case .object(let members) where !members.isEmpty:
            out += "{\n"
            for (i, member) in members.enumerated() {
                out += inner + String(decoding: JSONValue.string(member.key).serialized(), as: UTF8.self) + ": "
                member.value.pretty(into: &out, indent: inner)
                out += i == members.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        default:
            out += String(decoding: serialized(), as: UTF8.self)
        }
    }
}
