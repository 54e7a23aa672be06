import Foundation
import Glibc

/// A real `mosquitto` broker on a free loopback port, for tests. Started as a plain process with a
/// generated config and stopped by PID.
///
/// A missing broker is an error (`BrokerError.notInstalled`), never a skip: CI installs it
/// (`scripts/install-deps.sh`).
public final class MosquittoBroker: @unchecked Sendable {
    public enum BrokerError: Error, CustomStringConvertible {
        case notInstalled
        case didNotStart(String)
        public var description: String {
            switch self {
            case .notInstalled: "mosquitto is not installed (run scripts/install-deps.sh, or apt-get install mosquitto)"
            case .didNotStart(let log): "mosquitto did not start: \(log)"
            }
        }
    }

    /// A second listener with TLS, on 127.0.0.1 (PEM files; key files must be readable by the
    /// `mosquitto` user the broker drops to when started as root).
    public struct TLSListener: Sendable {
        public var caFile: String
        public var certFile: String
        public var keyFile: String
        /// Clients must present a certificate signed by `caFile`.
        public var requireCertificate: Bool
        public init(caFile: String, certFile: String, keyFile: String, requireCertificate: Bool = false) {
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
            self.requireCertificate = requireCertificate
        }
    }

    public private(set) var port: Int
    /// The TLS listener's port, when started with `tls:`.
    public private(set) var tlsPort: Int?
    public let directory: URL
    private let extraConfig: String
    private let tls: TLSListener?
    private let persistent: Bool
    public private(set) var pid: pid_t?

    /// - Parameters:
    ///   - extraConfig: appended to the generated config (e.g. `max_packet_size 2048`).
    ///   - persistent: keep sessions and queued messages across `stop()`/`start()`.
    ///   - tls: also listen with TLS on `tlsPort`.
    public init(port: Int? = nil, persistent: Bool = false, extraConfig: String = "", tls: TLSListener? = nil) throws {
        self.port = try port ?? freeTCPPort()
        self.tls = tls
        self.tlsPort = tls == nil ? nil : try freeTCPPort()
        self.extraConfig = extraConfig
        self.persistent = persistent
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("callrelay-broker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // A free port can be taken by another test's process between the probe and the bind:
        // when the port was ours to choose, choose again.
        for attempt in 1...3 {
            do {
                try start()
                return
            } catch BrokerError.didNotStart(let log) where port == nil && attempt < 3 && log.contains("Address already in use") {
                self.port = try freeTCPPort()
                if tls != nil { self.tlsPort = try freeTCPPort() }
            }
        }
    }

    public static var executable: String? {
        let candidates = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/local/bin/mosquitto"]
        if let env = ProcessInfo.processInfo.environment["MOSQUITTO"], FileManager.default.isExecutableFile(atPath: env) { return env }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts (or restarts, on the same port) the broker and waits until it accepts connections.
    public func start() throws {
        guard let executable = Self.executable else { throw BrokerError.notInstalled }
        let conf = directory.appendingPathComponent("mosquitto.conf")
        let log = directory.appendingPathComponent("mosquitto.log")
        try """
        listener \(port) 127.0.0.1
        allow_anonymous true
        persistence \(persistent)
        persistence_location \(directory.path)/
        log_dest file \(log.path)
        log_type error
        log_type warning
        log_type notice
        \(extraConfig)
        \(tlsListenerConfig)

        """.write(to: conf, atomically: true, encoding: .utf8)
        chmod(directory.path, 0o777)
        let child = try spawn(executable, ["-c", conf.path])
        pid = child
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if canConnect(port: port) && (tlsPort.map { canConnect(port: $0) } ?? true) { return }
            if isExited(child) { pid = nil; break }
            usleep(20_000)
        }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        throw BrokerError.didNotStart(text)
    }

    private var tlsListenerConfig: String {
        guard let tls, let tlsPort else { return "" }
        return """
            listener \(tlsPort) 127.0.0.1
            cafile \(tls.caFile)
            certfile \(tls.certFile)
            keyfile \(tls.keyFile)
            require_certificate \(tls.requireCertificate)
            """
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 5 s) and waits until the port is closed.
    public func stop() {
        guard let child = pid else { return }
        pid = nil
        kill(child, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while !isExited(child) && Date() < deadline { usleep(10_000) }
        if !isExited(child) {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
    }

    /// Kills the broker without letting it save anything (a crash or power cut).
    public func kill9() {
        guard let child = pid else { return }
        pid = nil
        kill(child, SIGKILL)
        var status: Int32 = 0
        waitpid(child, &status, 0)
    }

    /// The broker's log (errors, warnings, notices), for failure messages.
    public var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
    }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["CALLRELAY_KEEP_BROKER_DIR"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }
}

/// A TCP port that was free on 127.0.0.1 a moment ago.
public func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
        }
    }
    guard ok else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: addr.sin_port))
}

func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// Starts a process with a clean signal mask and default signal actions. (Foundation's `Process`
/// inherits the spawning thread's mask; dispatch worker threads block SIGTERM, so a broker started
/// from one could never be stopped gracefully.)
public func spawn(
    _ path: String, _ arguments: [String], stdoutPath: String = "/dev/null", stderrPath: String? = nil, extraEnvironment: [String: String] = [:]
) throws -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for s in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigdefault(&attr, &defaults)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderrPath ?? stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var environment = ProcessInfo.processInfo.environment
    for (k, v) in extraEnvironment { environment[k] = v }
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { envp.forEach { free($0) } }
    var child: pid_t = 0
    let rc = posix_spawn(&child, path, &actions, &attr, argv, envp)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
    return child
}

/// True once `pid` has exited (reaps it).
public func isExited(_ pid: pid_t) -> Bool {
    var status: Int32 = 0
    let r = waitpid(pid, &status, WNOHANG)
    return r == pid || (r == -1 && errno == ECHILD)
}

/// Waits for `pid` to exit and returns its exit status (or 128+signal), or nil after the timeout.
public func waitForExit(_ pid: pid_t, seconds: Double) -> Int32? {
    let deadline = Date().addingTimeInterval(seconds)
    var status: Int32 = 0
    while Date() < deadline {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            let signal = status & 0x7f
            return signal == 0 ? (status >> 8) & 0xff : 128 + signal
        }
        usleep(10_000)
    }
    return nil
}
