import CallRelayConfig
import CallRelayCore
import Foundation
import Testing

@Suite("Valid configurations")
struct ConfigurationValidTests {
    @Test("a file setting every key gives exactly the typed value")
    func fullFile() throws {
        let text = try Fixture.text("valid-full.toml")
        let result = ConfigurationLoader.parse(text: text, path: "valid-full.toml", environment: [:])
        let tls = Fixture.directory.appendingPathComponent("tls").path
        var http = RelayConfiguration.HTTP(listenHost: "::1", listenPort: 9090, token: "0123456789abcdef0123", maxBodyBytes: 131_072)
        http.tlsCertFile = "\(tls)/client.pem"
        http.tlsKeyFile = "\(tls)/client.key"
        http.tlsClientCAFile = "\(tls)/ca.pem"
        http.allow = [CIDR("203.0.113.0/24")!, CIDR("2001:db8::/32")!]
        http.trustedProxies = [CIDR("10.0.0.1")!]
        http.headerTimeoutSeconds = 5
        http.bodyTimeoutSeconds = 20
        http.idleTimeoutSeconds = 120
        http.maxConnections = 256
        http.rateLimitPerSecond = 50
        http.rateLimitBurst = 100
        (http.adminHost, http.adminPort) = ("127.0.0.1", 9180)
        let expected = RelayConfiguration(
            http: http,
            mqtt: .init(
                host: "broker.example.net", port: 8883, clientID: "gateway-7.site_a", username: "relay",
                password: "s3cret",
                topicPrefix: "acme/telephony", qos: 2, keepaliveSeconds: 60, caFile: "\(tls)/ca.pem",
                certFile: "\(tls)/client.pem", keyFile: "\(tls)/client.key", tlsInsecure: true, maxInflight: 250,
                reconnectMinMilliseconds: 1000, reconnectMaxMilliseconds: 60000, protocolVersion: "3.1.1", messageExpirySeconds: 300),
            storage: .init(
                path: "/data/callrelay/outbox.sqlite3", maxBytes: 2_147_483_648, retentionHours: 24,
                synchronous: .normal),
            calls: .init(enabled: false, clearAfterSeconds: 120, staleAfterSeconds: 3600, maxCalls: 20000),
            logLevel: "debug")
        #expect(result.configuration == expected)
        #expect(
            result.issues.map(\.description) == [
                "valid-full.toml:33: warning: mqtt.tls_insecure: is true, so the broker's host name is not checked against its certificate; use this only for testing"
            ])
    }

    @Test("the full fixture sets every key of the table, so a new key must be added to it")
    func fullFileCoversEveryKey() throws {
        let text = try Fixture.text("valid-full.toml")
        var section = ""
        var written: Set<String> = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            if line.hasPrefix("[") {
                section = String(line.dropFirst().prefix { $0 != "]" })
            } else if let equals = line.firstIndex(of: "=") {
                let leaf = line[..<equals].trimmingCharacters(in: .whitespaces).trimmingCharacters(
                    in: CharacterSet(charactersIn: "\""))
                written.insert("\(section).\(leaf)")
            }
        }
        #expect(written == Set(ConfigurationKey.all.map(\.name)))
    }

    @Test("every key reaches the typed value: leaving its line out of the full file changes the result")
    func everyKeyIsRead() throws {
        let text = try Fixture.text("valid-full.toml")
        let full = try #require(ConfigurationLoader.parse(text: text, path: "full", environment: [:]).configuration)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for key in ConfigurationKey.all {
            let without = lines.filter { line in
                let leaf = line.split(separator: "=").first?.trimmingCharacters(in: .whitespaces).trimmingCharacters(
                    in: CharacterSet(charactersIn: "\""))
                return leaf != key.leaf
            }
            #expect(without.count == lines.count - 1, "\(key.leaf) is written once in the fixture")
            let result = ConfigurationLoader.parse(
                text: without.joined(separator: "\n"), path: "full", environment: [:])
            #expect(result.configuration != full, "\(key.name) is not read into RelayConfiguration")
        }
    }

    @Test(
        "an empty file, or one with only comments and blank lines, gives the defaults",
        arguments: ["", "\n\n", "# nothing\n   \n\t# set\n", "[http]\n[mqtt]\n[storage]\n[log]\n"])
    func emptyFile(text: String) {
        let result = check(text)
        #expect(result.issues.isEmpty)
        #expect(result.configuration == RelayConfiguration.defaults)
    }

    @Test("the empty fixture loads from disk as the defaults")
    func emptyFixture() {
        let result = ConfigurationLoader.load(path: Fixture.path("empty.toml"), environment: [:])
        #expect(result.issues.isEmpty)
        #expect(result.configuration == RelayConfiguration.defaults)
    }

    @Test("the defaults are the key table's")
    func defaults() {
        let defaults = RelayConfiguration.defaults
        #expect(defaults.http == .init(listenHost: "0.0.0.0", listenPort: 8080, token: "", maxBodyBytes: 65536))
        #expect(
            defaults.mqtt
                == .init(
                    host: "127.0.0.1", port: 1883, clientID: "callrelay", username: "", password: "",
                    topicPrefix: "piopiy", qos: 1,
                    keepaliveSeconds: 30, caFile: nil, certFile: nil, keyFile: nil, tlsInsecure: false,
                    maxInflight: 100,
                    reconnectMinMilliseconds: 500, reconnectMaxMilliseconds: 30000))
        #expect(
            defaults.storage
                == .init(
                    path: "/var/lib/callrelay/outbox.sqlite3", maxBytes: 1_073_741_824, retentionHours: 168,
                    synchronous: .full))
        #expect(defaults.logLevel == "info")
    }

    @Test("dotted keys at the top and inline tables reach the same keys as tables")
    func dottedAndInline() throws {
        let dotted = try #require(check("mqtt.port = 1884\nlog.level = \"debug\"\n").configuration)
        #expect(dotted.mqtt.port == 1884)
        #expect(dotted.logLevel == "debug")
        let inline = try #require(check("mqtt = { host = \"broker\", port = 1885 }\n").configuration)
        #expect(inline.mqtt.host == "broker")
        #expect(inline.mqtt.port == 1885)
        let sub = try #require(check("[mqtt]\nport = 1886 # comment\n\"qos\" = 0\n").configuration)
        #expect(sub.mqtt.port == 1886)
        #expect(sub.mqtt.qos == 0)
    }

    @Test(
        "listen addresses",
        arguments: [
            ("0.0.0.0:8080", "0.0.0.0", 8080), ("127.0.0.1:1", "127.0.0.1", 1), ("[::]:8080", "::", 8080),
            ("[fe80::1%eth0]:80", "fe80::1%eth0", 80), ("gateway.local:65535", "gateway.local", 65535),
            ("localhost:443", "localhost", 443),
        ])
    func listenAddresses(text: String, host: String, port: Int) throws {
        let configuration = try #require(check("[http]\nlisten = \"\(text)\"\n").configuration)
        #expect(configuration.http.listenHost == host)
        #expect(configuration.http.listenPort == port)
    }

    @Test("broker hosts", arguments: ["broker", "10.0.0.5", "::1", "mqtt.example.com", "docker_broker"])
    func brokerHosts(host: String) throws {
        let configuration = try #require(check("[mqtt]\nhost = \"\(host)\"\n").configuration)
        #expect(configuration.mqtt.host == host)
    }

    @Test("CRLF line ends and a UTF-8 byte order mark are accepted")
    func windowsFile() throws {
        let configuration = try #require(check("\u{FEFF}[mqtt]\r\nport = 1890\r\n# done\r\n").configuration)
        #expect(configuration.mqtt.port == 1890)
    }
}
