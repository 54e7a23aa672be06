import NIOHTTP1

/// What to do with a request once its head has arrived, before any of its body is read.
/// Pure: the head, the route table and the listener's settings in, a decision out.
enum Admission: Equatable {
    /// Read the body and route it; `sendContinue`: answer `100 Continue` first (the client waits for it).
    case proceed(sendContinue: Bool)
    /// Answer this, and (when `immediately`) without reading the body, closing the connection after.
    case reject(HTTPAnswer, refusal: IngestMetrics.Refusal?, immediately: Bool)
}

enum RequestAdmission {
    /// Checks in order: method and framing (CONNECT, unknown methods, upgrades, transfer codings,
    /// expectations), then the declared size. Address, rate and token checks come from the
    /// handler, which holds the state they need.
    static func decide(head: HTTPRequestHead, path: Substring, maxBodyBytes: Int) -> Admission {
        let expectsContinue: Bool
        switch expectation(head) {
        case .none: expectsContinue = false
        case .continue: expectsContinue = true
        case .unknown(let value):
            return .reject(
                .error(.expectationFailed, "Expect: \(value) is not supported (only 100-continue)", close: true), refusal: .unsupported,
                immediately: true)
        }
        switch head.method {
        case .CONNECT:
            var answer = HTTPAnswer.error(
                .methodNotAllowed, "CONNECT is not supported: callrelay is not a proxy", close: true, headers: [("Allow", "GET, HEAD, POST")])
            answer.raw = true
            return .reject(answer, refusal: .unsupported, immediately: true)
        case .RAW(let value):
            return .reject(
                .error(.notImplemented, "method \(printable(value)) is not supported", close: true), refusal: .unsupported, immediately: true)
        default:
            break
        }
        if head.headers.contains(name: "upgrade"), head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "upgrade" }) {
            // The parser stops at an upgrade request: answer it and close rather than guess.
            return .reject(.error(.notImplemented, "protocol upgrades are not supported", close: true), refusal: .unsupported, immediately: true)
        }
        // `contains` first: the common request has none of these headers, and the lookups by
        // canonical form allocate.
        let codings = head.headers.contains(name: "transfer-encoding") ? head.headers[canonicalForm: "transfer-encoding"].map { $0.lowercased() } : []
        if !codings.isEmpty, !(head.version >= .http1_1) {
            // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            return .reject(
                .error(.badRequest, "malformed HTTP request: Transfer-Encoding in an HTTP/1.0 request", close: true), refusal: .malformed,
                immediately: true)
        }
        if !codings.isEmpty, codings != ["chunked"] {
            let shown = codings.joined(separator: ", ")
            return .reject(
                .error(.notImplemented, "Transfer-Encoding \(printable(Substring(shown))) is not supported (only chunked)", close: true),
                refusal: .unsupported, immediately: true)
        }
        if let declared = head.headers.first(name: "content-length").flatMap(Int.init), declared > maxBodyBytes {
            return .reject(
                .error(.payloadTooLarge, "body exceeds max_body_bytes (\(maxBodyBytes) bytes)", close: true), refusal: nil, immediately: true)
        }
        return .proceed(sendContinue: expectsContinue)
    }

    enum Expectation: Equatable {
        case none, `continue`, unknown(String)
    }

    /// `Expect` of an HTTP/1.1 request (RFC 9110 §10.1.1: ignored in HTTP/1.0).
    static func expectation(_ head: HTTPRequestHead) -> Expectation {
        guard head.headers.contains(name: "expect") else { return .none }
        let values = head.headers[canonicalForm: "expect"]
        guard !values.isEmpty, head.version >= .http1_1 else { return .none }
        if values.count == 1, values[0].lowercased() == "100-continue" { return .continue }
        return .unknown(printable(Substring(values.joined(separator: ", "))))
    }

    /// At most 40 printable ASCII characters of client input, for a message.
    static func printable(_ text: Substring) -> String {
        let clean = text.unicodeScalars.prefix(40).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" }
        return String(clean) + (text.unicodeScalars.count > 40 ? "…" : "")
    }
    static func printable(_ text: String) -> String { printable(text[...]) }
}

private extension HTTPVersion {
    static func >= (lhs: HTTPVersion, rhs: HTTPVersion) -> Bool {
        (lhs.major, lhs.minor) >= (rhs.major, rhs.minor)
    }
}
