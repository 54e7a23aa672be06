import CallRelayCore
import NIOCore
import NIOHTTP1

/// One answer the listener gives: status, JSON (or other) body, extra headers, and whether the
/// connection closes after it. Every answer is framed by `Content-Length`.
struct HTTPAnswer: Sendable, Equatable {
    var status: HTTPResponseStatus
    var body: [UInt8]
    var contentType = "application/json"
    var headers: [Header] = []
    /// Close the connection once it is written.
    var close = false
    /// Written as bytes below NIO's encoder, which drops the body of any answer to CONNECT
    /// (RFC 9112 §6.3 leaves it only to 2xx answers); always with `close`.
    var raw = false

    struct Header: Sendable, Equatable {
        var name: String
        var value: String
    }

    static func error(_ status: HTTPResponseStatus, _ reason: String, close: Bool = false, headers: [(String, String)] = []) -> HTTPAnswer {
        HTTPAnswer(status: status, body: errorBody(reason), headers: headers.map { Header(name: $0.0, value: $0.1) }, close: close)
    }

    static func json(_ status: HTTPResponseStatus, _ body: [UInt8]) -> HTTPAnswer {
        HTTPAnswer(status: status, body: body)
    }

    static func acceptedBody(id: String, duplicate: Bool) -> [UInt8] {
        JSONValue.object([JSONMember(key: "id", value: .string(id)), JSONMember(key: "duplicate", value: .bool(duplicate))]).serialized()
    }

    static func errorBody(_ reason: String) -> [UInt8] {
        JSONValue.object([JSONMember(key: "error", value: .string(reason))]).serialized()
    }

    /// A whole HTTP/1.1 response as bytes, for the rare answers written below the HTTP encoder
    /// (a timeout while no request is being answered). Always `Connection: close`.
    static func rawResponse(status: Int, reason: String, json: [UInt8], headers: [Header] = []) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(reason)\r\n"
        text += "Content-Type: application/json\r\nContent-Length: \(json.count)\r\nConnection: close\r\n"
        for header in headers { text += "\(header.name): \(header.value)\r\n" }
        return Array((text + "\r\n").utf8) + json
    }

    /// This answer as bytes (for `raw`).
    var rawBytes: [UInt8] {
        HTTPAnswer.rawResponse(status: Int(status.code), reason: status.reasonPhrase, json: body, headers: headers)
    }

    func responseHead(keepAlive: Bool) -> HTTPResponseHead {
        var fields = HTTPHeaders()
        fields.reserveCapacity(3 + headers.count)
        fields.add(name: "Content-Type", value: contentType)
        fields.add(name: "Content-Length", value: String(body.count))
        if !keepAlive { fields.add(name: "Connection", value: "close") }
        for header in headers { fields.add(name: header.name, value: header.value) }
        return HTTPResponseHead(version: .http1_1, status: status, headers: fields)
    }
}

extension HTTPParserError {
    /// What a client reads in the 400's `error`.
    var reason: String {
        switch self {
        case .invalidContentLength, .unexpectedContentLength: "malformed HTTP request: invalid Content-Length"
        case .invalidChunkSize: "malformed HTTP request: invalid chunk size"
        case .invalidMethod: "malformed HTTP request: invalid method"
        case .invalidURL, .invalidHost, .invalidPort, .invalidPath, .invalidQueryString, .invalidFragment:
            "malformed HTTP request: invalid request target"
        case .invalidVersion, .invalidConstant: "malformed HTTP request: invalid HTTP version or request line"
        case .invalidHeaderToken, .headerOverflow, .lfExpected, .invalidCharactersUsed:
            "malformed HTTP request: invalid header line (or a head over 80 KB)"
        case .strictModeAssertion: "malformed HTTP request: not strict HTTP/1.1"
        case .trailingGarbage: "malformed HTTP request: bytes after the request"
        default: "malformed HTTP request"
        }
    }
}
