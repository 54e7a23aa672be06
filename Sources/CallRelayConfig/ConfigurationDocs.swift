// Writes docs/configuration.md and packaging/config/callrelay.toml from the key table, so neither
// can drift from the code. `scripts/gen-config-docs.sh` regenerates both; a golden test fails
// when the checked-in files differ.

package enum ConfigurationDocs {
    package static let generatorName = "scripts/gen-config-docs.sh"
    package static let banner =
        "<!-- GENERATED from Sources/CallRelayConfig/ConfigurationKeys.swift by \(generatorName); do not edit -->"

    /// A file with mistakes, and what check-config says about it, shown in the reference.
    static let exampleText = """
        [http]
        token = "changeme"

        [mqtt]
        port = "1883"
        qos = 3
        prot = 1883

        [storag]
        path = "/data/outbox.sqlite3"
        """

    // MARK: - docs/configuration.md

    /// The full content of docs/configuration.md.
    package static func markdownReference() -> String {
        var out: [String] = []
        func add(_ lines: String...) { out.append(contentsOf: lines) }
        let path = ConfigurationLoader.defaultPath

        add(banner, "", "# Configuration reference", "")
        add(
            "callrelay reads one TOML file. Every key has a default, so an empty file is a valid configuration, and a file",
            "only needs the keys it changes. The packaged sample, `packaging/config/callrelay.toml` (installed as",
            "`\(path)`), lists every key below with its default commented out.",
            "")

        add("## Which file is read", "")
        add(
            "1. the path given with `--config PATH`;",
            "2. otherwise the path in the environment variable `\(ConfigurationLoader.pathEnvironmentVariable)`;",
            "3. otherwise `\(path)`.",
            "",
            "An empty `--config` value or an empty `\(ConfigurationLoader.pathEnvironmentVariable)` counts as not given.",
            "A file that is missing or unreadable is an error (`PATH: cannot read: No such file or directory`).",
            "")

        add("## Checking a file", "")
        add(
            "```sh", "callrelay check-config --config \(path)", "```", "",
            "exits with status 0 when the file is valid and 78 when it is not. Every problem is printed at once, in line",
            "order, one per line, as `PATH:LINE: message` (`PATH: message` when no line applies, for example for a value",
            "taken from the environment). Warnings read `PATH:LINE: warning: message` and do not make the file invalid.",
            "Unknown keys and tables are errors, so a typo never falls back to a default without notice.",
            "",
            "The files named by `mqtt.ca_file`, `mqtt.cert_file` and `mqtt.key_file` are checked with the permissions of",
            "whoever runs the check; run it as the service user (`sudo -u callrelay callrelay check-config`) to check what",
            "the service can read.",
            "",
            "For example, this file:", "", "```toml", exampleText, "```", "", "gives:", "", "```")
        let example = ConfigurationLoader.parse(text: exampleText, path: path, environment: [:])
        out.append(contentsOf: example.issues.map(\.description))
        add("```", "")

        add("## Environment variables", "")
        add("| Variable | Effect |", "|---|---|")
        add(
            "| `\(ConfigurationLoader.pathEnvironmentVariable)` | Path of the configuration file, unless `--config` is given. |"
        )
        for key in ConfigurationKey.all {
            guard let variable = key.environmentVariable else { continue }
            add("| `\(variable)` | Replaces `\(key.name)` from the file. |")
        }
        add(
            "",
            "A variable that is set but empty does not override the file. Secrets are best given this way (for example in",
            "the systemd unit's `EnvironmentFile`), which keeps them out of the configuration file.",
            "")

        for section in ConfigurationKey.sections {
            add("## [\(section.name)]: \(section.title)", "", section.summary, "")
            add("| Key | Type | Default | Allowed | Environment | Description |", "|---|---|---|---|---|---|")
            for key in ConfigurationKey.all where key.section == section.name {
                let cells = [
                    "`\(key.name)`",
                    key.type.docsName,
                    "`\(key.defaultValue.tomlLiteral)`",
                    allowedSentence(key, markdown: true),
                    key.environmentVariable.map { "`\($0)`" } ?? "",
                    ([key.description] + secretSentences(key, markdown: true)).joined(separator: " "),
                ]
                add("| " + cells.map(markdownCell).joined(separator: " | ") + " |")
            }
            add("")
        }

        add("## The TOML callrelay reads", "")
        add(
            "callrelay reads the part of [TOML 1.0](https://toml.io/en/v1.0.0) a configuration needs:",
            "",
            "- comments starting with `#`, on their own line or after a value;",
            "- `[table]` headers, also dotted (`[a.b]`); each table once;",
            "- bare keys (`port`), quoted keys (`\"port\"`) and dotted keys (`mqtt.port = 1883` outside any table); each key once;",
            "- strings in double quotes with the escapes `\\\" \\\\ \\b \\t \\n \\f \\r \\uXXXX \\UXXXXXXXX`, and literal",
            "  strings in single quotes without escapes (handy for paths with backslashes);",
            "- integers (`1883`, `-5`, `1_073_741_824`, `0x1F`, `0o17`, `0b101`), floats (`1.5`, `1e3`), booleans (`true`, `false`);",
            "- arrays (`[1, 2]`, may span lines) and one-line inline tables (`mqtt = { host = \"broker\", port = 1883 }`).",
            "",
            "Multi-line strings (`\"\"\"`, `'''`), dates and times, and arrays of tables (`[[name]]`) are not supported:",
            "callrelay reports them with their line. The file must be UTF-8.")
        return out.joined(separator: "\n") + "\n"
    }

    static func markdownCell(_ text: String) -> String {
        text.replacingAll("|", with: "\\|")
    }

    // MARK: - packaging/config/callrelay.toml

    /// The commented sample configuration: every key at its default, commented out.
    package static func sampleFile() -> String {
        var out: [String] = []
        func add(_ lines: String...) { out.append(contentsOf: lines) }
        let rule = String(repeating: "#", count: 79)

        add(
            "## callrelay configuration.",
            "##",
            "## callrelay receives PIOPIY call webhooks over HTTP, stores each one in a",
            "## SQLite outbox and publishes it to an MQTT broker.",
            "##",
            "## Default values are shown; uncomment to change.",
            "## Lines starting with \"##\" explain the setting below them; a line starting",
            "## with \"# \" is a setting at its default: remove the \"# \" to change it.",
            "##",
            "## After editing, check the file with:",
            "##   callrelay check-config --config \(ConfigurationLoader.defaultPath)",
            "## Every setting is also described in docs/configuration.md.")

        for section in ConfigurationKey.sections {
            add("", "", rule, "##  " + section.title.uppercased(), rule)
            out.append(contentsOf: wrap(section.summary, prefix: "## "))
            add("[\(section.name)]")
            for key in ConfigurationKey.all where key.section == section.name {
                add("")
                var text = key.description
                let allowed = allowedSentence(key, markdown: false)
                if !allowed.isEmpty { text += " " + allowed }
                for sentence in secretSentences(key, markdown: false) { text += " " + sentence }
                out.append(contentsOf: wrap(text, prefix: "## "))
                add("# \(key.leaf) = \(key.defaultValue.tomlLiteral)")
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    // MARK: - Shared sentences

    /// The allowed values plus a rule involving another key: for the docs' "Allowed" column
    /// (`1 to 65535`), or as sentences for the sample ("Allowed values: 1 to 65535."), where only
    /// numbers and choices need them because the description states the other rules.
    static func allowedSentence(_ key: ConfigurationKey, markdown: Bool) -> String {
        var parts: [String] = []
        switch (key.rule, markdown) {
        case (.anyValue, true):
            parts.append(key.type == .boolean ? "`true` or `false`" : "any")
        case (_, true):
            parts.append(key.rule.allowedText(markdown: true))
        case (.integerRange, false), (.integerChoices, false), (.stringChoices, false):
            parts.append("Allowed values: \(key.rule.allowedText(markdown: false)).")
        case (_, false):
            break
        }
        if let combination = key.combinationRule { parts.append(combination) }
        return parts.joined(separator: markdown ? ". " : " ")
    }

    static func secretSentences(_ key: ConfigurationKey, markdown: Bool) -> [String] {
        guard key.isSecret else { return [] }
        var sentence = "This is a secret: callrelay never logs it."
        if let variable = key.environmentVariable {
            sentence +=
                markdown
                ? " Prefer setting it through `\(variable)`."
                : " The environment variable \(variable), when set and not empty, replaces this value and keeps it out of this file."
        }
        return [sentence]
    }

    /// Greedy word wrap to 79 columns, each line starting with `prefix`.
    static func wrap(_ text: String, prefix: String, width: Int = 79) -> [String] {
        var lines: [String] = []
        var current = prefix
        for word in text.split(separator: " ") {
            if current.count > prefix.count && current.count + 1 + word.count > width {
                lines.append(current)
                current = prefix
            }
            current += (current.count > prefix.count ? " " : "") + word
        }
        if current.count > prefix.count { lines.append(current) }
        return lines
    }
}

extension String {
    /// `replacingOccurrences(of:with:)` without Foundation.
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
