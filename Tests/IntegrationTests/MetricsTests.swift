import CallRelayConfig
import CallRelayDaemon
import CallRelayMQTT
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Synchronization
import Testing

/// `GET /metrics` (CONTRACT §4.1): Prometheus text format, and the numbers say what happened.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct MetricsTests {
    @Test func theTextFormatIsValidAndCountsWhatHappened() async throws {
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#")
        let token = "metrics-token-0123456789"
        let configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory(), token: token)
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        let port = daemon.httpPort
        let auth = ["Authorization": "Bearer \(token)"]
        #expect(waitUntil(seconds: 10) { daemon.client.isConnected })

        #expect(try post(port, "/webhooks/piopiy/live", liveEvent(call: "m", n: 1), headers: auth).status == 200)
        #expect(try post(port, "/webhooks/piopiy/live", liveEvent(call: "m", n: 2), headers: auth).status == 200)
        let cdr = try Fixtures.bytes("cdr_in_missed_leg_a.json")
        #expect(try post(port, "/webhooks/piopiy/cdr", cdr, headers: auth).status == 200)
        #expect(try post(port, "/webhooks/piopiy/cdr", cdr, headers: auth).status == 200)  // a re-send
        #expect(try post(port, "/webhooks/piopiy", liveEvent(call: "m", n: 3), headers: [:]).status == 401)
        #expect(collector.wait(for: 3) { !$0.topic.contains("/agents/") }.count == 3)
        #expect(waitUntil(seconds: 10) { daemon.outbox.metrics.pending.load(ordering: .relaxed) == 0 })

        let response = try HTTPTestClient.request(port: port, method: "GET", path: "/metrics")
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/plain") == true, "\(response.headers)")
        let metrics = try PrometheusExposition(response.bodyText)

        #expect(metrics.value("callrelay_webhooks_total", ["endpoint": "live", "result": "stored"]) == 2)
        #expect(metrics.value("callrelay_webhooks_total", ["endpoint": "cdr", "result": "stored"]) == 1)
        #expect(metrics.value("callrelay_webhooks_total", ["endpoint": "cdr", "result": "duplicate"]) == 1)
        #expect(metrics.value("callrelay_webhooks_total", ["endpoint": "combined", "result": "unauthorized"]) == 1)
        #expect(metrics.value("callrelay_outbox_stored_total") == 3)
        #expect(metrics.value("callrelay_outbox_duplicates_total") == 1)
        #expect(metrics.value("callrelay_outbox_write_failures_total") == 0)
        #expect(metrics.value("callrelay_outbox_pending_events") == 0)
        #expect(metrics.value("callrelay_outbox_oldest_pending_age_seconds") == 0)
        #expect(metrics.value("callrelay_mqtt_connected") == 1)
        #expect(metrics.value("callrelay_mqtt_published_total") == 3)
        #expect(metrics.value("callrelay_mqtt_acknowledged_total") == 3)
        #expect(metrics.value("callrelay_mqtt_failed_total") == 0)
        #expect(metrics.value("callrelay_mqtt_inflight_messages") == 0)
        #expect(metrics.value("callrelay_mqtt_reconnects_total") == 0)

        // The commit histogram: cumulative buckets ending in +Inf == count, at least one commit.
        let buckets = metrics.samples.filter { $0.name == "callrelay_outbox_commit_duration_seconds_bucket" }
        #expect(buckets.count == 13)
        #expect(buckets.last?.labels["le"] == "+Inf")
        #expect(zip(buckets, buckets.dropFirst()).allSatisfy { $0.value <= $1.value }, "buckets are cumulative")
        let count = try #require(metrics.value("callrelay_outbox_commit_duration_seconds_count"))
        #expect(buckets.last?.value == count)
        #expect(count >= 1)
        #expect((metrics.value("callrelay_outbox_commit_duration_seconds_sum") ?? -1) >= 0)
        await daemon.shutdown()
        collector.stop()
    }

    /// With the broker gone, the backlog shows: not connected, events pending, the oldest one aging;
    /// once it is back, the backlog drains and the lost connection is counted.
    @Test func aBacklogShowsWhileTheBrokerIsDownAndDrainsAfter() async throws {
        let broker = try MosquittoBroker()
        let configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        let port = daemon.httpPort
        #expect(waitUntil(seconds: 10) { daemon.client.isConnected })
        broker.stop()
        #expect(waitUntil(seconds: 10) { !daemon.client.isConnected })

        #expect(try post(port, "/webhooks/piopiy/live", liveEvent(call: "backlog", n: 1)).status == 200)
        #expect(try post(port, "/webhooks/piopiy/live", liveEvent(call: "backlog", n: 2)).status == 200)
        var metrics = try PrometheusExposition(try HTTPTestClient.request(port: port, method: "GET", path: "/metrics").bodyText)
        #expect(metrics.value("callrelay_mqtt_connected") == 0)
        #expect(metrics.value("callrelay_outbox_pending_events") == 2)
        // The oldest-age gauge is refreshed every few seconds.
        #expect(
            waitUntil(seconds: 15) {
                let text = (try? HTTPTestClient.request(port: port, method: "GET", path: "/metrics").bodyText) ?? ""
                return ((try? PrometheusExposition(text))?.value("callrelay_outbox_oldest_pending_age_seconds") ?? 0) > 0
            })

        try broker.start()
        #expect(waitUntil(seconds: 15) { daemon.outbox.metrics.pending.load(ordering: .relaxed) == 0 })
        metrics = try PrometheusExposition(try HTTPTestClient.request(port: port, method: "GET", path: "/metrics").bodyText)
        #expect(metrics.value("callrelay_mqtt_connected") == 1)
        #expect(metrics.value("callrelay_outbox_pending_events") == 0)
        #expect((metrics.value("callrelay_mqtt_reconnects_total") ?? 0) >= 1)
        #expect((metrics.value("callrelay_mqtt_acknowledged_total") ?? 0) >= 2)
        await daemon.shutdown()
    }
}

/// A strict reader of the Prometheus text format (0.0.4) for the parts callrelay uses: every
/// sample belongs to a family declared by one HELP and one TYPE line before it, names and labels
/// are well formed, counters end in `_total`, values parse.
struct PrometheusExposition {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct FormatError: Error, CustomStringConvertible {
        let description: String
    }

    private(set) var samples: [Sample] = []
    private(set) var types: [String: String] = [:]

    init(_ text: String) throws {
        guard text.hasSuffix("\n") else { throw FormatError(description: "the text must end with a newline") }
        var helps: Set<String> = []
        let nameChars = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:")
        func validName(_ name: some StringProtocol) -> Bool {
            !name.isEmpty && name.unicodeScalars.allSatisfy(nameChars.contains) && !(name.first?.isNumber ?? true)
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("# HELP ") {
                let parts = line.dropFirst(7).split(separator: " ", maxSplits: 1)
                guard parts.count == 2, validName(parts[0]), helps.insert(String(parts[0])).inserted else {
                    throw FormatError(description: "bad or repeated HELP line: \(line)")
                }
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                guard parts.count == 2, validName(parts[0]), ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[1]),
                    types[String(parts[0])] == nil, helps.contains(String(parts[0]))
                else { throw FormatError(description: "bad, repeated or HELP-less TYPE line: \(line)") }
                if parts[1] == "counter" && !parts[0].hasSuffix("_total") {
                    throw FormatError(description: "counter \(parts[0]) does not end in _total")
                }
                types[String(parts[0])] = String(parts[1])
            } else if line.hasPrefix("#") || line.isEmpty {
                throw FormatError(description: "unexpected line: \(line)")
            } else {
                let sample = try Self.parseSample(String(line), validName: validName)
                let family = types[sample.name] != nil ? sample.name : ["_bucket", "_sum", "_count"].lazy.compactMap { suffix in
                    sample.name.hasSuffix(suffix) ? String(sample.name.dropLast(suffix.count)) : nil
                }.first { types[$0] == "histogram" }
                guard let family, types[family] != nil else {
                    throw FormatError(description: "sample \(sample.name) has no TYPE line before it")
                }
                samples.append(sample)
            }
        }
    }

    private static func parseSample(_ line: String, validName: (Substring) -> Bool) throws -> Sample {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...].replacingOccurrences(of: "Inf", with: "inf"))
        else { throw FormatError(description: "no value: \(line)") }
        let series = line[..<space]
        var labels: [String: String] = [:]
        var name = series
        if let brace = series.firstIndex(of: "{") {
            guard series.hasSuffix("}") else { throw FormatError(description: "unclosed labels: \(line)") }
            name = series[..<brace]
            let body = series[series.index(after: brace)..<series.index(before: series.endIndex)]
            for pair in body.split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, validName(kv[0]), kv[1].hasPrefix("\""), kv[1].hasSuffix("\""), kv[1].count >= 2 else {
                    throw FormatError(description: "bad label \(pair): \(line)")
                }
                labels[String(kv[0])] = String(kv[1].dropFirst().dropLast())
            }
        }
        guard validName(name) else { throw FormatError(description: "bad metric name: \(line)") }
        return Sample(name: String(name), labels: labels, value: value)
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}
