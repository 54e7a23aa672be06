import ArgumentParser
import CallRelayConfig
import CallRelayDaemon
import Dispatch
import Glibc
import Logging

/// `callrelay run`: the agent in the foreground (what systemd runs).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent in the foreground until SIGTERM or SIGINT.",
        discussion: """
            Receives webhooks on http.listen, stores each in the outbox (storage.path) before answering 200, \
            and publishes them to the MQTT broker. On SIGTERM/SIGINT: stops intake, waits for in-flight \
            acknowledgements, publishes `offline`, exits 0. Exits 78 when the config is invalid.
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
        let stop = SignalWaiter(signals: [SIGTERM, SIGINT])
        let daemon: Daemon
        do {
            daemon = try await Daemon.start(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(ExitCodes.cantCreate)
        }
        logger.info("callrelay \(callrelayVersion) ready", metadata: ["http_port": "\(daemon.httpPort)"])
        let signo = await stop.wait()
        logger.info("signal received", metadata: ["signal": "\(signo == SIGTERM ? "SIGTERM" : "SIGINT")"])
        await daemon.shutdown()
    }
}

/// Turns SIGTERM/SIGINT into an awaitable event (dispatch sources; the default action is disabled).
final class SignalWaiter: @unchecked Sendable {  // sources are immutable after init
    private let sources: [any DispatchSourceSignal]
    private let stream: AsyncStream<Int32>

    init(signals: [Int32]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        self.stream = stream
        sources = signals.map { signo in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler { continuation.yield(signo) }
            source.resume()
            return source
        }
    }

    func wait() async -> Int32 {
        for await signo in stream { return signo }
        return SIGTERM
    }
}
