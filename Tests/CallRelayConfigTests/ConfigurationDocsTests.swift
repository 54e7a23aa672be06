import CallRelayConfig
import Foundation
import Testing

@Suite("Generated docs and sample")
struct ConfigurationDocsTests {
    /// The repository root, from this file's location.
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let goldenFiles: [(path: String, generate: @Sendable () -> String)] = [
        ("docs/configuration.md", ConfigurationDocs.markdownReference),
        ("packaging/config/callrelay.toml", ConfigurationDocs.sampleFile),
    ]

    @Test(
        "docs/configuration.md and packaging/config/callrelay.toml equal the generated text (CALLRELAY_UPDATE_GOLDEN=1 rewrites them)",
        arguments: 0..<2)
    func golden(index: Int) throws {
        let (relativePath, generate) = Self.goldenFiles[index]
        let url = Self.repositoryRoot.appendingPathComponent(relativePath)
        let generated = generate()
        if ProcessInfo.processInfo.environment["CALLRELAY_UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try generated.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let checkedIn = try String(contentsOf: url, encoding: .utf8)
        #expect(
            checkedIn == generated,
            "\(relativePath) is out of date: run scripts/gen-config-docs.sh (or CALLRELAY_UPDATE_GOLDEN=1 swift test --filter CallRelayConfigTests)"
        )
    }

    @Test("the sample parses without any issue and gives the defaults")
    func sampleIsValid() {
        let result = ConfigurationLoader.parse(
            text: ConfigurationDocs.sampleFile(), path: "callrelay.toml", environment: [:])
        #expect(result.issues.isEmpty)
        #expect(result.configuration == RelayConfiguration.defaults)
    }

    @Test("uncommenting every setting of the sample still gives the defaults")
    func sampleUncommented() {
        let uncommented = ConfigurationDocs.sampleFile().split(separator: "\n", omittingEmptySubsequences: false).map {
            line in
            line.hasPrefix("# ") && line.contains(" = ") ? String(line.dropFirst(2)) : String(line)
        }.joined(separator: "\n")
        let result = ConfigurationLoader.parse(text: uncommented, path: "callrelay.toml", environment: [:])
        #expect(result.issues.isEmpty)
        #expect(result.configuration == RelayConfiguration.defaults)
        for key in ConfigurationKey.all {
            #expect(uncommented.contains("\n\(key.leaf) = \(key.defaultValue.tomlLiteral)\n"), "\(key.name)")
        }
    }

    @Test("sample style: header, '## ' sentences ending with a period, commented defaults, secrets name their variable")
    func sampleStyle() {
        let sample = ConfigurationDocs.sampleFile()
        #expect(sample.contains("## Default values are shown; uncomment to change.\n"))
        #expect(sample.contains("callrelay check-config --config /etc/callrelay/callrelay.toml"))
        for line in sample.split(separator: "\n") {
            #expect(line.count <= 79, "\(line)")
            #expect(line.hasPrefix("#") || line.hasPrefix("["), "\(line)")
        }
        for key in ConfigurationKey.all {
            #expect(key.description.hasSuffix("."), "\(key.name)")
            if let variable = key.environmentVariable { #expect(sample.contains(variable)) }
        }
        #expect(sample.contains("#  MQTT BROKER\n") || sample.contains("##  MQTT BROKER\n"))
    }

    @Test("the reference has the banner, the path order, exit code 78 and one row per key")
    func referenceContent() {
        let reference = ConfigurationDocs.markdownReference()
        #expect(
            reference.hasPrefix(
                "<!-- GENERATED from Sources/CallRelayConfig/ConfigurationKeys.swift by scripts/gen-config-docs.sh; do not edit -->\n"
            ))
        #expect(reference.contains("`--config PATH`"))
        #expect(reference.contains("`CALLRELAY_CONFIG`"))
        #expect(reference.contains("78"))
        #expect(reference.contains("`PATH:LINE: message`"))
        for key in ConfigurationKey.all {
            #expect(reference.contains("| `\(key.name)` |"), "\(key.name)")
        }
        #expect(reference.contains("test.toml") == false)
        #expect(reference.contains("mqtt.qos: must be 0, 1 or 2, found 3"))
    }

    @Test("the key table is consistent")
    func keyTable() {
        let names = ConfigurationKey.all.map(\.name)
        #expect(Set(names).count == names.count)
        let sections = Set(ConfigurationKey.sections.map(\.name))
        for key in ConfigurationKey.all {
            #expect(sections.contains(key.section), "\(key.name)")
            #expect(key.path.count == 2, "\(key.name)")
            #expect(key.defaultValue.type == key.type, "\(key.name)")
            #expect(key.environmentVariable == nil || key.isSecret, "\(key.name)")
        }
        #expect(ConfigurationKey.all.filter(\.isSecret).map(\.name) == ["http.token", "mqtt.password"])
    }
}
