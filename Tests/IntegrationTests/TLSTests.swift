import CallRelayConfig
import CallRelayDaemon
import CallRelayMQTT
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Synchronization
import Testing

/// CONTRACT §3 `mqtt.ca_file`, `cert_file`, `key_file`, `tls_insecure` through libmosquitto,
/// against a real mosquitto TLS listener with a CA the test generates with `openssl`. A missing
/// `openssl` or `mosquitto` fails these tests; it never skips them.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct TLSTests {
    @Test func theAgentPublishesOverTLSWithTheConfiguredCA() async throws {
        let pki = try TestPKI.shared()
        let broker = try MosquittoBroker(tls: pki.listener(server: "server"))
        let tlsPort = try #require(broker.tlsPort)
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#")  // plain listener, same broker
        var configuration = testConfiguration(brokerPort: tlsPort, directory: temporaryDirectory())
        configuration.mqtt.caFile = pki.path("ca.crt")
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        #expect(waitUntil(seconds: 10) { daemon.client.isConnected }, "connects over TLS: \(broker.log)")
        #expect(try post(daemon.httpPort, "/webhooks/piopiy/live", liveEvent(call: "tls", n: 1)).status == 200)
        #expect(collector.wait(for: 1) { $0.topic == "piopiy/2222224/live/out_started" }.count == 1)
        await daemon.shutdown()

        let file = try configFile(port: tlsPort, tls: "ca_file = \"\(pki.path("ca.crt"))\"")
        let check = try CLITests.run(["check-config", "--connect", "--config", file])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("broker 127.0.0.1:\(tlsPort) (TLS) ... ok (connected as callrelay-check-"), "\(check.stdout)")
        collector.stop()
    }

    @Test func aWrongCANeverConnectsAndCheckConfigSaysWhy() async throws {
        let pki = try TestPKI.shared()
        let broker = try MosquittoBroker(tls: pki.listener(server: "server"))
        let tlsPort = try #require(broker.tlsPort)
        var configuration = testConfiguration(brokerPort: tlsPort, directory: temporaryDirectory())
        configuration.mqtt.caFile = pki.path("other-ca.crt")
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        // Webhooks are still stored (answered 200); they wait in the outbox.
        #expect(try post(daemon.httpPort, "/webhooks/piopiy/live", liveEvent(call: "wrong-ca", n: 1)).status == 200)
        try await Task.sleep(for: .seconds(2))
        #expect(!daemon.client.isConnected)
        #expect(daemon.outbox.metrics.pending.load(ordering: .relaxed) == 1)
        await daemon.shutdown()

        let file = try configFile(port: tlsPort, tls: "ca_file = \"\(pki.path("other-ca.crt"))\"")
        let check = try CLITests.run(["check-config", "--connect", "--timeout", "5", "--config", file])
        #expect(check.status == 69, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("broker 127.0.0.1:\(tlsPort) (TLS) ... FAILED: A TLS error occurred"), "\(check.stdout)")
        #expect(check.stdout.contains("certificate verify failed"), "the OpenSSL reason is shown: \(check.stdout)")
        #expect(check.stdout.contains("check mqtt.ca_file"), "\(check.stdout)")
    }

    /// libmosquitto's `tls_insecure` skips only the host name check: the chain must still lead to
    /// `ca_file`.
    @Test func tlsInsecureSkipsOnlyTheHostNameCheck() throws {
        let pki = try TestPKI.shared()
        // A certificate from the right CA, for broker.example: the name does not match 127.0.0.1.
        let broker = try MosquittoBroker(tls: pki.listener(server: "wrong-name"))
        let tlsPort = try #require(broker.tlsPort)
        let ca = "ca_file = \"\(pki.path("ca.crt"))\""

        let strict = try CLITests.run(["check-config", "--connect", "--timeout", "5", "--config", try configFile(port: tlsPort, tls: ca)])
        #expect(strict.status == 69, "the host name is checked by default: \(strict.stdout)")
        #expect(strict.stdout.contains("certificate verify failed"), "\(strict.stdout)")

        let insecure = try CLITests.run([
            "check-config", "--connect", "--config", try configFile(port: tlsPort, tls: "\(ca)\ntls_insecure = true"),
        ])
        #expect(insecure.status == 0, "\(insecure.stdout)\(insecure.stderr)")
        #expect(insecure.stdout.contains("host name was not checked"), "\(insecure.stdout)")
        #expect(insecure.stderr.contains("tls_insecure"), "check-config warns about it: \(insecure.stderr)")

        let insecureWrongCA = try CLITests.run([
            "check-config", "--connect", "--timeout", "5", "--config",
            try configFile(port: tlsPort, tls: "ca_file = \"\(pki.path("other-ca.crt"))\"\ntls_insecure = true"),
        ])
        #expect(insecureWrongCA.status == 69, "the chain is still verified: \(insecureWrongCA.stdout)")
    }

    @Test func aBrokerThatRequiresAClientCertificateGetsCertFileAndKeyFile() async throws {
        let pki = try TestPKI.shared()
        let broker = try MosquittoBroker(tls: pki.listener(server: "server", requireCertificate: true))
        let tlsPort = try #require(broker.tlsPort)
        let ca = "ca_file = \"\(pki.path("ca.crt"))\""

        let without = try CLITests.run(["check-config", "--connect", "--timeout", "5", "--config", try configFile(port: tlsPort, tls: ca)])
        #expect(without.status == 69, "\(without.stdout)")
        #expect(without.stdout.contains("FAILED"), "\(without.stdout)")

        let clientCert = "\(ca)\ncert_file = \"\(pki.path("client.crt"))\"\nkey_file = \"\(pki.path("client.key"))\""
        let with = try CLITests.run(["check-config", "--connect", "--config", try configFile(port: tlsPort, tls: clientCert)])
        #expect(with.status == 0, "\(with.stdout)\(with.stderr)")

        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#")
        var configuration = testConfiguration(brokerPort: tlsPort, directory: temporaryDirectory())
        configuration.mqtt.caFile = pki.path("ca.crt")
        configuration.mqtt.certFile = pki.path("client.crt")
        configuration.mqtt.keyFile = pki.path("client.key")
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        #expect(try post(daemon.httpPort, "/webhooks/piopiy/live", liveEvent(call: "mtls", n: 1)).status == 200)
        #expect(collector.wait(for: 1) { $0.topic == "piopiy/2222224/live/out_started" }.count == 1)
        await daemon.shutdown()
        collector.stop()
    }

    /// A config file for the CLI: the given TLS lines against the TLS port, the outbox in a temp dir.
    private func configFile(port: Int, tls: String) throws -> String {
        let dir = temporaryDirectory()
        let file = dir.appendingPathComponent("callrelay.toml")
        try """
        [mqtt]
        port = \(port)
        \(tls)
        [storage]
        path = "\(dir.path)/outbox.sqlite3"
        """.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }
}

/// A throwaway PKI made with the `openssl` command line: a CA, a second unrelated CA, a server
/// certificate for 127.0.0.1/localhost, one for broker.example (a name mismatch), and a client
/// certificate. Generated once per test process.
struct TestPKI: Sendable {
    let directory: URL

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func listener(server: String, requireCertificate: Bool = false) -> MosquittoBroker.TLSListener {
        .init(caFile: path("ca.crt"), certFile: path("\(server).crt"), keyFile: path("\(server).key"), requireCertificate: requireCertificate)
    }

    private static let cached = Result(catching: { try TestPKI() })

    static func shared() throws -> TestPKI { try cached.get() }

    struct OpenSSLFailed: Error, CustomStringConvertible {
        let description: String
    }

    private init() throws {
        guard let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw OpenSSLFailed(description: "openssl is not installed (scripts/install-deps.sh installs it)")
        }
        directory = temporaryDirectory()
        let dir = directory.path
        func run(_ arguments: [String]) throws {
            let log = "\(dir)/openssl.log"
            let pid = try spawn(openssl, arguments, stdoutPath: log)
            guard waitForExit(pid, seconds: 60) == 0 else {
                throw OpenSSLFailed(
                    description: "openssl \(arguments.joined(separator: " ")) failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
        }
        func ca(_ name: String, _ subject: String) throws {
            try run([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).crt",
                "-days", "2", "-subj", subject,
            ])
        }
        func leaf(_ name: String, _ subject: String, extensions: String) throws {
            try run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr", "-subj", subject])
            try extensions.write(toFile: "\(dir)/\(name).ext", atomically: true, encoding: .utf8)
            try run([
                "x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/ca.crt", "-CAkey", "\(dir)/ca.key", "-CAcreateserial",
                "-out", "\(dir)/\(name).crt", "-days", "2", "-extfile", "\(dir)/\(name).ext",
            ])
        }
        try ca("ca", "/CN=callrelay test CA")
        try ca("other-ca", "/CN=some other CA")
        try leaf("server", "/CN=localhost", extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        try leaf("wrong-name", "/CN=broker.example", extensions: "subjectAltName=DNS:broker.example\n")
        try leaf("client", "/CN=callrelay-client", extensions: "extendedKeyUsage=clientAuth\n")
        // The broker drops from root to the mosquitto user, which must read the keys.
        for file in try FileManager.default.contentsOfDirectory(atPath: dir) {
            chmod("\(dir)/\(file)", 0o644)
        }
        chmod(dir, 0o755)
    }
}
