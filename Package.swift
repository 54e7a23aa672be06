// swift-tools-version:6.0
// callrelay: PIOPIY webhooks -> durable SQLite outbox -> MQTT (libmosquitto).
// The target list reads as the pipeline; see docs/architecture.md.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
]
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")

let package = Package(
    name: "callrelay",
    products: [.executable(name: "callrelay", targets: ["callrelay"])],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // HTTPS on the webhook listener (BoringSSL inside; no system OpenSSL needed).
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // ServerQuiescingHelper: a graceful stop that lets keep-alive connections finish.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        // UnixSignals: SIGTERM/SIGINT/SIGHUP as an async sequence.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // C libraries, each wrapped by exactly one Swift type.
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // Vocabulary: JSON value, timestamps, ids. No I/O, no third-party imports.
        .target(name: "CallRelayCore", swiftSettings: swiftSettings),
        // The config file: TOML subset, key table, validation, sample generation.
        .target(name: "CallRelayConfig", dependencies: ["CallRelayCore"], swiftSettings: swiftSettings),
        // PIOPIY payload -> callrelay.call-event.v1. Pure functions.
        .target(name: "CallRelayNormalize", dependencies: ["CallRelayCore"], swiftSettings: swiftSettings),
        // Call state (CONTRACT §9): a join of what each webhook says, per call. Pure values.
        .target(name: "CallRelayCalls", dependencies: ["CallRelayCore", "CallRelayNormalize"], swiftSettings: swiftSettings),
        // Durable outbox in SQLite (WAL, group commit). Only importer of CSQLite.
        .target(name: "CallRelayOutbox", dependencies: ["CallRelayCore", "CSQLite", logging], swiftSettings: swiftSettings),
        // libmosquitto client. Only importer of CMosquitto.
        .target(name: "CallRelayMQTT", dependencies: ["CallRelayCore", "CMosquitto", logging], swiftSettings: swiftSettings),
        // Outbox -> MQTT: bounded in-flight window, ack -> delivered.
        .target(name: "CallRelayDelivery", dependencies: ["CallRelayCore", logging], swiftSettings: swiftSettings),
        // HTTP in: routes, auth, body limit, 200-after-commit.
        .target(
            name: "CallRelayIngest",
            dependencies: [
                "CallRelayCore", "CallRelayNormalize", logging,
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ] + nio,
            swiftSettings: swiftSettings),
        // Wiring only: build and stop the running agent.
        .target(
            name: "CallRelayDaemon",
            dependencies: [
                "CallRelayConfig", "CallRelayIngest", "CallRelayOutbox", "CallRelayMQTT", "CallRelayDelivery", "CallRelayCalls",
                "CallRelayNormalize", logging,
            ] + nio,
            swiftSettings: swiftSettings),
        // The CLI verbs, one file each.
        .target(
            name: "CallRelayCommands",
            dependencies: [
                "CallRelayDaemon", "CallRelayConfig", "CallRelayOutbox", "CallRelayMQTT", "CallRelayCore", "CallRelayIngest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(name: "callrelay", dependencies: ["CallRelayCommands"], swiftSettings: swiftSettings),

        // Test support shipped as code: a real mosquitto on a free port, a tiny HTTP client, fixtures.
        .target(name: "CallRelayTesting", dependencies: ["CallRelayCore", "CallRelayMQTT"], swiftSettings: swiftSettings),

        .testTarget(name: "CallRelayCoreTests", dependencies: ["CallRelayCore"], swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayConfigTests", dependencies: ["CallRelayConfig", "CallRelayCore"], resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(
            name: "CallRelayNormalizeTests", dependencies: ["CallRelayNormalize", "CallRelayCore", "CallRelayTesting"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayOutboxTests", dependencies: ["CallRelayOutbox", "CallRelayCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "CallRelayCallsTests", dependencies: ["CallRelayCalls", "CallRelayNormalize", "CallRelayCore", "CallRelayTesting"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayDeliveryTests", dependencies: ["CallRelayDelivery", "CallRelayCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "CallRelayIngestTests",
            dependencies: [
                "CallRelayIngest", "CallRelayCore", "CallRelayNormalize",
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ] + nio,
            swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayMQTTTests", dependencies: ["CallRelayMQTT"], swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayCommandsTests", dependencies: ["CallRelayCommands"], swiftSettings: swiftSettings),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "CallRelayDaemon", "CallRelayConfig", "CallRelayOutbox", "CallRelayTesting", "CallRelayMQTT", "CallRelayCore", "CallRelayIngest",
                "CallRelayCalls",
            ],
            resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
    ]
)

// MARK: - Fuzz harnesses (BEGIN fuzz block; maintained with Fuzz/ and scripts/fuzz.sh)
// libFuzzer executables, added only when CALLRELAY_FUZZ=1 so plain `swift build` / `swift test`
// never see them. Build and run them with scripts/fuzz.sh (it passes -sanitize=fuzzer,address);
// see docs/fuzzing.md.
if Context.environment["CALLRELAY_FUZZ"] == "1" {
    package.targets += [
        // Declares libFuzzer's LLVMFuzzerRunDriver for the harnesses' @main.
        .target(name: "CFuzzDriver", path: "Fuzz/CFuzzDriver"),
        .executableTarget(name: "FuzzJSON", dependencies: ["CFuzzDriver", "CallRelayCore"], path: "Fuzz/FuzzJSON", swiftSettings: swiftSettings),
        .executableTarget(
            name: "FuzzNormalize", dependencies: ["CFuzzDriver", "CallRelayNormalize", "CallRelayCore"], path: "Fuzz/FuzzNormalize",
            swiftSettings: swiftSettings),
        .executableTarget(name: "FuzzConfig", dependencies: ["CFuzzDriver", "CallRelayConfig"], path: "Fuzz/FuzzConfig", swiftSettings: swiftSettings),
        .executableTarget(
            name: "FuzzHTTP",
            dependencies: [
                "CFuzzDriver", "CallRelayIngest", "CallRelayNormalize", "CallRelayCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "Fuzz/FuzzHTTP", swiftSettings: swiftSettings),
    ]
}
// END fuzz block
