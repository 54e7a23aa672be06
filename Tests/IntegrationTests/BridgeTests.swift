import CallRelayConfig
import CallRelayDaemon
import CallRelayMQTT
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Synchronization
import Testing

/// Issue #10, the scale path (docs/scaling.md): callrelay publishes to a gateway-local mosquitto
/// bridged to a central broker, as the guide configures the bridge (QoS 1, `cleansession false`,
/// `max_queued_messages 0`, persistence). The central broker is down during a burst; once it is
/// back, every event reaches the central subscriber.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BridgeTests {
    @Test func aBurstWhileTheCentralBrokerIsDownArrivesInFullThroughTheBridge() async throws {
        // The central broker queues for its consumers as much as a gateway's backlog holds (the
        // stock limit of 1,000 queued messages per client drops the rest of a burst).
        let central = try MosquittoBroker(persistent: true, extraConfig: "max_queued_messages 0")
        let bridgeID = "gateway-bridge-\(UUID().uuidString.prefix(6))"
        let local = try MosquittoBroker(
            persistent: true,
            extraConfig: """
                max_queued_messages 0
                connection central
                address 127.0.0.1:\(central.port)
                topic piopiy/# out 1
                cleansession false
                clientid \(bridgeID)
                restart_timeout 1
                """)
        // A consumer of the central broker with a persistent session, as the guide advises.
        let collector = try MessageCollector(
            port: central.port, topic: "piopiy/+/live/#", qos: 1, clientID: "crm-\(UUID().uuidString.prefix(6))", persistentSession: true)
        let daemon = try await Daemon.start(
            configuration: testConfiguration(brokerPort: local.port, directory: temporaryDirectory()), logger: testLogger())
        #expect(waitUntil(seconds: 10) { daemon.client.isConnected })
        // The bridge is up when an event goes through end to end.
        let probe = try post(daemon.httpPort, "/webhooks/piopiy/live", liveEvent(call: "bridge-probe", n: 0))
        #expect(collector.wait(for: 1, seconds: 20).first?.json?["id"] as? String == probe.json?["id"] as? String)

        central.stop()
        var ids = Set<String>()
        for n in 1...2000 {
            let r = try post(daemon.httpPort, "/webhooks/piopiy/live", liveEvent(call: "bridge-\(n % 40)", n: n))
            #expect(r.status == 200)
            if let id = r.json?["id"] as? String { ids.insert(id) }
        }
        // callrelay hands everything to the local broker: its outbox is empty, the bridge queue holds them.
        #expect(waitUntil(seconds: 30) { daemon.outbox.metrics.pending.load(ordering: .relaxed) == 0 })
        try central.start()
        _ = collector.wait(for: 2001, seconds: 60) { _ in true }
        let got = Set(collector.received.compactMap { $0.json?["id"] as? String })
        let lost = ids.subtracting(got).count
        #expect(lost == 0, "\(lost) of 2000 lost through the bridge; local broker log: \(local.log.suffix(800)); central: \(central.log.suffix(800))")
        print("bridge: \(ids.intersection(got).count) of 2000 arrived at the central broker")
        await daemon.shutdown()
        collector.stop()
        local.stop()
        central.stop()
    }
}
