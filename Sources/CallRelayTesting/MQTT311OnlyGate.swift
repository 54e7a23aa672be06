import Foundation
import Glibc
import Synchronization

/// A stand-in for a broker that speaks only MQTT 3.1.1, in front of a real mosquitto: it reads
/// each connection's CONNECT; a protocol level 5 gets the 3.1.1 answer "unacceptable protocol
/// version" (CONNACK `20 02 00 01`, as a 3.1.1 broker sends) and is closed; any other level is
/// relayed, bytes unchanged both ways, to the broker behind it.
public final class MQTT311OnlyGate: @unchecked Sendable {
    public let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let counts = Mutex((refusedV5: 0, relayed: 0))
    private let stopped = Atomic<Bool>(false)
    private var acceptThread: Thread?

    /// CONNECTs refused because they asked for MQTT 5.
    public var refusedV5: Int { counts.withLock { $0.refusedV5 } }
    /// Connections relayed to the broker.
    public var relayed: Int { counts.withLock { $0.relayed } }

    public init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw HTTPTestClient.Failure(description: "gate: cannot listen (\(String(cString: strerror(errno))))")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listener = fd
        let thread = Thread { [weak self] in self?.acceptLoop() }
        acceptThread = thread
        thread.start()
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            Thread { [weak self] in self?.serve(client) }.start()
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        // Fixed header (type byte, remaining length varint), then the variable header, whose
        // byte 6 is the protocol level ("\0\4MQTT" then level).
        var head: [UInt8] = []
        guard read(client, into: &head, count: 2) else { return }
        var remaining = Int(head[1] & 0x7f)
        var multiplier = 128
        var last = head[1]
        while last & 0x80 != 0 {
            guard read(client, into: &head, count: 1), multiplier <= 128 * 128 * 128 else { return }
            last = head[head.count - 1]
            remaining += Int(last & 0x7f) * multiplier
            multiplier *= 128
        }
        var body: [UInt8] = []
        guard head[0] == 0x10, remaining >= 7, read(client, into: &body, count: remaining) else { return }
        if body[6] == 5 {
            counts.withLock { $0.refusedV5 += 1 }
            let connack: [UInt8] = [0x20, 0x02, 0x00, 0x01]
            _ = connack.withUnsafeBytes { send(client, $0.baseAddress, 4, Int32(MSG_NOSIGNAL)) }
            usleep(50_000)
            return
        }
        let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(upstream) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(upstreamPort).bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { return }
        counts.withLock { $0.relayed += 1 }
        let first = head + body
        _ = first.withUnsafeBytes { send(upstream, $0.baseAddress, first.count, Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 16_384)
        var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)]
        while !stopped.load(ordering: .relaxed) {
            guard poll(&fds, 2, 100) >= 0 else { return }
            for i in 0..<2 where fds[i].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(fds[i].fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return }
                let to = i == 0 ? upstream : client
                var sent = 0
                while sent < n {
                    let w = buffer.withUnsafeBytes { send(to, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                    guard w > 0 else { return }
                    sent += w
                }
            }
        }
    }

    private func read(_ fd: Int32, into out: inout [UInt8], count: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            guard n > 0 else { return false }
            got += n
        }
        out += buffer
        return true
    }

    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        close(listener)
    }

    deinit { stop() }
}
