import ArgumentParser

/// sysexits(3) codes used by the CLI.
package enum ExitCodes {
    package static let usage: Int32 = 64
    package static let unavailable: Int32 = 69
    package static let software: Int32 = 70
    package static let cantCreate: Int32 = 73
    /// The outbox's file or disk failed while running (EX_IOERR): systemd restarts the agent.
    package static let ioError: Int32 = 74
    package static let config: Int32 = 78
}

package let callrelayVersion = "0.1.0"

/// `callrelay`: the root command.
package struct CallRelayCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "callrelay",
        abstract: "Relays PIOPIY call webhooks to MQTT, storing each durably in SQLite before answering.",
        discussion: """
            The config file is chosen by --config, else $CALLRELAY_CONFIG, else /etc/callrelay/callrelay.toml. \
            The environment variables CALLRELAY_HTTP_TOKEN and CALLRELAY_MQTT_PASSWORD, when set, replace \
            http.token and mqtt.password.

            Installed from the .deb, systemd runs "callrelay run" as the callrelay user (callrelay.service); \
            its log is in journalctl -u callrelay. To check an installation: sudo callrelay check-config \
            --connect, then sudo callrelay send-test.

            Exit codes: 0 ok; 1 send-test failed; 64 usage error; 69 unavailable (a check-config --connect \
            stage failed); 73 cannot start (outbox or listening socket); 78 invalid configuration.
            "callrelay help COMMAND" or "callrelay COMMAND --help" describes each command.
            """,
        version: callrelayVersion,
        subcommands: [RunCommand.self, CheckConfigCommand.self, StatusCommand.self, ReplayCommand.self, SendTestCommand.self])

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
