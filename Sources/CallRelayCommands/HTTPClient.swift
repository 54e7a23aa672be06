import Glibc

/// A small blocking HTTP/1.1 client on POSIX sockets, for `send-test`: one request per
/// connection (`Connection: close`), IPv4, IPv6 and host names, a deadline for everything.
///
/// Not NIO: the CLI sends one request and waits for one answer, so an event loop group and
/// futures would add threads and shutdown code for nothing, and a plain `connect(2)` gives the
/// exact errno ("Connection refused") that `send-test` turns into advice. Not Foundation: the
/// shipped binary links no Foundation.
struct HTTPClient {
    struct Response {
        var status: Int
        /// Lower-cased names.
        var headers: [String: String]
        var body: [UInt8]
        var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    enum Failure: Error, CustomStringConvertible {
        /// The host name did not resolve (`getaddrinfo`'s message).
        case cannotResolve(host: String, reason: String)
        /// No address accepted the connection; `errno` of the last attempt (ECONNREFUSED, ...).
        case cannotConnect(address: String, errno: Int32)
        /// No complete answer before the deadline.
        case timedOut(address: String, stage: String)
        /// The connection broke, or the answer was not HTTP.
        case badResponse(address: String, reason: String)

        var description: String {
            switch self {
            case .cannotResolve(let host, let reason): "cannot resolve \(host): \(reason)"
            case .cannotConnect(let address, let code): "cannot connect to \(address): \(String(cString: strerror(code)))"
            case .timedOut(let address, let stage): "no answer from \(address) while \(stage)"
            case .badResponse(let address, let reason): "bad answer from \(address): \(reason)"
            }
        }
    }

    var host: String
    var port: Int
    var timeoutMilliseconds: Int

    /// `host:port`, with brackets around an IPv6 address.
    var authority: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    func request(method: String, path: String, headers: [(String, String)], body: [UInt8]) throws(Failure) -> Response {
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        let fd = try connect(deadline: deadline)
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(authority)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        let request = Array(head.utf8) + body
        var sent = 0
        while sent < request.count {
            try wait(fd, for: Int16(POLLOUT), until: deadline, stage: "sending the request")
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { break }  // the server may answer early and close; read what it said
            sent += n
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            try wait(fd, for: Int16(POLLIN), until: deadline, stage: "waiting for the answer")
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n < 0 && response.isEmpty {
                throw .badResponse(address: authority, reason: String(cString: strerror(errno)))
            }
            if n <= 0 { break }
            response.append(contentsOf: buffer[0..<n])
            if let complete = Self.parseIfComplete(response) { return complete }
        }
        guard let parsed = Self.parseIfComplete(response, atEOF: true) else {
            throw .badResponse(
                address: authority,
                reason: response.isEmpty ? "the connection was closed without an answer" : "incomplete HTTP answer (\(response.count) bytes)")
        }
        return parsed
    }

    // MARK: Connecting

    private func connect(deadline: Int64) throws(Failure) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw .cannotResolve(host: host, reason: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(list) }
        var lastErrno: Int32 = ECONNREFUSED
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 {
                lastErrno = errno
                continue
            }
            if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return fd }
            if errno != EINPROGRESS {
                lastErrno = errno
                close(fd)
                continue
            }
            do {
                try wait(fd, for: Int16(POLLOUT), until: deadline, stage: "connecting")
            } catch {
                close(fd)
                throw error
            }
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError == 0 { return fd }
            lastErrno = soError
            close(fd)
        }
        throw .cannotConnect(address: authority, errno: lastErrno)
    }

    private func wait(_ fd: Int32, for events: Int16, until deadline: Int64, stage: String) throws(Failure) {
        while true {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { throw .timedOut(address: authority, stage: stage) }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&entry, 1, Int32(min(left, 1000)))
            if n > 0 { return }
            if n < 0 && errno != EINTR { throw .badResponse(address: authority, reason: String(cString: strerror(errno))) }
        }
    }

    // MARK: Parsing

    /// The response once the head and the whole body (Content-Length, chunked, or up to EOF) are in.
    static func parseIfComplete(_ bytes: [UInt8], atEOF: Bool = false) -> Response? {
        guard let headEnd = find([13, 10, 13, 10], in: bytes, from: 0) else { return nil }
        let head = String(decoding: bytes[..<headEnd], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        guard !lines.isEmpty else { return nil }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" })
            headers[name] = String(value.reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
        }
        let bodyStart = headEnd + 4
        if let length = headers["content-length"].flatMap(Int.init) {
            guard bytes.count - bodyStart >= length else { return nil }
            return Response(status: status, headers: headers, body: Array(bytes[bodyStart..<bodyStart + length]))
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            guard let body = decodeChunked(Array(bytes[bodyStart...])) else { return nil }
            return Response(status: status, headers: headers, body: body)
        }
        return atEOF ? Response(status: status, headers: headers, body: Array(bytes[bodyStart...])) : nil
    }

    /// The decoded body once the final zero-length chunk arrived; nil before.
    static func decodeChunked(_ bytes: [UInt8]) -> [UInt8]? {
        var body: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = find([13, 10], in: bytes, from: index) else { return nil }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingSpaces, radix: 16) else { return nil }
            let dataStart = lineEnd + 2
            if size == 0 { return body }
            guard bytes.count >= dataStart + size + 2 else { return nil }
            body.append(contentsOf: bytes[dataStart..<dataStart + size])
            index = dataStart + size + 2
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var i = start
        while i <= haystack.count - needle.count {
            if haystack[i] == needle[0] && Array(haystack[i..<i + needle.count]) == needle { return i }
            i += 1
        }
        return nil
    }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

/// Milliseconds of CLOCK_MONOTONIC (for deadlines and durations, never for dates).
func monotonicMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}
