import ArgumentParser

/// `callrelay check-config`: validates the file and exits 78 on any error.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the config file: syntax, types, ranges, unknown keys (typos).",
        discussion: "Prints every problem as PATH:LINE: message. Exit status 0 when valid, 78 when invalid.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let (configuration, path) = loadConfiguration(flag: options.config)
        guard configuration != nil else { throw ExitCode(ExitCodes.config) }
        print("\(path): configuration is valid")
    }
}
