import CallRelayConfig
import Foundation
import Testing

/// CONTRACT §7 keys: exact messages and lines.
@Suite("Listener keys (http.allow, trusted_proxies, TLS pair, limits, admin_listen)")
struct ListenerKeyTests {
    static let cases: [RuleCase] = [
        RuleCase(
            "[http]\nallow = [\"203.0.113.0/24\", \"10.0.0/8\"]\n",
            #"test.toml:2: http.allow: "10.0.0/8" is not an IP address or network; write ADDRESS or ADDRESS/BITS, for example "203.0.113.0/24" or "2001:db8::/32""#),
        RuleCase(
            "[http]\ntrusted_proxies = [\"10.1.2.3/8\"]\n",
            #"test.toml:2: warning: http.trusted_proxies: "10.1.2.3/8" has host bits set; it means "10.0.0.0/8""#),
        RuleCase("[http]\nallow = \"10.0.0.0/8\"\n", #"test.toml:2: http.allow: expected an array of strings, found a string ("10.0.0.0/8")"#),
        RuleCase("[http]\nallow = [10]\n", "test.toml:2: http.allow: expected an array of strings, found an array"),
        RuleCase(
            "[http]\ntls_cert_file = \"/etc/hostname\"\n",
            "test.toml:2: http.tls_cert_file: is set but http.tls_key_file is not; set both or neither"),
        RuleCase(
            "[http]\ntls_client_ca_file = \"/etc/hostname\"\n",
            "test.toml:2: http.tls_client_ca_file: needs HTTPS; set http.tls_cert_file and http.tls_key_file too"),
        RuleCase("[http]\nheader_timeout_seconds = 0\n", "test.toml:2: http.header_timeout_seconds: must be between 1 and 3600, found 0"),
        RuleCase("[http]\nmax_connections = 0\n", "test.toml:2: http.max_connections: must be between 1 and 1000000, found 0"),
        RuleCase(
            "[http]\nrate_limit_burst = 5\n",
            "test.toml:2: warning: http.rate_limit_burst: has no effect while http.rate_limit_per_second is 0 (the limit is off)"),
        RuleCase(
            "[http]\nlisten = \"0.0.0.0:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n",
            "test.toml:3: http.admin_listen: uses port 8080, the webhook listener's port (http.listen); pick another port"),
        RuleCase(
            "[http]\nadmin_listen = \"localhost\"\n",
            #"test.toml:2: http.admin_listen: must be HOST:PORT, for example "0.0.0.0:8080"; the port is missing in "localhost""#),
    ]

    @Test("each rule prints exactly its line", arguments: cases)
    func rules(_ rule: RuleCase) {
        #expect(printed(rule.text) == rule.expected)
    }

    @Test func goodValuesReachTheConfiguration() throws {
        let result = check("[http]\nallow = [\"203.0.113.0/24\", \"::1\"]\nrate_limit_per_second = 5\nadmin_listen = \"127.0.0.1:9180\"\n")
        let http = try #require(result.configuration?.http)
        #expect(http.allow.map(\.description) == ["203.0.113.0/24", "::1/128"])
        #expect(http.rateLimitPerSecond == 5 && http.rateLimitBurst == 5, "burst 0 means the rate")
        #expect(http.adminHost == "127.0.0.1" && http.adminPort == 9180)
        #expect(result.lines["http.allow"] == 2)
    }
}
