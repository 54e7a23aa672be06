import CallRelayDelivery
import CallRelayIngest
import CallRelayMQTT
import Synchronization

/// `/metrics` in Prometheus text format, from counters only (never a database query on the
/// event loop).
struct MetricsText: Sendable {
    let ingest: IngestMetrics
    let pump: DeliveryPump
    let client: MosquittoClient

    func render() -> String {
        var out = "# HELP callrelay_webhooks_total Webhooks received, by endpoint and result.\n# TYPE callrelay_webhooks_total counter\n"
        for endpoint in IngestMetrics.Endpoint.allCases {
            for result in IngestMetrics.Result.allCases {
                out += "callrelay_webhooks_total{endpoint=\"\(endpoint.rawValue)\",result=\"\(result.rawValue)\"} \(ingest.count(endpoint, result))\n"
            }
        }
        out += "# HELP callrelay_mqtt_published_total Events handed to the MQTT client.\n# TYPE callrelay_mqtt_published_total counter\n"
        out += "callrelay_mqtt_published_total \(pump.publishedCount.load(ordering: .relaxed))\n"
        out += "# HELP callrelay_mqtt_acknowledged_total Events acknowledged by the broker (they left the outbox).\n# TYPE callrelay_mqtt_acknowledged_total counter\n"
        out += "callrelay_mqtt_acknowledged_total \(pump.acknowledgedCount.load(ordering: .relaxed))\n"
        out += "# HELP callrelay_mqtt_inflight Publishes waiting for the broker's acknowledgement.\n# TYPE callrelay_mqtt_inflight gauge\n"
        out += "callrelay_mqtt_inflight \(pump.inflightCount)\n"
        out += "# HELP callrelay_mqtt_connected 1 while connected to the broker.\n# TYPE callrelay_mqtt_connected gauge\n"
        out += "callrelay_mqtt_connected \(client.isConnected ? 1 : 0)\n"
        out += "# HELP callrelay_mqtt_reconnects_total Connections lost.\n# TYPE callrelay_mqtt_reconnects_total counter\n"
        out += "callrelay_mqtt_reconnects_total \(client.reconnects.load(ordering: .relaxed))\n"
        return out
    }
}
