// The one table of configuration keys. It drives the default values (`RelayConfiguration.defaults`),
// validation (`ConfigurationValidator`), `docs/configuration.md` and the shipped sample
// `packaging/config/callrelay.toml` (both written by `ConfigurationDocs`, pinned by a golden test).
//
// To add a key: add a `static let` below, list it in `ConfigurationKey.all`, read it in
// `RelayConfiguration.init(values:)`, then run `scripts/gen-config-docs.sh`.

/// The TOML type a key takes.
package enum ConfigurationValueType: Sendable, Equatable {
    case string, integer, boolean

    /// "a string", "an integer", "a boolean".
    package var withArticle: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .boolean: "a boolean"
        }
    }
}

/// A setting's value after parsing: from the key table, the file or the environment.
package enum ConfigurationValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case boolean(Bool)

    package var type: ConfigurationValueType {
        switch self {
        case .string: .string
        case .integer: .integer
        case .boolean: .boolean
        }
    }

    /// As written in TOML: `"piopiy"`, `1883`, `false`.
    package var tomlLiteral: String {
        switch self {
        case .string(let text): TOMLText.quoted(text)
        case .integer(let number): String(number)
        case .boolean(let flag): String(flag)
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
        self.type = type
        self.defaultValue = defaultValue
        self.rule = rule
        self.description = description
        self.isSecret = secret
        self.environmentVariable = environment
        self.combinationRule = combinationRule
    }

    /// `["mqtt", "port"]`.
    package var path: [String] { name.split(separator: ".").map(String.init) }
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
            name: "log", title: "Logging", summary: "What callrelay writes to its log (the systemd journal)."),
    ]

    /// Every key, in the order of the docs and the sample.
    package static let all: [ConfigurationKey] = [
        httpListen, httpToken, httpMaxBodyBytes,
        mqttHost, mqttPort, mqttClientID, mqttUsername, mqttPassword, mqttTopicPrefix, mqttQoS, mqttKeepaliveSeconds,
        mqttCAFile, mqttCertFile, mqttKeyFile, mqttTLSInsecure, mqttMaxInflight, mqttReconnectMinMilliseconds,
        mqttReconnectMaxMilliseconds,
        storagePath, storageMaxBytes, storageRetentionHours, storageSynchronous,
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
        description: "Most events published to the broker and not yet acknowledged at any time (the in-flight window).")

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

    // MARK: [log]

    package static let logLevel = ConfigurationKey(
        "log.level", .string, default: .string("info"),
        rule: .stringChoices(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
        description: "Least severe message written to the log; trace and debug are for troubleshooting.")
}
