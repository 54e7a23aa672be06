import Glibc
import NIOCore
import NIOSSL
import Synchronization

/// A problem with the HTTPS files, naming the configuration key it concerns.
package struct TLSFileProblem: Error, Sendable, Equatable, CustomStringConvertible {
    package enum Key: String, Sendable {
        case certificate = "http.tls_cert_file"
        case privateKey = "http.tls_key_file"
        case clientCA = "http.tls_client_ca_file"
    }
    package var key: Key
    package var message: String
    package var isWarning = false

    package var description: String { "\(key.rawValue): \(message)" }
}

/// The listener's TLS context, swapped whole on reload: connections keep the context they were
/// accepted with, new connections get the current one. A bad new pair leaves the old one in use.
package final class ServerTLS: Sendable {
    package let files: TLSFiles
    private let current: Mutex<NIOSSLContext>

    package init(files: TLSFiles) throws(TLSFileProblem) {
        self.files = files
        current = Mutex(try Self.makeContext(files))
    }

    package var context: NIOSSLContext { current.withLock { $0 } }

    /// Reads the files again; on failure the old context stays and the problem is thrown.
    package func reload() throws(TLSFileProblem) {
        let fresh = try Self.makeContext(files)
        current.withLock { $0 = fresh }
    }

    /// Everything `check-config` reports: errors that stop the start, warnings (expiry) that do not.
    package static func check(_ files: TLSFiles, now: time_t = time(nil)) -> [TLSFileProblem] {
        do {
            let material = try load(files)
            _ = try makeContext(material: material, files: files)
            var problems: [TLSFileProblem] = []
            if let leaf = material.chain.first {
                let expiry = leaf.notValidAfter
                if expiry < now {
                    problems.append(TLSFileProblem(key: .certificate, message: "the certificate expired \(days(now - expiry)) ago; PIOPIY will refuse it", isWarning: true))
                } else if expiry - now < 14 * 86_400 {
                    problems.append(TLSFileProblem(key: .certificate, message: "the certificate expires in \(days(expiry - now)); renew it, then systemctl reload callrelay", isWarning: true))
                }
                if leaf.notValidBefore > now {
                    problems.append(TLSFileProblem(key: .certificate, message: "the certificate is not valid yet (check the clock)", isWarning: true))
                }
            }
            return problems
        } catch {
            return [error]
        }
    }

    private static func days(_ seconds: time_t) -> String {
        let d = seconds / 86_400
        return d == 1 ? "1 day" : d == 0 ? "less than a day" : "\(d) days"
    }

    struct Material {
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
        var clientCAs: [NIOSSLCertificate]?
    }

    static func load(_ files: TLSFiles) throws(TLSFileProblem) -> Material {
        let chain = try certificates(files.certificateChain, key: .certificate, what: "certificate")
        let keyBytes = try read(files.privateKey, key: .privateKey)
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)
        } catch {
            let text = String(decoding: keyBytes, as: UTF8.self)
            let hint = text.contains("ENCRYPTED") ? " (it is encrypted; callrelay needs an unencrypted key)" :
                text.contains("-----BEGIN CERTIFICATE") ? " (this file holds a certificate, not a key)" : ""
            throw TLSFileProblem(key: .privateKey, message: "\(files.privateKey) holds no PEM private key callrelay can use\(hint)")
        }
        let clientCAs = try files.clientCA.map { path throws(TLSFileProblem) in try certificates(path, key: .clientCA, what: "CA certificate") }
        return Material(chain: chain, key: key, clientCAs: clientCAs)
    }

    static func makeContext(_ files: TLSFiles) throws(TLSFileProblem) -> NIOSSLContext {
        try makeContext(material: load(files), files: files)
    }

    static func makeContext(material: Material, files: TLSFiles) throws(TLSFileProblem) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: material.chain.map { .certificate($0) }, privateKey: .privateKey(material.key))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCAs = material.clientCAs {
            configuration.trustRoots = .certificates(clientCAs)
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            // Both files parsed on their own: BoringSSL refuses a key that is not the certificate's.
            throw TLSFileProblem(
                key: .privateKey,
                message: "\(files.privateKey) does not match the certificate in \(files.certificateChain) (it is the key of another certificate)")
        } catch {
            throw TLSFileProblem(key: .privateKey, message: "the certificate and key cannot be used together: \(error)")
        }
    }

    private static func certificates(_ path: String, key: TLSFileProblem.Key, what: String) throws(TLSFileProblem) -> [NIOSSLCertificate] {
        let bytes = try read(path, key: key)
        let list: [NIOSSLCertificate]
        do {
            list = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw TLSFileProblem(key: key, message: "\(path) is not a PEM \(what) file (\(error))")
        }
        guard !list.isEmpty else {
            throw TLSFileProblem(key: key, message: "\(path) holds no PEM \(what) (-----BEGIN CERTIFICATE-----)")
        }
        return list
    }

    private static func read(_ path: String, key: TLSFileProblem.Key) throws(TLSFileProblem) -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            throw TLSFileProblem(key: key, message: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n > 0 { out += chunk[0..<n] }
            if n < chunk.count { break }
            if out.count > 1 << 20 { throw TLSFileProblem(key: key, message: "\(path) is over 1 MiB: not a PEM file") }
        }
        return out
    }
}
