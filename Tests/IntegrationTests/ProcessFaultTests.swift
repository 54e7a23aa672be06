import CallRelayMQTT
import CallRelayTesting
import Foundation
import Synchronization
import Testing

/// The built binary killed or stopped while webhooks arrive concurrently (issue #3, faults 2–3).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProcessFaultTests {
    struct Agent {
        let pid: pid_t
        let port: Int
        let stderrPath: String
    }

    static func writeConfig(directory: URL, brokerPort: Int, httpPort: Int, clientID: String, extra: String = "") throws -> URL {
        let file = directory.appendingPathComponent("callrelay.toml")
        try """
        [http]
        listen = "127.0.0.1:\(httpPort)"
        [mqtt]
        port = \(brokerPort)
        client_id = "\(clientID)"
        reconnect_min_ms = 100
        reconnect_max_ms = 1000
        [storage]
        path = "\(directory.path)/outbox.sqlite3"
        \(extra)
        """.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    static func start(config: URL, httpPort: Int, directory: URL) throws -> Agent {
        let err = directory.appendingPathComponent("stderr-\(UUID().uuidString.prefix(6))").path
        let pid = try spawn(CLITests.binary, ["run", "--config", config.path], stderrPath: err)
        let ready = waitUntil(seconds: 15) { (try? HTTPTestClient.request(port: httpPort, method: "GET", path: "/readyz").status) == 200 }
        if !ready { kill(pid, SIGKILL) }
        try #require(ready, "agent did not become ready: \((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")")
        return Agent(pid: pid, port: httpPort, stderrPath: err)
    }

    /// Posts distinct events from `workers` threads until a request fails (the agent went away)
    /// or `limit` is reached. Returns the ids answered 200, and calls `midway` once after `after`
    /// answers.
    static func load(port: Int, workers: Int, limit: Int, after: Int, midway: @escaping @Sendable () -> Void) -> [String] {
        let answered = IDs()
        let fired = IDs()
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var n = worker
            while n < limit {
                guard let r = try? post(port, liveEvent(call: "load-\(n % 40)", n: n)), r.status == 200, let id = r.json?["id"] as? String else {
                    return
                }
                let count = answered.add(id)
                if count == after, fired.add("x") == 1 { midway() }
                n += workers
            }
        }
        return answered.all
    }

    @Test func afterSIGKILLUnderLoadEveryAnsweredWebhookIsPublishedOnRestart() throws {
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/+/live/#")
        let directory = temporaryDirectory()
        let httpPort = try freeTCPPort()
        let config = try Self.writeConfig(directory: directory, brokerPort: broker.port, httpPort: httpPort, clientID: "kill-test")
        let agent = try Self.start(config: config, httpPort: httpPort, directory: directory)

        let answered = Self.load(port: httpPort, workers: 16, limit: 100_000, after: 1500) { kill(agent.pid, SIGKILL) }
        #expect(waitForExit(agent.pid, seconds: 10) == 128 + SIGKILL)
        #expect(answered.count >= 1500)

        let restarted = try Self.start(config: config, httpPort: httpPort, directory: directory)
        let received = collector.wait(for: Set(answered).count, seconds: 60) { _ in true }
        let ids = received.compactMap { $0.json?["id"] as? String }
        let missing = Set(answered).subtracting(ids)
        #expect(missing.isEmpty, "\(missing.count) webhooks answered 200 were never published")
        print("SIGKILL: answered \(answered.count), received \(ids.count), unique \(Set(ids).count), duplicates \(ids.count - Set(ids).count)")
        kill(restarted.pid, SIGTERM)
        #expect(waitForExit(restarted.pid, seconds: 20) == 0)
        collector.stop()
    }

    @Test func afterSIGTERMUnderLoadTheAgentDrainsExitsZeroAndLosesNothing() throws {
        let broker = try MosquittoBroker()
        let collector = try MessageCollector(port: broker.port, topic: "piopiy/#")
        let directory = temporaryDirectory()
        let httpPort = try freeTCPPort()
        let config = try Self.writeConfig(directory: directory, brokerPort: broker.port, httpPort: httpPort, clientID: "term-test")
        let agent = try Self.start(config: config, httpPort: httpPort, directory: directory)

        let answered = Self.load(port: httpPort, workers: 16, limit: 100_000, after: 1500) { kill(agent.pid, SIGTERM) }
        #expect(waitForExit(agent.pid, seconds: 30) == 0, "\((try? String(contentsOfFile: agent.stderrPath, encoding: .utf8)) ?? "")")
        // Intake is closed after SIGTERM.
        #expect((try? HTTPTestClient.request(port: httpPort, method: "GET", path: "/healthz")) == nil)

        // Everything answered 200 was published before the exit: no restart needed.
        let received = collector.wait(for: Set(answered).count, seconds: 30) { $0.topic.contains("/live/") }
        let ids = received.compactMap { $0.json?["id"] as? String }
        let missing = Set(answered).subtracting(ids)
        #expect(missing.isEmpty, "\(missing.count) webhooks answered 200 were not published before exit")
        #expect(collector.received.contains { $0.topic == "piopiy/agents/term-test/status" && $0.text == "offline" })
        print("SIGTERM: answered \(answered.count), received \(ids.count), unique \(Set(ids).count), duplicates \(ids.count - Set(ids).count)")
        collector.stop()
    }
}

final class IDs: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    /// Returns the count after adding.
    func add(_ id: String) -> Int { lock.withLock { items.append(id); return items.count } }
    var all: [String] { lock.withLock { items } }
}
