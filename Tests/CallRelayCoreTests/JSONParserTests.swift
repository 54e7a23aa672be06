import CallRelayCore
import Testing

@Suite("JSON parsing")
struct JSONParserTests {
    private func roundTrip(_ text: String) throws -> String {
        let value = try JSONValue.parse(text)
        return String(decoding: value.serialized(), as: UTF8.self)
    }

    private func rejection(_ text: String) -> JSONParseError? {
        do {
            _ = try JSONValue.parse(text)
            return nil
        } catch {
            return error
        }
    }

    private func rejection(_ bytes: [UInt8], maxDepth: Int = 64) -> JSONParseError? {
        do {
            _ = try JSONValue.parse(bytes, maxDepth: maxDepth)
            return nil
        } catch {
            return error
        }
    }

    @Test func scalars() throws {
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse("true") == .bool(true))
        #expect(try JSONValue.parse("false") == .bool(false))
        #expect(try JSONValue.parse("\"x\"") == .string("x"))
        #expect(try JSONValue.parse(" \t\r\n 0 \n") == .number("0"))
        #expect(try JSONValue.parse("[]") == .array([]))
        #expect(try JSONValue.parse("{}") == .object([]))
    }

    @Test(arguments: [
        "440000000000", "0.450000", "1.5e3", "-0", "-0.0", "0e0", "1E+2", "2e-7", "12345678901234567890123456789",
        "-17", "899.000000",
    ])
    func numberLiteralsArePreserved(_ literal: String) throws {
        #expect(try JSONValue.parse(literal) == .number(literal))
        #expect(try roundTrip("[\(literal)]") == "[\(literal)]")
    }

    @Test func roundTripKeepsOrderDuplicatesAndLiterals() throws {
        let text = #"{"to":440000000000,"appid":2222222,"b":1,"a":[true,false,null,{"x":"y"}],"b":2,"call_rate":0.450000}"#
        #expect(try roundTrip(text) == text)
        let pretty = "{\n  \"z\" : 1 ,\n  \"a\" : [ 1 , 2 ]\n}\n"
        #expect(try roundTrip(pretty) == #"{"z":1,"a":[1,2]}"#)
    }

    @Test func subscriptReturnsLastDuplicate() throws {
        let value = try JSONValue.parse(#"{"k":1,"other":true,"k":2}"#)
        #expect(value["k"] == .number("2"))
        #expect(value["other"] == .bool(true))
        #expect(value["missing"] == nil)
        #expect(JSONValue.array([])["k"] == nil)
        #expect(JSONValue.string("s").stringValue == "s")
        #expect(JSONValue.number("1").stringValue == nil)
    }

    @Test func escapesAreDecodedAndReencoded() throws {
        let value = try JSONValue.parse(#""a\"b\\c\/d\b\f\n\r\t\u0001\u00e9\u20ac""#)
        #expect(value == .string("a\"b\\c/d\u{8}\u{c}\n\r\t\u{1}é€"))
        let out = String(decoding: value.serialized(), as: UTF8.self)
        #expect(out == #""a\"b\\c/d\b\f\n\r\t\u0001é€""#)
        #expect(String(decoding: JSONValue.string("\u{0}\u{1f}\u{7f}/").serialized(), as: UTF8.self) == "\"\\u0000\\u001f\u{7f}/\"")
    }

    @Test func surrogatePairs() throws {
        #expect(try JSONValue.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONValue.parse(#""x\uD834\uDD1Ey""#) == .string("x𝄞y"))
        // Raw 4-byte UTF-8 is accepted and written back as raw UTF-8.
        #expect(try roundTrip("\"😀\"") == "\"😀\"")
    }

    @Test func byteOrderMarkIsSkipped() throws {
        #expect(try JSONValue.parse([0xEF, 0xBB, 0xBF, 0x7B, 0x7D]) == .object([]))
    }

    @Test func unsafeBufferEntryPoint() throws {
        let bytes: [UInt8] = Array(#"{"a":[1,"b"]}"#.utf8)
        let value = try bytes.withUnsafeBytes { raw in try JSONValue.parse(raw) }
        #expect(value == .object([JSONMember(key: "a", value: .array([.number("1"), .string("b")]))]))
    }

    @Test func leadingZeroIsRejected() {
        let error = rejection(#"{"callerid": 04471000000}"#)
        #expect(error?.reason == "leading zeros are not allowed in numbers")
        #expect(error?.offset == 13)
        #expect(error?.description == "invalid JSON at byte 13: leading zeros are not allowed in numbers")
        #expect(rejection("-01") != nil)
        #expect(rejection("00") != nil)
    }

    @Test(arguments: [
        ("[1,]", "trailing comma is not allowed"),
        (#"{"a":1,}"#, "trailing comma is not allowed"),
        ("[1 2]", "unexpected '2', expected ',' or ']'"),
        (#"{"a" 1}"#, "unexpected '1', expected ':'"),
        ("{a:1}", "unexpected 'a', expected a string key"),
        ("{'a':1}", "unexpected ''', expected a string key"),
        ("[1] x", "unexpected 'x' after the JSON value"),
        ("{} {}", "unexpected '{' after the JSON value"),
        ("", "unexpected end of input"),
        ("   ", "unexpected end of input"),
        ("[", "unexpected end of input"),
        (#"{"a":"#, "unexpected end of input"),
        (#"{"a":1"#, "unexpected end of input"),
        (#""abc"#, "unexpected end of input in string"),
        ("tru", "unexpected end of input"),
        ("nul", "unexpected end of input"),
        ("trUe", "invalid literal, expected 'true'"),
        ("-", "unexpected end of input"),
        ("-a", "expected a digit after '-'"),
        ("1.", "unexpected end of input"),
        ("1.e5", "expected a digit after the decimal point"),
        ("1e", "unexpected end of input"),
        ("1e+x", "expected a digit in the exponent"),
        ("+1", "unexpected '+', expected a value"),
        (".5", "unexpected '.', expected a value"),
        ("NaN", "unexpected 'N', expected a value"),
        ("\"a\tb\"", "unescaped control character in string"),
        ("\"a\nb\"", "unescaped control character in string"),
        (#""\x""#, "invalid escape sequence"),
        (#""\u12""#, "invalid hex digit in \\u escape"),
        (#""\ud83d""#, "lone high surrogate in \\u escape"),
        (#""\ud83dx""#, "lone high surrogate in \\u escape"),
        (#""\ud83d\u0041""#, "lone high surrogate in \\u escape"),
        (#""\ude00""#, "lone low surrogate in \\u escape"),
    ])
    func rejections(_ text: String, _ reason: String) {
        let error = rejection(text)
        #expect(error != nil, "accepted \(text)")
        #expect(error?.reason == reason, "\(text)")
    }

    @Test(arguments: [
        [0x22, 0xFF, 0x22],  // invalid byte
        [0x22, 0xC3, 0x22],  // truncated 2-byte sequence
        [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
        [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong 3-byte
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-8 encoded surrogate U+D800
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
        [0x22, 0xE2, 0x82, 0x22],  // truncated 3-byte
        [0x22, 0x80, 0x22],  // lone continuation byte
        [0x22, 0xF0, 0x9F, 0x98],  // truncated at end of input
        [0x5B, 0xC3, 0xA9, 0x5D],  // non-ASCII outside a string
    ] as [[UInt8]])
    func invalidUTF8IsRejected(_ bytes: [UInt8]) {
        #expect(rejection(bytes) != nil)
    }

    @Test func validMultibyteUTF8IsAccepted() throws {
        // é (2 bytes), € (3 bytes), U+FFFF-adjacent and U+10FFFF (4 bytes)
        let bytes: [UInt8] = [0x22, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xEF, 0xBF, 0xBD, 0xF4, 0x8F, 0xBF, 0xBF, 0x22]
        let value = try JSONValue.parse(bytes)
        #expect(value == .string("é€\u{FFFD}\u{10FFFF}"))
        #expect(value.serialized() == bytes)
    }

    @Test func invalidUTF8AfterAnEscapeIsRejected() {
        #expect(rejection([0x22, 0x5C, 0x6E, 0xFF, 0x22]) != nil)
    }

    @Test func depthLimit() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try JSONValue.parse(ok) }
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let error = rejection(tooDeep)
        #expect(error?.reason == "nesting deeper than 64 levels")
        #expect(error?.offset == 64)
        let objects = String(repeating: #"{"a":"#, count: 3) + "1" + String(repeating: "}", count: 3)
        #expect(rejection(Array(objects.utf8), maxDepth: 2) != nil)
        #expect(rejection(Array(objects.utf8), maxDepth: 3) == nil)
        #expect(rejection(Array("[]".utf8), maxDepth: 0) != nil)
        #expect(rejection(Array("7".utf8), maxDepth: 0) == nil)
    }

    @Test func hugeNestingFailsFastWithoutRecursion() {
        // One megabyte of '[' must neither crash nor recurse.
        let bytes = [UInt8](repeating: 0x5B, count: 1 << 20)
        #expect(rejection(bytes, maxDepth: 1_000_000)?.reason == "nesting deeper than \(JSONValue.maxDepthCap) levels")
    }

    @Test func everyTruncationOfAValidDocumentIsRejected() {
        let text = #"{"a":[1,-2.5e3,"x\u00e9\ud83d\ude00",true,false,null,{"b":{}}],"c":"é"}"#
        let bytes = Array(text.utf8)
        #expect(rejection(bytes) == nil)
        for n in 0..<bytes.count {
            #expect(rejection(Array(bytes[0..<n])) != nil, "prefix of \(n) bytes accepted")
        }
    }

    @Test func writeAppendsToExistingBuffer() throws {
        var buffer: [UInt8] = Array("x=".utf8)
        try JSONValue.parse(#"{"a":"b"}"#).write(into: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == #"x={"a":"b"}"#)
    }

    @Test func canonicalSerializationSortsKeysRecursively() throws {
        let a = try JSONValue.parse(#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":2},"b":0}"#)
        let b = try JSONValue.parse(#"{ "a" : { "c" : 2, "d" : [ { "y" : 2, "z" : 1 } ] }, "b" : 1, "b" : 0 }"#)
        var ca: [UInt8] = []
        var cb: [UInt8] = []
        a.writeCanonical(into: &ca)
        b.writeCanonical(into: &cb)
        #expect(ca == cb)
        #expect(String(decoding: ca, as: UTF8.self) == #"{"a":{"c":2,"d":[{"y":2,"z":1}]},"b":1,"b":0}"#)
    }
}
