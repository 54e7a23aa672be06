extension JSONValue {
    /// The largest `maxDepth` honoured. Values, serialization and destruction of a `JSONValue`
    /// recurse once per nesting level, so a larger limit is capped here to keep the stack safe.
    package static let maxDepthCap = 1024

    /// Strict RFC 8259 parser, one pass over the bytes.
    ///
    /// Rejects invalid UTF-8, leading zeros (`04471000000`), trailing commas, trailing garbage,
    /// unescaped control characters, lone surrogates in `\u` escapes, truncated input and
    /// nesting deeper than `maxDepth` arrays/objects (capped at `maxDepthCap`).
    /// Whitespace around the value is allowed; a UTF-8 byte order mark at the start is skipped.
    package static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes, maxDepth: min(maxDepth, maxDepthCap))
        return try parser.parseDocument()
    }

    package static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws(JSONParseError) -> JSONValue {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(JSONParseError) -> JSONValue in try parse(raw, maxDepth: maxDepth) }
        }
        return try result.get()
    }

    package static func parse(_ text: String, maxDepth: Int = 64) throws(JSONParseError) -> JSONValue {
        var text = text
        let result = text.withUTF8 { utf8 in
            Result { () throws(JSONParseError) -> JSONValue in
                try parse(UnsafeRawBufferPointer(utf8), maxDepth: maxDepth)
            }
        }
        return try result.get()
    }
}

/// Iterative (explicit stack) parser: input nesting never turns into native recursion.
private struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private let end: Int
    private let maxDepth: Int
    private var index = 0
    /// Reused for strings that contain escapes.
    private var scratch: [UInt8] = []

    private struct Frame {
        var isObject: Bool
        var values: [JSONValue] = []
        var members: [JSONMember] = []
        var key: String = ""
    }

    init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.end = bytes.count
        self.maxDepth = maxDepth
    }

    // MARK: Bytes

    private static let quote: UInt8 = 0x22  // "
    private static let backslash: UInt8 = 0x5C  // \
    private static let comma: UInt8 = 0x2C
    private static let colon: UInt8 = 0x3A
    private static let openBrace: UInt8 = 0x7B
    private static let closeBrace: UInt8 = 0x7D
    private static let openBracket: UInt8 = 0x5B
    private static let closeBracket: UInt8 = 0x5D
    private static let minus: UInt8 = 0x2D
    private static let plus: UInt8 = 0x2B
    private static let dot: UInt8 = 0x2E
    private static let zero: UInt8 = 0x30
    private static let nine: UInt8 = 0x39

    @inline(__always) private static func isDigit(_ c: UInt8) -> Bool { c &- zero < 10 }

    private func fail(_ offset: Int, _ reason: String) -> JSONParseError {
        JSONParseError(offset: offset, reason: reason)
    }

    private func unexpectedEnd() -> JSONParseError { fail(end, "unexpected end of input") }

    @inline(__always) private mutating func skipWhitespace() {
        while index < end {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index &+= 1
            default: return
            }
        }
    }

    private static func describe(_ c: UInt8) -> String {
        if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        let hex: [Character] = Array("0123456789ABCDEF")
        return "byte 0x\(hex[Int(c >> 4)])\(hex[Int(c & 0x0F)])"
    }

    // MARK: Document

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        if end >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        var stack: [Frame] = []
        var result: JSONValue

        nextValue: while true {
            // A value starts at `index` (whitespace already skipped).
            guard index < end else { throw unexpectedEnd() }
            var value: JSONValue
            let c = bytes[index]
            switch c {
            case Self.openBrace, Self.openBracket:
                let isObject = c == Self.openBrace
                guard stack.count < maxDepth else {
                    throw fail(index, "nesting deeper than \(maxDepth) levels")
                }
                index &+= 1
                skipWhitespace()
                guard index < end else { throw unexpectedEnd() }
                if bytes[index] == (isObject ? Self.closeBrace : Self.closeBracket) {
                    index &+= 1
                    value = isObject ? .object([]) : .array([])
                } else {
                    var frame = Frame(isObject: isObject)
                    if isObject { frame.key = try parseKeyAndColon() }
                    stack.append(frame)
                    continue nextValue
                }
            case Self.quote:
                value = .string(try parseString())
            case 0x74:  // t
                try expectLiteral("true")
                value = .bool(true)
            case 0x66:  // f
                try expectLiteral("false")
                value = .bool(false)
            case 0x6E:  // n
                try expectLiteral("null")
                value = .null
            case Self.minus, Self.zero...Self.nine:
                value = .number(try parseNumber())
            default:
                throw fail(index, "unexpected \(Self.describe(c)), expected a value")
            }

            // Attach the finished value to its container; close containers as long as they end.
            while true {
                guard !stack.isEmpty else {
                    result = value
                    break nextValue
                }
                let top = stack.count &- 1
                let isObject = stack[top].isObject
                if isObject {
                    stack[top].members.append(JSONMember(key: stack[top].key, value: value))
                } else {
                    stack[top].values.append(value)
                }
                skipWhitespace()
                guard index < end else { throw unexpectedEnd() }
                let c = bytes[index]
                if c == Self.comma {
                    index &+= 1
                    skipWhitespace()
                    guard index < end else { throw unexpectedEnd() }
                    let next = bytes[index]
                    if next == Self.closeBrace || next == Self.closeBracket {
                        throw fail(index, "trailing comma is not allowed")
                    }
                    if isObject { stack[top].key = try parseKeyAndColon() }
                    continue nextValue
                }
                if isObject && c == Self.closeBrace {
                    index &+= 1
                    value = .object(stack.removeLast().members)
                } else if !isObject && c == Self.closeBracket {
                    index &+= 1
                    value = .array(stack.removeLast().values)
                } else {
                    throw fail(index, "unexpected \(Self.describe(c)), expected ',' or '\(isObject ? "}" : "]")'")
                }
            }
        }

        skipWhitespace()
        if index != end {
            throw fail(index, "unexpected \(Self.describe(bytes[index])) after the JSON value")
        }
        return result
    }

    /// Parses `"key"` `:` and the whitespace after it.
    private mutating func parseKeyAndColon() throws(JSONParseError) -> String {
        guard index < end else { throw unexpectedEnd() }
        guard bytes[index] == Self.quote else {
            throw fail(index, "unexpected \(Self.describe(bytes[index])), expected a string key")
        }
        let key = try parseString()
        skipWhitespace()
        guard index < end else { throw unexpectedEnd() }
        guard bytes[index] == Self.colon else {
            throw fail(index, "unexpected \(Self.describe(bytes[index])), expected ':'")
        }
        index &+= 1
        skipWhitespace()
        return key
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        let start = literal.utf8Start
        for k in 0..<count {
            guard index &+ k < end else { throw unexpectedEnd() }
            if bytes[index &+ k] != start[k] {
                throw fail(index &+ k, "invalid literal, expected '\(literal)'")
            }
        }
        index &+= count
    }

    // MARK: Numbers

    private mutating func parseNumber() throws(JSONParseError) -> String {
        let start = index
        if bytes[index] == Self.minus { index &+= 1 }
        guard index < end else { throw unexpectedEnd() }
        guard Self.isDigit(bytes[index]) else {
            throw fail(index, "expected a digit after '-'")
        }
        if bytes[index] == Self.zero {
            index &+= 1
            if index < end && Self.isDigit(bytes[index]) {
                throw fail(index &- 1, "leading zeros are not allowed in numbers")
            }
        } else {
            while index < end && Self.isDigit(bytes[index]) { index &+= 1 }
        }
        if index < end && bytes[index] == Self.dot {
            index &+= 1
            guard index < end else { throw unexpectedEnd() }
            guard Self.isDigit(bytes[index]) else {
                throw fail(index, "expected a digit after the decimal point")
            }
            while index < end && Self.isDigit(bytes[index]) { index &+= 1 }
        }
        if index < end && (bytes[index] == 0x65 || bytes[index] == 0x45) {  // e E
            index &+= 1
            if index < end && (bytes[index] == Self.plus || bytes[index] == Self.minus) { index &+= 1 }
            guard index < end else { throw unexpectedEnd() }
            guard Self.isDigit(bytes[index]) else {
                throw fail(index, "expected a digit in the exponent")
            }
            while index < end && Self.isDigit(bytes[index]) { index &+= 1 }
        }
        return makeString(start, index)
    }

    // MARK: Strings

    @inline(__always) private func makeString(_ from: Int, _ to: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[from..<to]), as: UTF8.self)
    }

    /// `index` is at the opening quote; on return it is just past the closing quote.
    private mutating func parseString() throws(JSONParseError) -> String {
        index &+= 1
        let start = index
        while index < end {
            let c = bytes[index]
            if c == Self.quote {
                let s = makeString(start, index)
                index &+= 1
                return s
            }
            if c == Self.backslash { return try parseEscapedString(from: start) }
            if c < 0x20 { throw fail(index, "unescaped control character in string") }
            if c < 0x80 {
                index &+= 1
            } else {
                try skipUTF8Sequence()
            }
        }
        throw fail(end, "unexpected end of input in string")
    }

    /// Slow path: the string has escapes; decode into `scratch`.
    private mutating func parseEscapedString(from start: Int) throws(JSONParseError) -> String {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < end {
            let c = bytes[index]
            if c == Self.quote {
                index &+= 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if c == Self.backslash {
                let escapeStart = index
                index &+= 1
                guard index < end else { break }
                let e = bytes[index]
                index &+= 1
                switch e {
                case Self.quote: scratch.append(Self.quote)
                case Self.backslash: scratch.append(Self.backslash)
                case 0x2F: scratch.append(0x2F)  // /
                case 0x62: scratch.append(0x08)  // b
                case 0x66: scratch.append(0x0C)  // f
                case 0x6E: scratch.append(0x0A)  // n
                case 0x72: scratch.append(0x0D)  // r
                case 0x74: scratch.append(0x09)  // t
                case 0x75:  // u
                    let unit = try parseHex4()
                    var scalarValue = UInt32(unit)
                    if unit >= 0xD800 && unit <= 0xDBFF {
                        guard index &+ 1 < end, bytes[index] == Self.backslash, bytes[index &+ 1] == 0x75 else {
                            throw fail(escapeStart, "lone high surrogate in \\u escape")
                        }
                        index &+= 2
                        let low = try parseHex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else {
                            throw fail(escapeStart, "lone high surrogate in \\u escape")
                        }
                        scalarValue = 0x10000 &+ ((UInt32(unit) &- 0xD800) << 10) &+ (UInt32(low) &- 0xDC00)
                    } else if unit >= 0xDC00 && unit <= 0xDFFF {
                        throw fail(escapeStart, "lone low surrogate in \\u escape")
                    }
                    Self.appendUTF8(scalarValue, to: &scratch)
                default:
                    throw fail(escapeStart, "invalid escape sequence")
                }
                continue
            }
            if c < 0x20 { throw fail(index, "unescaped control character in string") }
            if c < 0x80 {
                scratch.append(c)
                index &+= 1
            } else {
                let sequenceStart = index
                try skipUTF8Sequence()
                scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[sequenceStart..<index]))
            }
        }
        throw fail(end, "unexpected end of input in string")
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard index < end else { throw fail(end, "unexpected end of input in \\u escape") }
            let c = bytes[index]
            let digit: UInt8
            switch c {
            case 0x30...0x39: digit = c &- 0x30
            case 0x41...0x46: digit = c &- 0x41 &+ 10
            case 0x61...0x66: digit = c &- 0x61 &+ 10
            default: throw fail(index, "invalid hex digit in \\u escape")
            }
            value = value << 4 | UInt16(digit)
            index &+= 1
        }
        return value
    }

    private static func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
        if v < 0x80 {
            out.append(UInt8(truncatingIfNeeded: v))
        } else if v < 0x800 {
            out.append(UInt8(truncatingIfNeeded: 0xC0 | (v >> 6)))
            out.append(UInt8(truncatingIfNeeded: 0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            out.append(UInt8(truncatingIfNeeded: 0xE0 | (v >> 12)))
            out.append(UInt8(truncatingIfNeeded: 0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(truncatingIfNeeded: 0x80 | (v & 0x3F)))
        } else {
            out.append(UInt8(truncatingIfNeeded: 0xF0 | (v >> 18)))
            out.append(UInt8(truncatingIfNeeded: 0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(truncatingIfNeeded: 0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(truncatingIfNeeded: 0x80 | (v & 0x3F)))
        }
    }

    /// Validates one multi-byte UTF-8 sequence starting at `index` (a byte >= 0x80) and skips it.
    /// Rejects overlong forms, surrogates (U+D800...U+DFFF) and values above U+10FFFF.
    private mutating func skipUTF8Sequence() throws(JSONParseError) {
        let start = index
        let lead = bytes[index]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw fail(start, "invalid UTF-8")
        }
        guard start &+ length <= end else { throw fail(start, "invalid UTF-8 (truncated sequence)") }
        let second = bytes[start &+ 1]
        guard second >= low && second <= high else { throw fail(start, "invalid UTF-8") }
        var k = 2
        while k < length {
            guard bytes[start &+ k] & 0xC0 == 0x80 else { throw fail(start, "invalid UTF-8") }
            k &+= 1
        }
        index = start &+ length
    }
}
