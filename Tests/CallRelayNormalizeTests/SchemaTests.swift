import CallRelayCore
import CallRelayNormalize
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

/// Just enough JSON Schema for call-event.v1.
struct MiniValidator {
    let root: JSONValue
    var errors: [String] = []

    init(root: JSONValue) { self.root = root }

    mutating func validate(_ value: JSONValue, against schema: JSONValue, at path: String) {
        if case .string(let ref)? = schema["$ref"] {
            let prefix = "#/$defs/"
            if ref.hasPrefix(prefix), let target = root["$defs"]?[String(ref.dropFirst(prefix.count))] {
                validate(value, against: target, at: path)
            } else {
                errors.append("\(path): unresolvable $ref \(ref)")
            }
        }
        if let type = schema["type"] {
            let allowed: [String]
            switch type {
            case .string(let t): allowed = [t]
            case .array(let ts): allowed = ts.compactMap(\.stringValue)
            default: allowed = []
            }
            if !allowed.contains(where: { Self.matches(value, type: $0) }) {
                errors.append("\(path): expected type \(allowed), got \(value.serializedText)")
            }
        }
        if let constant = schema["const"], constant != value {
            errors.append("\(path): expected \(constant.serializedText)")
        }
        if case .array(let options)? = schema["enum"], !options.contains(value) {
            errors.append("\(path): not one of \(options.map(\.serializedText))")
        }
        if case .string(let s) = value {
            if case .string(let pattern)? = schema["pattern"], !Self.matches(s, pattern: pattern) {
                errors.append("\(path): \(s.debugDescription) does not match \(pattern)")
            }
            if case .number(let n)? = schema["minLength"], let min = Int(n), s.unicodeScalars.count < min {
                errors.append("\(path): shorter than \(min)")
            }
        }
        if case .number(let literal) = value, case .number(let minimum)? = schema["minimum"],
            let v = Double(literal), let m = Double(minimum), v < m
        {
            errors.append("\(path): \(literal) < \(minimum)")
        }
        guard case .object(let members) = value else { return }
        if case .array(let required)? = schema["required"] {
            for case .string(let key) in required where value[key] == nil {
                errors.append("\(path): missing required \(key)")
            }
        }
        if let names = schema["propertyNames"] {
            for member in members { validate(.string(member.key), against: names, at: "\(path) key") }
        }
        if let properties = schema["properties"] {
            for member in members {
                if let sub = properties[member.key] { validate(member.value, against: sub, at: "\(path).\(member.key)") }
            }
        }
    }

    static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("number", .number), ("string", .string), ("array", .array),
            ("object", .object):
            return true
        case ("integer", .number(let literal)):
            return !literal.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
        default:
            return false
        }
    }

    static func matches(_ s: String, pattern: String) -> Bool {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
        return regex.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
    }
}

extension JSONValue {
    var serializedText: String { String(decoding: serialized(), as: UTF8.self) }
}
