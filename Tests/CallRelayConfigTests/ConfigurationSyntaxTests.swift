import CallRelayConfig
import Foundation
import Testing

@Suite("Syntax errors carry their line")
struct ConfigurationSyntaxTests {
    static let cases: [RuleCase] = [
        RuleCase(
            "[mqtt]\nhost = \"broker\nport = 1\n",
            #"test.toml:2: unterminated string: add the closing '"' on the same line"#),
        RuleCase(
            "[mqtt]\nhost = 'broker\n", #"test.toml:2: unterminated string: add the closing "'" on the same line"#),
        RuleCase("[mqtt]\nport 1883\n", "test.toml:2: expected '=' after key 'port', found '1'"),
        RuleCase("[mqtt]\n\nport\n", "test.toml:3: expected '=' after key 'port' (write: port = value)"),
        RuleCase("[mqtt]\nport =\n", "test.toml:2: missing value after 'port ='"),
        RuleCase("[mqtt]\n= 1883\n", "test.toml:2: missing key name before '='"),
        RuleCase("[mqtt\nport = 1\n", "test.toml:1: table header [mqtt is missing its closing ']'"),
        RuleCase("[]\n", "test.toml:1: empty table name: write a name such as [mqtt]"),
        RuleCase("[mq tt]\n", "test.toml:1: unexpected 't' in table header [mq; table names are separated by '.'"),
        RuleCase(
            "[mqtt] port = 1\n",
            "test.toml:1: unexpected text after the table header: 'port = 1' (start a comment with '#')"),
        RuleCase("[[mqtt]]\nport = 1\n", "test.toml:1: arrays of tables ([[name]]) are not supported by callrelay"),
        RuleCase("[mqtt]\nport = 1\nport = 2\n", "test.toml:3: duplicate key 'mqtt.port', first defined at line 2"),
        RuleCase(
            "mqtt.port = 1\n[mqtt]\nport = 2\n",
            "test.toml:2: table [mqtt] was already defined with dotted keys at line 1"),
        RuleCase(
            "[mqtt]\nport = 1\n\n[mqtt]\nqos = 2\nport = 3\n",
            "test.toml:4: duplicate table [mqtt], first defined at line 1",
            "test.toml:6: duplicate key 'mqtt.port', first defined at line 2"),
        RuleCase(
            "[mqtt]\nhost = localhost\n",
            #"test.toml:2: invalid value 'localhost': text must be in quotes, for example "localhost""#),
        RuleCase(
            "[storage]\npath = /var/lib/x.db # here\n",
            #"test.toml:2: invalid value '/var/lib/x.db': text must be in quotes, for example "/var/lib/x.db""#),
        RuleCase(
            "[mqtt]\ntls_insecure = True\n",
            "test.toml:2: invalid value 'True': booleans are written in lowercase, true or false"),
        RuleCase("[mqtt]\ntls_insecure = yes\n", "test.toml:2: invalid value 'yes': write true or false"),
        RuleCase(
            "[mqtt]\nport = 1883 1884\n",
            "test.toml:2: unexpected text after the value: '1884' (start a comment with '#')"),
        RuleCase("[mqtt]\nport = 01883\n", "test.toml:2: invalid number '01883': leading zeros are not allowed"),
        RuleCase(
            "[mqtt]\nport = 1__883\n", "test.toml:2: invalid number '1__883': '_' is allowed only between two digits"),
        RuleCase(
            "[mqtt]\nport = 1883_\n", "test.toml:2: invalid number '1883_': '_' is allowed only between two digits"),
        RuleCase("[mqtt]\nport = 0xZZ\n", "test.toml:2: invalid hexadecimal number '0xZZ'"),
        RuleCase("[mqtt]\nport = 0x\n", "test.toml:2: invalid number '0x': digits must follow it"),
        RuleCase("[mqtt]\nport = 99999999999999999999\n", "test.toml:2: integer '99999999999999999999' is too large"),
        RuleCase("[mqtt]\nport = 1.\n", "test.toml:2: invalid number '1.'"),
        RuleCase("[mqtt]\nport = 12ab\n", "test.toml:2: invalid number '12ab'"),
        RuleCase(
            "[mqtt]\nhost = \"\"\"broker\"\"\"\n",
            #"test.toml:2: multi-line strings (""") are not supported by callrelay; write the value on one line"#),
        RuleCase(
            "[mqtt]\nhost = '''broker'''\n",
            "test.toml:2: multi-line strings (''') are not supported by callrelay; write the value on one line"),
        RuleCase(
            "[storage]\nsince = 2024-09-10\n",
            "test.toml:2: dates and times are not supported by callrelay; write '2024-09-10' in quotes if it is meant as text"
        ),
        RuleCase(
            "[storage]\nat = 07:32:00\n",
            "test.toml:2: dates and times are not supported by callrelay; write '07:32:00' in quotes if it is meant as text"
        ),
        RuleCase(
            "[mqtt]\nca_file = \"C:\\certs\\ca.pem\"\n",
            #"test.toml:2: invalid escape '\c' in a string: write '\\' for a backslash, or use single quotes ('C:\path') for text with backslashes"#
        ),
        RuleCase("[mqtt]\nhost = \"a\\u12\"\n", #"test.toml:2: escape '\u' needs exactly 4 hexadecimal digits"#),
        RuleCase("[mqtt]\nhost = \"\\uD800\"\n", #"test.toml:2: escape '\uD800' is not a valid Unicode character"#),
        RuleCase(
            "[mqtt]\nhost = \"a\u{1}b\"\n",
            #"test.toml:2: control character U+0001 is not allowed in a string; write an escape such as \t"#),
        RuleCase("[mqtt]\nhost = [\"a\",\n  \"b\"\n", "test.toml:2: unterminated array: add the closing ']'"),
        RuleCase("[mqtt]\nhost = [\"a\" \"b\"]\n", "test.toml:2: expected ',' or ']' in the array, found '\"'"),
        RuleCase("[mqtt]\nhost = [,]\n", "test.toml:2: expected a value, found ','"),
        RuleCase("mqtt = { port = 1, }\n", "test.toml:1: a trailing ',' is not allowed in an inline table"),
        RuleCase("mqtt = { port = 1\n", "test.toml:1: an inline table must be closed with '}' on the same line"),
        RuleCase("mqtt = { port = 1, port = 2 }\n", "test.toml:1: duplicate key 'port', first defined at line 1"),
        RuleCase(
            "mqtt = { port = 1 }\nmqtt.qos = 2\n",
            "test.toml:2: cannot define 'mqtt.qos': 'mqtt' is an inline table (line 1), which cannot be extended"),
        RuleCase(
            "[mqtt]\nhost = \u{201C}broker\u{201D}\n",
            "test.toml:2: invalid value: expected a string in quotes, a number, true or false, found '\u{201C}' (a typographic quote; use a straight \" or ')"
        ),
        RuleCase(
            "[mqtt]\nport\u{A0}= 1883\n",
            "test.toml:2: expected '=' after key 'port', found U+00A0 (a no-break space; type a plain space)"),
        RuleCase(
            "[mqtt]\nport = 1883\r\rqos = 1\n",
            "test.toml:2: a carriage return must be followed by a line feed (save the file with Unix or Windows line ends)"
        ),
        RuleCase(
            "[mqtt]\r\n\r\nport = 1883 x\r\n",
            "test.toml:3: unexpected text after the value: 'x' (start a comment with '#')"),
    ]

    @Test("syntax errors", arguments: cases)
    func syntax(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
        #expect(check(rule.text).configuration == nil)
    }

    static let secretCases: [RuleCase] = [
        RuleCase(
            "[http]\ntoken = abcdef0123456789\n",
            #"test.toml:2: invalid value '***': text must be in quotes, for example "***""#),
        RuleCase(
            "[mqtt]\npassword = \"abc\" def\nusername = \"u\"\n",
            "test.toml:2: unexpected text after the value: '***' (start a comment with '#')"),
        RuleCase("[mqtt]\npassword = 12x\n", "test.toml:2: invalid number '***'"),
        RuleCase(
            "http = { token = s3cret }\n",
            #"test.toml:1: invalid value '***': text must be in quotes, for example "***""#),
        RuleCase(
            "[mqtt\npassword = s3cret\n", "test.toml:1: table header [mqtt is missing its closing ']'",
            #"test.toml:2: invalid value '***': text must be in quotes, for example "***""#),
    ]

    @Test("syntax errors in a secret's value never show the value", arguments: secretCases)
    func secrets(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
    }

    @Test("a file with several syntax errors reports each broken line, and checks what it could read")
    func severalSyntaxErrors() throws {
        let text = try Fixture.text("invalid-syntax.toml")
        let result = ConfigurationLoader.parse(text: text, path: "bad.toml", environment: [:])
        #expect(
            result.issues.map(\.description) == [
                #"bad.toml:2: unterminated string: add the closing '"' on the same line"#,
                "bad.toml:3: expected '=' after key 'max_body_bytes', found '6'",
                "bad.toml:5: table header [mqtt is missing its closing ']'",
                #"bad.toml:9: invalid value '/var/lib/callrelay/outbox.sqlite3': text must be in quotes, for example "/var/lib/callrelay/outbox.sqlite3""#,
                "bad.toml:11: duplicate key 'storage.retention_hours', first defined at line 10",
                #"bad.toml:12: unexpected text after the value: '"normal"' (start a comment with '#')"#,
                #"bad.toml:15: multi-line strings (""") are not supported by callrelay; write the value on one line"#,
            ])
        #expect(result.configuration == nil)
    }
}
