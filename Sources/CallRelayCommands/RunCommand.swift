import ArgumentParser
import CallRelayConfig
import CallRelayDaemon
import Dispatch
import Glibc
import Logging
import UnixSignals

/// `callrelay run`: the agent in the foreground (what systemd runs).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent in the foreground until SIGTERM or SIGINT.",
        discussion: """
            Receives webhooks on http.listen, stores each in the outbox (storage.path) before answering 200, \
            and publishes them to the MQTT broker. On SIGTERM/SIGINT: stops intake, waits for in-flight \
            acknowledgements, publishes `offline`, exits 0; a second SIGTERM/SIGINT exits at once (128+signal), \
            leaving what is unacknowledged in the outbox. When the outbox file turns out damaged, or the disk \
            fails a read, write or fsync, while running: refuses webhooks (503), stops and exits 74, so that \
            systemd restarts it and the next start checks the file (setting it aside and salvaging its pending \
            events when it is damaged). SIGHUP (systemctl reload) reads the HTTPS certificate \
            and key again, keeping the old pair when the new one is bad. Exits 78 when the config is invalid.
            """)

    @OptionGroup var options: ConfigOption

    func run() async throws {
        let (loaded, _) = loadConfiguration(flag: options.config)
        guard let configuration = loaded else { throw ExitCode(ExitCodes.config) }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "callrelay")
        logger.logLevel = level

        signal(SIGPIPE, SIG_IGN)
        for signo in [SIGTERM, SIGINT, SIGHUP] { signal(signo, SIG_IGN) }  // delivered to the sequence below instead
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        let daemon: Daemon
        do {
            daemon = try await Daemon.start(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(ExitCodes.cantCreate)
        }
        var ready: Logger.Metadata = ["http_port": "\(daemon.httpPort)"]
        if let admin = daemon.adminPort { ready["admin_port"] = "\(admin)" }
        logger.info("callrelay \(callrelayVersion) ready", metadata: ready)

        // One reader of the signals: SIGHUP reloads; the first SIGTERM/SIGINT starts the graceful
        // stop; a second one exits at once (everything answered 200 is already on disk).
        let (stop, stopRequested) = AsyncStream<StopReason>.makeStream()
        let watcher = Task {
            var stopping = false
            for await signal in signals {
                if signal == .sighup {
                    daemon.reload()
                    continue
                }
                if stopping {
                    logger.warning("second \(signal): exiting at once; unacknowledged events stay in the outbox for the next start")
                    _exit(128 + signal.rawValue)
                }
                stopping = true
                stopRequested.yield(.signal(signal))
            }
        }
        let faultWatcher = Task {
            for await fault in daemon.storageFaults {
                stopRequested.yield(.storageFault(fault))
                break
            }
        }
        var storageFault = false
        for await reason in stop {
            switch reason {
            case .signal(let signal):
                logger.info("signal received", metadata: ["signal": "\(signal)"])
            case .storageFault(let fault):
                storageFault = true
                logger.critical(
                    "stopping because the outbox cannot be trusted; exit status 74 (systemd restarts the agent, which checks the file first)",
                    metadata: ["error": "\(fault)"])
            }
            break
        }
        // After a storage fault, acknowledgements are no longer written: a short drain is enough.
        await daemon.shutdown(drainTimeoutMilliseconds: storageFault ? 2000 : 10_000)
        watcher.cancel()
        faultWatcher.cancel()
        if storageFault { throw ExitCode(ExitCodes.ioError) }
    }
}

/// Why `run` stops.
private enum StopReason: Sendable {
    case signal(UnixSignal)
    case storageFault(String)
}
