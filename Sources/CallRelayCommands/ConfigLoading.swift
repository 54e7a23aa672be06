import CallRelayConfig
import Glibc

/// The process environment as a dictionary (no Foundation).
func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let eq = text.firstIndex(of: "=") {
            result[String(text[..<eq])] = String(text[text.index(after: eq)...])
        }
        pointer += 1
    }
    return result
}

func printError(_ text: String) {
    let line = Array((text + "\n").utf8)
    _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// Loads and validates the configuration; prints every problem as `PATH:LINE: message`.
/// Returns nil when there is at least one error.
func loadConfiguration(flag: String?) -> (RelayConfiguration?, path: String) {
    let environment = processEnvironment()
    let path = ConfigurationLoader.resolvePath(flag: flag, environment: environment)
    let result = ConfigurationLoader.load(path: path, environment: environment)
    for issue in result.issues { printError(issue.description) }
    return (result.configuration, path)
}

/// Writes one line to stdout now (stdout is a pipe under systemd or a test, so `print` alone
/// would hold the line back until exit).
func printLine(_ text: String) {
    print(text)
    fflush(nil)  // all output streams; `stdout` itself is a C global Swift 6 will not touch
}
