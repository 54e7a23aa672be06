// The result of reading a TOML file: every value with the line it was written on.
//
// Only `TOMLParser` builds these; `ConfigurationValidator` reads them. Nothing outside this module
// sees TOML: other modules get a typed `RelayConfiguration`.

/// A TOML value. Tables only appear here inside arrays; everywhere else they are flattened into
/// `TOMLDocument.entries`, one entry per leaf key.
indirect enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])
    case table([TOMLKeyValue])
}

/// One `key = value` of an inline table, with the key split at its dots.
struct TOMLKeyValue: Sendable, Equatable {
    var key: [String]
    var value: TOMLValue
}

/// A parsed file: the leaf values and the `[table]` headers, in file order, with their lines.
struct TOMLDocument: Sendable, Equatable {
    /// A leaf value. `key` is the full path (`["mqtt", "port"]` for `port` under `[mqtt]`, for
    /// `mqtt.port` at the top, and for `mqtt = { port = ... }`); `table` is the path of the
    /// `[header]` it was written under, `[]` before the first header.
    struct Entry: Sendable, Equatable {
        var key: [String]
        var value: TOMLValue
        var line: Int
        var table: [String]
    }

    /// A `[header]` as written in the file (its first occurrence).
    struct TableHeader: Sendable, Equatable {
        var key: [String]
        var line: Int
    }

    var entries: [Entry] = []
    var tables: [TableHeader] = []
}

/// A problem that makes the file not TOML (or not the subset callrelay reads). Always has a line.
struct TOMLSyntaxError: Error, Sendable, Equatable {
    var line: Int
    var message: String
}

// MARK: - Showing keys and values in messages

enum TOMLText {
    /// `mqtt.port`, quoting the parts that are not bare keys: `mqtt."my key"`.
    static func key(_ path: [String]) -> String {
        path.map { part in
            let bare = !part.isEmpty && part.utf8.allSatisfy(isBareKeyByte)
            return bare ? part : quoted(part)
        }.joined(separator: ".")
    }

    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// A TOML basic string: `"..."` with `"`, `\` and control characters escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u" + hex(scalar.value, width: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// The text with control characters shown as `U+0001`, for quoting file content in a message.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += "U+" + hex(scalar.value, width: 4)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Like `quoted`, but cut after `limit` characters so a pasted certificate does not flood the output.
    static func quotedForMessage(_ text: String, limit: Int = 60) -> String {
        guard text.count > limit else { return quoted(text) }
        return quoted(String(text.prefix(limit))) + "…"
    }

    static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// "a string", "an integer", ... for "expected ..., found ..." messages.
    static func kind(of value: TOMLValue) -> String {
        switch value {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .boolean: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }

    /// The kind plus the value: `a string ("1883")`, `an integer (5)`, `an array`.
    static func describe(_ value: TOMLValue) -> String {
        switch value {
        case .string(let text): return "a string (\(quotedForMessage(text)))"
        case .integer(let number): return "an integer (\(number))"
        case .float(let number): return "a float (\(number))"
        case .boolean(let flag): return "a boolean (\(flag))"
        case .array, .table: return kind(of: value)
        }
    }
}
