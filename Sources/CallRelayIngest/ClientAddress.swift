import CallRelayCore
import NIOCore

/// Who the client is: the peer address, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy (the rightmost untrusted hop, so a client
/// cannot forge its way in by prepending addresses).
enum ClientAddress {
    /// `peer` is 4 or 16 bytes (nil for a Unix socket or an embedded channel); `forwardedFor`
    /// holds the header's values in order.
    static func resolve(peer: [UInt8]?, forwardedFor: [String], trusted: [CIDR]) -> [UInt8]? {
        guard let peer, !trusted.isEmpty, trusted.containsAddress(peer), !forwardedFor.isEmpty else { return peer }
        let hops: [String] = forwardedFor.flatMap { $0.split(separator: ",") }.map { String($0.filter { $0 != " " && $0 != "\t" }) }
        var client = peer
        for hop in hops.reversed() {
            guard let address = IPAddressBytes.parse(Self.stripPort(Substring(hop))) else { return client }
            client = address
            if !trusted.containsAddress(address) { return address }
        }
        return client
    }

    /// `[2001:db8::1]:443` → `2001:db8::1`; `192.0.2.1:80` → `192.0.2.1`; an address without port unchanged.
    static func stripPort(_ text: Substring) -> Substring {
        if text.first == "[", let close = text.firstIndex(of: "]") {
            return text[text.index(after: text.startIndex)..<close]
        }
        if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") { return text[..<colon] }
        return text
    }

    static func bytes(of address: SocketAddress?) -> [UInt8]? {
        guard let text = address?.ipAddress else { return nil }
        return IPAddressBytes.parse(text[...])
    }

    static func text(_ bytes: [UInt8]?) -> String {
        bytes.map(IPAddressBytes.format) ?? "unknown"
    }
}
