import ArgumentParser

/// sysexits(3) codes used by the CLI.
package enum ExitCodes {
    package static let usage: Int32 = 64
    package static let unavailable: Int32 = 69
    package static let software: Int32 = 70
    package static let cantCreate: Int32 = 73
    package static let config: Int32 = 78
}

package let callrelayVersion = "0.1.0"

/// `callrelay`: the root command.
package struct CallRelayCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "callrelay",
        abstract: "Relays PIOPIY call webhooks to MQTT, storing each durably in SQLite before answering.",
        discussion: """
            The config file is chosen by --config, else $CALLRELAY_CONFIG, else /etc/callrelay/callrelay.toml.
            Exit codes: 0 ok, 64 usage error, 69 unavailable, 78 invalid configuration.
            """,
        version: callrelayVersion,
        subcommands: [RunCommand.self, CheckConfigCommand.self])

    package init() {}
}

/// `--config PATH`, shared by every subcommand.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Config file (default: $CALLRELAY_CONFIG, else /etc/callrelay/callrelay.toml).", valueName: "PATH"))
    var config: String?
}

/// The executable's whole body: parse the command line and run the chosen command.
package func callrelayMain() async {
    await CallRelayCommand.main()
}
