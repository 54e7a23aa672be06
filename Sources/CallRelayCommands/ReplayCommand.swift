import ArgumentParser
import CallRelayConfig
import CallRelayCore
import CallRelayOutbox

/// `callrelay replay`: publishes stored events again (delivered ones and dead letters).
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Publish stored events again: delivered events and dead letters received in a time window.",
        discussion: """
            Copies every delivered or dead-lettered event received in [--since, --until) (optionally of one call) to the \
            end of the outbox queue, payload unchanged (same "id": subscribers that de-duplicate on id see a repeat). \
            Events still pending are not copied. The running agent publishes the copies within about a second; a stopped \
            agent publishes them when it starts. Delivered events are kept storage.retention_hours.
            TIME: RFC 3339 (2024-09-10T04:34:31Z), a date (2024-09-10, UTC), a duration ago (30m, 2h, 7d), now, \
            or epoch seconds/milliseconds.
            """)

    @OptionGroup var options: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Start of the window (inclusive).", valueName: "TIME"))
    var since: String

    @Option(name: .long, help: ArgumentHelp("End of the window (exclusive; default: now).", valueName: "TIME"))
    var until: String?

    @Option(name: .long, help: ArgumentHelp("Only events of this call (its cmiuuid, the payload's call_id).", valueName: "ID"))
    var call: String?

    func validate() throws {
        let now = Timestamp.nowMilliseconds()
        guard TimeArgument.parse(since, now: now) != nil else { throw ValidationError("--since: cannot read \"\(since)\" as a time") }
        if let until, TimeArgument.parse(until, now: now) == nil { throw ValidationError("--until: cannot read \"\(until)\" as a time") }
    }

    func run() throws {
        let (loaded, _) = loadConfiguration(flag: options.config)
        guard let configuration = loaded else { throw ExitCode(ExitCodes.config) }
        let now = Timestamp.nowMilliseconds()
        let from = TimeArgument.parse(since, now: now)!
        let to = until.flatMap { TimeArgument.parse($0, now: now) }
        do {
            let result = try SQLiteOutbox.replay(
                path: configuration.storage.path, sinceMilliseconds: from, untilMilliseconds: to, callID: call,
                maxBytes: configuration.storage.maxBytes)
            let count = result.copied
            let window = "\(Timestamp.rfc3339(millisecondsSinceEpoch: from)) .. \(to.map { Timestamp.rfc3339(millisecondsSinceEpoch: $0) } ?? "now")"
            printLine("queued \(count) event\(count == 1 ? "" : "s") for publishing again (\(window)\(call.map { ", call \($0)" } ?? ""))")
            let dead = result.deadLetterReasons.reduce(0) { $0 + $1.count }
            if dead > 0 {
                printLine("of which \(dead) dead letter\(dead == 1 ? "" : "s"), given up on before because:")
                for r in result.deadLetterReasons { printLine("  \(r.count) × \(r.reason)") }
            }
            if result.stoppedAtCap {
                printError(
                    "stopped: the outbox reached storage.max_bytes (\(configuration.storage.maxBytes) bytes); "
                        + "run the same replay again with --since after the last one queued once these are delivered")
                throw ExitCode(ExitCodes.unavailable)
            }
        } catch {
            printError("\(configuration.storage.path): \(error)")
            throw ExitCode(ExitCodes.unavailable)
        }
    }
}
