import CallRelayCore
import CallRelayNormalize
import Foundation
import Testing

/// Golden tests: every fixture under `Fixtures/piopiy/` normalized with endpoint `.combined` and
/// `receivedAtMilliseconds = 1700000000000` must equal `Fixtures/expected/<same relative path>`
/// (compared as parsed JSON, including member order and number literals; whitespace is free).
///
/// To regenerate after an intentional change, run
///
///     CALLRELAY_UPDATE_GOLDEN=1 swift test --filter GoldenTests
///
/// which writes the expected files into the source tree, then review every diff by hand
/// against docs/payload-format.md before committing.
@Suite("Golden outputs")
struct GoldenTests {
    static var updating: Bool { ProcessInfo.processInfo.environment["CALLRELAY_UPDATE_GOLDEN"] == "1" }

    @Test func fixturesAreBundled() {
        // 12 documented samples at the top level, 8 variants, 10 inferred.
        #expect(Fixtures.all.count == 30)
        #expect(Fixtures.all.contains("variants/cdr_in_missed_leg_a.india.json"))
        #expect(Fixtures.all.contains("inferred/live_stream_error.inferred.json"))
    }

    @Test(arguments: Fixtures.all)
    func golden(_ relativePath: String) throws {
        let event = try Fixtures.normalized(relativePath)
        let actual = try event.payloadValue()
        if Self.updating {
            let url = Fixtures.sourceRoot.appendingPathComponent("expected").appendingPathComponent(relativePath)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(actual.prettyPrinted().utf8).write(to: url)
            return
        }
        let url = try Fixtures.bundleRoot.appendingPathComponent("expected").appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: url.path) else {
            Issue.record("no expected file for fixture \(relativePath): run with CALLRELAY_UPDATE_GOLDEN=1 and review")
            return
        }
        let expected = try JSONValue.parse([UInt8](Data(contentsOf: url)))
        #expect(actual == expected, "\(relativePath): got\n\(actual.prettyPrinted())")
    }

    /// The two example messages in docs/payload-format.md are golden outputs, verbatim.
    @Test func documentedExamplesMatchGoldenFiles() throws {
        let docURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../docs/payload-format.md").standardizedFileURL
        let doc = try String(contentsOf: docURL, encoding: .utf8)
        let blocks = doc.components(separatedBy: "```json\n").dropFirst().compactMap {
            $0.components(separatedBy: "\n```").first
        }
        #expect(blocks.count == 2)
        for (block, fixture) in zip(blocks, ["cdr_in_missed_leg_a.json", "live_out_answered_leg_b.json"]) {
            let documented = try JSONValue.parse(block)
            #expect(documented == (try Fixtures.normalized(fixture).payloadValue()), "\(fixture)")
        }
    }

    @Test func everyExpectedFileHasAFixture() throws {
        if Self.updating { return }
        let stale = Set(Fixtures.allExpected).subtracting(Fixtures.all)
        #expect(stale.isEmpty, "expected files without a fixture: \(stale.sorted())")
    }
}

/// The outbox stores the webhook body and builds the payload again when it reads a backlog back
/// (`OutboxDeliveryStore.payload`, through `PiopiyNormalizer.payload`): from the body, the kind and the receive time alone, whatever
/// endpoint the webhook came in on, it must give the very bytes normalized at ingest.
@Suite("Payload rebuilt from the stored body")
struct RebuiltPayloadTests {
    @Test(arguments: Fixtures.all)
    func rebuildingFromTheBodyGivesTheSameBytes(_ relativePath: String) throws {
        let bytes = try Fixtures.bytes(relativePath)
        let receivedAt: Int64 = 1_764_620_000_123
        for endpoint in [WebhookEndpoint.combined, .cdr, .live] {
            let atIngest = PiopiyNormalizer.normalize(try JSONValue.parse(bytes), endpoint: endpoint, receivedAtMilliseconds: receivedAt)
            let rebuilt = PiopiyNormalizer.normalize(
                try JSONValue.parse(bytes), endpoint: atIngest.kind == .cdr ? .cdr : .live, receivedAtMilliseconds: receivedAt)
            #expect(rebuilt.payload == atIngest.payload, "\(relativePath) via \(endpoint)")
            #expect(rebuilt.id == atIngest.id && rebuilt.dedupeOrder == atIngest.dedupeOrder)
            // What the delivery calls: the payload alone, with the stored id.
            let alone = PiopiyNormalizer.payload(
                try JSONValue.parse(bytes), endpoint: atIngest.kind == .cdr ? .cdr : .live, receivedAtMilliseconds: receivedAt,
                id: atIngest.id, bodyBytes: bytes.count)
            #expect(alone == atIngest.payload, "\(relativePath) via \(endpoint), payload alone")
        }
    }
}
