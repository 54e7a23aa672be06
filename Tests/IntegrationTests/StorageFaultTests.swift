import CallRelayMQTT
import CallRelayOutbox
import CallRelayTesting
import Foundation
import Testing

/// The built binary meets a damaged outbox while running (issue 11, item 4; decisions D16): it
/// stops with exit status 74, and the restart (what systemd does) checks the file, sets it aside,
/// and publishes every pending event it could still read.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct StorageFaultTests {
    static func event(_ n: Int) -> [UInt8] {
        Array(
            """
            {"appid":7,"cmiuuid":"damaged-\(n)","leg":"a","direction":"outbound","status":"out_started","time":\(1_725_942_871_000 + n),
             "n":\(n),"pad":"\(String(repeating: "p", count: 1400))"}
            """.utf8)
    }

    static func metric(_ name: String, port: Int) throws -> Int? {
        let text = try HTTPTestClient.request(port: port, method: "GET", path: "/metrics").bodyText
        return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ")[1]) }
    }

    @Test func aDamagedOutboxFoundWhileRunningStopsTheAgentAndTheRestartPublishesWhatIsReadable() throws {
        // The subscriber's session outlives the broker's restarts: it misses nothing published.
        // The agent drains ~2,000 events while the subscriber may still be reconnecting: past
        // mosquitto's default queue of 1,000 for a session not yet back, the broker would drop
        // them (CI failed once on it: 61 more missing than unreadable). Not 0 (unlimited):
        // mosquitto misbehaves with that (eclipse/mosquitto#2876; docs/benchmarks.md).
        let broker = try MosquittoBroker(persistent: true, extraConfig: "max_queued_messages 100000")
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/+/live/#", persistentSession: true)
        broker.stop()

        let directory = temporaryDirectory()
        let httpPort = try freeTCPPort()
        let config = try ProcessFaultTests.writeConfig(directory: directory, brokerPort: broker.port, httpPort: httpPort, clientID: "damage-test",
            extra: "[calls]\nenabled = false")  // counts rows: one per webhook
        let agent = try ProcessFaultTests.start(config: config, httpPort: httpPort, directory: directory)
        let answered = IDs()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for n in stride(from: worker, to: 4000, by: 8) {
                if let r = try? post(httpPort, Self.event(n)), r.status == 200, let id = r.json?["id"] as? String { _ = answered.add(id) }
            }
        }
        #expect(answered.all.count == 4000)

        // Damage the middle of the file, where the backlog's middle lives; another connection's
        // commit makes the agent drop its page cache, so its next read of those pages sees it.
        let path = directory.appendingPathComponent("outbox.sqlite3").path
        let other = try SQLiteDatabase(path: path, mode: .readWrite)
        try other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        let size = Int(try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(size * 4 / 10 / 4096 * 4096))
        try handle.write(contentsOf: Data(repeating: 0xFF, count: size / 5 / 4096 * 4096))
        try handle.close()
        try other.execute("PRAGMA user_version = 2")

        // The broker comes back: delivery reads the backlog, reaches the damage, the agent stops.
        try broker.start()
        let status = waitForExit(agent.pid, seconds: 60)
        let log = (try? String(contentsOfFile: agent.stderrPath, encoding: .utf8)) ?? ""
        #expect(status == 74, "exit status \(String(describing: status)): \(log.suffix(2000))")
        #expect(log.contains("outbox storage failure: refusing webhooks (HTTP 503) and stopping"), "\(log.suffix(2000))")
        #expect(FileManager.default.fileExists(atPath: path + ".check"))

        // The restart: the damaged file is set aside, its readable pending events published.
        let restarted = try ProcessFaultTests.start(config: config, httpPort: httpPort, directory: directory)
        #expect(try Self.metric("callrelay_outbox_set_aside", port: httpPort) == 1)
        let salvaged = try #require(try Self.metric("callrelay_outbox_salvaged_events", port: httpPort))
        let unreadable = try #require(try Self.metric("callrelay_outbox_unreadable_events", port: httpPort))
        #expect(salvaged > 0 && unreadable > 0, "salvaged \(salvaged), unreadable \(unreadable)")
        let expected = 4000 - unreadable
        // Events published before the damage was found may come again (at-least-once): count ids.
        func publishedIDs() -> Set<String> { Set(collector.received.compactMap { $0.json?["id"] as? String }) }
        _ = waitUntil(seconds: 60) { publishedIDs().count >= expected }
        usleep(500_000)
        let ids = publishedIDs()
        let missing = Set(answered.all).subtracting(ids)
        // Exactly the events on the damaged pages are missing; everything else was published.
        #expect(missing.count == unreadable, "missing \(missing.count), reported unreadable \(unreadable)")
        #expect(try post(httpPort, Self.event(9999)).status == 200, "the fresh outbox takes webhooks")
        let aside = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("outbox.sqlite3.corrupt-") && !$0.hasSuffix("-shm") && !$0.hasSuffix("-wal") }
        #expect(aside.count == 1, "\(aside)")
        print("damaged outbox: answered 4000, salvaged \(salvaged), unreadable \(unreadable), published \(ids.count)")
        kill(restarted.pid, SIGTERM)
        #expect(waitForExit(restarted.pid, seconds: 20) == 0)
        collector.stop()
    }
}
