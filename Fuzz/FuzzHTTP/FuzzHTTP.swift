// libFuzzer harness: raw bytes into the ingest connection pipeline (IngestPipeline.configureHTTP)
// on an EmbeddedChannel, with an in-memory WebhookStore that answers synchronously.
// Built and run by scripts/fuzz.sh; oracles are listed in docs/fuzzing.md.
//
// Oracles, for every input (one connection whose client sends exactly these bytes):
//  1. Nothing traps (NIO preconditions, the handler's force unwraps, ASan).
//  2. Every byte written back is a sequence of well-formed HTTP/1.1 responses: status line
//     "HTTP/1.1 NNN reason", header lines "name: value" (token name, no CR/LF/NUL in values), an
//     empty line, then a body framed by exactly one Content-Length (or chunked). Responses to HEAD
//     requests, 1xx, 204 and 304 carry no body (RFC 9112 §6.3); CONNECT is never answered 2xx. A response without framing, a truncated one or
//     stray bytes between responses is a finding.
//  3. A JSON response (Content-Type: application/json) with a body has a body that parses as a
//     JSON object.
//  4. Nothing is written after a response that says "Connection: close", and the connection is
//     closed after it.
//  5. Liveness: while the connection is open, every request the server received completely has
//     been answered (the store answers synchronously, so nothing may be left pending).

import CFuzzDriver
import CallRelayCore
import CallRelayIngest
import CallRelayNormalize
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#endif

@inline(never)
func oracleFailure(_ message: String, _ output: [UInt8], _ count: Int) -> Never {
    let shown = String(decoding: output.prefix(2000), as: UTF8.self).debugDescription
    fatalError(
        "FuzzHTTP oracle failed: \(message) (input \(count) bytes, settings variant \(count % 4)); output \(output.count) bytes: \(shown)")
}

// MARK: Fixtures of the harness

/// The webhook token; seeds use it as ?token= and as Authorization: Bearer.
let token = "fuzz-token-0123456789abcdef"
/// Small, so the 413 paths are within reach of small inputs.
let maxBodyBytes = 2048

/// Commits nothing, answers at once on the calling thread. The outcome is derived from the event
/// id (deterministic per body): mostly stored, some duplicates, some failures (503 Retry-After).
struct InstantStore: WebhookStore {
    func store(
        _ event: NormalizedEvent, body: [UInt8], receivedAtMilliseconds: Int64,
        completion: @escaping @Sendable (Result<StoreOutcome, StoreFailure>) -> Void
    ) {
        switch event.id.utf8.first ?? 0x30 {
        case UInt8(ascii: "e"): completion(.success(.duplicate(id: event.id)))
        case UInt8(ascii: "f"): completion(.failure(StoreFailure(reason: "fuzz: outbox full", retryAfterSeconds: 5)))
        default: completion(.success(.stored(id: event.id)))
        }
    }
    var isWritable: Bool { true }
}

/// Sits right after the request decoder and records what the server received, in order.
final class RequestRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    var methods: [HTTPMethod] = []
    var completed = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): methods.append(head.method)
        case .body: break
        case .end: completed += 1
        }
        context.fireChannelRead(data)
    }
}

let setUp: Void = {
    // No log output: the handler logs connection errors, which are the normal case here.
    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
}()

let dumpOutput = getenv("FUZZHTTP_DUMP") != nil
let clientAddress = try! SocketAddress(ipAddress: "203.0.113.7", port: 40000)
let serverAddress = try! SocketAddress(ipAddress: "127.0.0.1", port: 8080)

/// The listener settings an input runs with, chosen by its length (so a reproducer always gets the
/// same one): 0 the defaults (token, small body limit); 1 a rate limit of 1/s with a burst of 2
/// and X-Forwarded-For from the client's /24 trusted; 2 http.allow with the client's address a
/// trusted proxy (so X-Forwarded-For decides); 3 the public listener of an admin_listen split
/// (webhooks only), without a token.
func configuration(variant: Int) -> IngestConfiguration {
    var c = IngestConfiguration(host: "127.0.0.1", port: 0, token: token, maxBodyBytes: maxBodyBytes)
    switch variant {
    case 1:
        c.rateLimit = IngestConfiguration.RateLimit(perSecond: 1, burst: 2)
        c.trustedProxies = [CIDR("203.0.113.0/24")!]
    case 2:
        c.allow = [CIDR("198.51.100.0/24")!, CIDR("2001:db8::/32")!, CIDR("203.0.113.0/28")!]
        c.trustedProxies = [CIDR("203.0.113.7/32")!]
    case 3:
        c.routes = .webhooks
        c.token = ""
    default:
        break
    }
    return c
}

// MARK: Response parser (the oracle)

struct ResponseReader {
    let bytes: [UInt8]
    let count: Int
    var index = 0
    var methods: [HTTPMethod]
    var finalResponses = 0
    var closeSeen = false

    init(bytes: [UInt8], methods: [HTTPMethod], count: Int) {
        self.bytes = bytes
        self.methods = methods
        self.count = count
    }

    func fail(_ message: String) -> Never {
        oracleFailure("\(message) at output byte \(index)", bytes, count)
    }

    mutating func line() -> ArraySlice<UInt8> {
        var i = index
        while i + 1 < bytes.count {
            if bytes[i] == 0x0D {
                guard bytes[i + 1] == 0x0A else { fail("CR without LF") }
                let l = bytes[index..<i]
                index = i + 2
                return l
            }
            if bytes[i] == 0x0A { fail("bare LF") }
            i += 1
        }
        fail("truncated line")
    }

    static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default: false
        }
    }

    static func lower(_ s: ArraySlice<UInt8>) -> String {
        String(decoding: s.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var s = s
        while let f = s.first, f == 0x20 || f == 0x09 { s = s.dropFirst() }
        while let l = s.last, l == 0x20 || l == 0x09 { s = s.dropLast() }
        return s
    }

    static func decimal(_ s: ArraySlice<UInt8>, max: Int) -> Int? {
        guard !s.isEmpty, s.count <= 18, s.allSatisfy({ $0 &- 0x30 < 10 }) else { return nil }
        let v = s.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        return v <= max ? v : nil
    }

    mutating func readAll() {
        while index < bytes.count {
            if closeSeen { fail("bytes after a response with Connection: close") }
            readResponse()
        }
    }

    mutating func readResponse() {
        let status = line()
        let prefix = Array("HTTP/1.1 ".utf8)
        guard status.count >= 12, Array(status.prefix(9)) == prefix,
            let code = Self.decimal(status.dropFirst(9).prefix(3), max: 999), code >= 100,
            status[status.startIndex + 12] == 0x20
        else { fail("malformed status line \(String(decoding: status, as: UTF8.self).debugDescription)") }
        if status.contains(where: { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F }) { fail("control byte in the status line") }

        var contentLengths: [Int] = []
        var chunked = false
        var contentType: String?
        var connectionClose = false
        while true {
            let header = line()
            if header.isEmpty { break }
            guard let colon = header.firstIndex(of: 0x3A), colon > header.startIndex else {
                fail("header line without a name: \(String(decoding: header, as: UTF8.self).debugDescription)")
            }
            let name = header[header.startIndex..<colon]
            guard name.allSatisfy(Self.isTokenByte) else { fail("header name is not a token") }
            let value = Self.trimmed(header[(colon + 1)...])
            if value.contains(where: { $0 == 0 || $0 == 0x0D || $0 == 0x0A }) { fail("NUL/CR/LF in a header value") }
            switch Self.lower(name) {
            case "content-length":
                guard let n = Self.decimal(value, max: 1 << 30) else { fail("bad Content-Length") }
                contentLengths.append(n)
            case "transfer-encoding":
                guard Self.lower(value) == "chunked" else { fail("unsupported Transfer-Encoding") }
                chunked = true
            case "content-type":
                contentType = Self.lower(value)
            case "connection":
                if Self.lower(value).split(separator: ",").contains(where: { $0.trimmingSpaces == "close" }) {
                    connectionClose = true
                }
            default: break
            }
        }
        if contentLengths.count > 1 { fail("\(contentLengths.count) Content-Length headers") }
        if chunked && !contentLengths.isEmpty { fail("both Content-Length and chunked") }

        let informational = code < 200 && code != 101
        if informational {
            // Another head follows for the same request.
            if !contentLengths.isEmpty || chunked { fail("framing headers on a 1xx response") }
            return
        }
        finalResponses += 1
        let method: HTTPMethod? = methods.isEmpty ? nil : methods.removeFirst()
        // RFC 9112 §6.3: no body for HEAD, 1xx, 204, 304; a 2xx to CONNECT turns the connection into
        // a tunnel (nothing after it is HTTP). Any other answer to CONNECT is framed as usual.
        if method == .CONNECT && (200..<300).contains(code) { fail("2xx answer to CONNECT (callrelay is no proxy)") }
        let hasBody = method != .HEAD && code != 204 && code != 304 && code != 101
        var body: [UInt8] = []
        if hasBody {
            if chunked {
                body = readChunked()
            } else if let n = contentLengths.first {
                guard index + n <= bytes.count else { fail("body shorter than Content-Length \(n)") }
                body = Array(bytes[index..<(index + n)])
                index += n
            } else {
                fail("response \(code) without Content-Length or chunked framing")
            }
        }
        if let contentType, contentType.hasPrefix("application/json"), !body.isEmpty {
            do throws(JSONParseError) {
                guard case .object = try JSONValue.parse(body) else { fail("JSON response body is not an object") }
            } catch {
                fail("JSON response body does not parse: \(error)")
            }
        }
        if connectionClose { closeSeen = true }
    }

    mutating func readChunked() -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = line()
            let hex = sizeLine.prefix { $0 != 0x3B }
            guard !hex.isEmpty, hex.count <= 8 else { fail("bad chunk size") }
            var size = 0
            for c in hex {
                switch c {
                case 0x30...0x39: size = size * 16 + Int(c - 0x30)
                case 0x41...0x46: size = size * 16 + Int(c - 0x41 + 10)
                case 0x61...0x66: size = size * 16 + Int(c - 0x61 + 10)
                default: fail("bad chunk size")
                }
            }
            if size == 0 {
                while !line().isEmpty {}  // trailers
                return body
            }
            guard index + size + 2 <= bytes.count else { fail("truncated chunk") }
            body += bytes[index..<(index + size)]
            index += size
            guard bytes[index] == 0x0D, bytes[index + 1] == 0x0A else { fail("chunk without CRLF") }
            index += 2
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}

// MARK: Entry point

func writeStderr(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func drainOutbound(_ channel: EmbeddedChannel, into output: inout [UInt8], count: Int) {
    while true {
        let part: IOData?
        do {
            part = try channel.readOutbound(as: IOData.self)
        } catch {
            oracleFailure("outbound item that is not IOData: \(error)", output, count)
        }
        guard let part else { return }
        switch part {
        case .byteBuffer(let buffer): output += buffer.readableBytesView
        case .fileRegion: oracleFailure("a FileRegion was written", output, count)
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    _ = setUp
    let input = UnsafeRawBufferPointer(start: start, count: count)
    let variant = count % 4
    // A fresh context per input: the rate limiter's buckets must not carry over between inputs.
    let shared = IngestContext(configuration: configuration(variant: variant), store: InstantStore())
    let channel = EmbeddedChannel()
    let recorder = RequestRecorder()
    do {
        try IngestPipeline.configureHTTP(on: channel, shared: shared)
        let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        try channel.pipeline.syncOperations.addHandler(recorder, position: .after(decoder))
    } catch {
        fatalError("FuzzHTTP: cannot set up the pipeline: \(error)")
    }
    // As an accepted connection: handlers first, then active, with a client address.
    channel.localAddress = serverAddress
    do {
        try channel.connect(to: clientAddress).wait()
    } catch {
        fatalError("FuzzHTTP: cannot activate the channel: \(error)")
    }

    var buffer = channel.allocator.buffer(capacity: count)
    buffer.writeBytes(input)
    do {
        try channel.writeInbound(buffer)
    } catch {
        // Expected for bad input (the decoder's errors reach the tail of the pipeline).
    }
    // Like a socket channel with auto-read: after each answer, ask for more (that is when NIO's
    // pipelining handler hands over the next buffered request).
    var output: [UInt8] = []
    while true {
        channel.embeddedEventLoop.run()
        let before = output.count
        drainOutbound(channel, into: &output, count: count)
        guard output.count > before, channel.isActive else { break }
        channel.read()
    }
    let stillOpen = channel.isActive
    let completed = recorder.completed
    if dumpOutput {
        // FUZZHTTP_DUMP=1 FuzzHTTP file...: show what the server answered (to inspect a seed or a finding).
        writeStderr("---- variant \(variant), \(count) bytes in, \(recorder.methods.count) heads, \(recorder.completed) complete, open: \(stillOpen)\n")
        writeStderr(String(decoding: output, as: UTF8.self) + "\n")
    }
    var reader = ResponseReader(bytes: output, methods: recorder.methods, count: count)
    reader.readAll()

    if reader.closeSeen && stillOpen { oracleFailure("Connection: close was sent but the connection is still open", output, count) }
    if stillOpen && reader.finalResponses < completed {
        oracleFailure("\(completed) complete requests but \(reader.finalResponses) responses on an open connection", output, count)
    }

    // Tear down (the server closing the connection); whatever is written then must be
    // well-formed too (it follows the output above).
    channel.close(promise: nil)
    channel.embeddedEventLoop.run()
    let before = output.count
    drainOutbound(channel, into: &output, count: count)
    if output.count > before {
        var tail = ResponseReader(bytes: output, methods: recorder.methods, count: count)
        tail.readAll()
    }
    // Throws the errors the pipeline passed on (bad input); not a finding.
    _ = try? channel.finish(acceptAlreadyClosed: true)
    return 0
}

/// SwiftPM links executables with `--defsym main=FuzzHTTP_main`, which displaces libFuzzer's main:
/// hand the arguments and the callback to libFuzzer's driver instead.
@main
enum FuzzMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(
            LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                // libFuzzer passes a valid pointer even for the empty input; be safe anyway.
                fuzz(UnsafeRawPointer(data) ?? UnsafeRawPointer(bitPattern: 1)!, size)
            })
    }
}
