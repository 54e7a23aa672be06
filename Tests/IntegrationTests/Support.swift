import CallRelayConfig
import CallRelayDaemon
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Logging

/// The fixture files copied from the PIOPIY reference (`Fixtures/piopiy`).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/piopiy")

    static func bytes(_ relativePath: String) throws -> [UInt8] {
        Array(try Data(contentsOf: root.appendingPathComponent(relativePath)))
    }

    static func object(_ relativePath: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(bytes(relativePath))) as! [String: Any]
    }

    /// The documented (top-level) samples.
    static func topLevel() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.path).filter { $0.hasSuffix(".json") }.sorted()
    }
}

func temporaryDirectory() -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("callrelay-it-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// A configuration for an in-process agent against a test broker, on a free HTTP port.
func testConfiguration(brokerPort: Int, directory: URL, token: String = "") -> RelayConfiguration {
    var c = RelayConfiguration.defaults
    c.http.listenHost = "127.0.0.1"
    c.http.listenPort = 0
    c.http.token = token
    c.mqtt.host = "127.0.0.1"
    c.mqtt.port = brokerPort
    c.mqtt.clientID = "callrelay-test-\(UUID().uuidString.prefix(8))"
    c.mqtt.reconnectMinMilliseconds = 100
    c.mqtt.reconnectMaxMilliseconds = 1000
    c.storage.path = directory.appendingPathComponent("outbox.sqlite3").path
    // The call state adds retained messages on {prefix}/{app}/calls/…: tests that count what is
    // published see only the events; CallStateTests (and the binary's tests, on defaults) turn it on.
    c.calls.enabled = false
    return c
}

func testLogger() -> Logger {
    var logger = Logger(label: "callrelay-test")
    logger.logLevel = ProcessInfo.processInfo.environment["CALLRELAY_TEST_LOG"] == nil ? .critical : .debug
    return logger
}

/// A distinct live event for call `call`, sequence `n`.
func liveEvent(call: String, n: Int, status: String = "out_started") -> [UInt8] {
    Array(
        """
        {"appid":2222224,"cmiuuid":"\(call)","conversation_uuid":"\(call)","direction":"outbound","leg":"a",
         "status":"\(status)","time":\(1_725_942_871_000 + n),"from":440000000000,"to":19170000000,"n":\(n)}
        """.utf8)
}

func post(_ port: Int, _ path: String, _ body: [UInt8], headers: [String: String] = ["Content-Type": "application/json"])
    throws -> HTTPTestResponse
{
    try HTTPTestClient.request(port: port, method: "POST", path: path, headers: headers, body: body)
}

/// POST to the combined endpoint.
func post(_ port: Int, _ body: [UInt8]) throws -> HTTPTestResponse {
    try post(port, "/webhooks/piopiy", body)
}
