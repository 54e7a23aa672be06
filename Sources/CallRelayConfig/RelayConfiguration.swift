import CallRelayCore

// The validated configuration other modules receive. Built only from values that passed
// `ConfigurationValidator`, so every field is already in range.

/// callrelay's settings, typed and validated. Field documentation lives with the keys in
/// `ConfigurationKeys.swift` (and in docs/configuration.md, generated from them).
package struct RelayConfiguration: Sendable, Equatable {
    /// `[http]`: the webhook server.
    package struct HTTP: Sendable, Equatable {
        /// From `http.listen`: an IPv4 address, a host name or an IPv6 address without brackets (`::`).
        package var listenHost: String
        /// From `http.listen`; 0 means "any free port".
        package var listenPort: Int
        /// Empty means webhooks need no token.
        package var token: String
        package var maxBodyBytes: Int
        /// Both set (HTTPS) or both nil.
        package var tlsCertFile: String?
        package var tlsKeyFile: String?
        /// Set only with the pair: clients must present a certificate signed by it.
        package var tlsClientCAFile: String?
        /// Empty: everyone.
        package var allow: [CIDR] = []
        package var trustedProxies: [CIDR] = []
        package var headerTimeoutSeconds = 10
        package var bodyTimeoutSeconds = 30
        package var idleTimeoutSeconds = 60
        package var maxConnections = 1024
        /// 0: no limit.
        package var rateLimitPerSecond = 0
        /// Already resolved: the rate when the file says 0.
        package var rateLimitBurst = 0
        /// From `http.admin_listen`; nil keeps /metrics, /healthz and /readyz on the webhook listener.
        package var adminHost: String?
        package var adminPort: Int?

        package init(listenHost: String, listenPort: Int, token: String, maxBodyBytes: Int) {
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.token = token
            self.maxBodyBytes = maxBodyBytes
        }
    }

    /// `[mqtt]`: the broker connection.
    package struct MQTT: Sendable, Equatable {
        package var host: String
        package var port: Int
        package var clientID: String
        /// Empty means no authentication.
        package var username: String
        package var password: String
        package var topicPrefix: String
        package var qos: Int
        package var keepaliveSeconds: Int
        /// Set means TLS is on. Absolute path, readable when validated.
        package var caFile: String?
        /// Set exactly when `keyFile` is set.
        package var certFile: String?
        package var keyFile: String?
        package var tlsInsecure: Bool
        package var maxInflight: Int
        package var reconnectMinMilliseconds: Int
        /// At least `reconnectMinMilliseconds`.
        package var reconnectMaxMilliseconds: Int
        /// `mqtt.protocol`: "auto", "5" or "3.1.1".
        package var protocolVersion: String
        /// MQTT 5 message expiry of live events; 0 = none.
        package var messageExpirySeconds: Int

        package init(
            host: String, port: Int, clientID: String, username: String, password: String, topicPrefix: String,
            qos: Int,
            keepaliveSeconds: Int, caFile: String?, certFile: String?, keyFile: String?, tlsInsecure: Bool,
            maxInflight: Int,
            reconnectMinMilliseconds: Int, reconnectMaxMilliseconds: Int, protocolVersion: String = "auto",
            messageExpirySeconds: Int = 0
        ) {
            self.protocolVersion = protocolVersion
            self.messageExpirySeconds = messageExpirySeconds
            self.host = host
            self.port = port
            self.clientID = clientID
            self.username = username
            self.password = password
            self.topicPrefix = topicPrefix
            self.qos = qos
            self.keepaliveSeconds = keepaliveSeconds
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
            self.tlsInsecure = tlsInsecure
            self.maxInflight = maxInflight
            self.reconnectMinMilliseconds = reconnectMinMilliseconds
            self.reconnectMaxMilliseconds = reconnectMaxMilliseconds
        }
    }

    /// `[storage]`: the SQLite outbox.
    package struct Storage: Sendable, Equatable {
        /// SQLite `PRAGMA synchronous` for the outbox (always in WAL mode).
        package enum Synchronous: String, Sendable, Equatable, CaseIterable {
            /// Every answered webhook survives a power cut.
            case full
            /// Faster; a power cut may lose the last answered webhooks (a process crash does not).
            case normal
        }

        package var path: String
        package var maxBytes: Int64
        package var retentionHours: Int
        package var synchronous: Synchronous

        package init(path: String, maxBytes: Int64, retentionHours: Int, synchronous: Synchronous) {
            self.path = path
            self.maxBytes = maxBytes
            self.retentionHours = retentionHours
            self.synchronous = synchronous
        }
    }

    package var http: HTTP
    package var mqtt: MQTT
    package var storage: Storage
    package var calls: Calls
    /// One of trace, debug, info, notice, warning, error, critical (swift-log's level names).
    package var logLevel: String

    /// `[calls]`: the retained call state (CONTRACT §9).
    package struct Calls: Sendable, Equatable {
        package var enabled: Bool
        package var clearAfterSeconds: Int
        package var staleAfterSeconds: Int
        package var maxCalls: Int

        package init(enabled: Bool = true, clearAfterSeconds: Int = 600, staleAfterSeconds: Int = 14_400, maxCalls: Int = 5_000) {
            self.enabled = enabled
            self.clearAfterSeconds = clearAfterSeconds
            self.staleAfterSeconds = staleAfterSeconds
            self.maxCalls = maxCalls
        }
    }

    package init(http: HTTP, mqtt: MQTT, storage: Storage, calls: Calls = Calls(), logLevel: String) {
        self.http = http
        self.mqtt = mqtt
        self.storage = storage
        self.calls = calls
        self.logLevel = logLevel
    }

    /// Every key at its default, from the key table.
    package static let defaults = RelayConfiguration(values: ConfigurationValues.defaults)
}

// MARK: - From validated values

/// The value of every key, keyed by its dotted name: defaults, then the file, then the environment.
struct ConfigurationValues: Sendable {
    var values: [String: ConfigurationValue]

    static let defaults = ConfigurationValues(
        values: Dictionary(uniqueKeysWithValues: ConfigurationKey.all.map { ($0.name, $0.defaultValue) }))

    subscript(key: ConfigurationKey) -> ConfigurationValue {
        get {
            guard let value = values[key.name] else {
                preconditionFailure("\(key.name) is missing from ConfigurationKey.all")
            }
            return value
        }
        set { values[key.name] = newValue }
    }

    func string(_ key: ConfigurationKey) -> String {
        guard case .string(let text) = self[key] else { preconditionFailure("\(key.name) is not a string") }
        return text
    }

    func integer(_ key: ConfigurationKey) -> Int {
        guard case .integer(let number) = self[key] else { preconditionFailure("\(key.name) is not an integer") }
        return Int(number)
    }

    func strings(_ key: ConfigurationKey) -> [String] {
        guard case .strings(let items) = self[key] else { preconditionFailure("\(key.name) is not a list of strings") }
        return items
    }

    func boolean(_ key: ConfigurationKey) -> Bool {
        guard case .boolean(let flag) = self[key] else { preconditionFailure("\(key.name) is not a boolean") }
        return flag
    }

    /// nil for an empty string.
    func optionalString(_ key: ConfigurationKey) -> String? {
        let text = string(key)
        return text.isEmpty ? nil : text
    }
}

extension RelayConfiguration {
    /// Call only with values `ConfigurationValidator` accepted.
    init(values: ConfigurationValues) {
        guard case .success(let listen) = ListenAddress.parse(values.string(.httpListen)) else {
            preconditionFailure("http.listen was not validated")
        }
        guard let synchronous = Storage.Synchronous(rawValue: values.string(.storageSynchronous)) else {
            preconditionFailure("storage.synchronous was not validated")
        }
        guard case .integer(let maxBytes) = values[.storageMaxBytes] else {
            preconditionFailure("storage.max_bytes is not an integer")
        }
        var http = HTTP(
            listenHost: listen.host, listenPort: listen.port, token: values.string(.httpToken),
            maxBodyBytes: values.integer(.httpMaxBodyBytes))
        http.tlsCertFile = values.optionalString(.httpTLSCertFile)
        http.tlsKeyFile = values.optionalString(.httpTLSKeyFile)
        http.tlsClientCAFile = values.optionalString(.httpTLSClientCAFile)
        http.allow = values.strings(.httpAllow).compactMap(CIDR.init)
        http.trustedProxies = values.strings(.httpTrustedProxies).compactMap(CIDR.init)
        http.headerTimeoutSeconds = values.integer(.httpHeaderTimeoutSeconds)
        http.bodyTimeoutSeconds = values.integer(.httpBodyTimeoutSeconds)
        http.idleTimeoutSeconds = values.integer(.httpIdleTimeoutSeconds)
        http.maxConnections = values.integer(.httpMaxConnections)
        http.rateLimitPerSecond = values.integer(.httpRateLimitPerSecond)
        let burst = values.integer(.httpRateLimitBurst)
        http.rateLimitBurst = burst > 0 ? burst : http.rateLimitPerSecond
        if case .success(let admin) = ListenAddress.parse(values.string(.httpAdminListen)) {
            http.adminHost = admin.host
            http.adminPort = admin.port
        }
        self.init(
            http: http,
            mqtt: MQTT(
                host: values.string(.mqttHost), port: values.integer(.mqttPort), clientID: values.string(.mqttClientID),
                username: values.string(.mqttUsername), password: values.string(.mqttPassword),
                topicPrefix: values.string(.mqttTopicPrefix), qos: values.integer(.mqttQoS),
                keepaliveSeconds: values.integer(.mqttKeepaliveSeconds), caFile: values.optionalString(.mqttCAFile),
                certFile: values.optionalString(.mqttCertFile), keyFile: values.optionalString(.mqttKeyFile),
                tlsInsecure: values.boolean(.mqttTLSInsecure), maxInflight: values.integer(.mqttMaxInflight),
                reconnectMinMilliseconds: values.integer(.mqttReconnectMinMilliseconds),
                reconnectMaxMilliseconds: values.integer(.mqttReconnectMaxMilliseconds),
                protocolVersion: values.string(.mqttProtocol), messageExpirySeconds: values.integer(.mqttMessageExpirySeconds)),
            storage: Storage(
                path: values.string(.storagePath), maxBytes: maxBytes,
                retentionHours: values.integer(.storageRetentionHours), synchronous: synchronous),
            calls: Calls(
                enabled: values.boolean(.callsEnabled), clearAfterSeconds: values.integer(.callsClearAfterSeconds),
                staleAfterSeconds: values.integer(.callsStaleAfterSeconds), maxCalls: values.integer(.callsMaxCalls)),
            logLevel: values.string(.logLevel))
    }
}
