import CallRelayConfig
import CallRelayDaemon
import CallRelayMQTT
import CallRelayTesting
import Foundation
import Testing

/// The retained call state (CONTRACT §9) against a real mosquitto: late subscribers, restarts,
/// the stale sweep and the clearing (issue 12).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CallStateTests {
    static func live(call: String, conversation: String, leg: String = "a", status: String, time: Int64, direction: String = "outbound") -> [UInt8] {
        Array(
            """
            {"appid":2222224,"cmiuuid":"\(call)","conversation_uuid":"\(conversation)","leg":"\(leg)","direction":"\(direction)",
             "status":"\(status)","from":"440000000000","to":"19170000000","time":\(time)}
            """.utf8)
    }

    static func missedCDR(call: String) -> [UInt8] {
        Array(
            """
            {"appid":2222224,"cmiuuid":"\(call)","conversation_uuid":"\(call)","leg":"a","direction":"inbound","status":"missed",
             "from":"440000000000","to":"19170000000","time":1725942871000,"start_time":1725942860,"end_time":1725942871}
            """.utf8)
    }

    /// The retained messages a new subscriber gets at once, by topic (the empty ones are clearings).
    static func retained(port: Int, expect count: Int) throws -> [String: [String: Any]] {
        let late = try MessageCollector(port: port, topic: "piopiy/+/calls/+")
        defer { late.stop() }
        let got = late.wait(for: count, seconds: 10)
        usleep(300_000)
        var byTopic: [String: [String: Any]] = [:]
        for m in late.received {
            #expect(m.retain, "a late subscriber gets call state as retained messages")
            byTopic[m.topic] = m.json ?? [:]
        }
        _ = got
        return byTopic
    }

    static func drained(_ daemon: Daemon) -> Bool {
        waitUntil(seconds: 15) {
            let text = (try? HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/metrics").bodyText) ?? ""
            return text.contains("\ncallrelay_outbox_pending_events 0\n")
        }
    }

    /// The documented flows, posted as PIOPIY sends them, and each in reverse order on a second
    /// agent: what subscribers see, message by message, and the same final retained state.
    static let flows: [(name: String, files: [String], states: [String], key: String)] = [
        ("outbound, legs a and b",
         ["live_out_started_leg_a.json", "live_out_answered_leg_a.json", "live_out_started_leg_b.json", "live_out_answered_leg_b.json",
          "inferred/live_out_hangup_leg_b.inferred.json", "inferred/live_out_hangup_leg_a.inferred.json"],
         ["started", "answered", "answered", "answered", "answered", "ended"], "GQqYoKtV3Tn25SVqbWwdzPkNwMBo9hhLwWadm9N71N5"),
        ("inbound answered",
         ["live_in_answered_leg_a.json", "inferred/live_in_answered_leg_b.inferred.json", "inferred/live_in_hangup_leg_b.inferred.json",
          "inferred/live_in_hangup_leg_a.current_style.inferred.json"],
         ["answered", "answered", "answered", "ended"], "a39e868b-a221-48db-ab5e-401147a5c619"),
        ("inbound missed, CDRs only", ["cdr_in_missed_leg_a.json", "inferred/cdr_in_missed_leg_b.inferred.json"], ["ended", "ended"],
         "33079756-faed-4a29-8b36-c8ead67e047c"),
        ("outbound answered, CDRs only", ["cdr_out_answered_leg_a.json", "inferred/cdr_out_answered_leg_b.inferred.json"], ["ended", "ended"],
         "a3438686-746c-48f4-93de-e57e4c72f8d3"),
        ("stream events, no conversation id", ["live_stream_connected.json", "live_stream_disconnected.json", "inferred/live_stream_error.inferred.json"],
         // The three samples share one `time`: disconnected outranks error, so the error changes nothing.
         ["started", "started"], "c4ec9bd2-efad-4296-aa5b-eeafa6aeeea0"),
    ]

    /// A state without its envelope.
    static func view(_ state: [String: Any]) -> NSDictionary {
        var s = state
        for k in ["seq", "updated_at", "last_event_id"] { s[k] = nil }
        return s as NSDictionary
    }

    @Test func theDocumentedFlowsGiveTheirGoldenSequencesAndEveryOrderTheSameEnd() async throws {
        let broker = try MosquittoBroker()
        let watcher = try MessageCollector(port: broker.port, topic: "piopiy/+/calls/+")
        var finals: [String: NSDictionary] = [:]
        for reversed in [false, true] {
            var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
            configuration.calls.enabled = true
            configuration.mqtt.topicPrefix = reversed ? "rev" : "piopiy"
            let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
            let collector = reversed ? try MessageCollector(port: broker.port, topic: "rev/+/calls/+") : watcher
            for flow in Self.flows {
                for file in reversed ? flow.files.reversed() : flow.files {
                    #expect(try post(daemon.httpPort, Fixtures.bytes(file)).status == 200, "\(file)")
                    // One at a time, so each webhook's state is published before the next arrives.
                    #expect(Self.drained(daemon))
                }
                let messages = collector.received.filter { $0.topic.hasSuffix("/calls/\(flow.key)") }.map { $0.json ?? [:] }
                if !reversed {
                    #expect(messages.map { $0["state"] as? String ?? "?" } == flow.states, "\(flow.name)")
                    #expect(messages.map { $0["seq"] as? Int ?? 0 } == Array(1...flow.states.count), "\(flow.name)")
                    finals[flow.key] = messages.last.map(Self.view)
                } else {
                    #expect(messages.last.map(Self.view) == finals[flow.key], "\(flow.name) in reverse order")
                }
            }
            if reversed { collector.stop() }
            await daemon.shutdown()
        }
        #expect(finals.count == Self.flows.count)
        watcher.stop()
    }

    @Test func aLateSubscriberReceivesEveryCurrentCall() async throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.calls.enabled = true
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        #expect(try post(daemon.httpPort, Self.live(call: "out-a", conversation: "conv-out", status: "out_started", time: 1_725_942_871_000)).status == 200)
        #expect(try post(daemon.httpPort, Self.live(call: "out-a", conversation: "conv-out", status: "out_answered", time: 1_725_942_872_000)).status == 200)
        #expect(try post(daemon.httpPort, Self.live(call: "in-a", conversation: "conv-in", status: "in_answered", time: 1_725_942_873_000, direction: "inbound")).status == 200)
        #expect(try post(daemon.httpPort, Self.missedCDR(call: "missed-1")).status == 200)
        #expect(Self.drained(daemon))

        let calls = try Self.retained(port: broker.port, expect: 3)
        #expect(calls.keys.sorted() == ["piopiy/2222224/calls/conv-in", "piopiy/2222224/calls/conv-out", "piopiy/2222224/calls/missed-1"])
        let out = calls["piopiy/2222224/calls/conv-out"] ?? [:]
        #expect(out["schema"] as? String == "callrelay.call-state.v1")
        #expect(out["state"] as? String == "answered" && out["seq"] as? Int == 2 && out["call_key"] as? String == "conv-out")
        #expect(calls["piopiy/2222224/calls/conv-in"]?["state"] as? String == "answered")
        #expect(calls["piopiy/2222224/calls/missed-1"]?["state"] as? String == "ended")
        #expect(calls["piopiy/2222224/calls/missed-1"]?["outcome"] as? String == "missed")
        let metrics = try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/metrics").bodyText
        #expect(metrics.contains("\ncallrelay_calls_active 2\n"), "\(metrics)")
        #expect(metrics.contains("\ncallrelay_calls_retained 3\n"))
        await daemon.shutdown()
    }

    @Test func theStateSurvivesSIGKILLAndGoesOnWhereItWas() throws {
        let broker = try MosquittoBroker()
        let directory = temporaryDirectory()
        let httpPort = try freeTCPPort()
        let config = try ProcessFaultTests.writeConfig(directory: directory, brokerPort: broker.port, httpPort: httpPort, clientID: "calls-kill")
        let agent = try ProcessFaultTests.start(config: config, httpPort: httpPort, directory: directory)
        #expect(try post(httpPort, Self.live(call: "k-a", conversation: "conv-kill", status: "in_answered", time: 1_725_942_871_000, direction: "inbound")).status == 200)
        #expect(try post(httpPort, Self.live(call: "k-b", conversation: "conv-kill", leg: "b", status: "in_answered", time: 1_725_942_872_000, direction: "inbound")).status == 200)
        #expect(waitUntil(seconds: 10) { ((try? Self.retained(port: broker.port, expect: 1))?["piopiy/2222224/calls/conv-kill"]?["seq"] as? Int) == 2 })
        kill(agent.pid, SIGKILL)
        #expect(waitForExit(agent.pid, seconds: 10) == 128 + SIGKILL)

        let restarted = try ProcessFaultTests.start(config: config, httpPort: httpPort, directory: directory)
        #expect(try post(httpPort, Self.live(call: "k-a", conversation: "conv-kill", status: "in_hangup", time: 1_725_942_900_000, direction: "inbound")).status == 200)
        var state: [String: Any] = [:]
        #expect(
            waitUntil(seconds: 10) {
                state = (try? Self.retained(port: broker.port, expect: 1))?["piopiy/2222224/calls/conv-kill"] ?? [:]
                return state["seq"] as? Int == 3
            }, "\(state)")
        #expect(state["state"] as? String == "ended" && state["outcome"] as? String == "answered")
        let legs = state["legs"] as? [String: Any]
        #expect(legs?.keys.sorted() == ["a", "b"], "leg b, known only before the kill, is still there")
        #expect(state["answered_at"] as? String == "2024-09-10T04:34:31.000Z")
        kill(restarted.pid, SIGTERM)
        #expect(waitForExit(restarted.pid, seconds: 20) == 0)
    }

    @Test func pastMaxCallsTheOldestCallsAreForgottenAndTheirRetainedStateCleared() async throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.calls.enabled = true
        configuration.calls.maxCalls = 100
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        for n in 0...100 {
            let body = Self.live(call: "cap-\(n)", conversation: "cap-conv-\(n)", status: "out_started", time: 1_725_942_871_000 + Int64(n))
            #expect(try post(daemon.httpPort, body).status == 200)
        }
        #expect(Self.drained(daemon))
        let calls = try Self.retained(port: broker.port, expect: 75)
        #expect(calls.count == 75, "the 26 least recently active are cleared")
        #expect(calls["piopiy/2222224/calls/cap-conv-0"] == nil && calls["piopiy/2222224/calls/cap-conv-25"] == nil)
        #expect(calls["piopiy/2222224/calls/cap-conv-26"] != nil && calls["piopiy/2222224/calls/cap-conv-100"] != nil)
        let metrics = try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/metrics").bodyText
        #expect(metrics.contains("\ncallrelay_calls_evicted_total 26\n") && metrics.contains("\ncallrelay_calls_tracked 75\n"), "\(metrics)")
        await daemon.shutdown()
    }

    @Test func aSilentCallEndsStaleAndAnEndedCallIsClearedAfterItsTime() async throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.calls.enabled = true
        configuration.calls.staleAfterSeconds = 2
        configuration.calls.clearAfterSeconds = 3
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        let watcher = try MessageCollector(port: broker.port, topic: "piopiy/+/calls/+")
        #expect(try post(daemon.httpPort, Self.live(call: "s-a", conversation: "conv-stale", status: "out_started", time: 1_725_942_871_000)).status == 200)
        let stale = watcher.wait(for: 2, seconds: 10) { $0.topic.hasSuffix("/conv-stale") }
        #expect(stale.count == 2)
        let last = stale.last?.json ?? [:]
        #expect(last["state"] as? String == "ended" && last["outcome"] as? String == "stale", "\(last)")
        #expect(stale.last?.retain == false, "a live subscriber gets it as a normal message")
        let cleared = watcher.wait(for: 3, seconds: 10) { $0.topic.hasSuffix("/conv-stale") }
        #expect(cleared.count == 3 && cleared.last?.payload.isEmpty == true, "the clearing is an empty message")
        #expect(Self.drained(daemon))
        #expect(try Self.retained(port: broker.port, expect: 1).isEmpty, "nothing retained is left for that call")
        watcher.stop()
        await daemon.shutdown()
    }

    @Test func afterAnOutageOnlyTheNewestStateOfEachCallIsPublishedAfterItsEvents() async throws {
        // The subscriber's session outlives the outage: it misses nothing published after it.
        let broker = try MosquittoBroker(persistent: true)
        let all = try MessageCollector(port: broker.port, topic: "piopiy/#", persistentSession: true)
        broker.stop()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.calls.enabled = true
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        let flow = [("out_started", "a"), ("out_answered", "a"), ("out_bridged", "b"), ("out_hangup", "a")]
        for (i, (status, leg)) in flow.enumerated() {
            let body = Self.live(call: "o-\(leg)", conversation: "conv-outage", leg: leg, status: status, time: 1_725_942_871_000 + Int64(i) * 1000)
            #expect(try post(daemon.httpPort, body).status == 200)
        }
        try broker.start()
        #expect(Self.drained(daemon))
        let received = all.wait(for: 5, seconds: 10) { !$0.topic.contains("/agents/") }
        usleep(500_000)
        let messages = all.received.filter { !$0.topic.contains("/agents/") }
        let topics = messages.map { $0.topic.contains("/calls/") ? "state" : "event" }
        // (A subscriber that subscribes again, as this one does at reconnect, also gets the retained copy.)
        #expect(Array(topics.prefix(5)) == ["event", "event", "event", "event", "state"], "the state comes after the event that made it")
        let states = messages.filter { $0.topic.contains("/calls/") }.map { $0.json ?? [:] }
        #expect(!states.isEmpty && states.allSatisfy { $0["seq"] as? Int == 4 && $0["state"] as? String == "ended" }, "\(states)")
        let metrics = try HTTPTestClient.request(port: daemon.httpPort, method: "GET", path: "/metrics").bodyText
        #expect(metrics.contains("\ncallrelay_call_state_superseded_total 3\n"), "\(metrics)")
        all.stop()
        await daemon.shutdown()
    }

    @Test func callStateOffPublishesNoStateMessages() async throws {
        let broker = try MosquittoBroker()
        var configuration = testConfiguration(brokerPort: broker.port, directory: temporaryDirectory())
        configuration.calls.enabled = false
        let daemon = try await Daemon.start(configuration: configuration, logger: testLogger())
        #expect(try post(daemon.httpPort, Self.live(call: "o-a", conversation: "conv-off", status: "out_started", time: 1_725_942_871_000)).status == 200)
        #expect(Self.drained(daemon))
        #expect(try Self.retained(port: broker.port, expect: 1).isEmpty)
        await daemon.shutdown()
    }
}
