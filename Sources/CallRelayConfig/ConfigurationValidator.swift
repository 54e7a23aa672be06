// Turns a parsed file plus the environment into a `RelayConfiguration` or every problem at once.
// The only place that knows the rules between keys; single-key rules come from the key table.

struct ConfigurationValidator {
    let path: String
    let environment: [String: String]

    private var issues: [ConfigurationIssue] = []
    private var values = ConfigurationValues.defaults
    /// The line each key was set on in the file.
    private var lines: [String: Int] = [:]
    /// Keys whose value came from their environment variable.
    private var fromEnvironment: Set<String> = []
    /// Keys whose file value was rejected; rules between keys skip them.
    private var rejected: Set<String> = []

    init(path: String, environment: [String: String]) {
        self.path = path
        self.environment = environment
    }

    /// Common names for keys that are too far from the real name for the edit distance to catch.
    static let aliases: [String: String] = [
        "http.port": "http.listen", "http.host": "http.listen", "http.address": "http.listen",
        "http.bind": "http.listen",
        "http.max_body_size": "http.max_body_bytes", "mqtt.user": "mqtt.username", "mqtt.pass": "mqtt.password",
        "mqtt.keepalive": "mqtt.keepalive_seconds", "mqtt.broker": "mqtt.host", "mqtt.prefix": "mqtt.topic_prefix",
        "mqtt.topic": "mqtt.topic_prefix", "mqtt.cafile": "mqtt.ca_file", "mqtt.certfile": "mqtt.cert_file",
        "mqtt.keyfile": "mqtt.key_file", "mqtt.insecure": "mqtt.tls_insecure", "storage.file": "storage.path",
        "storage.database": "storage.path", "storage.retention": "storage.retention_hours",
        "storage.max_size": "storage.max_bytes", "log.log_level": "log.level",
    ]

    mutating func validate(_ document: TOMLDocument, syntaxErrors: [TOMLSyntaxError]) -> ConfigurationLoadResult {
        for syntaxError in syntaxErrors {
            report(.error, line: syntaxError.line, key: nil, syntaxError.message)
        }
        let unknownTables = checkTableHeaders(document.tables)
        for entry in document.entries where !unknownTables.contains(entry.table) {
            check(entry)
        }
        applyEnvironment()
        checkCombinations()

        let ordered = issues.enumerated().sorted { left, right in
            let leftLine = left.element.line ?? Int.max
            let rightLine = right.element.line ?? Int.max
            return leftLine != rightLine ? leftLine < rightLine : left.offset < right.offset
        }.map(\.element)
        let hasErrors = ordered.contains { $0.severity == .error }
        return ConfigurationLoadResult(
            configuration: hasErrors ? nil : RelayConfiguration(values: values), issues: ordered,
            lines: fromEnvironment.reduce(into: lines) { $0[$1] = nil })
    }

    // MARK: Reporting

    private mutating func report(_ severity: ConfigurationIssue.Severity, line: Int?, key: String?, _ message: String) {
        issues.append(ConfigurationIssue(severity: severity, path: path, line: line, key: key, message: message))
    }

    /// How a key is named in a message: `mqtt.password`, or `mqtt.password (from CALLRELAY_MQTT_PASSWORD)`.
    private func label(_ key: ConfigurationKey) -> String {
        guard fromEnvironment.contains(key.name), let variable = key.environmentVariable else { return key.name }
        return "\(key.name) (from \(variable))"
    }

    private func line(_ key: ConfigurationKey) -> Int? {
        fromEnvironment.contains(key.name) ? nil : lines[key.name]
    }

    private mutating func report(_ severity: ConfigurationIssue.Severity, _ key: ConfigurationKey, _ message: String) {
        report(severity, line: line(key), key: key.name, "\(label(key)): \(message)")
    }

    private func isUsable(_ key: ConfigurationKey) -> Bool { !rejected.contains(key.name) }

    // MARK: Tables and keys

    /// Reports `[headers]` callrelay does not know and returns them, so their keys are not reported one by one.
    private mutating func checkTableHeaders(_ tables: [TOMLDocument.TableHeader]) -> Set<[String]> {
        let sectionNames = ConfigurationKey.sections.map(\.name)
        var unknown: Set<[String]> = []
        for table in tables {
            if table.key.count == 1 && sectionNames.contains(table.key[0]) { continue }
            unknown.insert(table.key)
            let name = TOMLText.key(table.key)
            if let key = ConfigurationKey.all.first(where: { $0.path == table.key }) {
                report(
                    .error, line: table.line, key: key.name,
                    "[\(name)] is a key, not a table; write '\(key.leaf) = ...' under [\(key.section)]")
            } else if let suggestion = Suggestions.closest(to: name, among: sectionNames) {
                report(.error, line: table.line, key: nil, "unknown table [\(name)]; did you mean [\(suggestion)]?")
            } else {
                let known = ConfigurationRule.list(sectionNames.map { "[\($0)]" }, conjunction: "and")
                report(.error, line: table.line, key: nil, "unknown table [\(name)]; callrelay's tables are \(known)")
            }
        }
        return unknown
    }

    private mutating func check(_ entry: TOMLDocument.Entry) {
        guard let key = ConfigurationKey.all.first(where: { $0.path == entry.key }) else {
            reportUnknown(entry)
            return
        }
        lines[key.name] = entry.line
        guard let value = Self.convert(entry.value, to: key.type) else {
            rejected.insert(key.name)
            let found = key.isSecret ? TOMLText.kind(of: entry.value) : TOMLText.describe(entry.value)
            report(.error, key, "expected \(key.type.withArticle), found \(found)")
            return
        }
        checkRule(of: key, value: value)
    }

    private mutating func checkRule(of key: ConfigurationKey, value: ConfigurationValue) {
        var isValid = true
        if case .string(let text) = value, text.unicodeScalars.contains("\0"), key.rule == .anyValue {
            isValid = false
            report(.error, key, "must not contain a NUL character")
        }
        for finding in key.rule.check(value) {
            if finding.severity == .error { isValid = false }
            report(finding.severity, key, finding.message)
        }
        if isValid {
            values[key] = value
            rejected.remove(key.name)
        } else {
            rejected.insert(key.name)
        }
    }

    static func convert(_ value: TOMLValue, to type: ConfigurationValueType) -> ConfigurationValue? {
        switch (value, type) {
        case (.string(let text), .string): .string(text)
        case (.integer(let number), .integer): .integer(number)
        case (.boolean(let flag), .boolean): .boolean(flag)
        case (.array(let items), .stringList):
            items.allSatisfy { if case .string = $0 { true } else { false } }
                ? .strings(items.compactMap { if case .string(let text) = $0 { text } else { nil } }) : nil
        default: nil
        }
    }

    private mutating func reportUnknown(_ entry: TOMLDocument.Entry) {
        let name = TOMLText.key(entry.key)
        let sectionNames = ConfigurationKey.sections.map(\.name)
        if entry.key.count == 1 {
            let single = entry.key[0]
            if sectionNames.contains(single) {
                report(
                    .error, line: entry.line, key: nil,
                    "'\(single)' must be a table: write [\(single)] on its own line with its keys below it, found \(TOMLText.kind(of: entry.value))"
                )
                return
            }
            let leaves = ConfigurationKey.all.map(\.leaf)
            if let leaf = Suggestions.closest(to: single, among: leaves),
                let key = ConfigurationKey.all.first(where: { $0.leaf == leaf })
            {
                let written = leaf == single ? "'\(single)'" : "'\(single)' (did you mean '\(leaf)'?)"
                report(
                    .error, line: entry.line, key: key.name,
                    "key \(written) is outside any table; write it under [\(key.section)]")
            } else {
                report(.error, line: entry.line, key: nil, "unknown key '\(name)' outside any table")
            }
            return
        }
        let names = ConfigurationKey.all.map(\.name)
        let suggestion =
            Suggestions.closest(to: name, among: names)
            ?? Self.aliases[name.lowercased()]
            ?? ConfigurationKey.all.first { $0.leaf.lowercased() == entry.key.last?.lowercased() }?.name
        if let suggestion {
            report(.error, line: entry.line, key: nil, "unknown key '\(name)'; did you mean '\(suggestion)'?")
        } else {
            report(.error, line: entry.line, key: nil, "unknown key '\(name)'")
        }
    }

    // MARK: Environment

    private mutating func applyEnvironment() {
        for key in ConfigurationKey.all {
            guard let variable = key.environmentVariable, let text = environment[variable], !text.isEmpty else {
                continue
            }
            fromEnvironment.insert(key.name)
            let value: ConfigurationValue
            switch key.type {
            case .string:
                value = .string(text)
            case .integer:
                guard let number = Int64(text) else {
                    rejected.insert(key.name)
                    report(.error, key, "expected an integer, found \(TOMLText.quotedForMessage(text))")
                    continue
                }
                value = .integer(number)
            case .stringList:
                value = .strings(text.split(separator: ",").map { String($0.filter { $0 != " " }) })
            case .boolean:
                guard let flag = Bool(text) else {
                    rejected.insert(key.name)
                    report(.error, key, "expected true or false, found \(TOMLText.quotedForMessage(text))")
                    continue
                }
                value = .boolean(flag)
            }
            checkRule(of: key, value: value)
        }
    }

    // MARK: Rules between keys

    private mutating func checkCombinations() {
        let username = ConfigurationKey.mqttUsername
        let password = ConfigurationKey.mqttPassword
        if isUsable(username), isUsable(password), values.string(username).isEmpty, !values.string(password).isEmpty {
            report(.error, password, "is set but mqtt.username is empty; set mqtt.username too")
        }

        let caFile = ConfigurationKey.mqttCAFile
        let certFile = ConfigurationKey.mqttCertFile
        let keyFile = ConfigurationKey.mqttKeyFile
        if let hasPair = checkPair(certFile, keyFile), hasPair, isUsable(caFile), values.string(caFile).isEmpty {
            report(.error, certFile, "needs TLS, which mqtt.ca_file turns on; set mqtt.ca_file too")
        }

        let insecure = ConfigurationKey.mqttTLSInsecure
        if isUsable(insecure), values.boolean(insecure) {
            if isUsable(caFile), values.string(caFile).isEmpty {
                report(.warning, insecure, "has no effect without TLS (mqtt.ca_file is not set)")
            } else {
                report(
                    .warning, insecure,
                    "is true, so the broker's host name is not checked against its certificate; use this only for testing"
                )
            }
        }

        checkHTTPCombinations()

        let minimum = ConfigurationKey.mqttReconnectMinMilliseconds
        let maximum = ConfigurationKey.mqttReconnectMaxMilliseconds
        if isUsable(minimum), isUsable(maximum), values.integer(maximum) < values.integer(minimum) {
            let message =
                "must be at least mqtt.reconnect_min_ms (\(values.integer(minimum))), found \(values.integer(maximum))"
            if lines[maximum.name] != nil {
                report(.error, maximum, message)
            } else {
                report(
                    .error, minimum,
                    "must not exceed mqtt.reconnect_max_ms (\(values.integer(maximum))), found \(values.integer(minimum))"
                )
            }
        }
    }

    /// A certificate and its key: both set or neither. Returns whether both are set, nil when
    /// only one is (reported) or either was rejected.
    private mutating func checkPair(_ cert: ConfigurationKey, _ key: ConfigurationKey) -> Bool? {
        guard isUsable(cert), isUsable(key) else { return nil }
        let hasCert = !values.string(cert).isEmpty
        let hasKey = !values.string(key).isEmpty
        if hasCert && !hasKey {
            report(.error, cert, "is set but \(key.name) is not; set both or neither")
            return nil
        }
        if hasKey && !hasCert {
            report(.error, key, "is set but \(cert.name) is not; set both or neither")
            return nil
        }
        return hasCert
    }

    private mutating func checkHTTPCombinations() {
        let cert = ConfigurationKey.httpTLSCertFile
        let key = ConfigurationKey.httpTLSKeyFile
        let clientCA = ConfigurationKey.httpTLSClientCAFile
        if let hasPair = checkPair(cert, key), !hasPair, isUsable(clientCA), !values.string(clientCA).isEmpty {
            report(.error, clientCA, "needs HTTPS; set http.tls_cert_file and http.tls_key_file too")
        }
        let rate = ConfigurationKey.httpRateLimitPerSecond
        let burst = ConfigurationKey.httpRateLimitBurst
        if isUsable(rate), isUsable(burst), values.integer(rate) == 0, values.integer(burst) > 0 {
            report(.warning, burst, "has no effect while http.rate_limit_per_second is 0 (the limit is off)")
        }
        let listen = ConfigurationKey.httpListen
        let admin = ConfigurationKey.httpAdminListen
        if isUsable(listen), isUsable(admin), !values.string(admin).isEmpty,
            case .success(let a) = ListenAddress.parse(values.string(admin)),
            case .success(let l) = ListenAddress.parse(values.string(listen)), a.port == l.port, a.port != 0
        {
            report(.error, admin, "uses port \(a.port), the webhook listener's port (http.listen); pick another port")
        }
    }
}
