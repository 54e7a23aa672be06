// A problem found in a configuration file, printed the way compilers do: `PATH:LINE: message`.

/// One problem with a configuration: an error (the file is invalid) or a warning (it works, but
/// probably not as meant).
package struct ConfigurationIssue: Sendable, Equatable, CustomStringConvertible {
    package enum Severity: Sendable, Equatable {
        case error, warning
    }

    package let severity: Severity
    /// The configuration file's path, as given.
    package let path: String
    /// The line in the file; nil when the problem is not on one line (an environment variable, an unreadable file).
    package let line: Int?
    /// The dotted key concerned, if there is one.
    package let key: String?
    /// What is wrong and, where possible, what to write instead.
    package let message: String

    package init(severity: Severity, path: String, line: Int?, key: String?, message: String) {
        self.severity = severity
        self.path = path
        self.line = line
        self.key = key
        self.message = message
    }

    /// `PATH:LINE: message`, `PATH: message` without a line, `PATH:LINE: warning: message` for warnings.
    package var description: String {
        let location = line.map { "\(path):\($0)" } ?? path
        return severity == .warning ? "\(location): warning: \(message)" : "\(location): \(message)"
    }
}

/// What loading a configuration produced.
package struct ConfigurationLoadResult: Sendable {
    /// nil exactly when `issues` contains an error.
    package let configuration: RelayConfiguration?
    /// Errors and warnings, in line order (problems without a line last).
    package let issues: [ConfigurationIssue]

    /// The line each key was set on in the file (keys taken from the environment are absent), so
    /// checks made after loading (the TLS pair) can point at the line too.
    package let lines: [String: Int]

    package init(configuration: RelayConfiguration?, issues: [ConfigurationIssue], lines: [String: Int] = [:]) {
        self.configuration = configuration
        self.issues = issues
        self.lines = lines
    }

    package var errors: [ConfigurationIssue] { issues.filter { $0.severity == .error } }
    package var warnings: [ConfigurationIssue] { issues.filter { $0.severity == .warning } }
}
