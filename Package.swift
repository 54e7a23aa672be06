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
    ],
    targets: [
        // C libraries, each wrapped by exactly one Swift type.
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // Vocabulary: JSON value, timestamps, ids. No I/O, no third-party imports.
        .target(name: "CallRelayCore", swiftSettings: swiftSettings),
        // The config file: TOML subset, key table, validation, sample generation.
        .target(name: "CallRelayConfig", swiftSettings: swiftSettings),
        // PIOPIY payload -> callrelay.call-event.v1. Pure functions.
        .target(name: "CallRelayNormalize", dependencies: ["CallRelayCore"], swiftSettings: swiftSettings),
        // Durable outbox in SQLite (WAL, group commit). Only importer of CSQLite.
        .target(name: "CallRelayOutbox", dependencies: ["CallRelayCore", "CSQLite", logging], swiftSettings: swiftSettings),
        // libmosquitto client. Only importer of CMosquitto.
        .target(name: "CallRelayMQTT", dependencies: ["CallRelayCore", "CMosquitto", logging], swiftSettings: swiftSettings),
        // Outbox -> MQTT: bounded in-flight window, ack -> delivered.
        .target(name: "CallRelayDelivery", dependencies: ["CallRelayCore", logging], swiftSettings: swiftSettings),
        // HTTP in: routes, auth, body limit, 200-after-commit.
        .target(name: "CallRelayIngest", dependencies: ["CallRelayCore", "CallRelayNormalize", logging] + nio, swiftSettings: swiftSettings),
        // Wiring only: build and stop the running agent.
        .target(
            name: "CallRelayDaemon",
            dependencies: ["CallRelayConfig", "CallRelayIngest", "CallRelayOutbox", "CallRelayMQTT", "CallRelayDelivery", logging] + nio,
            swiftSettings: swiftSettings),
        // The CLI verbs, one file each.
        .target(
            name: "CallRelayCommands",
            dependencies: [
                "CallRelayDaemon", "CallRelayConfig", "CallRelayOutbox", "CallRelayMQTT", "CallRelayCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(name: "callrelay", dependencies: ["CallRelayCommands"], swiftSettings: swiftSettings),

        // Test support shipped as code: a real mosquitto on a free port, a tiny HTTP client, fixtures.
        .target(name: "CallRelayTesting", dependencies: ["CallRelayCore", "CallRelayMQTT"], swiftSettings: swiftSettings),

        .testTarget(name: "CallRelayCoreTests", dependencies: ["CallRelayCore"], swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayConfigTests", dependencies: ["CallRelayConfig"], resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
        .testTarget(
            name: "CallRelayNormalizeTests", dependencies: ["CallRelayNormalize", "CallRelayCore"], resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayOutboxTests", dependencies: ["CallRelayOutbox", "CallRelayCore"], swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayDeliveryTests", dependencies: ["CallRelayDelivery", "CallRelayCore"], swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayMQTTTests", dependencies: ["CallRelayMQTT"], swiftSettings: swiftSettings),
        .testTarget(name: "CallRelayCommandsTests", dependencies: ["CallRelayCommands"], swiftSettings: swiftSettings),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["CallRelayDaemon", "CallRelayConfig", "CallRelayOutbox", "CallRelayTesting", "CallRelayMQTT", "CallRelayCore"],
            resources: [.copy("Fixtures")], swiftSettings: swiftSettings),
    ]
)
