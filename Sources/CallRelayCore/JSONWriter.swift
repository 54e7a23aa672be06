extension JSONValue {
    /// Compact serialization (no whitespace): members in stored order, numbers written as their
    /// literal text, strings escaped per RFC 8259 (see `JSONWriter.writeString`).
    package func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    /// Appends the compact serialization to `buffer`.
    package func write(into buffer: inout [UInt8]) {
        switch self {
        case .null:
            JSONWriter.writeASCII("null", into: &buffer)
        case .bool(let b):
            JSONWriter.writeASCII(b ? "true" : "false", into: &buffer)
        case .number(let literal):
            JSONWriter.writeRaw(literal, into: &buffer)
        case .string(let s):
            JSONWriter.writeString(s, into: &buffer)
        case .array(let values):
            buffer.append(0x5B)
            var first = true
            for value in values {
                if !first { buffer.append(0x2C) }
                first = false
                value.write(into: &buffer)
            }
            buffer.append(0x5D)
        case .object(let members):
            buffer.append(0x7B)
            var first = true
            for member in members {
                if !first { buffer.append(0x2C) }
                first = false
                JSONWriter.writeString(member.key, into: &buffer)
                buffer.append(0x3A)
                member.value.write(into: &buffer)
            }
            buffer.append(0x7D)
        }
    }

    /// Canonical compact serialization: like `write(into:)`, but the members of every object are
    /// ordered by the bytes of their UTF-8 keys (stable: duplicate keys keep their received order).
    /// Two bodies that differ only in key order or whitespace give the same bytes.
    package func writeCanonical(into buffer: inout [UInt8]) {
        switch self {
        case .array(let values):
            buffer.append(0x5B)
            var first = true
            for value in values {
                if !first { buffer.append(0x2C) }
                first = false
                value.writeCanonical(into: &buffer)
            }
            buffer.append(0x5D)
        case .object(let members):
            let order = members.indices.sorted { a, b in
                let ka = members[a].key.utf8
                let kb = members[b].key.utf8
                if ka.elementsEqual(kb) { return a < b }
                return ka.lexicographicallyPrecedes(kb)
            }
            buffer.append(0x7B)
            var first = true
            for i in order {
                if !first { buffer.append(0x2C) }
                first = false
                JSONWriter.writeString(members[i].key, into: &buffer)
                buffer.append(0x3A)
                members[i].value.writeCanonical(into: &buffer)
            }
            buffer.append(0x7D)
        default:
            write(into: &buffer)
        }
    }
}

/// Low-level helpers to write JSON text into a byte buffer.
package enum JSONWriter {
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `s` as a JSON string literal: `"` and `\` escaped, control characters as
    /// `\b \f \n \r \t` or `\u00XX`, everything else (including `/` and non-ASCII) as raw UTF-8.
    package static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { utf8 in
            var runStart = 0
            var i = 0
            let n = utf8.count
            while i < n {
                let c = utf8[i]
                if c >= 0x20 && c != 0x22 && c != 0x5C {
                    i &+= 1
                    continue
                }
                if runStart < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i])) }
                out.append(0x5C)
                switch c {
                case 0x22: out.append(0x22)
                case 0x5C: out.append(0x5C)
                case 0x08: out.append(0x62)  // b
                case 0x0C: out.append(0x66)  // f
                case 0x0A: out.append(0x6E)  // n
                case 0x0D: out.append(0x72)  // r
                case 0x09: out.append(0x74)  // t
                default:
                    out.append(0x75)  // u
                    out.append(0x30)
                    out.append(0x30)
                    out.append(hexDigits[Int(c >> 4)])
                    out.append(hexDigits[Int(c & 0x0F)])
                }
                i &+= 1
                runStart = i
            }
            if runStart < n { out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<n])) }
        }
        out.append(0x22)
    }

    /// Appends the UTF-8 bytes of `text` unchanged (for number literals and pre-escaped text).
    package static func writeRaw(_ text: String, into out: inout [UInt8]) {
        var text = text
        text.withUTF8 { out.append(contentsOf: $0) }
    }

    /// Appends a compile-time ASCII constant unchanged.
    package static func writeASCII(_ text: StaticString, into out: inout [UInt8]) {
        text.withUTF8Buffer { out.append(contentsOf: $0) }
    }
}
