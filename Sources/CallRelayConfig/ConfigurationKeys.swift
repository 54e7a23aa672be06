// The one table of configuration keys. It drives the default values (`RelayConfiguration.defaults`),
// validation (`ConfigurationValidator`), `docs/configuration.md` and the shipped sample
// `packaging/config/callrelay.toml` (both written by `ConfigurationDocs`, pinned by a golden test).
//
// To add a key: add a `static let` below, list it in `ConfigurationKey.all`, read it in
// `RelayConfiguration.init(values:)`, then run `scripts/gen-config-docs.sh`.

/// The TOML type a key takes.
package enum ConfigurationValueType: Sendable, Equatable {
    case string, integer, boolean, stringList

    /// "a string", "an integer", "a boolean", "an array of strings".
    package var withArticle: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .boolean: "a boolean"
        case .stringList: "an array of strings"
        }
    }

    /// As the docs' "Type" column shows it.
    package var docsName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .boolean: "boolean"
        case .stringList: "array of strings"
        }
    }
}

/// A setting's value after parsing: from the key table, the file or the environment.
package enum ConfigurationValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case boolean(Bool)
    case strings([String])

    package var type: ConfigurationValueType {
        switch self {
        case .string: .string
        case .integer: .integer
        case .boolean: .boolean
        case .strings: .stringList
        }
    }

    /// As written in TOML: `"piopiy"`, `1883`, `false`.
    package var tomlLiteral: String {
        switch self {
        case .string(let text): TOMLText.quoted(text)
        case .integer(let number): String(number)
        case .boolean(let flag): String(flag)
        case .strings(let items): "[" + items.map(TOMLText.quoted).joined(separator: ", ") + "]"
        }
    }
}

/// What a single key's value must satisfy. Rules that involve two keys live in
/// `ConfigurationValidator.checkCombinations` and are described by `ConfigurationKey.combinationRule`.
package enum ConfigurationRule: Sendable, Equatable {
    /// Anything of the right type.
    case anyValue
    /// A non-empty string.
    case nonEmpty
    /// A host name or IP address without port or scheme.
    case hostName
    case integerRange(ClosedRange<Int64>)
    case integerChoices([Int64])
    case stringChoices([String])
    /// Empty, or text without whitespace; shorter than 16 characters or not URL-safe draws a warning.
    case webhookToken
    /// `HOST:PORT`, `[IPv6]:PORT`; port 0 picks a free port.
    case listenAddress
    /// Empty, or a `listenAddress`.
    case optionalListenAddress
    /// Every item an IPv4 or IPv6 address or network (`203.0.113.0/24`).
    case cidrList
    /// 1–64 characters of `[A-Za-z0-9_.-]`.
    case mqttClientID
    /// MQTT topic levels without wildcards, empty levels or a leading or trailing `/`.
    case mqttTopicPrefix
    /// Empty, or an absolute path to a file callrelay can read.
    case readableFile
    /// A path for a file callrelay creates; must not be empty.
    case databasePath
}

/// A `[table]` of the file, in the order the docs and the sample show them.
package struct ConfigurationSection: Sendable, Equatable {
    package let name: String
    package let title: String
    /// One or two sentences for the section banner.
    package let summary: String
}

/// One configuration key: everything the validator, the docs and the sample need.
package struct ConfigurationKey: Sendable, Equatable {
    /// Full dotted name, for example `mqtt.port`.
    package let name: String
    package let type: ConfigurationValueType
    package let defaultValue: ConfigurationValue
    package let rule: ConfigurationRule
    /// One or two full sentences, ending with a period.
    package let description: String
    /// Secrets are never printed in messages or logs.
    package let isSecret: Bool
    /// When set and not empty, this environment variable replaces the file's value.
    package let environmentVariable: String?
    /// A rule involving another key, as a sentence ending with a period (shown with the allowed values).
    package let combinationRule: String?

    init(
        _ name: String, _ type: ConfigurationValueType, default defaultValue: ConfigurationValue,
        rule: ConfigurationRule,
        description: String, secret: Bool = false, environment: String? = nil, combinationRule: String? = nil
    ) {
        self.name = name
        self.path = name.split(separator: ".").map(String.init)
        self.type = type
        self.defaultValue = defaultValue
        self.rule = rule
        self.description = description
        self.isSecret = secret
        self.environmentVariable = environment
        self.combinationRule = combinationRule
    }

    /// `["mqtt", "port"]` (stored: the validator compares it with every entry of a file).
    package let path: [String]
    /// `mqtt`.
    package var section: String { path.first ?? name }
    /// `port`.
    package var leaf: String { path.last ?? name }
}

// MARK: - The table

extension ConfigurationKey {
    package static let sections: [ConfigurationSection] = [
        ConfigurationSection(
            name: "http", title: "HTTP webhook server",
            summary:
                "Where PIOPIY delivers its call webhooks. Point the PIOPIY dashboard at http://HOST:PORT/webhooks/piopiy."
        ),
        ConfigurationSection(
            name: "mqtt", title: "MQTT broker",
            summary: "The broker every stored event is published to, and how callrelay connects to it."),
        ConfigurationSection(
            name: "storage", title: "Outbox storage",
            summary:
                "The SQLite file every webhook is written to before it is answered, and kept in until the broker has it."
        ),
        ConfigurationSection(
            name: "calls", title: "Call state",
            summary: """
                One retained MQTT message per call on {topic_prefix}/{app_id}/calls/{call_key}, always current, so a CRM \
                that starts or reconnects sees every call already running (docs/payload-format.md, "Call state").
                """),
        ConfigurationSection(
            name: "log", title: "Logging", summary: "What callrelay writes to its log (the systemd journal)."),
    ]

    /// Every key, in the order of the docs and the sample.
    package static let all: [ConfigurationKey] = [
        httpListen, httpToken, httpMaxBodyBytes,
        httpTLSCertFile, httpTLSKeyFile, httpTLSClientCAFile, httpAllow, httpTrustedProxies,
        httpHeaderTimeoutSeconds, httpBodyTimeoutSeconds, httpIdleTimeoutSeconds, httpMaxConnections,
        httpRateLimitPerSecond, httpRateLimitBurst, httpAdminListen,
        mqttHost, mqttPort, mqttClientID, mqttUsername, mqttPassword, mqttTopicPrefix, mqttQoS, mqttKeepaliveSeconds,
        mqttCAFile, mqttCertFile, mqttKeyFile, mqttTLSInsecure, mqttMaxInflight, mqttReconnectMinMilliseconds,
        mqttReconnectMaxMilliseconds, mqttProtocol, mqttMessageExpirySeconds,
        storagePath, storageMaxBytes, storageRetentionHours, storageSynchronous,
        callsEnabled, callsClearAfterSeconds, callsStaleAfterSeconds, callsMaxCalls,
        logLevel,
    ]

    package static func named(_ name: String) -> ConfigurationKey? {
        all.first { $0.name == name }
    }

    // MARK: [http]

    package static let httpListen = ConfigurationKey(
        "http.listen", .string, default: .string("0.0.0.0:8080"), rule: .listenAddress,
        description: """
            Address and port the webhook server listens on, as HOST:PORT. HOST is an IPv4 address, a host name \
            or an IPv6 address in brackets ("[::]:8080"); port 0 picks a free port, which is only useful in tests.
            """)

    package static let httpToken = ConfigurationKey(
        "http.token", .string, default: .string(""), rule: .webhookToken,
        description: """
            Shared secret every webhook must carry, as ?token=TOKEN in the URL or as an "Authorization: Bearer TOKEN" \
            header; empty means webhooks are accepted without one. Use at least 16 random characters \
            (for example from "openssl rand -hex 16"); a shorter token draws a warning.
            """,
        secret: true, environment: "CALLRELAY_HTTP_TOKEN")

    package static let httpMaxBodyBytes = ConfigurationKey(
        "http.max_body_bytes", .integer, default: .integer(65536), rule: .integerRange(1024...16_777_216),
        description: """
            Largest webhook body accepted, in bytes; a bigger request is answered 413. PIOPIY webhooks are a few kilobytes.
            """)

    package static let httpTLSCertFile = ConfigurationKey(
        "http.tls_cert_file", .string, default: .string(""), rule: .readableFile,
        description: """
            Absolute path of the PEM certificate chain (the server's certificate first) of the webhook server; \
            with http.tls_key_file it makes the listener speak HTTPS only (TLS 1.2 or newer), so the token never \
            crosses the internet in clear. "systemctl reload callrelay" (SIGHUP) reads the pair again after a renewal.
            """,
        combinationRule: "Set together with http.tls_key_file.")

    package static let httpTLSKeyFile = ConfigurationKey(
        "http.tls_key_file", .string, default: .string(""), rule: .readableFile,
        description:
            "Absolute path of the unencrypted PEM private key of http.tls_cert_file, readable by the callrelay user.",
        combinationRule: "Set together with http.tls_cert_file.")

    package static let httpTLSClientCAFile = ConfigurationKey(
        "http.tls_client_ca_file", .string, default: .string(""), rule: .readableFile,
        description: """
            Absolute path of a PEM file of certificate authorities: when set, every client must present a \
            certificate signed by one of them (mutual TLS). Empty means no client certificate is asked for.
            """,
        combinationRule: "Needs http.tls_cert_file and http.tls_key_file.")

    package static let httpAllow = ConfigurationKey(
        "http.allow", .stringList, default: .strings([]), rule: .cidrList,
        description: """
            Client addresses allowed to use the listener, as IPv4 or IPv6 addresses or networks \
            (["203.0.113.0/24", "2001:db8::/32"]); anyone else is answered 403, or, with TLS, disconnected before \
            the handshake. Empty means everyone.
            """)

    package static let httpTrustedProxies = ConfigurationKey(
        "http.trusted_proxies", .stringList, default: .strings([]), rule: .cidrList,
        description: """
            Addresses or networks of reverse proxies in front of callrelay: for a connection from one of them, \
            the client is the last address in X-Forwarded-For that is not itself a trusted proxy, and that address \
            is what http.allow, the rate limit and the log see. Empty means X-Forwarded-For is ignored.
            """)

    package static let httpHeaderTimeoutSeconds = ConfigurationKey(
        "http.header_timeout_seconds", .integer, default: .integer(10), rule: .integerRange(1...3600),
        description: """
            Seconds a client has to send a whole request head (request line and headers), counted from the \
            connection or from the first byte of the next request; after it the client is answered 408 and disconnected.
            """)

    package static let httpBodyTimeoutSeconds = ConfigurationKey(
        "http.body_timeout_seconds", .integer, default: .integer(30), rule: .integerRange(1...3600),
        description: """
            Seconds a client has to send a request body once its head has arrived; after it the client is \
            answered 408 and disconnected, and nothing of that request is stored.
            """)

    package static let httpIdleTimeoutSeconds = ConfigurationKey(
        "http.idle_timeout_seconds", .integer, default: .integer(60), rule: .integerRange(1...86400),
        description: "Seconds a keep-alive connection may stay open between two requests before callrelay closes it.")

    package static let httpMaxConnections = ConfigurationKey(
        "http.max_connections", .integer, default: .integer(1024), rule: .integerRange(1...1_000_000),
        description: """
            Most client connections open at once (the admin listener's are not counted); a connection beyond \
            it is closed at once. Keep it below the file limit of the service (LimitNOFILE).
            """)

    package static let httpRateLimitPerSecond = ConfigurationKey(
        "http.rate_limit_per_second", .integer, default: .integer(0), rule: .integerRange(0...1_000_000),
        description: """
            Requests per second allowed to each client address (a token bucket); a request over it is answered \
            429 with Retry-After and nothing is stored. 0 turns the limit off. PIOPIY sends one webhook per call event.
            """)

    package static let httpRateLimitBurst = ConfigurationKey(
        "http.rate_limit_burst", .integer, default: .integer(0), rule: .integerRange(0...1_000_000),
        description: """
            Requests a client may send at once above the steady rate (the bucket's size); 0 means the same as \
            http.rate_limit_per_second.
            """,
        combinationRule: "Needs http.rate_limit_per_second.")

    package static let httpAdminListen = ConfigurationKey(
        "http.admin_listen", .string, default: .string(""), rule: .optionalListenAddress,
        description: """
            HOST:PORT of a second, plain-HTTP listener serving /metrics, /healthz and /readyz apart from the \
            webhooks (for example "127.0.0.1:9180"); the webhook listener then answers them 404. Empty means they \
            stay on the webhook listener. It has no token, allow-list or rate limit: keep it on a local address.
            """)

    // MARK: [mqtt]

    package static let mqttHost = ConfigurationKey(
        "mqtt.host", .string, default: .string("127.0.0.1"), rule: .hostName,
        description: "Host name or IP address of the MQTT broker, without a port or \"mqtt://\".")

    package static let mqttPort = ConfigurationKey(
        "mqtt.port", .integer, default: .integer(1883), rule: .integerRange(1...65535),
        description: "TCP port of the MQTT broker; brokers usually listen on 1883, or 8883 for TLS.")

    package static let mqttClientID = ConfigurationKey(
        "mqtt.client_id", .string, default: .string("callrelay"), rule: .mqttClientID,
        description: """
            MQTT client identifier of this agent: 1 to 64 letters, digits, "_", "." or "-". It also names the agent \
            in its status topic {topic_prefix}/agents/{client_id}/status, so two agents on one broker need different ones.
            """)

    package static let mqttUsername = ConfigurationKey(
        "mqtt.username", .string, default: .string(""), rule: .anyValue,
        description: "User name for the broker; empty means callrelay connects without a user name and password.")

    package static let mqttPassword = ConfigurationKey(
        "mqtt.password", .string, default: .string(""), rule: .anyValue,
        description: "Password for the broker user.",
        secret: true, environment: "CALLRELAY_MQTT_PASSWORD",
        combinationRule: "Needs mqtt.username.")

    package static let mqttTopicPrefix = ConfigurationKey(
        "mqtt.topic_prefix", .string, default: .string("piopiy"), rule: .mqttTopicPrefix,
        description: """
            First topic level(s) of everything callrelay publishes: events go to {topic_prefix}/{app_id}/{kind}/{event}. \
            It may contain "/" between levels, but no "+", "#", empty levels, or a leading or trailing "/".
            """)

    package static let mqttQoS = ConfigurationKey(
        "mqtt.qos", .integer, default: .integer(1), rule: .integerChoices([0, 1, 2]),
        description: """
            MQTT quality of service of published events: 0 at most once, 1 at least once, 2 exactly once. \
            An event leaves the outbox only when the broker has acknowledged it (with 0, once it is written to the network).
            """)

    package static let mqttKeepaliveSeconds = ConfigurationKey(
        "mqtt.keepalive_seconds", .integer, default: .integer(30), rule: .integerRange(5...3600),
        description: """
            Seconds between MQTT keep-alive pings; a dead broker connection is noticed after about one and a half times this.
            """)

    package static let mqttCAFile = ConfigurationKey(
        "mqtt.ca_file", .string, default: .string(""), rule: .readableFile,
        description: """
            Absolute path of a PEM file with the certificate authority that signed the broker's certificate; \
            setting it turns TLS on. Empty means a plain, unencrypted connection.
            """)

    package static let mqttCertFile = ConfigurationKey(
        "mqtt.cert_file", .string, default: .string(""), rule: .readableFile,
        description:
            "Absolute path of a PEM client certificate, for brokers that ask callrelay to prove who it is; empty means none.",
        combinationRule: "Set together with mqtt.key_file, and needs mqtt.ca_file.")

    package static let mqttKeyFile = ConfigurationKey(
        "mqtt.key_file", .string, default: .string(""), rule: .readableFile,
        description:
            "Absolute path of the PEM private key of mqtt.cert_file; it must be unencrypted and readable by the callrelay user.",
        combinationRule: "Set together with mqtt.cert_file.")

    package static let mqttTLSInsecure = ConfigurationKey(
        "mqtt.tls_insecure", .boolean, default: .boolean(false), rule: .anyValue,
        description: """
            When true, the broker's host name is not checked against its certificate, so anyone on the network \
            could pose as the broker. Use it only for testing; it draws a warning.
            """)

    package static let mqttMaxInflight = ConfigurationKey(
        "mqtt.max_inflight", .integer, default: .integer(100), rule: .integerRange(1...1000),
        description: """
            Most events published to the broker and not yet acknowledged at any time (the in-flight window). \
            On MQTT 5 the broker's Receive Maximum bounds it; on MQTT 3.1.1 at qos 2 it is at most 20, what a stock \
            mosquitto takes (beyond it mosquitto drops events and 3.1.1 cannot say so).
            """)

    package static let mqttReconnectMinMilliseconds = ConfigurationKey(
        "mqtt.reconnect_min_ms", .integer, default: .integer(500), rule: .integerRange(100...60000),
        description: """
            First wait, in milliseconds, before reconnecting to the broker after the connection is lost; \
            the wait grows after each failed attempt, up to mqtt.reconnect_max_ms.
            """)

    package static let mqttReconnectMaxMilliseconds = ConfigurationKey(
        "mqtt.reconnect_max_ms", .integer, default: .integer(30000), rule: .integerRange(1000...3_600_000),
        description: "Longest wait, in milliseconds, between two attempts to reconnect to the broker.",
        combinationRule: "Must be at least mqtt.reconnect_min_ms.")

    package static let mqttProtocol = ConfigurationKey(
        "mqtt.protocol", .string, default: .string("auto"), rule: .stringChoices(["auto", "5", "3.1.1"]),
        description: """
            MQTT version spoken to the broker. "auto" tries MQTT 5 and falls back to 3.1.1 when the broker refuses 5; \
            "5" or "3.1.1" insist on one. Only MQTT 5 lets the broker say that it refused an event (for example \
            "not authorized"): on 3.1.1 such an event is acknowledged and lost without a word.
            """)

    package static let mqttMessageExpirySeconds = ConfigurationKey(
        "mqtt.message_expiry_seconds", .integer, default: .integer(0), rule: .integerRange(0...4_294_967_295),
        description: """
            MQTT 5 only: seconds after which the broker discards a live event that no subscriber has taken yet \
            (CDRs never expire). 0 means never.
            """)

    // MARK: [storage]

    package static let storagePath = ConfigurationKey(
        "storage.path", .string, default: .string("/var/lib/callrelay/outbox.sqlite3"), rule: .databasePath,
        description: """
            Absolute path of the outbox's SQLite file, where every webhook is stored before it is answered. \
            Its directory must be writable by the callrelay user and on persistent storage (not /tmp or /run).
            """)

    package static let storageMaxBytes = ConfigurationKey(
        "storage.max_bytes", .integer, default: .integer(1_073_741_824),
        rule: .integerRange(1_048_576...1_099_511_627_776),
        description: """
            Size limit of the outbox on disk in bytes (the default is 1 GiB): the database file, its -wal and its \
            -shm together, at every moment. Past it, new webhooks are answered 503 so PIOPIY tries again later, while \
            deliveries go on. A webhook takes about 600 bytes of it (see "Capacity" in docs/operations.md).
            """)

    package static let storageRetentionHours = ConfigurationKey(
        "storage.retention_hours", .integer, default: .integer(168), rule: .integerRange(1...87600),
        description: """
            Hours delivered events are kept, for "callrelay replay" and to recognize a CDR that PIOPIY sends again. \
            It is at least 1 so that this memory outlives PIOPIY's re-send window of about 30 minutes.
            """)

    package static let storageSynchronous = ConfigurationKey(
        "storage.synchronous", .string, default: .string("full"), rule: .stringChoices(["full", "normal"]),
        description: """
            How hard SQLite makes each write durable. "full" waits until the disk has every answered webhook, \
            so none is lost even on a power cut; "normal" is faster, but a power cut (not a callrelay crash) may lose \
            the webhooks answered in the last moments before it.
            """)

    // MARK: [calls]

    package static let callsEnabled = ConfigurationKey(
        "calls.enabled", .boolean, default: .boolean(true), rule: .anyValue,
        description: """
            Publish the retained call state besides the events. Turning it off stops new state messages; the retained \
            ones already on the broker stay until they are cleared by hand.
            """)

    package static let callsClearAfterSeconds = ConfigurationKey(
        "calls.clear_after_seconds", .integer, default: .integer(600), rule: .integerRange(1...604_800),
        description: """
            Seconds an ended call's state stays retained before it is cleared (an empty retained message), so that a \
            screen can still show how the call ended.
            """)

    package static let callsStaleAfterSeconds = ConfigurationKey(
        "calls.stale_after_seconds", .integer, default: .integer(14_400), rule: .integerRange(60...2_592_000),
        description: """
            Seconds without any webhook after which a call that never ended (a hangup PIOPIY did not send) is ended \
            with outcome "stale".
            """)

    package static let callsMaxCalls = ConfigurationKey(
        "calls.max_calls", .integer, default: .integer(5_000), rule: .integerRange(100...1_000_000),
        description: """
            Calls tracked at once, ended ones waiting to be cleared included (about 1.8 KB of memory each). Past it \
            the least recently active are forgotten and their retained state cleared (counted in \
            callrelay_calls_evicted_total): raise it if a gateway really carries more calls at once.
            """)

    // MARK: [log]

    package static let logLevel = ConfigurationKey(
        "log.level", .string, default: .string("info"),
        rule: .stringChoices(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
        description: "Least severe message written to the log; trace and debug are for troubleshooting.")
}
