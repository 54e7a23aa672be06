// A hand-written reader for the part of TOML 1.0 a callrelay config needs, which knows the line
// of every key, so every problem can be printed as `PATH:LINE: message`.
//
// Supported: comments, `[table]` and `[a.b]` headers, bare, quoted and dotted keys, basic strings
// with escapes, literal strings, integers (decimal with `_`, `+`/`-`, `0x`/`0o`/`0b`), floats,
// booleans, arrays (may span lines) and one-line inline tables. Multi-line strings, dates and
// arrays of tables are reported as "not supported by callrelay" with their line.
//
// Design constraints: never traps on any input (bounds-checked reads, overflow-checked
// arithmetic, nesting depth capped); after a syntax error it skips to the next line and goes on,
// so one run reports every broken line.

enum TOMLParser {
    /// Arrays and inline tables nested deeper than this are an error (and no stack overflow).
    static let maximumNesting = 32
    /// After this many syntax errors the parser stops (a binary or unrelated file).
    static let maximumErrors = 20

    /// `secretKeys`: full paths whose values never appear in messages (a key under them, or with
    /// the same last part, gets its value shown as `***`).
    static func parse(_ text: String, secretKeys: Set<[String]> = []) -> (
        document: TOMLDocument, errors: [TOMLSyntaxError]
    ) {
        var parser = Parser(bytes: Array(text.utf8), secretKeys: secretKeys)
        parser.run()
        return (parser.document, parser.errors)
    }
}

// MARK: - Bytes

private enum Byte {
    static let newline = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let hash = UInt8(ascii: "#")
    static let equals = UInt8(ascii: "=")
    static let dot = UInt8(ascii: ".")
    static let comma = UInt8(ascii: ",")
    static let quote = UInt8(ascii: "\"")
    static let apostrophe = UInt8(ascii: "'")
    static let backslash = UInt8(ascii: "\\")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let underscore = UInt8(ascii: "_")
    static let plus = UInt8(ascii: "+")
    static let minus = UInt8(ascii: "-")
    static let colon = UInt8(ascii: ":")

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }
    static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
    /// Bytes that end a bare value such as `1883`, `true` or an unquoted word.
    static func endsBareValue(_ byte: UInt8) -> Bool {
        switch byte {
        case space, tab, newline, carriageReturn, comma, closeBracket, closeBrace, hash, openBracket, openBrace, quote,
            apostrophe, equals:
            return true
        default:
            return false
        }
    }
}

// MARK: - Parser

private struct Parser {
    let bytes: [UInt8]
    var index = 0
    var line = 1

    var document = TOMLDocument()
    var errors: [TOMLSyntaxError] = []
    var registry = TOMLKeyRegistry()
    /// The `[header]` keys go under; nil after a broken header, so its keys are checked for
    /// syntax but not stored (they would otherwise land in the wrong table).
    var currentTable: [String]? = []
    let secretKeys: Set<[String]>
    /// True while reading the value of a secret key: messages show `***` instead of its text.
    var hidesValue = false

    init(bytes: [UInt8], secretKeys: Set<[String]>) {
        self.bytes = bytes
        self.secretKeys = secretKeys
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
    }

    // MARK: Reading

    func peek(_ offset: Int = 0) -> UInt8? {
        let position = index + offset
        return position < bytes.count ? bytes[position] : nil
    }

    var isAtEnd: Bool { index >= bytes.count }

    mutating func advance() {
        guard index < bytes.count else { return }
        if bytes[index] == Byte.newline { line += 1 }
        index += 1
    }

    mutating func skipSpaces() {
        while let byte = peek(), byte == Byte.space || byte == Byte.tab { advance() }
    }

    /// At a line end (`\n`, `\r\n`) or the end of the text.
    var isAtLineEnd: Bool {
        guard let byte = peek() else { return true }
        return byte == Byte.newline || (byte == Byte.carriageReturn && peek(1) == Byte.newline)
    }

    mutating func skipComment() {
        while let byte = peek(), byte != Byte.newline { advance() }
    }

    /// Consumes one line end; call only when `isAtLineEnd`.
    mutating func consumeLineEnd() {
        if peek() == Byte.carriageReturn { advance() }
        if peek() == Byte.newline { advance() }
    }

    mutating func skipToNextLine() {
        while let byte = peek() {
            advance()
            if byte == Byte.newline { return }
        }
    }

    /// Spaces, comments and line ends, as allowed between array items.
    mutating func skipSpacesCommentsAndLineEnds() throws(TOMLSyntaxError) {
        while let byte = peek() {
            switch byte {
            case Byte.space, Byte.tab, Byte.newline:
                advance()
            case Byte.hash:
                skipComment()
            case Byte.carriageReturn where peek(1) == Byte.newline:
                advance()
            default:
                return
            }
        }
    }

    func error(_ message: String) -> TOMLSyntaxError {
        TOMLSyntaxError(line: line, message: message)
    }

    /// How the character at the read position looks in a message: `'x'`, `end of line`, `U+00A0 (no-break space)`.
    func describeCurrent() -> String {
        guard let byte = peek() else { return "the end of the file" }
        if byte == Byte.newline || byte == Byte.carriageReturn { return "the end of the line" }
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        if byte < 0x80 { return "U+\(TOMLText.hex(UInt32(byte), width: 4))" }
        var iterator = bytes[index..<min(bytes.count, index + 4)].makeIterator()
        var decoder = UTF8()
        guard case .scalarValue(let scalar) = decoder.decode(&iterator) else { return "an invalid character" }
        return Self.describe(scalar)
    }

    static func describe(_ scalar: Unicode.Scalar) -> String {
        let code = "U+" + TOMLText.hex(scalar.value, width: 4)
        switch scalar.value {
        case 0xA0: return "\(code) (a no-break space; type a plain space)"
        case 0x200B, 0xFEFF: return "\(code) (an invisible zero-width character)"
        case 0x2018, 0x2019, 0x201C, 0x201D:
            return "'\(Character(scalar))' (a typographic quote; use a straight \" or ')"
        default:
            if scalar.properties.isWhitespace || scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                return code
            }
            return "'\(Character(scalar))' (\(code))"
        }
    }

    // MARK: Lines

    mutating func run() {
        while !isAtEnd {
            if errors.count >= TOMLParser.maximumErrors {
                errors.append(error("too many syntax errors; stopping here (is this the right file?)"))
                return
            }
            do throws(TOMLSyntaxError) {
                try parseLine()
            } catch {
                errors.append(error)
                skipToNextLine()
            }
        }
    }

    /// File text for a message, or `***` inside a secret's value.
    func shown(_ text: String) -> String {
        hidesValue ? "***" : TOMLText.printable(text)
    }

    func isSecret(_ path: [String]) -> Bool {
        secretKeys.contains { secret in secret.starts(with: path) || secret.last == path.last }
    }

    mutating func parseLine() throws(TOMLSyntaxError) {
        hidesValue = false
        skipSpaces()
        guard let byte = peek() else { return }
        switch byte {
        case Byte.newline:
            advance()
            return
        case Byte.hash:
            skipComment()
        case Byte.openBracket:
            try parseTableHeader()
            try expectLineEnd(after: "the table header")
            return
        case Byte.carriageReturn:
            guard peek(1) == Byte.newline else { throw loneCarriageReturn() }
            consumeLineEnd()
            return
        default:
            try parseKeyValue()
            try expectLineEnd(after: "the value")
            return
        }
        try expectLineEnd(after: "the comment")
    }

    mutating func expectLineEnd(after what: String) throws(TOMLSyntaxError) {
        skipSpaces()
        if peek() == Byte.hash { skipComment() }
        guard isAtLineEnd else {
            if peek() == Byte.carriageReturn { throw loneCarriageReturn() }
            let start = index
            while !isAtLineEnd, peek() != Byte.hash, peek() != Byte.carriageReturn { advance() }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
                .trimmingSuffix(while: { $0 == " " || $0 == "\t" })
            throw error("unexpected text after \(what): '\(shown(text))' (start a comment with '#')")
        }
        consumeLineEnd()
    }

    func loneCarriageReturn() -> TOMLSyntaxError {
        error("a carriage return must be followed by a line feed (save the file with Unix or Windows line ends)")
    }

    // MARK: Tables

    mutating func parseTableHeader() throws(TOMLSyntaxError) {
        let headerLine = line
        advance()  // [
        currentTable = nil
        if peek() == Byte.openBracket {
            throw error("arrays of tables ([[name]]) are not supported by callrelay")
        }
        skipSpaces()
        if peek() == Byte.closeBracket {
            throw error("empty table name: write a name such as [mqtt]")
        }
        let key = try parseKey(in: "the table header")
        skipSpaces()
        guard peek() == Byte.closeBracket else {
            if isAtLineEnd || peek() == Byte.hash {
                throw error("table header [\(TOMLText.key(key)) is missing its closing ']'")
            }
            throw error(
                "unexpected \(describeCurrent()) in table header [\(TOMLText.key(key)); table names are separated by '.'"
            )
        }
        advance()  // ]
        if registry.isHeaderTable(key) {
            currentTable = key  // keep reading its keys: clashes show up as duplicate keys
        }
        try registry.defineHeader(key, line: headerLine)
        currentTable = key
        document.tables.append(TOMLDocument.TableHeader(key: key, line: headerLine))
    }

    // MARK: Keys

    mutating func parseKey(in context: String) throws(TOMLSyntaxError) -> [String] {
        var parts = [try parseSimpleKey(in: context)]
        while true {
            skipSpaces()
            guard peek() == Byte.dot else { return parts }
            advance()
            skipSpaces()
            parts.append(try parseSimpleKey(in: context))
        }
    }

    mutating func parseSimpleKey(in context: String) throws(TOMLSyntaxError) -> String {
        guard let byte = peek(), !isAtLineEnd else {
            throw error("expected a key name in \(context), found the end of the line")
        }
        switch byte {
        case Byte.quote:
            if peek(1) == Byte.quote && peek(2) == Byte.quote {
                throw error("multi-line strings (\"\"\") are not supported by callrelay")
            }
            return try parseBasicString()
        case Byte.apostrophe:
            if peek(1) == Byte.apostrophe && peek(2) == Byte.apostrophe {
                throw error("multi-line strings (''') are not supported by callrelay")
            }
            return try parseLiteralString()
        case Byte.equals:
            throw error("missing key name before '='")
        default:
            let start = index
            while let next = peek(), TOMLText.isBareKeyByte(next) { advance() }
            guard index > start else {
                throw error(
                    "unexpected \(describeCurrent()) in \(context): key names are letters, digits, '_' and '-' (put other names in quotes)"
                )
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }
    }

    // MARK: Key/value pairs

    mutating func parseKeyValue() throws(TOMLSyntaxError) {
        let keyLine = line
        let key = try parseKey(in: "a key")
        let name = TOMLText.key(key)
        hidesValue = isSecret((currentTable ?? []) + key)
        skipSpaces()
        guard peek() == Byte.equals else {
            if isAtLineEnd || peek() == Byte.hash {
                throw error("expected '=' after key '\(name)' (write: \(name) = value)")
            }
            throw error("expected '=' after key '\(name)', found \(describeCurrent())")
        }
        advance()
        skipSpaces()
        if isAtLineEnd || peek() == Byte.hash {
            throw error("missing value after '\(name) ='")
        }
        let value = try parseValue(depth: 0)
        guard let table = currentTable else { return }
        let path = table + key
        var isInlineTable = false
        if case .table = value { isInlineTable = true }
        try registry.defineValue(path, tableDepth: table.count, isInlineTable: isInlineTable, line: keyLine)
        store(value, at: path, line: keyLine, table: table)
    }

    /// Adds a value to the document, flattening inline tables into one entry per leaf.
    mutating func store(_ value: TOMLValue, at path: [String], line: Int, table: [String]) {
        if case .table(let members) = value {
            for member in members {
                store(member.value, at: path + member.key, line: line, table: table)
            }
        } else {
            document.entries.append(TOMLDocument.Entry(key: path, value: value, line: line, table: table))
        }
    }

    // MARK: Values

    mutating func parseValue(depth: Int) throws(TOMLSyntaxError) -> TOMLValue {
        guard depth < TOMLParser.maximumNesting else {
            throw error("arrays or inline tables are nested too deeply (more than \(TOMLParser.maximumNesting) levels)")
        }
        guard let byte = peek() else { throw error("missing value at the end of the file") }
        switch byte {
        case Byte.quote:
            if peek(1) == Byte.quote && peek(2) == Byte.quote {
                throw error("multi-line strings (\"\"\") are not supported by callrelay; write the value on one line")
            }
            return .string(try parseBasicString())
        case Byte.apostrophe:
            if peek(1) == Byte.apostrophe && peek(2) == Byte.apostrophe {
                throw error("multi-line strings (''') are not supported by callrelay; write the value on one line")
            }
            return .string(try parseLiteralString())
        case Byte.openBracket:
            return try parseArray(depth: depth)
        case Byte.openBrace:
            return try parseInlineTable(depth: depth)
        default:
            return try parseBareValue()
        }
    }

    mutating func parseBasicString() throws(TOMLSyntaxError) -> String {
        let startLine = line
        advance()  // "
        var buffer: [UInt8] = []
        while true {
            guard let byte = peek(), !isAtLineEnd else {
                throw TOMLSyntaxError(
                    line: startLine, message: "unterminated string: add the closing '\"' on the same line")
            }
            switch byte {
            case Byte.quote:
                advance()
                return String(decoding: buffer, as: UTF8.self)
            case Byte.backslash:
                advance()
                try parseEscape(into: &buffer)
            case Byte.tab:
                buffer.append(byte)
                advance()
            case 0..<0x20, 0x7F:
                throw error(
                    "control character \(describeCurrent()) is not allowed in a string; write an escape such as \\t")
            default:
                buffer.append(byte)
                advance()
            }
        }
    }

    mutating func parseEscape(into buffer: inout [UInt8]) throws(TOMLSyntaxError) {
        guard let byte = peek(), !isAtLineEnd else {
            throw error("a string cannot end with a single '\\'; write '\\\\' for a backslash")
        }
        let simple: UInt8? =
            switch byte {
            case UInt8(ascii: "b"): 0x08
            case UInt8(ascii: "t"): Byte.tab
            case UInt8(ascii: "n"): Byte.newline
            case UInt8(ascii: "f"): 0x0C
            case UInt8(ascii: "r"): Byte.carriageReturn
            case Byte.quote: Byte.quote
            case Byte.backslash: Byte.backslash
            default: nil
            }
        if let simple {
            buffer.append(simple)
            advance()
            return
        }
        let width: Int
        switch byte {
        case UInt8(ascii: "u"): width = 4
        case UInt8(ascii: "U"): width = 8
        default:
            throw error(
                "invalid escape '\\\(describeCurrent().trimmingQuotes)' in a string: write '\\\\' for a backslash, or use single quotes ('C:\\path') for text with backslashes"
            )
        }
        advance()
        var value: UInt32 = 0
        for _ in 0..<width {
            guard let digit = peek().flatMap(Byte.hexValue) else {
                throw error("escape '\\\(width == 4 ? "u" : "U")' needs exactly \(width) hexadecimal digits")
            }
            value = value << 4 | digit
            advance()
        }
        guard let scalar = Unicode.Scalar(value) else {
            throw error(
                "escape '\\\(width == 4 ? "u" : "U")\(TOMLText.hex(value, width: width))' is not a valid Unicode character"
            )
        }
        buffer.append(contentsOf: String(Character(scalar)).utf8)
    }

    mutating func parseLiteralString() throws(TOMLSyntaxError) -> String {
        let startLine = line
        advance()  // '
        let start = index
        while true {
            guard let byte = peek(), !isAtLineEnd else {
                throw TOMLSyntaxError(
                    line: startLine, message: "unterminated string: add the closing \"'\" on the same line")
            }
            if byte == Byte.apostrophe {
                let text = String(decoding: bytes[start..<index], as: UTF8.self)
                advance()
                return text
            }
            if byte != Byte.tab && (byte < 0x20 || byte == 0x7F) {
                throw error("control character \(describeCurrent()) is not allowed in a string")
            }
            advance()
        }
    }

    mutating func parseArray(depth: Int) throws(TOMLSyntaxError) -> TOMLValue {
        let openLine = line
        advance()  // [
        var items: [TOMLValue] = []
        let unterminated = TOMLSyntaxError(line: openLine, message: "unterminated array: add the closing ']'")
        while true {
            try skipSpacesCommentsAndLineEnds()
            guard let byte = peek() else { throw unterminated }
            if byte == Byte.closeBracket {
                advance()
                return .array(items)
            }
            if byte == Byte.carriageReturn { throw loneCarriageReturn() }
            items.append(try parseValue(depth: depth + 1))
            try skipSpacesCommentsAndLineEnds()
            guard let next = peek() else { throw unterminated }
            switch next {
            case Byte.comma:
                advance()
            case Byte.closeBracket:
                advance()
                return .array(items)
            default:
                throw error("expected ',' or ']' in the array, found \(describeCurrent())")
            }
        }
    }

    mutating func parseInlineTable(depth: Int) throws(TOMLSyntaxError) -> TOMLValue {
        advance()  // {
        var registry = TOMLKeyRegistry()
        var members: [TOMLKeyValue] = []
        skipSpaces()
        if peek() == Byte.closeBrace {
            advance()
            return .table([])
        }
        while true {
            skipSpaces()
            if isAtLineEnd {
                throw error("an inline table must be closed with '}' on the same line")
            }
            let key = try parseKey(in: "the inline table")
            skipSpaces()
            guard peek() == Byte.equals else {
                throw error(
                    "expected '=' after key '\(TOMLText.key(key))' in the inline table, found \(describeCurrent())")
            }
            advance()
            skipSpaces()
            if isAtLineEnd { throw error("missing value after '\(TOMLText.key(key)) =' in the inline table") }
            let value = try parseValue(depth: depth + 1)
            var isInlineTable = false
            if case .table = value { isInlineTable = true }
            try registry.defineValue(key, tableDepth: 0, isInlineTable: isInlineTable, line: line)
            members.append(TOMLKeyValue(key: key, value: value))
            skipSpaces()
            switch peek() {
            case Byte.comma:
                advance()
                skipSpaces()
                if peek() == Byte.closeBrace { throw error("a trailing ',' is not allowed in an inline table") }
            case Byte.closeBrace:
                advance()
                return .table(members)
            default:
                if isAtLineEnd { throw error("an inline table must be closed with '}' on the same line") }
                throw error("expected ',' or '}' in the inline table, found \(describeCurrent())")
            }
        }
    }

    // MARK: Bare values: booleans, numbers, mistakes

    mutating func parseBareValue() throws(TOMLSyntaxError) -> TOMLValue {
        let start = index
        while let byte = peek(), !Byte.endsBareValue(byte) { advance() }
        let token = Array(bytes[start..<index])
        guard let first = token.first else {
            throw error("expected a value, found \(describeCurrent())")
        }
        let text = String(decoding: token, as: UTF8.self)
        let display = shown(text)
        switch text {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        default: break
        }
        if Self.looksLikeDateOrTime(token) {
            throw error(
                "dates and times are not supported by callrelay; write '\(display)' in quotes if it is meant as text")
        }
        if Byte.isDigit(first) || first == Byte.plus || first == Byte.minus || first == Byte.dot {
            return try parseNumber(token, text: display)
        }
        switch text.lowercased() {
        case "true", "false":
            throw error("invalid value '\(display)': booleans are written in lowercase, true or false")
        case "yes", "no", "on", "off":
            throw error("invalid value '\(display)': write true or false")
        default:
            break
        }
        // Unquoted text: show the whole rest of the line, as the technician wrote it.
        index = start
        while !isAtLineEnd, peek() != Byte.hash, peek() != Byte.carriageReturn { advance() }
        let written = String(decoding: bytes[start..<index], as: UTF8.self)
            .trimmingSuffix(while: { $0 == " " || $0 == "\t" })
        index = start
        if Byte.isLetter(first) || first == Byte.underscore || first == Byte.colon || first == UInt8(ascii: "/") {
            throw error(
                "invalid value '\(shown(written))': text must be in quotes, for example \(TOMLText.quoted(hidesValue ? "***" : written))"
            )
        }
        throw error("invalid value: expected a string in quotes, a number, true or false, found \(describeCurrent())")
    }

    /// `1979-05-27`, `07:32:00`: TOML dates and times.
    static func looksLikeDateOrTime(_ token: [UInt8]) -> Bool {
        func digits(_ range: Range<Int>) -> Bool {
            range.upperBound <= token.count && token[range].allSatisfy(Byte.isDigit)
        }
        if digits(0..<4) && token.count > 4 && token[4] == Byte.minus { return true }
        if digits(0..<2) && token.count > 2 && token[2] == Byte.colon { return true }
        return false
    }

    /// `text` is the token as shown in messages.
    func parseNumber(_ token: [UInt8], text: String) throws(TOMLSyntaxError) -> TOMLValue {
        if token.count > 2 && token[0] == UInt8(ascii: "0") {
            let radix: Int64? =
                switch token[1] {
                case UInt8(ascii: "x"): 16
                case UInt8(ascii: "o"): 8
                case UInt8(ascii: "b"): 2
                default: nil
                }
            if let radix { return .integer(try parsePrefixedInteger(Array(token[2...]), radix: radix, text: text)) }
        }
        if token == Array("0x".utf8) || token == Array("0o".utf8) || token == Array("0b".utf8) {
            throw error("invalid number '\(text)': digits must follow it")
        }
        let isFloat = token.contains(Byte.dot) || token.contains(UInt8(ascii: "e")) || token.contains(UInt8(ascii: "E"))
        if isFloat { return .float(try parseFloat(token, text: text)) }
        return .integer(try parseDecimalInteger(token, text: text))
    }

    /// Checks `_` placement (only between two digits) and returns the digits without `_`.
    func digitsWithoutUnderscores(_ digits: ArraySlice<UInt8>, text: String, isDigit: (UInt8) -> Bool)
        throws(TOMLSyntaxError) -> [UInt8]
    {
        var result: [UInt8] = []
        var previousWasDigit = false
        for byte in digits {
            if byte == Byte.underscore {
                guard previousWasDigit else {
                    throw error("invalid number '\(text)': '_' is allowed only between two digits")
                }
                previousWasDigit = false
            } else if isDigit(byte) {
                result.append(byte)
                previousWasDigit = true
            } else {
                throw error("invalid number '\(text)'")
            }
        }
        guard previousWasDigit else {
            if digits.isEmpty { throw error("invalid number '\(text)'") }
            throw error("invalid number '\(text)': '_' is allowed only between two digits")
        }
        return result
    }

    func parseDecimalInteger(_ token: [UInt8], text: String) throws(TOMLSyntaxError) -> Int64 {
        var body = token[...]
        var negative = false
        if let sign = body.first, sign == Byte.plus || sign == Byte.minus {
            negative = sign == Byte.minus
            body = body.dropFirst()
        }
        let digits = try digitsWithoutUnderscores(body, text: text, isDigit: Byte.isDigit)
        if digits.count > 1 && digits[0] == UInt8(ascii: "0") {
            throw error("invalid number '\(text)': leading zeros are not allowed")
        }
        var value: Int64 = 0
        for digit in digits {
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let amount = Int64(digit - UInt8(ascii: "0"))
            let (next, overflow2) =
                negative ? shifted.subtractingReportingOverflow(amount) : shifted.addingReportingOverflow(amount)
            guard !overflow1 && !overflow2 else {
                throw error("integer '\(text)' is too large")
            }
            value = next
        }
        return value
    }

    func parsePrefixedInteger(_ body: [UInt8], radix: Int64, text: String) throws(TOMLSyntaxError) -> Int64 {
        let name = radix == 16 ? "hexadecimal" : radix == 8 ? "octal" : "binary"
        let digits: [UInt8]
        do {
            digits = try digitsWithoutUnderscores(body[...], text: text) { byte in
                guard let value = Byte.hexValue(byte) else { return false }
                return Int64(value) < radix
            }
        } catch {
            throw TOMLSyntaxError(line: error.line, message: "invalid \(name) number '\(text)'")
        }
        var value: Int64 = 0
        for digit in digits {
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: radix)
            let (next, overflow2) = shifted.addingReportingOverflow(Int64(Byte.hexValue(digit) ?? 0))
            guard !overflow1 && !overflow2 else { throw error("integer '\(text)' is too large") }
            value = next
        }
        return value
    }

    /// TOML float: sign, integer part without leading zeros, then a fraction, an exponent or both.
    func parseFloat(_ token: [UInt8], text: String) throws(TOMLSyntaxError) -> Double {
        var body = token[...]
        var normalized: [UInt8] = []
        if let sign = body.first, sign == Byte.plus || sign == Byte.minus {
            normalized.append(sign)
            body = body.dropFirst()
        }
        let exponentIndex = body.firstIndex { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
        let mantissa = body[..<(exponentIndex ?? body.endIndex)]
        let dotIndex = mantissa.firstIndex(of: Byte.dot)
        let integerPart = mantissa[..<(dotIndex ?? mantissa.endIndex)]
        let integerDigits = try digitsWithoutUnderscores(integerPart, text: text, isDigit: Byte.isDigit)
        if integerDigits.count > 1 && integerDigits[0] == UInt8(ascii: "0") {
            throw error("invalid number '\(text)': leading zeros are not allowed")
        }
        normalized += integerDigits
        if let dotIndex {
            let fraction = mantissa[mantissa.index(after: dotIndex)...]
            normalized.append(Byte.dot)
            normalized += try digitsWithoutUnderscores(fraction, text: text, isDigit: Byte.isDigit)
        }
        if let exponentIndex {
            var exponent = body[body.index(after: exponentIndex)...]
            normalized.append(UInt8(ascii: "e"))
            if let sign = exponent.first, sign == Byte.plus || sign == Byte.minus {
                normalized.append(sign)
                exponent = exponent.dropFirst()
            }
            normalized += try digitsWithoutUnderscores(exponent, text: text, isDigit: Byte.isDigit)
        }
        guard let value = Double(String(decoding: normalized, as: UTF8.self)), value.isFinite else {
            throw error("invalid number '\(text)'")
        }
        return value
    }
}

// MARK: - Small helpers

extension String {
    func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var result = self
        while let last = result.last, predicate(last) { result.removeLast() }
        return result
    }

    /// `'x'` → `x` (for messages that already quote).
    var trimmingQuotes: String {
        guard count >= 2, first == "'", last == "'" else { return self }
        return String(dropFirst().dropLast())
    }
}
