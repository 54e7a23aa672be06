import CallRelayDelivery
import CallRelayIngest
import CallRelayMQTT
import CallRelayOutbox
import Synchronization

/// `GET /metrics` in the Prometheus text exposition format (version 0.0.4).
///
/// Rendered on an NIO event loop, so it reads only in-memory counters and gauges (atomics and the
/// pump's small lock), never the database. Names follow the Prometheus conventions: a
/// `callrelay_` prefix, base units (`_seconds`), `_total` on counters, one HELP and TYPE line per
/// family. docs/operations.md lists them with what to alert on.
struct MetricsText: Sendable {
    let ingest: IngestMetrics
    let pump: DeliveryPump
    let client: MosquittoClient
    let outbox: SQLiteOutbox
    /// The call state, when `calls.enabled`.
    let calls: CallStateCompanion?

    func render() -> String { render(nowMilliseconds: SQLiteOutbox.nowMilliseconds()) }

    func render(nowMilliseconds: Int64) -> String {
        var out = PrometheusText()

        // HTTP intake.
        out.family(
            "callrelay_webhooks_total", .counter,
            "Webhooks received, by endpoint (cdr, live, combined) and result (stored, duplicate, bad_request, unauthorized, too_large, unavailable).")
        for endpoint in IngestMetrics.Endpoint.allCases {
            for result in IngestMetrics.Result.allCases {
                out.sample(
                    "callrelay_webhooks_total", labels: [("endpoint", endpoint.rawValue), ("result", result.rawValue)],
                    ingest.count(endpoint, result))
            }
        }

        out.family(
            "callrelay_http_refused_total", .counter,
            "Requests and connections refused before a webhook handler, by reason (forbidden 403, rate_limited 429, malformed 400, unsupported 405/417/501, header_timeout and body_timeout 408, idle_timeout, over_connection_limit, tls_handshake).")
        for refusal in IngestMetrics.Refusal.allCases {
            out.sample("callrelay_http_refused_total", labels: [("reason", refusal.rawValue)], ingest.count(refusal))
        }
        out.family("callrelay_http_open_connections", .gauge, "Client connections open on the webhook listener (at most http.max_connections).")
        out.sample("callrelay_http_open_connections", ingest.openConnections.load(ordering: .relaxed))
        out.family(
            "callrelay_http_accept_errors_total", .counter,
            "Failed accepts (out of file descriptors or memory); each pauses accepting for a second instead of spinning.")
        out.sample("callrelay_http_accept_errors_total", ingest.acceptErrors.load(ordering: .relaxed))
        out.family("callrelay_http_tls_reloads_total", .counter, "Certificate reloads on SIGHUP, by result (ok, failed: the old pair stays in use).")
        out.sample("callrelay_http_tls_reloads_total", labels: [("result", "ok")], ingest.tlsReloads.load(ordering: .relaxed))
        out.sample("callrelay_http_tls_reloads_total", labels: [("result", "failed")], ingest.tlsReloadFailures.load(ordering: .relaxed))

        // Outbox.
        let m = outbox.metrics
        out.family("callrelay_outbox_stored_total", .counter, "Events committed to the outbox (each answered 200 with duplicate false).")
        out.sample("callrelay_outbox_stored_total", m.stored.load(ordering: .relaxed))
        out.family("callrelay_outbox_duplicates_total", .counter, "Webhooks recognized as a re-send of a stored event (answered 200 with duplicate true, not published again).")
        out.sample("callrelay_outbox_duplicates_total", m.duplicates.load(ordering: .relaxed))
        out.family("callrelay_outbox_write_failures_total", .counter, "Outbox writes that failed (answered 503): outbox full or storage errors.")
        out.sample("callrelay_outbox_write_failures_total", m.writeFailures.load(ordering: .relaxed))
        out.family("callrelay_outbox_pending_events", .gauge, "Events stored and not yet acknowledged by the broker.")
        out.sample("callrelay_outbox_pending_events", m.pending.load(ordering: .relaxed))
        let oldest = m.oldestPendingReceivedAtMilliseconds.load(ordering: .relaxed)
        out.family(
            "callrelay_outbox_oldest_pending_age_seconds", .gauge,
            "Age of the oldest event waiting for the broker, 0 when none waits (refreshed every few seconds).")
        out.sample("callrelay_outbox_oldest_pending_age_seconds", oldest == 0 ? 0 : Double(max(0, nowMilliseconds - oldest)) / 1000)
        out.family(
            "callrelay_outbox_dead_letters", .gauge,
            "Events the broker kept refusing, moved out of the queue (listed by `callrelay status`, published again by `callrelay replay`).")
        out.sample("callrelay_outbox_dead_letters", m.deadLetters.load(ordering: .relaxed))
        out.family(
            "callrelay_outbox_pruned_for_space_total", .counter,
            "Delivered events deleted before their retention ended, to make room at storage.max_bytes or on a nearly full disk.")
        out.sample("callrelay_outbox_pruned_for_space_total", m.prunedForSpace.load(ordering: .relaxed))
        out.family(
            "callrelay_outbox_delivery_reads_total", .counter,
            "Events handed to the delivery pump, by where they came from: memory (just committed) or disk (a backlog read back).")
        out.sample("callrelay_outbox_delivery_reads_total", labels: [("source", "memory")], m.fetchedFromMemory.load(ordering: .relaxed))
        out.sample("callrelay_outbox_delivery_reads_total", labels: [("source", "disk")], m.fetchedFromDisk.load(ordering: .relaxed))
        out.family("callrelay_outbox_wal_bytes", .gauge, "Bytes in the outbox's write-ahead log after the last commit (kept under storage.max_bytes / 8, at most 32 MiB; truncated when idle).")
        out.sample("callrelay_outbox_wal_bytes", m.walBytes.load(ordering: .relaxed))
        out.family("callrelay_outbox_wal_frames_total", .counter, "WAL frames (one page plus a 24-byte header each) written by the outbox's commits; ÷ commits = pages per commit.")
        out.sample("callrelay_outbox_wal_frames_total", m.walFramesWritten.load(ordering: .relaxed))
        out.family(
            "callrelay_outbox_storage_fault", .gauge,
            "1 once the outbox found its file damaged or the disk failing while running: it refuses webhooks (503) and the agent stops (exit 74) for a checked restart.")
        out.sample("callrelay_outbox_storage_fault", m.storageFaults.load(ordering: .relaxed))
        let recovery = m.recovery.withLock { $0 }
        out.family(
            "callrelay_outbox_set_aside", .gauge,
            "1 when this start found the outbox damaged and moved it aside (the log names the file), else 0.")
        out.sample("callrelay_outbox_set_aside", recovery == nil ? 0 : 1)
        out.family(
            "callrelay_outbox_salvaged_events", .gauge,
            "Pending events this start read from a damaged outbox and stored again in the fresh one.")
        out.sample("callrelay_outbox_salvaged_events", recovery?.salvaged ?? 0)
        out.family(
            "callrelay_outbox_unreadable_events", .gauge,
            "Pending events of a damaged outbox that this start could not read (-1: the file could not say how many).")
        out.sample("callrelay_outbox_unreadable_events", recovery.map { $0.unreadable ?? -1 } ?? 0)
        if let calls {
            out.family("callrelay_calls_active", .gauge, "Calls started and not yet ended (CONTRACT §9).")
            out.sample("callrelay_calls_active", calls.activeCalls.load(ordering: .relaxed))
            out.family("callrelay_calls_retained", .gauge, "Calls whose state is retained on the broker: active, or ended and not yet cleared.")
            out.sample("callrelay_calls_retained", calls.retainedCalls.load(ordering: .relaxed))
            out.family("callrelay_call_state_messages_total", .counter, "Call-state messages (and clearings) stored in the outbox for publishing.")
            out.sample("callrelay_call_state_messages_total", calls.messages.load(ordering: .relaxed))
            out.family(
                "callrelay_call_state_superseded_total", .counter,
                "Call-state messages not published because a newer state of the same call was already stored (retained topics keep only the newest).")
            out.sample("callrelay_call_state_superseded_total", calls.skipped.load(ordering: .relaxed))
            out.family("callrelay_calls_tracked", .gauge, "Calls kept in memory, cleared ones remembered for late webhooks included (at most calls.max_calls).")
            out.sample("callrelay_calls_tracked", calls.trackedCalls.load(ordering: .relaxed))
            out.family(
                "callrelay_calls_evicted_total", .counter,
                "Calls forgotten to stay within calls.max_calls (the least recently active first; a retained state is cleared).")
            out.sample("callrelay_calls_evicted_total", calls.evictedCalls.load(ordering: .relaxed))
        }
        out.family("callrelay_outbox_max_bytes", .gauge, "storage.max_bytes: the bound on the database, WAL and SHM files together.")
        out.sample("callrelay_outbox_max_bytes", Int(outbox.space.maxBytes))
        out.family("callrelay_outbox_checkpoints_total", .counter, "WAL checkpoints the writer ran to restart the log (result=busy: a reader kept one from completing).")
        out.sample("callrelay_outbox_checkpoints_total", labels: [("result", "done")], m.checkpoints.load(ordering: .relaxed))
        out.sample("callrelay_outbox_checkpoints_total", labels: [("result", "busy")], m.checkpointsBusy.load(ordering: .relaxed))
        out.family("callrelay_outbox_checkpoint_seconds_total", .counter, "Time the writer spent in those checkpoints (webhooks wait meanwhile).")
        out.sample("callrelay_outbox_checkpoint_seconds_total", Double(m.checkpointMicros.load(ordering: .relaxed)) / 1e6)
        let histogram = m.commitHistogram()
        out.family(
            "callrelay_outbox_commit_duration_seconds", .histogram,
            "Duration of outbox group commits (BEGIN to COMMIT, including the fsync); each commit holds up to 512 webhooks.")
        for bucket in histogram.buckets {
            out.sample("callrelay_outbox_commit_duration_seconds_bucket", labels: [("le", PrometheusText.number(bucket.le))], bucket.count)
        }
        out.sample("callrelay_outbox_commit_duration_seconds_sum", histogram.sum)
        out.sample("callrelay_outbox_commit_duration_seconds_count", histogram.count)

        // MQTT.
        out.family("callrelay_mqtt_connected", .gauge, "1 while connected to the broker, else 0.")
        out.sample("callrelay_mqtt_connected", client.isConnected ? 1 : 0)
        out.family("callrelay_mqtt_reconnects_total", .counter, "Broker connections lost (each followed by reconnect attempts with backoff).")
        out.sample("callrelay_mqtt_reconnects_total", client.reconnects.load(ordering: .relaxed))
        out.family("callrelay_mqtt_published_total", .counter, "Events handed to the MQTT client for publishing (re-publishes after a reconnect count again).")
        out.sample("callrelay_mqtt_published_total", pump.publishedCount.load(ordering: .relaxed))
        out.family(
            "callrelay_mqtt_acknowledged_total", .counter,
            "Events acknowledged by the broker (PUBACK, PUBCOMP; QoS 0: written), after which they leave the outbox.")
        out.sample("callrelay_mqtt_acknowledged_total", pump.acknowledgedCount.load(ordering: .relaxed))
        out.family("callrelay_mqtt_failed_total", .counter, "Publishes the MQTT client refused (not counting \"not connected\"); each is retried.")
        out.sample("callrelay_mqtt_failed_total", pump.failedCount.load(ordering: .relaxed))
        out.family("callrelay_mqtt_inflight_messages", .gauge, "Publishes waiting for the broker's acknowledgement (at most callrelay_mqtt_inflight_window).")
        out.sample("callrelay_mqtt_inflight_messages", pump.inflightCount)
        out.family(
            "callrelay_mqtt_inflight_window", .gauge,
            "The session's in-flight window: mqtt.max_inflight, bounded by the broker's Receive Maximum (MQTT 5), or by 20 at QoS 2 on MQTT 3.1.1.")
        out.sample("callrelay_mqtt_inflight_window", pump.sessionWindow)
        let version = client.protocolVersion
        out.family("callrelay_mqtt_protocol_info", .gauge, "1 for the MQTT version of the current (or next) connection: 5 or 3.1.1.")
        for candidate in ["5", "3.1.1"] {
            out.sample("callrelay_mqtt_protocol_info", labels: [("version", candidate)], version.rawValue == candidate ? 1 : 0)
        }
        out.family(
            "callrelay_mqtt_acknowledgements_total", .counter,
            "Broker answers to publishes by MQTT 5 reason code (3.1.1 has none: all \"success\"). \"no matching subscribers\" is a delivery; 0x80 and above are refusals, retried.")
        let byReason = client.acknowledgementsByReason
        for code in ([.success, .noMatchingSubscribers] + byReason.keys.filter { $0 != .success && $0 != .noMatchingSubscribers }.sorted { $0.value < $1.value }) {
            out.sample("callrelay_mqtt_acknowledgements_total", labels: [("reason", code.name)], byReason[code, default: 0])
        }
        out.family("callrelay_mqtt_refused_total", .counter, "Publishes the broker refused (MQTT 5 reason code 0x80 or above); each is retried, then dead-lettered.")
        out.sample("callrelay_mqtt_refused_total", pump.refusedCount.load(ordering: .relaxed))
        out.family("callrelay_mqtt_retry_waiting_messages", .gauge, "Refused events waiting for their next attempt.")
        out.sample("callrelay_mqtt_retry_waiting_messages", pump.retryingCount)
        out.family("callrelay_mqtt_retain_available", .gauge, "0 when the broker said (MQTT 5) it does not keep retained messages: presence is then not retained.")
        out.sample("callrelay_mqtt_retain_available", (client.session?.retainAvailable ?? true) ? 1 : 0)
        return out.text
    }
}

/// Builds the text exposition format: HELP/TYPE lines and samples.
struct PrometheusText {
    enum Kind: String {
        case counter, gauge, histogram
    }

    private(set) var text = ""

    mutating func family(_ name: String, _ kind: Kind, _ help: String) {
        let escaped = help.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
        text += "# HELP \(name) \(escaped)\n# TYPE \(name) \(kind.rawValue)\n"
    }

    mutating func sample(_ name: String, labels: [(String, String)] = [], _ value: Int) {
        line(name, labels, String(value))
    }

    mutating func sample(_ name: String, labels: [(String, String)] = [], _ value: Double) {
        line(name, labels, Self.number(value))
    }

    private mutating func line(_ name: String, _ labels: [(String, String)], _ value: String) {
        text += name
        if !labels.isEmpty {
            text += "{"
            text += labels.map { key, value in
                let escaped = value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
                return "\(key)=\"\(escaped)\""
            }.joined(separator: ",")
            text += "}"
        }
        text += " \(value)\n"
    }

    /// `0.005`, `1`, `2.5`, `+Inf`.
    static func number(_ value: Double) -> String {
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value.isNaN { return "NaN" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
