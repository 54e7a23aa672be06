import CallRelayConfig
import CallRelayDaemon
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Testing

/// CONTRACT §4: answers for bad input, auth, limits, health. Runs the whole agent (real SQLite,
/// real broker) because "nothing already stored is harmed" is part of each case.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct HTTPContractTests {
    @Test func badInputGetsAClearErrorAndHarmsNothing() async throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory(), token: "s3cret-token-for-tests")
        configuration.http.maxBodyBytes = 4096
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        let port = daemon.httpPort
        let auth = ["Authorization": "Bearer s3cret-token-for-tests"]

        let good = try post(port, "/webhooks/piopiy?token=s3cret-token-for-tests", liveEvent(call: "keep", n: 1), headers: [:])
        #expect(good.status == 200)

        let cases: [(String, [UInt8], Int, String)] = [
            ("not JSON", Array("hello".utf8), 400, "not valid JSON"),
            ("array", Array("[1,2]".utf8), 400, "JSON object"),
            ("string", Array("\"x\"".utf8), 400, "JSON object"),
            ("empty", [], 400, "empty body"),
            ("leading zero", Array(#"{"callerid": 04471000000}"#.utf8), 400, "not valid JSON"),
            ("truncated", Array(#"{"appid": 1, "status": "#.utf8), 400, "not valid JSON"),
            ("too deep", Array(String(repeating: "[", count: 1_000).utf8), 400, "not valid JSON"),
            ("invalid UTF-8", [0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d], 400, "not valid JSON"),
        ]
        for (label, body, status, reason) in cases {
            let r = try post(port, "/webhooks/piopiy", body, headers: auth)
            #expect(r.status == status, "\(label)")
            #expect(r.headers["content-type"] == "application/json", "\(label)")
            let error = r.json?["error"] as? String ?? ""
            #expect(error.contains(reason), "\(label): \(error)")
        }

        let unknown = try post(port, "/webhooks/piopiy/live", Array(#"{"status":"Brand/New+Status#","cmiuuid":"u1","future_field":{"a":1}}"#.utf8), headers: auth)
        #expect(unknown.status == 200, "unknown statuses and fields are stored, never dropped")

        #expect(try post(port, "/webhooks/piopiy", liveEvent(call: "x", n: 2), headers: [:]).status == 401)
        let wrong = try post(port, "/webhooks/piopiy", liveEvent(call: "x", n: 3), headers: ["Authorization": "Bearer nope"])
        #expect(wrong.status == 401)
        #expect(wrong.json?["error"] as? String == "wrong token")
        #expect(try post(port, "/webhooks/piopiy?token=nope", liveEvent(call: "x", n: 4), headers: [:]).status == 401)

        let big = Array(repeating: UInt8(ascii: " "), count: 5000) + Array("{}".utf8)
        let tooLarge = try post(port, "/webhooks/piopiy", big, headers: auth)
        #expect(tooLarge.status == 413)
        #expect((tooLarge.json?["error"] as? String)?.contains("max_body_bytes") == true)

        #expect(try HTTPTestClient.request(port: port, method: "GET", path: "/webhooks/piopiy").status == 405)
        #expect(try HTTPTestClient.request(port: port, method: "GET", path: "/nope").status == 404)
        #expect(try HTTPTestClient.request(port: port, method: "GET", path: "/healthz").status == 200)
        #expect(try HTTPTestClient.request(port: port, method: "GET", path: "/readyz").status == 200)
        let metrics = try HTTPTestClient.request(port: port, method: "GET", path: "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.bodyText.contains("callrelay_webhooks_total{endpoint=\"combined\",result=\"bad_request\"} 8"))
        #expect(metrics.bodyText.contains("callrelay_webhooks_total{endpoint=\"combined\",result=\"unauthorized\"} 3"))

        // The agent still works and the stored events are intact.
        #expect(try post(port, "/webhooks/piopiy", liveEvent(call: "keep", n: 5), headers: auth).status == 200)
        #expect(waitUntil(seconds: 10) { (try? daemon.outbox.stats()).map { $0.pending + $0.delivered } == 3 })
        await daemon.shutdown()
    }
}
