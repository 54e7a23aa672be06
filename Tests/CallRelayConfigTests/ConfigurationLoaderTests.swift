import CallRelayConfig
import Foundation
import Testing

@Suite("Finding and reading the file; environment overrides")
struct ConfigurationLoaderTests {
    @Test("--config beats CALLRELAY_CONFIG, which beats the default path; empty values count as not given")
    func resolvePath() {
        let environment = ["CALLRELAY_CONFIG": "/env/callrelay.toml"]
        #expect(ConfigurationLoader.resolvePath(flag: "/flag.toml", environment: environment) == "/flag.toml")
        #expect(ConfigurationLoader.resolvePath(flag: nil, environment: environment) == "/env/callrelay.toml")
        #expect(ConfigurationLoader.resolvePath(flag: "", environment: environment) == "/env/callrelay.toml")
        #expect(ConfigurationLoader.resolvePath(flag: nil, environment: [:]) == "/etc/callrelay/callrelay.toml")
        #expect(
            ConfigurationLoader.resolvePath(flag: nil, environment: ["CALLRELAY_CONFIG": ""])
                == "/etc/callrelay/callrelay.toml")
        #expect(ConfigurationLoader.resolvePath(flag: "relative.toml", environment: [:]) == "relative.toml")
        #expect(ConfigurationLoader.defaultPath == "/etc/callrelay/callrelay.toml")
    }

    @Test("a missing file is one error without a line")
    func missingFile() {
        let result = ConfigurationLoader.load(path: "/nonexistent/callrelay.toml", environment: [:])
        #expect(result.configuration == nil)
        #expect(
            result.issues.map(\.description) == ["/nonexistent/callrelay.toml: cannot read: No such file or directory"])
    }

    @Test("a directory cannot be read as a file")
    func directory() {
        let result = ConfigurationLoader.load(path: "/", environment: [:])
        #expect(result.issues.map(\.description) == ["/: cannot read: Is a directory"])
    }

    @Test("files are read from disk with their lines")
    func fromDisk() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("callrelay.toml")
        try "# comment\n[mqtt]\nqos = 5\n".write(to: file, atomically: true, encoding: .utf8)
        let result = ConfigurationLoader.load(path: file.path, environment: [:])
        #expect(result.issues.map(\.description) == ["\(file.path):3: mqtt.qos: must be 0, 1 or 2, found 5"])

        try "[mqtt]\nport = 1999\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(ConfigurationLoader.load(path: file.path, environment: [:]).configuration?.mqtt.port == 1999)
    }

    @Test("bytes that are not UTF-8 are reported with their line; UTF-16 is named")
    func encoding() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("latin1.toml")
        try Data("[mqtt]\n# caf".utf8 + [0xE9] + Data("\nport = 1\n".utf8)).write(to: file)
        #expect(
            ConfigurationLoader.load(path: file.path, environment: [:]).issues.map(\.description) == [
                "\(file.path):2: the file is not UTF-8 text (save it as UTF-8, or replace the character on this line)"
            ])
        let utf16 = directory.appendingPathComponent("utf16.toml")
        try "[mqtt]\n".data(using: .utf16)!.write(to: utf16)
        #expect(
            ConfigurationLoader.load(path: utf16.path, environment: [:]).issues.map(\.description) == [
                "\(utf16.path): the file is UTF-16 text; save it as UTF-8"
            ])
    }

    @Test("a huge file is refused")
    func hugeFile() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("huge.toml")
        try Data(repeating: UInt8(ascii: "#"), count: ConfigurationLoader.maximumFileBytes + 1).write(to: file)
        #expect(
            ConfigurationLoader.load(path: file.path, environment: [:]).issues.map(\.description) == [
                "\(file.path): the file is larger than 1024 KiB; is it the right file?"
            ])
    }

    @Test("secrets from the environment replace the file's; set-but-empty does not")
    func environmentOverrides() throws {
        let text =
            "[http]\ntoken = \"file-token-0123456789\"\n[mqtt]\nusername = \"relay\"\npassword = \"file-password\"\n"
        let overridden = try #require(
            check(
                text,
                environment: [
                    "CALLRELAY_HTTP_TOKEN": "env-token-0123456789", "CALLRELAY_MQTT_PASSWORD": "env-password",
                ]
            )
            .configuration)
        #expect(overridden.http.token == "env-token-0123456789")
        #expect(overridden.mqtt.password == "env-password")

        let empty = try #require(
            check(text, environment: ["CALLRELAY_HTTP_TOKEN": "", "CALLRELAY_MQTT_PASSWORD": ""]).configuration)
        #expect(empty.http.token == "file-token-0123456789")
        #expect(empty.mqtt.password == "file-password")

        let onlyEnvironment = try #require(
            check("", environment: ["CALLRELAY_HTTP_TOKEN": "env-token-0123456789"]).configuration)
        #expect(onlyEnvironment.http.token == "env-token-0123456789")
        #expect(check("", environment: ["OTHER": "x"]).configuration == RelayConfiguration.defaults)
    }

    @Test("problems with values from the environment name the variable and have no line")
    func environmentProblems() {
        #expect(
            printed("", environment: ["CALLRELAY_HTTP_TOKEN": "short"]) == [
                #"test.toml: warning: http.token (from CALLRELAY_HTTP_TOKEN): is shorter than 16 characters; use a long random token, for example from "openssl rand -hex 16""#
            ])
        #expect(
            printed("[mqtt]\nqos = 7\n", environment: ["CALLRELAY_MQTT_PASSWORD": "secret"]) == [
                "test.toml:2: mqtt.qos: must be 0, 1 or 2, found 7",
                "test.toml: mqtt.password (from CALLRELAY_MQTT_PASSWORD): is set but mqtt.username is empty; set mqtt.username too",
            ])
        #expect(check("[mqtt]\nusername = \"u\"\n", environment: ["CALLRELAY_MQTT_PASSWORD": "secret"]).issues.isEmpty)
    }

    @Test("an error in the file stays an error even when the environment replaces that key")
    func fileErrorsRemain() {
        #expect(
            printed("[http]\ntoken = 5\n", environment: ["CALLRELAY_HTTP_TOKEN": "env-token-0123456789"])
                == ["test.toml:2: http.token: expected a string, found an integer"])
    }
}
