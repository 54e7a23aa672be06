// The checks behind `ConfigurationRule`: one value at a time, no knowledge of the file.
// Messages here follow the key name: "mqtt.qos: <message>".

import CallRelayCore
import Glibc

/// What a rule found wrong with a value.
struct RuleFinding: Sendable, Equatable {
    var severity: ConfigurationIssue.Severity
    var message: String

    static func error(_ message: String) -> RuleFinding { RuleFinding(severity: .error, message: message) }
    static func warning(_ message: String) -> RuleFinding { RuleFinding(severity: .warning, message: message) }
}

struct RuleViolation: Error, Sendable, Equatable {
    var message: String
}

extension ConfigurationRule {
    /// Checks a value already known to have the key's type.
    func check(_ value: ConfigurationValue) -> [RuleFinding] {
        switch (self, value) {
        case (.anyValue, _):
            return []
        case (.nonEmpty, .string(let text)):
            return text.isEmpty ? [.error("must not be empty")] : []
        case (.hostName, .string(let text)):
            return HostRules.checkBrokerHost(text)
        case (.integerRange(let range), .integer(let number)):
            return range.contains(number)
                ? [] : [.error("must be between \(range.lowerBound) and \(range.upperBound), found \(number)")]
        case (.integerChoices(let choices), .integer(let number)):
            return choices.contains(number)
                ? [] : [.error("must be \(Self.list(choices.map(String.init))), found \(number)")]
        case (.stringChoices(let choices), .string(let text)):
            guard !choices.contains(text) else { return [] }
            var message =
                "must be \(Self.list(choices.map { TOMLText.quoted($0) })), found \(TOMLText.quotedForMessage(text))"
            if let suggestion = Suggestions.closest(to: text, among: choices) {
                message += "; did you mean \(TOMLText.quoted(suggestion))?"
            }
            return [.error(message)]
        case (.webhookToken, .string(let text)):
            return TokenRules.check(text)
        case (.listenAddress, .string(let text)):
            switch ListenAddress.parse(text) {
            case .failure(let violation): return [.error(violation.message)]
            case .success(let address):
                return address.port == 0
                    ? [.warning("port 0 picks a random free port, which PIOPIY cannot know; use it only for tests")]
                    : []
            }
        case (.optionalListenAddress, .string(let text)):
            if text.isEmpty { return [] }
            return ConfigurationRule.listenAddress.check(value)
        case (.cidrList, .strings(let items)):
            return NetworkRules.checkCIDRs(items)
        case (.mqttClientID, .string(let text)):
            return MQTTRules.checkClientID(text)
        case (.mqttTopicPrefix, .string(let text)):
            return MQTTRules.checkTopicPrefix(text)
        case (.readableFile, .string(let text)):
            return FileRules.checkReadableFile(text)
        case (.databasePath, .string(let text)):
            return FileRules.checkDatabasePath(text)
        default:
            return [.error("has a rule that does not fit its type (a callrelay bug)")]
        }
    }

    /// `0, 1 or 2` (or `a, b and c` with `conjunction: "and"`).
    static func list(_ items: [String], conjunction: String = "or") -> String {
        guard items.count > 1, let last = items.last else { return items.first ?? "" }
        return items.dropLast().joined(separator: ", ") + " \(conjunction) " + last
    }

    /// The allowed values in words: `1 to 65535`, `0, 1 or 2`; choices in backticks for Markdown.
    func allowedText(markdown: Bool) -> String {
        switch self {
        case .anyValue: return "any"
        case .nonEmpty: return "not empty"
        case .hostName: return "host name or IP address"
        case .integerRange(let range): return "\(range.lowerBound) to \(range.upperBound)"
        case .integerChoices(let choices): return Self.list(choices.map(String.init))
        case .stringChoices(let choices):
            return Self.list(choices.map { markdown ? "`\(TOMLText.quoted($0))`" : TOMLText.quoted($0) })
        case .webhookToken: return "empty, or text without spaces; 16 characters or more recommended"
        case .listenAddress: return "`HOST:PORT` or `[IPv6]:PORT`, port 0 to 65535"
        case .optionalListenAddress: return "empty, or `HOST:PORT` or `[IPv6]:PORT`"
        case .cidrList: return "IPv4 or IPv6 addresses or networks, `ADDRESS/BITS`"
        case .mqttClientID: return "1 to 64 of `A-Z a-z 0-9 _ . -`"
        case .mqttTopicPrefix:
            return "topic levels separated by `/`; no `+`, `#`, empty levels, leading or trailing `/`"
        case .readableFile: return "empty, or the absolute path of a readable file"
        case .databasePath: return "a file path, best absolute"
        }
    }
}

// MARK: - http.listen

struct ListenAddress: Sendable, Equatable {
    /// Without brackets for IPv6.
    var host: String
    var port: Int

    static let example = "\"0.0.0.0:8080\""

    static func parse(_ text: String) -> Result<ListenAddress, RuleViolation> {
        func fail(_ message: String) -> Result<ListenAddress, RuleViolation> {
            .failure(RuleViolation(message: message))
        }
        if text.isEmpty { return fail("must be HOST:PORT, for example \(example); it is empty") }
        if text.contains("://") {
            return fail(
                "must be HOST:PORT without a scheme, for example \(example), found \(TOMLText.quotedForMessage(text))")
        }
        let host: Substring
        let portText: Substring
        if text.first == "[" {
            guard let close = text.firstIndex(of: "]") else {
                return fail("missing ']' after the IPv6 address in \(TOMLText.quotedForMessage(text))")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.first == ":" else {
                return fail("must be [IPv6]:PORT, for example \"[::]:8080\", found \(TOMLText.quotedForMessage(text))")
            }
            portText = rest.dropFirst()
            guard HostRules.isIPv6(host) else {
                return fail("\(TOMLText.quotedForMessage(String(host))) is not a valid IPv6 address")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return fail(
                    "must be HOST:PORT, for example \(example); the port is missing in \(TOMLText.quotedForMessage(text))"
                )
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                return fail(
                    "an IPv6 address must be in brackets, for example \"[::]:8080\", found \(TOMLText.quotedForMessage(text))"
                )
            }
            if host.isEmpty {
                return fail("the host is missing; write \"0.0.0.0\(text)\" to listen on every IPv4 address")
            }
            if host.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
                guard HostRules.isIPv4(host) else {
                    return fail("\(TOMLText.quotedForMessage(String(host))) is not a valid IPv4 address")
                }
            } else if !HostRules.isHostName(host) {
                return fail("\(TOMLText.quotedForMessage(String(host))) is not a valid host name or IP address")
            }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
            let port = Int(portText), port <= 65535
        else {
            return fail(
                "the port must be a number from 0 to 65535, found \(TOMLText.quotedForMessage(String(portText)))")
        }
        return .success(ListenAddress(host: String(host), port: port))
    }
}

// MARK: - http.allow, http.trusted_proxies

enum NetworkRules {
    static func checkCIDRs(_ items: [String]) -> [RuleFinding] {
        var findings: [RuleFinding] = []
        for item in items {
            let shown = TOMLText.quotedForMessage(item)
            guard let cidr = CIDR(item) else {
                findings.append(
                    .error(
                        "\(shown) is not an IP address or network; write ADDRESS or ADDRESS/BITS, for example \"203.0.113.0/24\" or \"2001:db8::/32\""
                    ))
                continue
            }
            if item.contains("/"), CIDR(String(item.split(separator: "/")[0])).map({ $0.network != cidr.network }) ?? false {
                findings.append(.warning("\(shown) has host bits set; it means \(TOMLText.quoted(cidr.description))"))
            }
        }
        return findings
    }
}

// MARK: - http.token

enum TokenRules {
    static let recommendedLength = 16

    static func check(_ text: String) -> [RuleFinding] {
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            return [.error("must not contain spaces or control characters")]
        }
        guard !text.isEmpty else { return [] }
        var findings: [RuleFinding] = []
        if text.count < recommendedLength {
            findings.append(
                .warning(
                    "is shorter than \(recommendedLength) characters; use a long random token, for example from \"openssl rand -hex 16\""
                ))
        }
        if !text.unicodeScalars.allSatisfy(isURLUnreserved) {
            findings.append(
                .warning(
                    "contains characters that must be percent-encoded in a ?token= URL; letters, digits, '-', '.', '_' and '~' are safest"
                ))
        }
        return findings
    }

    static func isURLUnreserved(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "-", ".", "_", "~": true
        default: false
        }
    }
}

// MARK: - Hosts

enum HostRules {
    static func isIPv4(_ text: Substring) -> Bool {
        var address = in_addr()
        return String(text).withCString { inet_pton(AF_INET, $0, &address) } == 1
    }

    /// An IPv6 address, optionally with a `%zone`.
    static func isIPv6(_ text: Substring) -> Bool {
        var address = text
        if let percent = text.firstIndex(of: "%") {
            let zone = text[text.index(after: percent)...]
            guard !zone.isEmpty, zone.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) })
            else {
                return false
            }
            address = text[..<percent]
        }
        var result = in6_addr()
        return String(address).withCString { inet_pton(AF_INET6, $0, &result) } == 1
    }

    /// Labels of letters, digits, `-` (and `_`, which container and LAN names use), 1–63 long, not
    /// starting or ending with `-`; 253 characters at most.
    static func isHostName(_ text: Substring) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
    }

    static func checkBrokerHost(_ text: String) -> [RuleFinding] {
        if text.isEmpty { return [.error("must not be empty")] }
        let shown = TOMLText.quotedForMessage(text)
        if text.contains("://") {
            return [.error("write only the host name, without a scheme such as \"mqtt://\", found \(shown)")]
        }
        if text.first == "[" {
            return [.error("write an IPv6 address without brackets, found \(shown)")]
        }
        if text.contains(where: { $0.isWhitespace }) {
            return [.error("must not contain spaces, found \(shown)")]
        }
        let colons = text.filter { $0 == ":" }.count
        if colons == 1 {
            return [.error("write the port in mqtt.port, not in the host, found \(shown)")]
        }
        let host = Substring(text)
        if colons > 1 {
            return isIPv6(host) ? [] : [.error("\(shown) is not a valid IPv6 address")]
        }
        if text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
            return isIPv4(host) ? [] : [.error("\(shown) is not a valid IPv4 address")]
        }
        return isHostName(host) ? [] : [.error("\(shown) is not a valid host name or IP address")]
    }
}

// MARK: - MQTT names

enum MQTTRules {
    static let clientIDMaximumLength = 64

    static func checkClientID(_ text: String) -> [RuleFinding] {
        if text.isEmpty { return [.error("must not be empty")] }
        if let bad = text.unicodeScalars.first(where: { !isClientIDScalar($0) }) {
            return [.error("may contain only letters, digits, '_', '.' and '-', found \(describe(bad))")]
        }
        if text.utf8.count > clientIDMaximumLength {
            return [.error("must be at most \(clientIDMaximumLength) characters long, found \(text.utf8.count)")]
        }
        return []
    }

    static func isClientIDScalar(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", ".", "-": return true
        default: return false
        }
    }

    static func checkTopicPrefix(_ text: String) -> [RuleFinding] {
        if text.isEmpty { return [.error("must not be empty")] }
        if text.contains("+") { return [.error("must not contain the MQTT wildcard '+'")] }
        if text.contains("#") { return [.error("must not contain the MQTT wildcard '#'")] }
        if text.unicodeScalars.contains("\0") { return [.error("must not contain a NUL character")] }
        if text.hasPrefix("/") { return [.error("must not start with '/', found \(TOMLText.quotedForMessage(text))")] }
        if text.hasSuffix("/") { return [.error("must not end with '/', found \(TOMLText.quotedForMessage(text))")] }
        if text.contains("//") {
            return [.error("must not contain an empty level ('//'), found \(TOMLText.quotedForMessage(text))")]
        }
        if text.hasPrefix("$") {
            return [
                .warning(
                    "topics starting with '$' are reserved for the broker; subscribers to '#' will not see these events"
                )
            ]
        }
        return []
    }

    static func describe(_ scalar: Unicode.Scalar) -> String {
        if scalar == " " { return "a space" }
        if scalar.value < 0x20 || scalar.value == 0x7F || scalar.properties.isWhitespace {
            return "U+" + TOMLText.hex(scalar.value, width: 4)
        }
        return "'\(Character(scalar))'"
    }
}

// MARK: - Files

enum FileRules {
    static func checkReadableFile(_ text: String) -> [RuleFinding] {
        if text.isEmpty { return [] }
        if text.unicodeScalars.contains("\0") { return [.error("must not contain a NUL character")] }
        let shown = TOMLText.quotedForMessage(text)
        guard text.hasPrefix("/") else {
            return [.error("must be an absolute path (starting with '/'), found \(shown)")]
        }
        if access(text, R_OK) != 0 {
            return [.error("cannot read \(shown): \(systemErrorMessage(errno))")]
        }
        var status = stat()
        if stat(text, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR {
            return [.error("\(shown) is a directory, not a file")]
        }
        return []
    }

    static func checkDatabasePath(_ text: String) -> [RuleFinding] {
        if text.isEmpty { return [.error("must not be empty")] }
        if text.unicodeScalars.contains("\0") { return [.error("must not contain a NUL character")] }
        if text.hasSuffix("/") {
            return [.error("must name a file, not a directory, found \(TOMLText.quotedForMessage(text))")]
        }
        if !text.hasPrefix("/") {
            return [
                .warning(
                    "\(TOMLText.quotedForMessage(text)) is a relative path, so it depends on the directory callrelay is started in ('/' under systemd); write an absolute path"
                )
            ]
        }
        return []
    }
}

/// `strerror` text, for example "No such file or directory".
func systemErrorMessage(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "error \(code)" }
    return String(cString: text)
}
