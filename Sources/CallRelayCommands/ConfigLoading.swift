import CallRelayConfig
import CallRelayIngest
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
    guard let configuration = result.configuration else { return (nil, path) }
    // The HTTPS pair is checked here, after the file: it exists, parses and matches.
    let tlsIssues = tlsFileIssues(configuration, path: path, lines: result.lines)
    for issue in tlsIssues { printError(issue.description) }
    return (tlsIssues.contains { $0.severity == .error } ? nil : configuration, path)
}

/// `PATH:LINE: http.tls_key_file: …` for every problem with the certificate files.
func tlsFileIssues(_ configuration: RelayConfiguration, path: String, lines: [String: Int]) -> [ConfigurationIssue] {
    guard let cert = configuration.http.tlsCertFile, let key = configuration.http.tlsKeyFile else { return [] }
    return ServerTLS.check(TLSFiles(certificateChain: cert, privateKey: key, clientCA: configuration.http.tlsClientCAFile)).map {
        ConfigurationIssue(
            severity: $0.isWarning ? .warning : .error, path: path, line: lines[$0.key.rawValue], key: $0.key.rawValue,
            message: $0.description)
    }
}

/// Writes one line to stdout now (stdout is a pipe under systemd or a test, so `print` alone
/// would hold the line back until exit).
func printLine(_ text: String) {
    print(text)
    fflush(nil)  // all output streams; `stdout` itself is a C global Swift 6 will not touch
}
