import CallRelayTesting
import Foundation
import Testing

/// The built `callrelay` binary, driven like an operator or systemd would (CONTRACT §2).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CLITests {
    /// `swift test` builds the executable next to the test bundle.
    static var binary: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("callrelay").path
    }

    struct Run {
        var status: Int32?
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String], environment: [String: String] = [:], seconds: Double = 20) throws -> Run {
        let dir = temporaryDirectory()
        let out = dir.appendingPathComponent("out").path
        let err = dir.appendingPathComponent("err").path
        let pid = try spawn(binary, arguments, stdoutPath: out, stderrPath: err, extraEnvironment: environment)
        let status = waitForExit(pid, seconds: seconds)
        if status == nil { kill(pid, SIGKILL) }
        return Run(
            status: status, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    @Test func theBinaryWasBuilt() {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "expected \(Self.binary)")
    }

    @Test func checkConfigAcceptsAValidFile() throws {
        let file = temporaryDirectory().appendingPathComponent("ok.toml")
        try "[mqtt]\nport = 1884\n".write(to: file, atomically: true, encoding: .utf8)
        let r = try Self.run(["check-config", "--config", file.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("configuration is valid"))
    }

    @Test func checkConfigReportsEveryProblemWithItsLineAndExits78() throws {
        let file = temporaryDirectory().appendingPathComponent("bad.toml")
        try """
        [http]
        listen = "0.0.0.0:8080"

        [mqtt]
        prot = 1883
        qos = 3
        """.write(to: file, atomically: true, encoding: .utf8)
        let r = try Self.run(["check-config", "--config", file.path])
        #expect(r.status == 78)
        #expect(r.stderr.contains("\(file.path):5:"), "\(r.stderr)")
        #expect(r.stderr.contains("mqtt.port"), "a typo gets a suggestion: \(r.stderr)")
        #expect(r.stderr.contains("\(file.path):6:"), "\(r.stderr)")
    }

    @Test func configPathComesFromTheEnvironmentWhenNoFlagIsGiven() throws {
        let file = temporaryDirectory().appendingPathComponent("env.toml")
        try "[log]\nlevel = \"loud\"\n".write(to: file, atomically: true, encoding: .utf8)
        let r = try Self.run(["check-config"], environment: ["CALLRELAY_CONFIG": file.path])
        #expect(r.status == 78)
        #expect(r.stderr.contains("\(file.path):2:"), "\(r.stderr)")
    }

    @Test func aMissingFileIsAConfigError() throws {
        let r = try Self.run(["check-config", "--config", "/nonexistent/callrelay.toml"])
        #expect(r.status == 78)
        #expect(r.stderr.contains("/nonexistent/callrelay.toml"))
    }

    @Test func usageErrorsExit64() throws {
        #expect(try Self.run(["run", "--no-such-flag"]).status == 64)
        #expect(try Self.run(["--version"]).status == 0)
    }

    @Test func runStoresServesAndExitsZeroOnSIGTERM() throws {
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#")
        let dir = temporaryDirectory()
        let httpPort = try freeTCPPort()
        let file = dir.appendingPathComponent("callrelay.toml")
        try """
        [http]
        listen = "127.0.0.1:\(httpPort)"
        [mqtt]
        port = \(broker.port)
        client_id = "cli-test"
        [storage]
        path = "\(dir.path)/outbox.sqlite3"
        """.write(to: file, atomically: true, encoding: .utf8)
        let err = dir.appendingPathComponent("stderr").path
        let pid = try spawn(Self.binary, ["run", "--config", file.path], stderrPath: err)
        #expect(waitUntil(seconds: 10) { (try? HTTPTestClient.request(port: httpPort, method: "GET", path: "/readyz").status) == 200 })
        let response = try HTTPTestClient.request(port: httpPort, path: "/webhooks/piopiy/live", body: liveEvent(call: "cli", n: 1))
        #expect(response.status == 200)
        #expect(collector.wait(for: 1) { $0.topic.hasSuffix("/live/out_started") }.count == 1)

        kill(pid, SIGTERM)
        let status = waitForExit(pid, seconds: 20)
        #expect(status == 0, "\((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")")
        #expect(collector.wait(for: 1) { $0.topic == "piopiy/agents/cli-test/status" && $0.text == "offline" }.count == 1)
        collector.stop()
    }
}
