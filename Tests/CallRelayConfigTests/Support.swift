import CallRelayConfig
import Foundation

/// The files in Tests/CallRelayConfigTests/Fixtures (copied into the test bundle).
enum Fixture {
    static var directory: URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("Fixtures are missing from the test bundle")
        }
        return url
    }

    static func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    /// The fixture's text with `@FIXTURES@` replaced by the fixture folder.
    static func text(_ name: String) throws -> String {
        let raw = try String(contentsOfFile: path(name), encoding: .utf8)
        return raw.replacingOccurrences(of: "@FIXTURES@", with: directory.path)
    }
}

/// Checks TOML text with no environment, as "test.toml".
func check(_ text: String, environment: [String: String] = [:]) -> ConfigurationLoadResult {
    ConfigurationLoader.parse(text: text, path: "test.toml", environment: environment)
}

/// The printed form of every issue.
func printed(_ text: String, environment: [String: String] = [:]) -> [String] {
    check(text, environment: environment).issues.map(\.description)
}

/// A fresh temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("callrelay-config-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
