import CallRelayCore
import CallRelayNormalize
import CallRelayTesting
import Foundation
import Testing

/// Checks every golden output against docs/schema/call-event.v1.schema.json with a small
/// validator for the keywords the schema uses (type, const, enum, required, properties,
/// pattern, minimum, minLength, propertyNames, $ref to #/$defs). CI runs this; a full
/// draft 2020-12 validation can be run by hand with python3-jsonschema (see docs/payload-format.md).
@Suite("JSON Schema")
struct SchemaTests {
    static let schemaURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .appendingPathComponent("../../docs/schema/call-event.v1.schema.json")
        .standardizedFileURL

    static func loadSchema() throws -> JSONValue {
        try JSONValue.parse([UInt8](Data(contentsOf: schemaURL)))
    }

    @Test func schemaIsDraft2020AndDeclaresTheContract() throws {
        let schema = try Self.loadSchema()
        #expect(schema["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
        let required = try #require(schema["required"])
        #expect(required == .array(["schema", "id", "source", "kind", "event", "received_at", "raw"].map(JSONValue.string)))
        // Every payload key the normalizer can write is declared, in payload order.
        #expect(schema["properties"]?.keys == [
            "schema", "id", "source", "kind", "event", "status", "app_id", "call_id", "conversation_id", "request_id",
            "leg", "direction", "from", "to", "caller_id", "virtual_number", "occurred_at", "received_at", "started_at",
            "answered_at", "ended_at", "duration_seconds", "call_rate", "balance", "extra_params", "stream",
            "other_fields", "raw",
        ])
    }

    @Test(arguments: Fixtures.all)
    func goldenOutputMatchesSchema(_ fixture: String) throws {
        let schema = try Self.loadSchema()
        let payload = try Fixtures.normalized(fixture).payloadValue()
        var validator = MiniValidator(root: schema)
        validator.validate(payload, against: schema, at: "$")
        #expect(validator.errors.isEmpty, "\(fixture): \(validator.errors)")
        // Stricter than the schema (which allows future fields): nothing undeclared is written.
        let declared = Set(schema["properties"]?.keys ?? [])
        #expect(Set(payload.keys).subtracting(declared).isEmpty)
    }

    @Test func hostileOutputsMatchSchema() throws {
        let schema = try Self.loadSchema()
        let bodies = [
            #"{"appid":{"a":1},"leg":7,"time":"abc","status":[],"duration":-1,"call_rate":"x","from":true}"#,
            #"{"status":"Weird/Status+#","duration":"13.5","call_rate":1.5e3,"extra_params":"1","ws_status":"[]"}"#,
            #"{"":null,"A B":1,"cmiuuid":"","start_time":"0001632317068","from":4.4e11}"#,
        ]
        for body in bodies {
            for endpoint in [WebhookEndpoint.cdr, .live, .combined] {
                let event = PiopiyNormalizer.normalize(try JSONValue.parse(body), endpoint: endpoint, receivedAtMilliseconds: 1)
                var validator = MiniValidator(root: schema)
                validator.validate(try event.payloadValue(), against: schema, at: "$")
                #expect(validator.errors.isEmpty, "\(body): \(validator.errors)")
            }
        }
    }

    @Test func validatorRejectsBadPayloads() throws {
        let schema = try Self.loadSchema()
        let bad = try JSONValue.parse(
            #"{"schema":"v2","id":"XYZ","source":"piopiy","kind":"x","event":"a/b","duration_seconds":-1,"raw":[]}"#)
        var validator = MiniValidator(root: schema)
        validator.validate(bad, against: schema, at: "$")
        #expect(validator.errors.count == 7, "\(validator.errors)")  // 6 bad values + missing received_at
    }
}
