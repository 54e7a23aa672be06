import CallRelayTesting
import Foundation
import Synchronization
import Testing

/// CONTRACT §7: the webhook listener over HTTPS (swift-nio-ssl), tried black-box: the built binary,
/// `curl` as the client, certificates from the test's own CA (`TestPKI`). A missing `curl` or
/// `openssl` fails these tests.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HTTPSListenerTests {
    struct Curl {
        let status: Int32?
        let output: String
        /// The HTTP status curl printed last (`-w '%{http_code}'`), 0 when there was none.
        var httpCode: Int { Int(output.split(separator: "\n").last.map(String.init) ?? "") ?? 0 }
    }

    static func curl(_ arguments: [String]) throws -> Curl {
        let dir = temporaryDirectory()
        let out = dir.appendingPathComponent("out").path
        let pid = try spawn("/usr/bin/curl", ["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "\n%{http_code}"] + arguments, stdoutPath: out, stderrPath: out)
        let status = waitForExit(pid, seconds: 20)
        return Curl(status: status, output: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    static func config(directory: URL, httpPort: Int, extra: String) throws -> URL {
        let file = directory.appendingPathComponent("callrelay.toml")
        try """
        [http]
        listen = "127.0.0.1:\(httpPort)"
        \(extra)
        [mqtt]
        port = \(try freeTCPPort())
        [storage]
        path = "\(directory.path)/outbox.sqlite3"
        """.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    struct Agent {
        let pid: pid_t
        let log: String
        var stderr: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func stop() {
            kill(pid, SIGTERM)
            _ = waitForExit(pid, seconds: 15)
        }
    }

    static func start(_ config: URL, port: Int, ca: String) throws -> Agent {
        let log = config.deletingLastPathComponent().appendingPathComponent("stderr").path
        let pid = try spawn(CLITests.binary, ["run", "--config", config.path], stderrPath: log)
        let ready = waitUntil(seconds: 15) { (try? curl(["--cacert", ca, "https://127.0.0.1:\(port)/readyz"]).httpCode) == 200 }
        let agent = Agent(pid: pid, log: log)
        if !ready { kill(pid, SIGKILL) }
        try #require(ready, "agent did not become ready over HTTPS: \(agent.stderr)")
        return agent
    }

    func post(_ port: Int, _ extra: [String]) throws -> Curl {
        try Self.curl(
            extra + ["-H", "Content-Type: application/json", "--data-binary", String(decoding: liveEvent(call: "https", n: Int.random(in: 1...1_000_000)), as: UTF8.self),
                "https://127.0.0.1:\(port)/webhooks/piopiy/live"])
    }

    @Test func webhooksArriveOverHTTPSOnlyWithTLS12OrNewer() throws {
        let pki = try TestPKI.shared()
        let dir = temporaryDirectory()
        let port = try freeTCPPort()
        let config = try Self.config(
            directory: dir, httpPort: port, extra: "tls_cert_file = \"\(pki.path("server.crt"))\"\ntls_key_file = \"\(pki.path("server.key"))\"")
        let agent = try Self.start(config, port: port, ca: pki.path("ca.crt"))
        defer { agent.stop() }
        #expect(try post(port, ["--cacert", pki.path("ca.crt")]).httpCode == 200)
        // Plain HTTP on the HTTPS port is not answered as HTTP; TLS 1.1 is refused.
        #expect(try Self.curl(["http://127.0.0.1:\(port)/healthz"]).httpCode != 200)
        #expect(try Self.curl(["--cacert", pki.path("ca.crt"), "--tlsv1.0", "--tls-max", "1.1", "https://127.0.0.1:\(port)/healthz"]).httpCode == 0)
        #expect(try Self.curl(["--cacert", pki.path("ca.crt"), "--tlsv1.3", "https://127.0.0.1:\(port)/healthz"]).httpCode == 200)
        #expect(agent.stderr.contains("scheme=https"), "\(agent.stderr)")
    }

    /// NIOSSL holds back the 408 of a client that never finishes its handshake: the connection is
    /// closed anyway, one second after the header timeout.
    @Test func aSilentOrHalfHandshakeTLSClientIsClosedAfterTheHeaderTimeout() throws {
        let pki = try TestPKI.shared()
        let dir = temporaryDirectory()
        let port = try freeTCPPort()
        let config = try Self.config(
            directory: dir, httpPort: port,
            extra: "tls_cert_file = \"\(pki.path("server.crt"))\"\ntls_key_file = \"\(pki.path("server.key"))\"\nheader_timeout_seconds = 1")
        let agent = try Self.start(config, port: port, ca: pki.path("ca.crt"))
        defer { agent.stop() }
        let silent = try ListenerLimitTests.RawClient(port: port)
        let halfHello = try ListenerLimitTests.RawClient(port: port)
        halfHello.send("\u{16}\u{03}\u{01}\u{00}\u{05}\u{01}")
        let started = Date()
        #expect(silent.read(seconds: 5).closed)
        #expect(halfHello.read(seconds: 1).closed)
        #expect(Date().timeIntervalSince(started) < 4)
    }

    @Test func clientCertificatesAreRequiredWhenAClientCAIsSet() throws {
        let pki = try TestPKI.shared()
        let dir = temporaryDirectory()
        let port = try freeTCPPort()
        let config = try Self.config(
            directory: dir, httpPort: port,
            extra: """
                tls_cert_file = "\(pki.path("server.crt"))"
                tls_key_file = "\(pki.path("server.key"))"
                tls_client_ca_file = "\(pki.path("ca.crt"))"
                """)
        let log = dir.appendingPathComponent("stderr").path
        let pid = try spawn(CLITests.binary, ["run", "--config", config.path], stderrPath: log)
        let agent = Agent(pid: pid, log: log)
        defer { agent.stop() }
        let client = ["--cacert", pki.path("ca.crt"), "--cert", pki.path("client.crt"), "--key", pki.path("client.key")]
        #expect(waitUntil(seconds: 15) { (try? post(port, client).httpCode) == 200 }, "\(agent.stderr)")
        #expect(try post(port, ["--cacert", pki.path("ca.crt")]).httpCode == 0, "no client certificate: no answer")
    }

    /// SIGHUP re-reads the pair: a bad pair is logged and the old one keeps serving; a good new
    /// pair serves the next connection; the agent never stops answering.
    @Test func sighupReloadsTheCertificateAndKeepsTheOldOneWhenTheNewIsBad() throws {
        let pki = try TestPKI.shared()
        let dir = temporaryDirectory()
        let cert = dir.appendingPathComponent("tls.crt").path
        let key = dir.appendingPathComponent("tls.key").path
        try FileManager.default.copyItem(atPath: pki.path("server.crt"), toPath: cert)
        try FileManager.default.copyItem(atPath: pki.path("server.key"), toPath: key)
        let port = try freeTCPPort()
        let config = try Self.config(directory: dir, httpPort: port, extra: "tls_cert_file = \"\(cert)\"\ntls_key_file = \"\(key)\"")
        let agent = try Self.start(config, port: port, ca: pki.path("ca.crt"))
        defer { agent.stop() }
        let trusted = ["--cacert", pki.path("ca.crt")]

        // An open keep-alive connection lives through a reload: three requests on one connection,
        // half a second apart, with a SIGHUP in between.
        let out = dir.appendingPathComponent("keepalive").path
        let url = "https://127.0.0.1:\(port)/healthz"
        let keepAlive = try spawn(
            "/usr/bin/curl", ["-sS", "--max-time", "10", "--rate", "2/s", "--cacert", pki.path("ca.crt"), "-w", "%{http_code} %{num_connects}\n", "-o", "/dev/null", url, "-o", "/dev/null", url, "-o", "/dev/null", url],
            stdoutPath: out, stderrPath: out)
        Thread.sleep(forTimeInterval: 0.25)
        kill(agent.pid, SIGHUP)
        #expect(waitForExit(keepAlive, seconds: 10) == 0)
        let transfers = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(transfers == ["200 1", "200 0", "200 0"], "one connection, three answers: \(transfers)")
        #expect(waitUntil(seconds: 5) { agent.stderr.contains("TLS certificate reloaded") }, "\(agent.stderr)")

        // A renewal gone wrong: the key of another certificate.
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: pki.path("client.key"), toPath: key)
        kill(agent.pid, SIGHUP)
        #expect(waitUntil(seconds: 5) { agent.stderr.contains("TLS reload failed; the previous certificate stays in use") }, "\(agent.stderr)")
        #expect(try post(port, trusted).httpCode == 200, "the old pair still serves")

        // A good renewal: the wrong-name certificate, so the new pair is visible to the client.
        try FileManager.default.removeItem(atPath: cert)
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: pki.path("wrong-name.crt"), toPath: cert)
        try FileManager.default.copyItem(atPath: pki.path("wrong-name.key"), toPath: key)
        kill(agent.pid, SIGHUP)
        #expect(waitUntil(seconds: 5) { agent.stderr.components(separatedBy: "TLS certificate reloaded").count == 3 }, "\(agent.stderr)")
        #expect(try post(port, trusted).httpCode == 0, "127.0.0.1 no longer matches the certificate's name")
        let renamed = try Self.curl(
            trusted + ["--resolve", "broker.example:\(port):127.0.0.1", "https://broker.example:\(port)/healthz"])
        #expect(renamed.httpCode == 200, "\(renamed.output)")
        #expect(waitForExit(agent.pid, seconds: 0.1) == nil, "still running")
    }

    @Test func checkConfigValidatesThePairWithPathAndLine() throws {
        let pki = try TestPKI.shared()
        let dir = temporaryDirectory()
        let notPEM = dir.appendingPathComponent("garbage.pem").path
        try "not a certificate\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
        func check(_ cert: String, _ key: String) throws -> CLITests.Run {
            let file = try Self.config(directory: dir, httpPort: 8443, extra: "tls_cert_file = \"\(cert)\"\ntls_key_file = \"\(key)\"")
            return try CLITests.run(["check-config", "--config", file.path])
        }
        let good = try check(pki.path("server.crt"), pki.path("server.key"))
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")

        let mismatch = try check(pki.path("server.crt"), pki.path("client.key"))
        #expect(mismatch.status == 78)
        #expect(mismatch.stderr.contains("callrelay.toml:4: http.tls_key_file:"), "\(mismatch.stderr)")
        #expect(mismatch.stderr.contains("does not match the certificate"), "\(mismatch.stderr)")

        let garbage = try check(notPEM, pki.path("server.key"))
        #expect(garbage.status == 78)
        #expect(garbage.stderr.contains("callrelay.toml:3: http.tls_cert_file:"), "\(garbage.stderr)")

        let keyAsCert = try check(pki.path("server.crt"), pki.path("server.crt"))
        #expect(keyAsCert.stderr.contains("holds a certificate, not a key"), "\(keyAsCert.stderr)")

        let missing = try check(pki.path("server.crt"), dir.appendingPathComponent("nope.key").path)
        #expect(missing.status == 78)
        #expect(missing.stderr.contains("callrelay.toml:4: http.tls_key_file: cannot read"), "\(missing.stderr)")
    }
}
