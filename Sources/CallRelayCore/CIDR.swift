/// An IPv4 or IPv6 network, `203.0.113.0/24` or `2001:db8::/32`; a bare address is a /32 or /128.
/// Used by `http.allow` and `http.trusted_proxies`. An IPv4-mapped IPv6 client (`::ffff:192.0.2.1`,
/// what a dual-stack listener sees) matches the IPv4 networks.
package struct CIDR: Sendable, Hashable, CustomStringConvertible {
    /// 4 or 16 bytes, host bits cleared.
    package let network: [UInt8]
    package let prefixLength: Int

    package init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddressBytes.parse(parts[0]) else { return nil }
        let bits = address.count * 8
        var length = bits
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits), n <= bits
            else { return nil }
            length = n
        }
        network = Self.masked(address, length)
        prefixLength = length
    }

    /// True when `address` (4 or 16 bytes) lies in this network.
    package func contains(_ address: [UInt8]) -> Bool {
        var candidate = address
        if candidate.count == 16, network.count == 4, IPAddressBytes.isIPv4Mapped(candidate) {
            candidate = Array(candidate[12...])
        }
        guard candidate.count == network.count else { return false }
        return Self.masked(candidate, prefixLength) == network
    }

    /// True when `address` (text) lies in this network; false when it is not an address.
    package func contains(_ address: String) -> Bool {
        IPAddressBytes.parse(address[...]).map(contains) ?? false
    }

    package var description: String {
        "\(IPAddressBytes.format(network))/\(prefixLength)"
    }

    static func masked(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<out.count {
            let keep = max(0, min(8, length - i * 8))
            out[i] &= keep == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
        return out
    }
}

extension Array where Element == CIDR {
    /// True when any network contains `address`.
    package func containsAddress(_ address: [UInt8]) -> Bool { contains { $0.contains(address) } }
}

/// Text ⇄ bytes for IP addresses, without `inet_pton` (pure, so the config checks and the fuzzer use it).
package enum IPAddressBytes {
    /// `192.0.2.1` → 4 bytes; `2001:db8::1`, `::ffff:192.0.2.1` → 16 bytes; nil otherwise.
    package static func parse(_ text: Substring) -> [UInt8]? {
        if text.contains(":") { return parseIPv6(text) }
        return parseIPv4(text)
    }

    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(part), n <= 255 else {
                return nil
            }
            out.append(UInt8(n))
        }
        return out
    }

    static func parseIPv6(_ text: Substring) -> [UInt8]? {
        var text = text
        if let percent = text.firstIndex(of: "%") { text = text[..<percent] }  // zone id
        guard text.count >= 2, text.count <= 45 else { return nil }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring) -> [UInt8]? {
            if part.isEmpty { return [] }
            var out: [UInt8] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, piece.contains(".") {
                    guard let v4 = parseIPv4(piece) else { return nil }
                    out += v4
                    continue
                }
                guard !piece.isEmpty, piece.count <= 4, let value = UInt16(piece, radix: 16) else { return nil }
                out += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return out
        }
        if halves.count == 1 {
            guard let all = groups(halves[0]), all.count == 16 else { return nil }
            return all
        }
        guard let head = groups(halves[0]), let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + Array(repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    static func isIPv4Mapped(_ bytes: [UInt8]) -> Bool {
        bytes.count == 16 && bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
    }

    /// Dotted quad for 4 bytes; for 16, groups in hex with the first longest zero run as `::`.
    package static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        guard bytes.count == 16 else { return "?" }
        let groups = (0..<8).map { Int(bytes[2 * $0]) << 8 | Int(bytes[2 * $0 + 1]) }
        var bestStart = -1
        var bestLength = 0
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength && j - i > 1 { (bestStart, bestLength) = (i, j - i) }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ range: Range<Int>) -> String { range.map { String(groups[$0], radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

private extension Substring {
    func components(separatedBy separator: String) -> [Substring] {
        var out: [Substring] = []
        var rest = self
        while let range = rest.range(of: separator) {
            out.append(rest[..<range.lowerBound])
            rest = rest[range.upperBound...]
        }
        out.append(rest)
        return out
    }

    func range(of needle: String) -> Range<Index>? {
        let n = Array(needle.utf8)
        var index = startIndex
        while index < endIndex {
            if self[index...].utf8.starts(with: n) {
                return index..<self.utf8.index(index, offsetBy: n.count)
            }
            index = self.index(after: index)
        }
        return nil
    }
}
