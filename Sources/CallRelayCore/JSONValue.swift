/// A JSON value as received: member order, duplicate keys and number literals are preserved,
/// so a parsed value serializes back to the same data (modulo whitespace and escapes).
package enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's literal text exactly as received (`"440000000000"`, `"0.450000"`, `"1.5e3"`).
    /// Never converted to a binary floating point value, so no precision is lost.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in received order; duplicate keys are kept.
    case object([JSONMember])
}

/// One `"key": value` pair of a JSON object.
package struct JSONMember: Sendable, Equatable {
    package var key: String
    package var value: JSONValue

    package init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

/// Why and where a JSON text was rejected.
package struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset of the problem in the input (0-based).
    package let offset: Int
    /// Human-readable reason, e.g. "leading zeros are not allowed in numbers".
    package let reason: String

    package init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    package var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension JSONValue {
    /// Object member lookup: the value of the LAST member with this key (the JavaScript
    /// `JSON.parse` rule); nil if `self` is not an object or has no such member.
    package subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        var index = members.endIndex
        while index > members.startIndex {
            index -= 1
            if members[index].key == key { return members[index].value }
        }
        return nil
    }

    /// The string for `.string`, nil for every other case.
    package var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}
