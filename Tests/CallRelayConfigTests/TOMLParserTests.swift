import Foundation
import Testing

@testable import CallRelayConfig

@Suite("The TOML subset reader")
struct TOMLParserTests {
    func values(_ text: String) -> [String: TOMLValue] {
        let (document, errors) = TOMLParser.parse(text)
        #expect(errors == [])
        return Dictionary(
            document.entries.map { (TOMLText.key($0.key), $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    func errors(_ text: String) -> [TOMLSyntaxError] {
        TOMLParser.parse(text).errors
    }

    @Test("strings: escapes, literal strings, unicode")
    func strings() {
        let parsed = values(
            #"""
            a = "tab\there \"q\" back\\slash \n \r \b \f"
            b = 'C:\path\no "escapes"'
            c = "\u00e9\U0001F600"
            d = ""
            e = "日本語 # not a comment"
            "quoted key" = 1
            'literal.key' = 2
            """#)
        #expect(parsed["a"] == .string("tab\there \"q\" back\\slash \n \r \u{8} \u{C}"))
        #expect(parsed["b"] == .string(#"C:\path\no "escapes""#))
        #expect(parsed["c"] == .string("é😀"))
        #expect(parsed["d"] == .string(""))
        #expect(parsed["e"] == .string("日本語 # not a comment"))
        #expect(parsed[#""quoted key""#] == .integer(1))
        #expect(parsed[#""literal.key""#] == .integer(2))
    }

    @Test("integers: signs, underscores, hex, octal, binary, limits")
    func integers() {
        let parsed = values(
            """
            a = 0
            b = +42
            c = -17
            d = 1_000_000
            e = 0xDEAD_beef
            f = 0o755
            g = 0b1101
            h = 9223372036854775807
            i = -9223372036854775808
            j = -0
            """)
        #expect(parsed["a"] == .integer(0))
        #expect(parsed["b"] == .integer(42))
        #expect(parsed["c"] == .integer(-17))
        #expect(parsed["d"] == .integer(1_000_000))
        #expect(parsed["e"] == .integer(0xDEAD_BEEF))
        #expect(parsed["f"] == .integer(0o755))
        #expect(parsed["g"] == .integer(0b1101))
        #expect(parsed["h"] == .integer(Int64.max))
        #expect(parsed["i"] == .integer(Int64.min))
        #expect(parsed["j"] == .integer(0))
        #expect(errors("a = 9223372036854775808").map(\.message) == ["integer '9223372036854775808' is too large"])
        #expect(errors("a = 0x8000000000000000").map(\.message) == ["integer '0x8000000000000000' is too large"])
        #expect(errors("a = -0x1").map(\.message) == ["invalid number '-0x1'"])
        #expect(errors("a = 0b102").map(\.message) == ["invalid binary number '0b102'"])
    }

    @Test("floats and booleans")
    func floatsAndBooleans() {
        let parsed = values(
            """
            a = 1.5
            b = -0.25
            c = 1e3
            d = 6.626e-34
            e = 1_000.000_1
            f = inf
            g = -inf
            h = true
            i = false
            j = 0.5E+2
            """)
        #expect(parsed["a"] == .float(1.5))
        #expect(parsed["b"] == .float(-0.25))
        #expect(parsed["c"] == .float(1000))
        #expect(parsed["d"] == .float(6.626e-34))
        #expect(parsed["e"] == .float(1000.0001))
        #expect(parsed["f"] == .float(.infinity))
        #expect(parsed["g"] == .float(-.infinity))
        #expect(parsed["h"] == .boolean(true))
        #expect(parsed["i"] == .boolean(false))
        #expect(parsed["j"] == .float(50))
        if case .float(let nan) = values("n = nan")["n"] { #expect(nan.isNaN) } else { Issue.record("nan") }
        #expect(errors("a = 1e").map(\.message) == ["invalid number '1e'"])
        #expect(errors("a = 01.5").map(\.message) == ["invalid number '01.5': leading zeros are not allowed"])
        #expect(errors("a = 1e999").map(\.message) == ["invalid number '1e999'"])
    }

    @Test("arrays span lines, with comments and a trailing comma")
    func arrays() {
        let parsed = values(
            """
            a = [
              1, # one
              2,
              # nothing
              3,
            ]
            b = []
            c = [[1, 2], ["x"]]
            next = "after"
            """)
        #expect(parsed["a"] == .array([.integer(1), .integer(2), .integer(3)]))
        #expect(parsed["b"] == .array([]))
        #expect(parsed["c"] == .array([.array([.integer(1), .integer(2)]), .array([.string("x")])]))
        #expect(parsed["next"] == .string("after"))
        let (document, _) = TOMLParser.parse("a = [\n1,\n2]\nb = 1\n")
        #expect(document.entries.map(\.line) == [1, 4])
    }

    @Test("tables, dotted keys and inline tables are flattened to full keys with lines")
    func tables() {
        let (document, errors) = TOMLParser.parse(
            """
            top = 1
            site.name = "a"
            [mqtt]
            port = 1
            tls.ca = "x"
            [a.b]
            c = { d = 1, e.f = [2] }
            """)
        #expect(errors == [])
        #expect(
            document.entries == [
                .init(key: ["top"], value: .integer(1), line: 1, table: []),
                .init(key: ["site", "name"], value: .string("a"), line: 2, table: []),
                .init(key: ["mqtt", "port"], value: .integer(1), line: 4, table: ["mqtt"]),
                .init(key: ["mqtt", "tls", "ca"], value: .string("x"), line: 5, table: ["mqtt"]),
                .init(key: ["a", "b", "c", "d"], value: .integer(1), line: 7, table: ["a", "b"]),
                .init(key: ["a", "b", "c", "e", "f"], value: .array([.integer(2)]), line: 7, table: ["a", "b"]),
            ])
        #expect(document.tables == [.init(key: ["mqtt"], line: 3), .init(key: ["a", "b"], line: 6)])
    }

    @Test("TOML's rules on defining tables and keys twice")
    func redefinition() {
        // Valid: a header for a table first made implicit by a sub-table header.
        #expect(errors("[a.b]\nx = 1\n[a]\ny = 2\n") == [])
        // Valid: a sub-table header under a table made by dotted keys.
        #expect(errors("[fruit]\napple.color = \"red\"\n[fruit.apple.texture]\nsmooth = true\n") == [])
        // Valid: dotted keys sharing a prefix.
        #expect(errors("a.b = 1\na.c = 2\n") == [])
        #expect(errors("[a]\n[a]\n").map(\.message) == ["duplicate table [a], first defined at line 1"])
        #expect(errors("[a.b]\n[a]\n[a.b]\n").map(\.message) == ["duplicate table [a.b], first defined at line 1"])
        #expect(
            errors("a = 1\n[a.b]\n").map(\.message) == ["cannot define table [a.b]: 'a' already has a value (line 1)"])
        #expect(errors("a = 1\n[a]\n").map(\.message) == ["table [a] clashes with the key 'a' defined at line 1"])
        #expect(errors("a = 1\na.b = 2\n").map(\.message) == ["cannot define 'a.b': 'a' already has a value (line 1)"])
        #expect(
            errors("[a.b.c]\nz = 9\n[a]\nb.c.t = 1\n").map(\.message) == [
                "cannot define 'a.b.c.t' with a dotted key: table [a.b] has its own header (line 1); write the key under it"
            ])
        #expect(
            errors("[fruit]\napple.color = \"red\"\n[fruit.apple]\n").map(\.message) == [
                "table [fruit.apple] was already defined with dotted keys at line 2"
            ])
        #expect(
            errors("a = {}\n[a.b]\n").map(\.message) == [
                "cannot define table [a.b]: 'a' is an inline table (line 1), which cannot be extended"
            ])
        #expect(
            errors("a = { b = { c = 1 }, b.d = 2 }").map(\.message) == [
                "cannot define 'b.d': 'b' is an inline table (line 1), which cannot be extended"
            ])
    }

    @Test("keys under a broken header are checked for syntax but not stored")
    func brokenHeader() {
        let (document, errors) = TOMLParser.parse("[mqtt\nport = 1\nqos = \n[log]\nlevel = \"x\"\n")
        #expect(errors.map(\.line) == [1, 3])
        #expect(document.entries.map(\.key) == [["log", "level"]])
    }

    @Test("nesting is capped instead of overflowing the stack")
    func deepNesting() {
        let deep = "a = " + String(repeating: "[", count: 100_000)
        #expect(errors(deep).map(\.message) == ["arrays or inline tables are nested too deeply (more than 32 levels)"])
        let inline = "a = " + String(repeating: "{ b = ", count: 50_000)
        #expect(errors(inline).count == 1)
    }

    @Test("the parser stops after a bounded number of errors")
    func errorLimit() {
        let garbage = String(repeating: "!!!\n", count: 500)
        let found = errors(garbage)
        #expect(found.count == TOMLParser.maximumErrors + 1)
        #expect(found.last?.message == "too many syntax errors; stopping here (is this the right file?)")
    }

    @Test("keys are shown quoted when they are not bare")
    func keyDisplay() {
        #expect(TOMLText.key(["mqtt", "port"]) == "mqtt.port")
        #expect(TOMLText.key(["a b", "c.d", ""]) == #""a b"."c.d"."""#)
        #expect(TOMLText.quoted("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
    }

    @Test("suggestions use case-insensitive matches and an edit distance of at most 2")
    func suggestions() {
        #expect(Suggestions.editDistance("prot", "port") == 1)
        #expect(Suggestions.editDistance("kitten", "sitting") == 3)
        #expect(Suggestions.editDistance("", "abc") == 3)
        // The bounded form agrees with the full one within its limit, and gives up past it.
        for (x, y) in [("prot", "port"), ("kitten", "sitting"), ("qos", "qso"), ("host", "hots"), ("max_inflight", "max_inflihgt"), ("", "ab")] {
            let full = Suggestions.editDistance(x, y)
            #expect(Suggestions.editDistance(x, y, limit: 2) == (full <= 2 ? full : nil), "\(x) \(y)")
        }
        #expect(Suggestions.editDistance("abcdefgh", "zzzzzzzz", limit: 2) == nil)
        #expect(Suggestions.closest(to: "MQTT", among: ["http", "mqtt"]) == "mqtt")
        #expect(Suggestions.closest(to: "mqt", among: ["http", "mqtt"]) == "mqtt")
        #expect(Suggestions.closest(to: "database", among: ["http", "mqtt"]) == nil)
        #expect(Suggestions.closest(to: "x", among: ["a"]) == nil)
    }
}
