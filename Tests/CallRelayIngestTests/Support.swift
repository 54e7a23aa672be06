@testable import CallRelayIngest
import Foundation
import CallRelayNormalize
import NIOCore
import NIOEmbedded
import Synchronization

/// In-memory twin of the outbox: stores synchronously (or holds completions when `hold` is set).
final class MemoryWebhookStore: WebhookStore {
    private let bodies = Mutex<[[UInt8]]>([])
    private let held = Mutex<[@Sendable (Result<StoreOutcome, StoreFailure>) -> Void]>([])
    let hold: Bool
    let writable = Atomic<Bool>(true)

    init(hold: Bool = false) { self.hold = hold }

    func store(
        _ event: NormalizedEvent, body: [UInt8], receivedAtMilliseconds: Int64,
        completion: @escaping @Sendable (Result<StoreOutcome, StoreFailure>) -> Void
    ) {
        let n = bodies.withLock { b in
            b.append(body)
            return b.count
        }
        if hold {
            held.withLock { $0.append(completion) }
        } else {
            completion(.success(.stored(id: "id\(n)")))
        }
    }

    /// Completes every held store with `.stored`.
    func release() {
        let waiting = held.withLock { h in
            defer { h.removeAll() }
            return h
        }
        for (i, completion) in waiting.enumerated() { completion(.success(.stored(id: "held\(i)"))) }
    }

    var isWritable: Bool { writable.load(ordering: .relaxed) }
    var count: Int { bodies.withLock { $0.count } }
    var storedBodies: [String] { bodies.withLock { $0.map { String(decoding: $0, as: UTF8.self) } } }
}

/// One connection on an `EmbeddedChannel`, with the listener's real pipeline.
final class Connection {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel
    let store: MemoryWebhookStore
    let shared: IngestContext

    init(
        peer: String = "192.0.2.10", store: MemoryWebhookStore = MemoryWebhookStore(),
        _ configure: (inout IngestConfiguration) -> Void = { _ in }
    ) throws {
        var configuration = IngestConfiguration(host: "127.0.0.1", port: 0, token: "", maxBodyBytes: 1024)
        configure(&configuration)
        self.store = store
        channel = EmbeddedChannel(loop: loop)
        shared = IngestContext(configuration: configuration, store: store, metricsText: { "metric 1\n" })
        try channel.connect(to: SocketAddress(ipAddress: peer, port: 40000)).wait()
        try IngestPipeline.configureHTTP(on: channel, shared: shared)
    }

    /// Sends bytes as if they came from the network, runs the loop (store completions hop back).
    func send(_ text: String) {
        try? channel.writeInbound(channel.allocator.buffer(string: text))
        loop.run()
    }

    /// Everything written to the network since the last call.
    /// Like a socket channel with auto-read, asks for more after each answer, which is when
    /// NIO's pipelining handler delivers the next buffered request.
    func received() -> String {
        var out = ""
        while true {
            loop.run()
            var chunk = ""
            while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
                chunk += String(buffer: buffer)
            }
            out += chunk
            guard !chunk.isEmpty, channel.isActive else { return out }
            channel.read()
        }
    }

    var isOpen: Bool { channel.isActive }

    func advance(seconds: Int64) { loop.advanceTime(by: .seconds(seconds)) }
}

/// One parsed response out of `received()` text.
struct Response {
    var status: Int
    var headers: [(String, String)]
    var body: String

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }

    /// The responses in `text`, in order, framed by Content-Length; nil when the text is not exactly that.
    static func parseAll(_ text: String) -> [Response]? {
        var rest = Substring(text)
        var out: [Response] = []
        while !rest.isEmpty {
            guard let end = rest.range(of: "\r\n\r\n") else { return nil }
            let lines = rest[..<end.lowerBound].components(separatedBy: "\r\n")
            let statusParts = lines[0].split(separator: " ")
            guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else { return nil }
            let headers = lines.dropFirst().map { line -> (String, String) in
                let parts = line.split(separator: ":", maxSplits: 1)
                return (String(parts[0]), parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : "")
            }
            rest = rest[end.upperBound...]
            var response = Response(status: status, headers: headers, body: "")
            if status >= 200 {
                guard let length = response.header("content-length").flatMap(Int.init) else { return nil }
                let bytes = Array(rest.utf8)
                guard bytes.count >= length else { return nil }
                response.body = String(decoding: bytes[0..<length], as: UTF8.self)
                rest = Substring(String(decoding: bytes[length...], as: UTF8.self))
            }
            out.append(response)
        }
        return out
    }

    var errorReason: String? {
        guard header("content-type") == "application/json", body.hasPrefix(#"{"error":""#) else { return nil }
        return body
    }
}

let liveBody = #"{"call_id":"c1","status":"answered","app_id":"1111","time":1}"#

func post(_ path: String = "/webhooks/piopiy/live", body: String = liveBody, headers: [String] = []) -> String {
    var text = "POST \(path) HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
    for header in headers { text += header + "\r\n" }
    return text + "\r\n" + body
}
