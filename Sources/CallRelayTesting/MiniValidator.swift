import CallRelayCore
import Foundation

/// Just enough JSON Schema (draft 2020-12) for callrelay's payload schemas (docs/schema/): type,
/// const, enum, required, properties, additionalProperties, pattern, minimum, minLength,
/// propertyNames, $ref to #/$defs. A full validation can be run by hand with python3-jsonschema.
package struct MiniValidator {
    package let root: JSONValue
    package var errors: [String] = []

    package init(root: JSONValue) { self.root = root }

    package mutating func validate(_ value: JSONValue, against schema: JSONValue, at path: String) {
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
        let properties = schema["properties"]
        for member in members {
            if let sub = properties?[member.key] {
                validate(member.value, against: sub, at: "\(path).\(member.key)")
            } else if let additional = schema["additionalProperties"] {
                if additional == .bool(false) {
                    errors.append("\(path): \(member.key) is not allowed")
                } else {
                    validate(member.value, against: additional, at: "\(path).\(member.key)")
                }
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
    /// Member keys in order (empty for non-objects).
    package var keys: [String] {
        guard case .object(let members) = self else { return [] }
        return members.map(\.key)
    }

    package var serializedText: String { String(decoding: serialized(), as: UTF8.self) }
}
