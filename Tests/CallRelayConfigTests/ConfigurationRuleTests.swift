import CallRelayConfig
import Foundation
import Testing

/// One rule: a file and exactly what check-config prints for it.
struct RuleCase: CustomTestStringConvertible, Sendable {
    let text: String
    let expected: [String]
    init(_ text: String, _ expected: String...) {
        self.text = text
        self.expected = expected
    }
    var testDescription: String { text.replacingOccurrences(of: "\n", with: " ⏎ ") }
}

@Suite("One rule at a time: exact message and line")
struct ConfigurationRuleTests {
    static let typeCases: [RuleCase] = [
        RuleCase("[mqtt]\nport = \"1883\"\n", #"test.toml:2: mqtt.port: expected an integer, found a string ("1883")"#),
        RuleCase("[mqtt]\nport = 1883.0\n", "test.toml:2: mqtt.port: expected an integer, found a float (1883.0)"),
        RuleCase(
            "[mqtt]\ntls_insecure = \"true\"\n",
            #"test.toml:2: mqtt.tls_insecure: expected a boolean, found a string ("true")"#),
        RuleCase("[mqtt]\nhost = 5\n", "test.toml:2: mqtt.host: expected a string, found an integer (5)"),
        RuleCase("[mqtt]\nhost = [\"a\", \"b\"]\n", "test.toml:2: mqtt.host: expected a string, found an array"),
        RuleCase(
            "\n[http]\ntoken = 1234567890123456\n", "test.toml:3: http.token: expected a string, found an integer"),
        RuleCase(
            "[mqtt]\npassword = true\nusername = \"u\"\n",
            "test.toml:2: mqtt.password: expected a string, found a boolean"),
    ]

    @Test(
        "type mismatches name the key, the expected type and what was found (never a secret's value)",
        arguments: typeCases)
    func types(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
        #expect(check(rule.text).configuration == nil)
    }

    static let httpCases: [RuleCase] = [
        RuleCase(
            "[http]\nlisten = \"8080\"\n",
            #"test.toml:2: http.listen: must be HOST:PORT, for example "0.0.0.0:8080"; the port is missing in "8080""#),
        RuleCase(
            "[http]\nlisten = \"\"\n",
            #"test.toml:2: http.listen: must be HOST:PORT, for example "0.0.0.0:8080"; it is empty"#),
        RuleCase(
            "[http]\nlisten = \":8080\"\n",
            #"test.toml:2: http.listen: the host is missing; write "0.0.0.0:8080" to listen on every IPv4 address"#),
        RuleCase(
            "[http]\nlisten = \"::1:8080\"\n",
            #"test.toml:2: http.listen: an IPv6 address must be in brackets, for example "[::]:8080", found "::1:8080""#
        ),
        RuleCase(
            "[http]\nlisten = \"[::1:8080\"\n",
            #"test.toml:2: http.listen: missing ']' after the IPv6 address in "[::1:8080""#),
        RuleCase(
            "[http]\nlisten = \"[::1]8080\"\n",
            #"test.toml:2: http.listen: must be [IPv6]:PORT, for example "[::]:8080", found "[::1]8080""#),
        RuleCase(
            "[http]\nlisten = \"[1::2::3]:80\"\n", #"test.toml:2: http.listen: "1::2::3" is not a valid IPv6 address"#),
        RuleCase(
            "[http]\nlisten = \"300.1.1.1:80\"\n", #"test.toml:2: http.listen: "300.1.1.1" is not a valid IPv4 address"#
        ),
        RuleCase(
            "[http]\nlisten = \"my host:80\"\n",
            #"test.toml:2: http.listen: "my host" is not a valid host name or IP address"#),
        RuleCase(
            "[http]\nlisten = \"0.0.0.0:70000\"\n",
            #"test.toml:2: http.listen: the port must be a number from 0 to 65535, found "70000""#),
        RuleCase(
            "[http]\nlisten = \"0.0.0.0:http\"\n",
            #"test.toml:2: http.listen: the port must be a number from 0 to 65535, found "http""#),
        RuleCase(
            "[http]\nlisten = \"http://0.0.0.0:80\"\n",
            #"test.toml:2: http.listen: must be HOST:PORT without a scheme, for example "0.0.0.0:8080", found "http://0.0.0.0:80""#
        ),
        RuleCase(
            "[http]\nlisten = \"127.0.0.1:0\"\n",
            "test.toml:2: warning: http.listen: port 0 picks a random free port, which PIOPIY cannot know; use it only for tests"
        ),
        RuleCase(
            "[http]\ntoken = \"short\"\n",
            #"test.toml:2: warning: http.token: is shorter than 16 characters; use a long random token, for example from "openssl rand -hex 16""#
        ),
        RuleCase(
            "[http]\ntoken = \"0123456789abcdef&x\"\n",
            "test.toml:2: warning: http.token: contains characters that must be percent-encoded in a ?token= URL; letters, digits, '-', '.', '_' and '~' are safest"
        ),
        RuleCase(
            "[http]\ntoken = \"0123456789 abcdef\"\n",
            "test.toml:2: http.token: must not contain spaces or control characters"),
        RuleCase(
            "[http]\nmax_body_bytes = 1023\n",
            "test.toml:2: http.max_body_bytes: must be between 1024 and 16777216, found 1023"),
        RuleCase(
            "[http]\nmax_body_bytes = 16_777_217\n",
            "test.toml:2: http.max_body_bytes: must be between 1024 and 16777216, found 16777217"),
    ]

    @Test("[http] rules", arguments: httpCases)
    func http(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
    }

    static let mqttCases: [RuleCase] = [
        RuleCase("[mqtt]\nhost = \"\"\n", "test.toml:2: mqtt.host: must not be empty"),
        RuleCase(
            "[mqtt]\nhost = \"mqtt://broker\"\n",
            #"test.toml:2: mqtt.host: write only the host name, without a scheme such as "mqtt://", found "mqtt://broker""#
        ),
        RuleCase(
            "[mqtt]\nhost = \"broker:1883\"\n",
            #"test.toml:2: mqtt.host: write the port in mqtt.port, not in the host, found "broker:1883""#),
        RuleCase("[mqtt]\nhost = \"broker \"\n", #"test.toml:2: mqtt.host: must not contain spaces, found "broker ""#),
        RuleCase(
            "[mqtt]\nhost = \"[::1]\"\n",
            #"test.toml:2: mqtt.host: write an IPv6 address without brackets, found "[::1]""#),
        RuleCase(
            "[mqtt]\nhost = \"10.0.0.256\"\n", #"test.toml:2: mqtt.host: "10.0.0.256" is not a valid IPv4 address"#),
        RuleCase("[mqtt]\nport = 0\n", "test.toml:2: mqtt.port: must be between 1 and 65535, found 0"),
        RuleCase("[mqtt]\nport = 65536\n", "test.toml:2: mqtt.port: must be between 1 and 65535, found 65536"),
        RuleCase("[mqtt]\nclient_id = \"\"\n", "test.toml:2: mqtt.client_id: must not be empty"),
        RuleCase(
            "[mqtt]\nclient_id = \"gateway 1\"\n",
            "test.toml:2: mqtt.client_id: may contain only letters, digits, '_', '.' and '-', found a space"),
        RuleCase(
            "[mqtt]\nclient_id = \"gw/1\"\n",
            "test.toml:2: mqtt.client_id: may contain only letters, digits, '_', '.' and '-', found '/'"),
        RuleCase(
            "[mqtt]\nclient_id = \"\(String(repeating: "a", count: 65))\"\n",
            "test.toml:2: mqtt.client_id: must be at most 64 characters long, found 65"),
        RuleCase(
            "[mqtt]\npassword = \"secret\"\n",
            "test.toml:2: mqtt.password: is set but mqtt.username is empty; set mqtt.username too"),
        RuleCase("[mqtt]\ntopic_prefix = \"\"\n", "test.toml:2: mqtt.topic_prefix: must not be empty"),
        RuleCase(
            "[mqtt]\ntopic_prefix = \"a/+/b\"\n",
            "test.toml:2: mqtt.topic_prefix: must not contain the MQTT wildcard '+'"),
        RuleCase(
            "[mqtt]\ntopic_prefix = \"piopiy/#\"\n",
            "test.toml:2: mqtt.topic_prefix: must not contain the MQTT wildcard '#'"),
        RuleCase(
            "[mqtt]\ntopic_prefix = \"a\\u0000b\"\n", "test.toml:2: mqtt.topic_prefix: must not contain a NUL character"
        ),
        RuleCase(
            "[mqtt]\ntopic_prefix = \"/piopiy\"\n",
            #"test.toml:2: mqtt.topic_prefix: must not start with '/', found "/piopiy""#),
        RuleCase(
            "[mqtt]\ntopic_prefix = \"piopiy/\"\n",
            #"test.toml:2: mqtt.topic_prefix: must not end with '/', found "piopiy/""#),
        RuleCase(
            "[mqtt]\ntopic_prefix = \"acme//piopiy\"\n",
            #"test.toml:2: mqtt.topic_prefix: must not contain an empty level ('//'), found "acme//piopiy""#),
        RuleCase(
            "[mqtt]\ntopic_prefix = \"$piopiy\"\n",
            "test.toml:2: warning: mqtt.topic_prefix: topics starting with '$' are reserved for the broker; subscribers to '#' will not see these events"
        ),
        RuleCase("[mqtt]\nqos = 3\n", "test.toml:2: mqtt.qos: must be 0, 1 or 2, found 3"),
        RuleCase("[mqtt]\nqos = -1\n", "test.toml:2: mqtt.qos: must be 0, 1 or 2, found -1"),
        RuleCase(
            "[mqtt]\nkeepalive_seconds = 4\n",
            "test.toml:2: mqtt.keepalive_seconds: must be between 5 and 3600, found 4"),
        RuleCase(
            "[mqtt]\nkeepalive_seconds = 3601\n",
            "test.toml:2: mqtt.keepalive_seconds: must be between 5 and 3600, found 3601"),
        RuleCase(
            "[mqtt]\nca_file = \"ca.pem\"\n",
            #"test.toml:2: mqtt.ca_file: must be an absolute path (starting with '/'), found "ca.pem""#),
        RuleCase(
            "[mqtt]\nca_file = \"/nonexistent/callrelay/ca.pem\"\n",
            #"test.toml:2: mqtt.ca_file: cannot read "/nonexistent/callrelay/ca.pem": No such file or directory"#),
        RuleCase("[mqtt]\nca_file = \"/\"\n", #"test.toml:2: mqtt.ca_file: "/" is a directory, not a file"#),
        RuleCase(
            "[mqtt]\ntls_insecure = true\n",
            "test.toml:2: warning: mqtt.tls_insecure: has no effect without TLS (mqtt.ca_file is not set)"),
        RuleCase("[mqtt]\nmax_inflight = 0\n", "test.toml:2: mqtt.max_inflight: must be between 1 and 1000, found 0"),
        RuleCase(
            "[mqtt]\nmax_inflight = 1001\n", "test.toml:2: mqtt.max_inflight: must be between 1 and 1000, found 1001"),
        RuleCase(
            "[mqtt]\nreconnect_min_ms = 99\n",
            "test.toml:2: mqtt.reconnect_min_ms: must be between 100 and 60000, found 99"),
        RuleCase(
            "[mqtt]\nreconnect_max_ms = 999\n",
            "test.toml:2: mqtt.reconnect_max_ms: must be between 1000 and 3600000, found 999"),
        RuleCase(
            "[mqtt]\nreconnect_min_ms = 5000\nreconnect_max_ms = 2000\n",
            "test.toml:3: mqtt.reconnect_max_ms: must be at least mqtt.reconnect_min_ms (5000), found 2000"),
        RuleCase(
            "[mqtt]\nreconnect_min_ms = 45000\n",
            "test.toml:2: mqtt.reconnect_min_ms: must not exceed mqtt.reconnect_max_ms (30000), found 45000"),
    ]

    @Test("[mqtt] rules", arguments: mqttCases)
    func mqtt(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
    }

    @Test("cert_file and key_file go together, and need ca_file")
    func clientCertificate() {
        let tls = Fixture.directory.appendingPathComponent("tls").path
        #expect(
            printed("[mqtt]\nca_file = \"\(tls)/ca.pem\"\ncert_file = \"\(tls)/client.pem\"\n")
                == ["test.toml:3: mqtt.cert_file: is set but mqtt.key_file is not; set both or neither"])
        #expect(
            printed("[mqtt]\nca_file = \"\(tls)/ca.pem\"\n\nkey_file = \"\(tls)/client.key\"\n")
                == ["test.toml:4: mqtt.key_file: is set but mqtt.cert_file is not; set both or neither"])
        #expect(
            printed("[mqtt]\ncert_file = \"\(tls)/client.pem\"\nkey_file = \"\(tls)/client.key\"\n")
                == ["test.toml:2: mqtt.cert_file: needs TLS, which mqtt.ca_file turns on; set mqtt.ca_file too"])
        let ok = check(
            "[mqtt]\nca_file = \"\(tls)/ca.pem\"\ncert_file = \"\(tls)/client.pem\"\nkey_file = \"\(tls)/client.key\"\n"
        )
        #expect(ok.issues.isEmpty)
        #expect(ok.configuration?.mqtt.keyFile == "\(tls)/client.key")
    }

    static let storageAndLogCases: [RuleCase] = [
        RuleCase("[storage]\npath = \"\"\n", "test.toml:2: storage.path: must not be empty"),
        RuleCase(
            "[storage]\npath = \"/var/lib/callrelay/\"\n",
            #"test.toml:2: storage.path: must name a file, not a directory, found "/var/lib/callrelay/""#),
        RuleCase(
            "[storage]\npath = \"outbox.sqlite3\"\n",
            #"test.toml:2: warning: storage.path: "outbox.sqlite3" is a relative path, so it depends on the directory callrelay is started in ('/' under systemd); write an absolute path"#
        ),
        RuleCase(
            "[storage]\nmax_bytes = 1048575\n",
            "test.toml:2: storage.max_bytes: must be between 1048576 and 1099511627776, found 1048575"),
        RuleCase(
            "[storage]\nmax_bytes = 1099511627777\n",
            "test.toml:2: storage.max_bytes: must be between 1048576 and 1099511627776, found 1099511627777"),
        RuleCase(
            "[storage]\nretention_hours = 0\n",
            "test.toml:2: storage.retention_hours: must be between 1 and 87600, found 0"),
        RuleCase(
            "[storage]\nretention_hours = 87601\n",
            "test.toml:2: storage.retention_hours: must be between 1 and 87600, found 87601"),
        RuleCase(
            "[storage]\nsynchronous = \"off\"\n",
            #"test.toml:2: storage.synchronous: must be "full" or "normal", found "off""#),
        RuleCase(
            "[storage]\nsynchronous = \"FULL\"\n",
            #"test.toml:2: storage.synchronous: must be "full" or "normal", found "FULL"; did you mean "full"?"#),
        RuleCase(
            "[log]\nlevel = \"verbose\"\n",
            #"test.toml:2: log.level: must be "trace", "debug", "info", "notice", "warning", "error" or "critical", found "verbose""#
        ),
        RuleCase(
            "[log]\nlevel = \"INFO\"\n",
            #"test.toml:2: log.level: must be "trace", "debug", "info", "notice", "warning", "error" or "critical", found "INFO"; did you mean "info"?"#
        ),
        RuleCase(
            "[log]\nlevel = \"eror\"\n",
            #"test.toml:2: log.level: must be "trace", "debug", "info", "notice", "warning", "error" or "critical", found "eror"; did you mean "error"?"#
        ),
    ]

    @Test("[storage] and [log] rules", arguments: storageAndLogCases)
    func storageAndLog(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
    }

    static let unknownCases: [RuleCase] = [
        RuleCase("[mqtt]\nprot = 1883\n", "test.toml:2: unknown key 'mqtt.prot'; did you mean 'mqtt.port'?"),
        RuleCase("[mqtt]\nPort = 1883\n", "test.toml:2: unknown key 'mqtt.Port'; did you mean 'mqtt.port'?"),
        RuleCase(
            "[mqtt]\nclient-id = \"x\"\n", "test.toml:2: unknown key 'mqtt.client-id'; did you mean 'mqtt.client_id'?"),
        RuleCase("[mqtt]\nuser = \"x\"\n", "test.toml:2: unknown key 'mqtt.user'; did you mean 'mqtt.username'?"),
        RuleCase("[http]\nport = 8080\n", "test.toml:2: unknown key 'http.port'; did you mean 'http.listen'?"),
        RuleCase("[mqtt]\npath = \"/x\"\n", "test.toml:2: unknown key 'mqtt.path'; did you mean 'storage.path'?"),
        RuleCase("[mqtt]\nwill_topic = \"x\"\n", "test.toml:2: unknown key 'mqtt.will_topic'"),
        RuleCase("mqtt.prot = 1\n", "test.toml:1: unknown key 'mqtt.prot'; did you mean 'mqtt.port'?"),
        RuleCase("[mqt]\nport = 1\nhost = \"x\"\n", "test.toml:1: unknown table [mqt]; did you mean [mqtt]?"),
        RuleCase("[MQTT]\nport = 1\n", "test.toml:1: unknown table [MQTT]; did you mean [mqtt]?"),
        RuleCase(
            "[database]\nfile = \"x\"\n",
            "test.toml:1: unknown table [database]; callrelay's tables are [http], [mqtt], [storage], [calls] and [log]"),
        RuleCase(
            "[mqtt.tls]\nca = \"x\"\n",
            "test.toml:1: unknown table [mqtt.tls]; callrelay's tables are [http], [mqtt], [storage], [calls] and [log]"),
        RuleCase("[mqtt.port]\n", "test.toml:1: [mqtt.port] is a key, not a table; write 'port = ...' under [mqtt]"),
        RuleCase("port = 1883\n", "test.toml:1: key 'port' is outside any table; write it under [mqtt]"),
        RuleCase(
            "# header\nlevel = \"debug\"\n[log]\n",
            "test.toml:2: key 'level' is outside any table; write it under [log]"),
        RuleCase(
            "prot = 1883\n",
            "test.toml:1: key 'prot' (did you mean 'port'?) is outside any table; write it under [mqtt]"),
        RuleCase("colour = 1\n", "test.toml:1: unknown key 'colour' outside any table"),
        RuleCase(
            "mqtt = 5\n",
            "test.toml:1: 'mqtt' must be a table: write [mqtt] on its own line with its keys below it, found an integer"
        ),
    ]

    @Test("unknown keys and tables, with suggestions", arguments: unknownCases)
    func unknown(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
        #expect(check(rule.text).configuration == nil)
    }

    @Test("every problem of a file is reported at once, in line order")
    func multipleProblems() throws {
        let text = try Fixture.text("invalid-multiple.toml")
        let result = ConfigurationLoader.parse(text: text, path: "/etc/callrelay/callrelay.toml", environment: [:])
        #expect(result.configuration == nil)
        #expect(
            result.issues.map(\.description) == [
                "/etc/callrelay/callrelay.toml:2: key 'port' is outside any table; write it under [mqtt]",
                #"/etc/callrelay/callrelay.toml:5: http.listen: must be HOST:PORT, for example "0.0.0.0:8080"; the port is missing in "8080""#,
                #"/etc/callrelay/callrelay.toml:6: warning: http.token: is shorter than 16 characters; use a long random token, for example from "openssl rand -hex 16""#,
                #"/etc/callrelay/callrelay.toml:10: mqtt.port: expected an integer, found a string ("1883")"#,
                "/etc/callrelay/callrelay.toml:11: mqtt.qos: must be 0, 1 or 2, found 3",
                "/etc/callrelay/callrelay.toml:12: unknown key 'mqtt.clientid'; did you mean 'mqtt.client_id'?",
                "/etc/callrelay/callrelay.toml:13: mqtt.password: is set but mqtt.username is empty; set mqtt.username too",
                "/etc/callrelay/callrelay.toml:14: mqtt.topic_prefix: must not contain the MQTT wildcard '#'",
                "/etc/callrelay/callrelay.toml:16: mqtt.reconnect_max_ms: must be at least mqtt.reconnect_min_ms (5000), found 2000",
                "/etc/callrelay/callrelay.toml:18: unknown table [storag]; did you mean [storage]?",
                #"/etc/callrelay/callrelay.toml:22: log.level: must be "trace", "debug", "info", "notice", "warning", "error" or "critical", found "verbose""#,
            ])
        #expect(result.errors.count == 10)
        #expect(result.warnings.count == 1)
        let qos = try #require(result.issues.first { $0.key == "mqtt.qos" })
        #expect(qos.line == 11)
        #expect(qos.severity == .error)
        #expect(qos.message == "mqtt.qos: must be 0, 1 or 2, found 3")
    }

    @Test("warnings alone leave the configuration usable")
    func warningsOnly() throws {
        let result = check("[http]\ntoken = \"short\"\n[mqtt]\ntls_insecure = true\n")
        #expect(result.errors.isEmpty)
        #expect(result.warnings.count == 2)
        #expect(try #require(result.configuration).http.token == "short")
    }

    @Test("issue descriptions: with and without a line, errors and warnings")
    func issueDescription() {
        #expect(
            ConfigurationIssue(severity: .error, path: "/etc/c.toml", line: 3, key: "mqtt.qos", message: "m")
                .description
                == "/etc/c.toml:3: m")
        #expect(
            ConfigurationIssue(severity: .error, path: "/etc/c.toml", line: nil, key: nil, message: "m").description
                == "/etc/c.toml: m")
        #expect(
            ConfigurationIssue(severity: .warning, path: "c.toml", line: 7, key: nil, message: "m").description
                == "c.toml:7: warning: m")
        #expect(
            ConfigurationIssue(severity: .warning, path: "c.toml", line: nil, key: nil, message: "m").description
                == "c.toml: warning: m")
    }
}
