import ArgumentParser
import CallRelayConfig
import CallRelayMQTT
import CallRelayOutbox
import Glibc

/// `callrelay check-config`: validates the file and exits 78 on any error; with `--connect` it also
/// opens the outbox and connects to the broker, one line per stage.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the config file: syntax, types, ranges, unknown keys (typos).",
        discussion: """
            Prints every problem as PATH:LINE: message (warnings too), then "PATH: configuration is valid". \
            systemd runs this before every start of the service.

            With --connect it also tries what the agent needs at start, one line per stage:
              config PATH ... ok
              outbox /var/lib/callrelay/outbox.sqlite3 ... ok (12 pending)
              broker 127.0.0.1:1883 ... ok (connected as callrelay-check-4242)

            The outbox is opened as the agent opens it; a missing outbox is not created (only its \
            directory is checked), so running this as root never leaves a root-owned file behind. \
            The broker connection uses the configured host, port, user name, password and TLS \
            settings with its own client id (callrelay-check-PID), so it never disconnects a \
            running agent. A stage that fails prints the libmosquitto or SQLite reason and what to \
            check.

            Exit status: 0 valid (and, with --connect, every stage ok); 78 invalid configuration; \
            69 a --connect stage failed.
            """)

    @OptionGroup var options: ConfigOption

    @Flag(name: .long, help: "Also open the outbox and connect to the MQTT broker, reporting each stage.")
    var connect = false

    @Option(name: .long, help: ArgumentHelp("With --connect: seconds to wait for the broker.", valueName: "SECONDS"))
    var timeout: Int = 10

    func validate() throws {
        guard (1...300).contains(timeout) else { throw ValidationError("--timeout must be 1 to 300 seconds") }
    }

    func run() throws {
        let (loaded, path) = loadConfiguration(flag: options.config)
        guard let configuration = loaded else {
            if connect { printLine("config \(path) ... FAILED (the problems are listed above)") }
            throw ExitCode(ExitCodes.config)
        }
        guard connect else {
            printLine("\(path): configuration is valid")
            return
        }
        printLine("config \(path) ... ok")
        var failed = false
        if !checkOutbox(configuration.storage) { failed = true }
        if !checkBroker(configuration) { failed = true }
        if failed { throw ExitCode(ExitCodes.unavailable) }
    }

    /// Opens the outbox as the agent would and counts what waits in it.
    private func checkOutbox(_ storage: RelayConfiguration.Storage) -> Bool {
        let path = storage.path
        let stage = "outbox \(path) ..."
        guard access(path, F_OK) == 0 else {
            let directory = parentDirectory(of: path)
            if access(directory, W_OK | X_OK) == 0 {
                printLine("\(stage) ok (not created yet: the agent creates it at its first start in \(directory))")
                return true
            }
            let reason = access(directory, F_OK) == 0 ? "is not writable by this user" : "does not exist"
            printLine("\(stage) FAILED: the directory \(directory) \(reason); the agent must be able to create the outbox there")
            return false
        }
        guard access(path, R_OK | W_OK) == 0 else {
            printLine(
                "\(stage) FAILED: \(String(cString: strerror(errno))); run this as root or as the agent's user (sudo -u callrelay)")
            return false
        }
        do {
            let outbox = try SQLiteOutbox(
                path: path, synchronous: storage.synchronous == .normal ? .normal : .full, maxBytes: storage.maxBytes,
                retentionHours: storage.retentionHours, logger: silentLogger)
            defer { outbox.close() }
            let stats = try outbox.stats()
            var detail = "\(stats.pending) pending"
            if let oldest = stats.oldestPendingReceivedAtMilliseconds {
                detail += ", oldest received \(ageText(milliseconds: SQLiteOutbox.nowMilliseconds() - oldest)) ago"
            }
            printLine("\(stage) ok (\(detail))")
            return true
        } catch {
            printLine("\(stage) FAILED: \(error)")
            return false
        }
    }

    /// Connects with the configured settings under a client id of its own.
    private func checkBroker(_ configuration: RelayConfiguration) -> Bool {
        let clientID = "callrelay-check-\(getpid())"
        let probe: BrokerProbe
        do {
            probe = try BrokerProbe(configuration: configuration, clientID: clientID)
        } catch {
            printLine("broker \(configuration.mqtt.host):\(configuration.mqtt.port) ... FAILED: \(error)")
            return false
        }
        let stage = "broker \(probe.brokerDescription) ..."
        if let failure = probe.connect(timeoutMilliseconds: timeout * 1000) {
            printLine("\(stage) FAILED: \(failure); \(BrokerProbe.hint(for: failure))")
            return false
        }
        probe.close()
        var detail = "connected as \(clientID)"
        if let user = probe.options.username { detail += ", user \(user)" }
        if configuration.mqtt.tlsInsecure { detail += "; tls_insecure: the certificate's host name was not checked" }
        printLine("\(stage) ok (\(detail))")
        return true
    }
}

/// `"/var/lib/callrelay"` for `"/var/lib/callrelay/outbox.sqlite3"`; `"."` for a bare file name.
func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// "3 s", "5 min", "2 h", "4 d".
func ageText(milliseconds: Int64) -> String {
    let seconds = max(0, milliseconds / 1000)
    if seconds < 120 { return "\(seconds) s" }
    if seconds < 7200 { return "\(seconds / 60) min" }
    if seconds < 172_800 { return "\(seconds / 3600) h" }
    return "\(seconds / 86400) d"
}
