// Finding, reading and checking the configuration file: the entry points other modules call.

import Glibc

package enum ConfigurationLoader {
    package static let defaultPath = "/etc/callrelay/callrelay.toml"
    /// The environment variable that names the configuration file.
    package static let pathEnvironmentVariable = "CALLRELAY_CONFIG"
    /// A configuration file is a few kilobytes; anything bigger than this is the wrong file.
    package static let maximumFileBytes = 1 << 20

    /// The `--config` flag beats `CALLRELAY_CONFIG`, which beats the default path. An empty flag or
    /// variable counts as not given.
    package static func resolvePath(flag: String?, environment: [String: String]) -> String {
        if let flag, !flag.isEmpty { return flag }
        if let variable = environment[pathEnvironmentVariable], !variable.isEmpty { return variable }
        return defaultPath
    }

    /// Reads and checks the file at `path`. A file that cannot be read gives one error,
    /// `PATH: cannot read: <reason>`.
    package static func load(path: String, environment: [String: String]) -> ConfigurationLoadResult {
        func failure(line: Int? = nil, _ message: String) -> ConfigurationLoadResult {
            ConfigurationLoadResult(
                configuration: nil,
                issues: [ConfigurationIssue(severity: .error, path: path, line: line, key: nil, message: message)])
        }
        let bytes: [UInt8]
        switch readFile(path) {
        case .success(let contents): bytes = contents
        case .failure(let problem): return failure(problem.message)
        }
        if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
            return failure("the file is UTF-16 text; save it as UTF-8")
        }
        switch decodeUTF8(bytes) {
        case .success(let text): return parse(text: text, path: path, environment: environment)
        case .failure(let problem): return failure(line: problem.line, problem.message)
        }
    }

    /// Checks configuration text; `path` is only used in messages. An empty text is valid (all defaults).
    /// Environment overrides apply after the file; a variable that is set but empty does not override.
    package static func parse(text: String, path: String, environment: [String: String]) -> ConfigurationLoadResult {
        let (document, syntaxErrors) = TOMLParser.parse(text, secretKeys: secretPaths)
        var validator = ConfigurationValidator(path: path, environment: environment)
        return validator.validate(document, syntaxErrors: syntaxErrors)
    }

    static let secretPaths = Set(ConfigurationKey.all.filter(\.isSecret).map(\.path))

    // MARK: Reading

    static func readFile(_ path: String) -> Result<[UInt8], RuleViolation> {
        func failure(_ code: Int32) -> Result<[UInt8], RuleViolation> {
            .failure(RuleViolation(message: "cannot read: \(systemErrorMessage(code))"))
        }
        if path.unicodeScalars.contains("\0") { return failure(EINVAL) }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard descriptor >= 0 else { return failure(errno) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return failure(errno) }
        if (status.st_mode & S_IFMT) == S_IFDIR { return failure(EISDIR) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return failure(errno)
            }
            if count == 0 { return .success(contents) }
            contents.append(contentsOf: chunk[0..<count])
            if contents.count > maximumFileBytes {
                return .failure(
                    RuleViolation(
                        message: "the file is larger than \(maximumFileBytes / 1024) KiB; is it the right file?"))
            }
        }
    }

    /// The text, or the line of the first byte that is not UTF-8.
    static func decodeUTF8(_ bytes: [UInt8]) -> Result<String, TOMLSyntaxError> {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var line = 1
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                if scalar == "\n" { line += 1 }
            case .emptyInput:
                return .success(String(decoding: bytes, as: UTF8.self))
            case .error:
                return .failure(
                    TOMLSyntaxError(
                        line: line,
                        message: "the file is not UTF-8 text (save it as UTF-8, or replace the character on this line)")
                )
            }
        }
    }
}
