import CMosquitto
import Glibc
import Logging
import Synchronization

/// Everything the client needs to reach the broker.
package struct MQTTConnectionOptions: Sendable {
    package struct Will: Sendable {
        package var topic: String
        package var payload: [UInt8]
        package var qos: MQTTQoS
        package var retain: Bool
        package init(topic: String, payload: [UInt8], qos: MQTTQoS, retain: Bool) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
        }
    }

    package var host: String
    package var port: Int
    package var clientID: String
    package var username: String?
    package var password: String?
    package var keepaliveSeconds: Int = 30
    package var caFile: String?
    package var certFile: String?
    package var keyFile: String?
    package var tlsInsecure = false
    /// The agent publishes only and re-sends from its own outbox, so a clean session is right for it;
    /// test subscribers use a persistent session to survive broker restarts.
    package var cleanSession = true
    package var will: Will?
    /// Messages libmosquitto keeps in flight (MQTT receive maximum on our side).
    package var maxInflight = 100
    package var backoff = ReconnectBackoff(minimumMilliseconds: 500, maximumMilliseconds: 30_000)
    /// `mqtt.protocol`.
    package var protocolPreference: MQTTProtocolPreference = .auto

    package init(host: String, port: Int, clientID: String) {
        self.host = host
        self.port = port
        self.clientID = clientID
    }
}

/// What the client reports, on its network thread.
package enum MQTTClientEvent: Sendable {
    /// CONNACK accepted, with what it said about the session.
    case connected(MQTTSessionInfo)
    /// The connection is gone (or a connect attempt failed); `reason` is for the log.
    case disconnected(reason: String)
    /// The broker answered message `mid`: PUBACK, PUBCOMP, or (MQTT 5) a PUBREC refusing it; QoS 0:
    /// written to the socket. `reason` ≥ 0x80 means the broker did not take it (on 3.1.1 it is
    /// always 0: a broker that drops the message cannot say so).
    case published(mid: Int32, reason: MQTTReasonCode)
    /// A message arrived on a subscription.
    case message(MQTTMessage)
}

/// A message received on a subscription.
package struct MQTTMessage: Sendable {
    package var topic: String
    package var payload: [UInt8]
    package var retain: Bool
    /// MQTT 5 properties (empty on 3.1.1).
    package var properties: MQTTPublishProperties
}

/// The one Swift type around a libmosquitto client handle. Every `mosquitto_*` call of callrelay is
/// in this folder.
///
/// Threading: the client runs its own network thread (`start()`), which connects, runs
/// `mosquitto_loop`, and reconnects with capped exponential backoff and jitter. All callbacks and
/// `onEvent` calls happen on that thread. `publish`/`subscribe` may be called from any thread
/// (`mosquitto_threaded_set(true)`: libmosquitto then queues the packet and wakes the loop).
/// libmosquitto keeps unacknowledged QoS>0 messages across reconnects and re-sends them with DUP.
///
/// The C callbacks are free functions that find this object through the userdata pointer
/// (unretained): `stop()` joins the network thread, so the object must be kept alive until then.
package final class MosquittoClient: Sendable {
    private struct Handle: @unchecked Sendable { let raw: OpaquePointer }
    private struct State {
        var running = false
        /// `stop()` sent DISCONNECT: end the loop once it is written, never reconnect.
        var stopRequested = false
        var connected = false
        var thread: pthread_t?
        var subscriptions: [(String, Int32)] = []
        /// The last error line libmosquitto logged (e.g. the OpenSSL reason of a TLS failure).
        var lastLibraryError: String?
        /// A CONNACK or a disconnect callback arrived since the last connect attempt began.
        var attemptReported = false
        var lifecycle: ConnectionLifecycle
        /// What the last accepted CONNACK said (nil until the first).
        var session: MQTTSessionInfo?
    }

    private static let libraryInit: Bool = {
        mosquitto_lib_init()
        return true
    }()

    package let options: MQTTConnectionOptions
    private let handle: Handle
    /// Held around every use of the handle from outside the network thread, and while the
    /// network thread reinitialises it.
    private let handleLock = Mutex(())
    private let state: Mutex<State>
    private let onEvent: @Sendable (MQTTClientEvent) -> Void
    private let logger: Logger
    package let reconnects = Atomic<Int>(0)
    /// SUBACKs received (every subscription, after every connect); lets a caller wait until its
    /// subscription is active before causing the message it waits for.
    package let subscriptionsAcknowledged = Atomic<Int>(0)
    private let reasons = Mutex<[MQTTReasonCode: Int]>([:])

    /// Acknowledgements received so far, by reason code (3.1.1: all `success`).
    package var acknowledgementsByReason: [MQTTReasonCode: Int] { reasons.withLock { $0 } }

    package init(
        options: MQTTConnectionOptions, logger: Logger = Logger(label: "callrelay.mqtt"),
        onEvent: @escaping @Sendable (MQTTClientEvent) -> Void
    ) throws(MosquittoError) {
        _ = Self.libraryInit
        guard let raw = mosquitto_new(options.clientID, options.cleanSession, nil) else {
            throw MosquittoError(code: Int32(MOSQ_ERR_NOMEM.rawValue))
        }
        self.options = options
        self.state = Mutex(State(lifecycle: ConnectionLifecycle(preference: options.protocolPreference)))
        self.handle = Handle(raw: raw)
        self.onEvent = onEvent
        self.logger = logger
        do throws(MosquittoError) {
            try configure(raw)
        } catch {
            mosquitto_destroy(raw)
            throw error
        }
    }

    /// Applies every option to a fresh (or reinitialised) handle.
    private func configure(_ raw: OpaquePointer) throws(MosquittoError) {
        mosquitto_user_data_set(raw, Unmanaged.passUnretained(self).toOpaque())
        // The v5 callbacks also serve 3.1.1 sessions (reason codes 0, no properties); the v3
        // publish callback is not called for a PUBREC that refuses a message.
        mosquitto_connect_v5_callback_set(raw, onConnectC)
        mosquitto_disconnect_v5_callback_set(raw, onDisconnectC)
        mosquitto_publish_v5_callback_set(raw, onPublishC)
        mosquitto_message_v5_callback_set(raw, onMessageC)
        mosquitto_subscribe_callback_set(raw, onSubscribeC)
        mosquitto_threaded_set(raw, true)
        let version = state.withLock { $0.lifecycle.protocolVersion }
        mosquitto_int_option(raw, MOSQ_OPT_PROTOCOL_VERSION, version == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311)
        mosquitto_int_option(raw, MOSQ_OPT_TCP_NODELAY, 1)
        mosquitto_max_inflight_messages_set(raw, UInt32(max(1, options.maxInflight)))
        if let username = options.username, !username.isEmpty {
            try check(mosquitto_username_pw_set(raw, username, options.password))
        }
        if let will = options.will {
            let retain = will.retain && state.withLock { $0.lifecycle.willRetained }
            try check(will.payload.withUnsafeBytes { buf in
                mosquitto_will_set(raw, will.topic, Int32(buf.count), buf.baseAddress, Int32(will.qos.rawValue), retain)
            })
        }
        if options.caFile != nil || options.certFile != nil {
            try check(mosquitto_tls_set(raw, options.caFile, nil, options.certFile, options.keyFile, nil))
            try check(mosquitto_tls_insecure_set(raw, options.tlsInsecure))
        }
    }

    /// Drops the session's unacknowledged messages (the delivery pump re-publishes them from the
    /// outbox after the reconnect; see `DeliveryPump`). Network thread only, between loop calls.
    private func resetSession() {
        handleLock.withLock { _ in
            let raw = handle.raw
            mosquitto_reinitialise(raw, options.clientID, options.cleanSession, Unmanaged.passUnretained(self).toOpaque())
            do throws(MosquittoError) {
                try configure(raw)
            } catch {
                logger.error("reconfiguring the MQTT client failed", metadata: ["error": "\(error)"])
            }
        }
    }

    deinit { mosquitto_destroy(handle.raw) }

    package var isConnected: Bool { state.withLock { $0.connected } }

    /// What the broker's last accepted CONNACK said (nil before the first).
    package var session: MQTTSessionInfo? { state.withLock { $0.session } }

    /// The version the next (or current) CONNECT uses: `mqtt.protocol`, or 3.1.1 after "auto"
    /// fell back.
    package var protocolVersion: MQTTProtocolVersion { state.withLock { $0.lifecycle.protocolVersion } }

    // MARK: Network thread

    /// Starts the network thread; it connects and keeps reconnecting until `stop()`.
    package func start() {
        let alreadyRunning = state.withLock { s in
            if s.running { return true }
            s.running = true
            return false
        }
        if alreadyRunning { return }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { context in
            let client = Unmanaged<MosquittoClient>.fromOpaque(context!).takeRetainedValue()
            client.runLoop()
            return nil
        }, context)
        state.withLock { $0.thread = thread }
    }

    private var isRunning: Bool { state.withLock { $0.running } }

    private func runLoop() {
        let raw = handle.raw
        while isRunning {
            // libmosquitto's log is only listened to while connecting: it formats a line per packet,
            // and connecting is when its error lines explain something (the OpenSSL reason of a TLS
            // failure). `handleConnect` turns it off again.
            mosquitto_log_callback_set(raw, onLogC)
            state.withLock { $0.attemptReported = false }
            let rc = connect(raw)
            if rc != Int32(MOSQ_ERR_SUCCESS.rawValue) {
                let reason = failureReason(rc)
                perform(state.withLock { $0.lifecycle.connectFailed(reason: reason) })
                continue
            }
            // Run the session until the connection drops.
            var loopError = Int32(MOSQ_ERR_SUCCESS.rawValue)
            while isRunning {
                let rc = mosquitto_loop(raw, 100, 1)
                if rc != Int32(MOSQ_ERR_SUCCESS.rawValue) {
                    loopError = rc
                    break
                }
            }
            guard isRunning, !state.withLock({ $0.stopRequested }) else { break }
            let reason = failureReason(loopError)
            perform(state.withLock { s in s.lifecycle.sessionEnded(acknowledged: s.attemptReported, reason: reason, now: monotonicSeconds()) })
        }
    }

    /// `mosquitto_connect`, with (MQTT 5, persistent session) a Session Expiry Interval: without
    /// one an MQTT 5 broker ends the session at the first disconnect, whatever the clean flag says.
    private func connect(_ raw: OpaquePointer) -> Int32 {
        let v5 = state.withLock { $0.lifecycle.protocolVersion } == .v5
        guard v5, !options.cleanSession else {
            return mosquitto_connect(raw, options.host, Int32(options.port), Int32(options.keepaliveSeconds))
        }
        var properties: OpaquePointer? = nil
        defer { mosquitto_property_free_all(&properties) }
        _ = mosquitto_property_add_int32(&properties, Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), UInt32.max)
        return mosquitto_connect_bind_v5(raw, options.host, Int32(options.port), Int32(options.keepaliveSeconds), nil, properties)
    }

    /// What a libmosquitto return code means, with libmosquitto's last error line when it logged one.
    private func failureReason(_ rc: Int32) -> String {
        withLibraryDetail(rc == Int32(MOSQ_ERR_ERRNO.rawValue) ? String(cString: strerror(errno)) : MosquittoError(code: rc).description)
    }

    private func perform(_ actions: [ConnectionLifecycle.Action]) {
        for action in actions {
            switch action {
            case .warn(let message, let reason):
                logger.warning("\(message)", metadata: ["broker": "\(options.host):\(options.port)", "error": "\(reason)"])
            case .reportDisconnected(let reason):
                onEvent(.disconnected(reason: reason))
            case .sessionLost:
                state.withLock { $0.connected = false }
                reconnects.add(1, ordering: .relaxed)
            case .resetSession:
                resetSession()
            case .backOff(let attempt):
                sleepInterruptibly(milliseconds: options.backoff.delay(attempt: attempt))
            }
        }
    }

    private func sleepInterruptibly(milliseconds: Int) {
        var left = milliseconds
        while left > 0 && isRunning {
            let step = min(left, 50)
            usleep(UInt32(step) * 1000)
            left -= step
        }
    }

    /// Disconnects cleanly (no last will is sent) and joins the network thread.
    package func stop() {
        let thread: pthread_t? = state.withLock { s in
            guard s.running, !s.stopRequested else { return nil }
            s.stopRequested = true
            return s.thread
        }
        guard let thread else { return }
        // Let the network thread write the DISCONNECT (up to 2 s): a connection that just closes
        // would make the broker publish the last will.
        handleLock.withLock { _ in _ = mosquitto_disconnect(handle.raw) }
        let deadline = monotonicSeconds() + 2
        while isConnected && monotonicSeconds() < deadline { usleep(5000) }
        state.withLock { $0.running = false }
        pthread_join(thread, nil)
        state.withLock { $0.connected = false }
    }

    // MARK: Operations (any thread)

    /// Queues a message. Returns its message id; the `.published` event reports the broker's
    /// answer. The payload and properties are copied by libmosquitto before this returns.
    /// `properties` are sent on an MQTT 5 session only (libmosquitto refuses a 3.1.1 publish that
    /// carries any).
    package func publish(
        topic: String, payload: [UInt8], qos: MQTTQoS, retain: Bool = false, properties: MQTTPublishProperties = MQTTPublishProperties()
    ) -> Result<Int32, MosquittoError> {
        var mid: Int32 = 0
        let v5 = !properties.isEmpty && protocolVersion == .v5
        var list: OpaquePointer? = nil
        defer { if list != nil { mosquitto_property_free_all(&list) } }
        if v5 {
            let rc = Self.build(properties, into: &list)
            if rc != Int32(MOSQ_ERR_SUCCESS.rawValue) { return .failure(MosquittoError(code: rc)) }
        }
        let rc = handleLock.withLock { _ in
            payload.withUnsafeBytes { buf in
                mosquitto_publish_v5(handle.raw, &mid, topic, Int32(buf.count), buf.baseAddress, Int32(qos.rawValue), retain, list)
            }
        }
        return rc == Int32(MOSQ_ERR_SUCCESS.rawValue) ? .success(mid) : .failure(MosquittoError(code: rc))
    }

    private static func build(_ p: MQTTPublishProperties, into list: inout OpaquePointer?) -> Int32 {
        var rc = Int32(MOSQ_ERR_SUCCESS.rawValue)
        func add(_ r: Int32) { if rc == Int32(MOSQ_ERR_SUCCESS.rawValue) { rc = r } }
        if p.payloadIsUTF8 { add(mosquitto_property_add_byte(&list, Int32(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR.rawValue), 1)) }
        if let type = p.contentType { add(mosquitto_property_add_string(&list, Int32(MQTT_PROP_CONTENT_TYPE.rawValue), type)) }
        if let expiry = p.messageExpirySeconds {
            add(mosquitto_property_add_int32(&list, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), expiry))
        }
        for (name, value) in p.userProperties {
            add(mosquitto_property_add_string_pair(&list, Int32(MQTT_PROP_USER_PROPERTY.rawValue), name, value))
        }
        return rc
    }

    /// Subscribes now (if connected) and again after every reconnect.
    package func subscribe(topic: String, qos: MQTTQoS) {
        let q = Int32(qos.rawValue)
        let connected = state.withLock { s in
            s.subscriptions.append((topic, q))
            return s.connected
        }
        if connected { handleLock.withLock { _ in _ = mosquitto_subscribe(handle.raw, nil, topic, q) } }
    }

    // MARK: Callbacks (network thread)

    fileprivate func handleConnect(rc: Int32, properties: OpaquePointer?) {
        guard rc == 0 else {
            let reason = connackDescription(rc)
            perform(state.withLock { s in
                s.attemptReported = true
                return s.lifecycle.connackRefused(code: Int(rc), reason: reason)
            })
            return
        }
        mosquitto_log_callback_set(handle.raw, nil)
        let (subscriptions, info) = state.withLock { s in
            s.attemptReported = true
            s.connected = true
            s.lastLibraryError = nil
            s.lifecycle.connected(now: monotonicSeconds())
            let info = Self.sessionInfo(version: s.lifecycle.protocolVersion, connack: properties)
            s.session = info
            return (s.subscriptions, info)
        }
        for (topic, qos) in subscriptions { mosquitto_subscribe(handle.raw, nil, topic, qos) }
        var metadata: Logger.Metadata = [
            "broker": "\(options.host):\(options.port)", "client_id": "\(options.clientID)", "protocol": "\(info.protocolVersion)",
        ]
        if let max = info.receiveMaximum { metadata["receive_maximum"] = "\(max)" }
        if let size = info.maximumPacketSize { metadata["maximum_packet_size"] = "\(size)" }
        logger.info("connected to broker", metadata: metadata)
        if !info.retainAvailable {
            logger.warning(
                "the broker does not support retained messages: the retained presence topic is published without retain",
                metadata: ["broker": "\(options.host):\(options.port)"])
        }
        onEvent(.connected(info))
    }

    private static func sessionInfo(version: MQTTProtocolVersion, connack: OpaquePointer?) -> MQTTSessionInfo {
        var info = MQTTSessionInfo(protocolVersion: version)
        guard version == .v5, let connack else { return info }
        var u16: UInt16 = 0
        if mosquitto_property_read_int16(connack, Int32(MQTT_PROP_RECEIVE_MAXIMUM.rawValue), &u16, false) != nil { info.receiveMaximum = Int(u16) }
        var byte: UInt8 = 1
        if mosquitto_property_read_byte(connack, Int32(MQTT_PROP_RETAIN_AVAILABLE.rawValue), &byte, false) != nil { info.retainAvailable = byte != 0 }
        var u32: UInt32 = 0
        if mosquitto_property_read_int32(connack, Int32(MQTT_PROP_MAXIMUM_PACKET_SIZE.rawValue), &u32, false) != nil {
            info.maximumPacketSize = Int(u32)
        }
        return info
    }

    fileprivate func handleDisconnect(rc: Int32) {
        let (wasConnected, expected) = state.withLock { s in
            s.attemptReported = true
            defer { s.connected = false }
            return (s.connected, s.lifecycle.changedForNextConnect)
        }
        // The broker closes after a CONNACK that the next CONNECT answers (fallback to 3.1.1,
        // a will without retain): not a failure for send-test or check-config to report.
        if expected { return }
        let reason = rc == 0 ? "disconnected by client" : withLibraryDetail("connection lost (\(MosquittoError(code: rc)))")
        if wasConnected && rc != 0 {
            logger.warning("lost broker connection", metadata: ["broker": "\(options.host):\(options.port)", "reason": "\(reason)"])
        }
        onEvent(.disconnected(reason: reason))
    }

    fileprivate func handlePublish(mid: Int32, reason: Int32) {
        let code = MQTTReasonCode(Int(reason))
        reasons.withLock { $0[code, default: 0] += 1 }
        onEvent(.published(mid: mid, reason: code))
    }

    fileprivate func handleSubscribe() { subscriptionsAcknowledged.add(1, ordering: .relaxed) }

    /// libmosquitto's own log: only error lines are kept, to explain the next failure (TLS
    /// failures carry their OpenSSL reason only here).
    fileprivate func handleLog(level: Int32, text: String) {
        guard level & Int32(MOSQ_LOG_ERR) != 0 else { return }
        state.withLock { $0.lastLibraryError = text }
    }

    /// `reason` plus the error libmosquitto logged since the last call, if any.
    private func withLibraryDetail(_ reason: String) -> String {
        guard let detail = state.withLock({ s -> String? in
            defer { s.lastLibraryError = nil }
            return s.lastLibraryError
        }) else { return reason }
        return "\(reason): \(detail)"
    }

    fileprivate func handleMessage(_ message: UnsafePointer<mosquitto_message>, properties: OpaquePointer?) {
        let m = message.pointee
        let topic = m.topic.map { String(cString: $0) } ?? ""
        var payload: [UInt8] = []
        if let p = m.payload, m.payloadlen > 0 {
            payload = Array(UnsafeRawBufferPointer(start: p, count: Int(m.payloadlen)))
        }
        onEvent(.message(MQTTMessage(topic: topic, payload: payload, retain: m.retain, properties: Self.read(properties))))
    }

    private static func read(_ list: OpaquePointer?) -> MQTTPublishProperties {
        var p = MQTTPublishProperties()
        var byte: UInt8 = 0
        if mosquitto_property_read_byte(list, Int32(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR.rawValue), &byte, false) != nil { p.payloadIsUTF8 = byte == 1 }
        var text: UnsafeMutablePointer<CChar>? = nil
        if mosquitto_property_read_string(list, Int32(MQTT_PROP_CONTENT_TYPE.rawValue), &text, false) != nil, let text {
            p.contentType = String(cString: text)
            free(text)
        }
        var u32: UInt32 = 0
        if mosquitto_property_read_int32(list, Int32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue), &u32, false) != nil { p.messageExpirySeconds = u32 }
        var cursor = list
        var skipFirst = false
        while true {
            var name: UnsafeMutablePointer<CChar>? = nil
            var value: UnsafeMutablePointer<CChar>? = nil
            guard let found = mosquitto_property_read_string_pair(cursor, Int32(MQTT_PROP_USER_PROPERTY.rawValue), &name, &value, skipFirst) else { break }
            if let name, let value { p.userProperties.append((String(cString: name), String(cString: value))) }
            free(name)
            free(value)
            cursor = found
            skipFirst = true
        }
        return p
    }
}

private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

private func check(_ rc: Int32) throws(MosquittoError) {
    if rc != Int32(MOSQ_ERR_SUCCESS.rawValue) { throw MosquittoError(code: rc) }
}

private func client(_ obj: UnsafeMutableRawPointer?) -> MosquittoClient? {
    guard let obj else { return nil }
    return Unmanaged<MosquittoClient>.fromOpaque(obj).takeUnretainedValue()
}

// File-scope, non-capturing: safe as C function pointers from libmosquitto's thread (see
// docs/architecture.md: a closure formed in @MainActor code would trap at the first call).
private func onConnectC(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ flags: Int32, _ props: OpaquePointer?) {
    client(obj)?.handleConnect(rc: rc, properties: props)
}
private func onDisconnectC(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ props: OpaquePointer?) {
    client(obj)?.handleDisconnect(rc: rc)
}
private func onPublishC(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ reason: Int32, _ props: OpaquePointer?) {
    client(obj)?.handlePublish(mid: mid, reason: reason)
}
private func onSubscribeC(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ count: Int32, _ granted: UnsafePointer<Int32>?
) {
    client(obj)?.handleSubscribe()
}
private func onLogC(_ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ level: Int32, _ text: UnsafePointer<CChar>?) {
    guard let text, level & Int32(MOSQ_LOG_ERR) != 0 else { return }
    client(obj)?.handleLog(level: level, text: String(cString: text))
}
private func onMessageC(
    _ mosq: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ message: UnsafePointer<mosquitto_message>?, _ props: OpaquePointer?
) {
    guard let message else { return }
    client(obj)?.handleMessage(message, properties: props)
}
