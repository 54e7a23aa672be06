/// Webhook authentication: `?token=` or `Authorization: Bearer`, compared in constant time.
package struct TokenCheck: Sendable {
    private let expected: [UInt8]

    package init(token: String) { expected = Array(token.utf8) }

    package var isEnabled: Bool { !expected.isEmpty }

    /// True when authentication is off, or when either presented credential matches.
    package func accepts(queryToken: String?, authorization: String?) -> Bool {
        guard isEnabled else { return true }
        var ok = false
        if let queryToken { ok = Self.constantTimeEquals(Array(queryToken.utf8), expected) || ok }
        if let authorization, let bearer = Self.bearerToken(authorization) {
            ok = Self.constantTimeEquals(Array(bearer.utf8), expected) || ok
        }
        return ok
    }

    static func bearerToken(_ header: String) -> Substring? {
        let trimmed = header.drop(while: { $0 == " " })
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        return trimmed.dropFirst(7).drop(while: { $0 == " " })
    }

    /// Time depends only on the expected length, never on where the first difference is.
    package static func constantTimeEquals(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        var diff = UInt8(truncatingIfNeeded: given.count ^ expected.count)
        for i in 0..<expected.count {
            let g = i < given.count ? given[i] : 0
            diff |= g ^ expected[i]
        }
        return diff == 0
    }
}

/// Splits `path?query` and returns the path and the percent-decoded `token` query parameter.
package func splitTarget(_ uri: String) -> (path: Substring, token: String?) {
    guard let q = uri.firstIndex(of: "?") else { return (uri[...], nil) }
    let path = uri[..<q]
    var token: String?
    for pair in uri[uri.index(after: q)...].split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.first == "token" { token = percentDecode(parts.count > 1 ? parts[1] : "") }
    }
    return (path, token)
}

func percentDecode(_ s: Substring) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(s.utf8.count)
    var it = Array(s.utf8)[...]
    while let c = it.popFirst() {
        if c == UInt8(ascii: "+") {
            out.append(UInt8(ascii: " "))
        } else if c == UInt8(ascii: "%"), it.count >= 2, let h = hex(it[it.startIndex]), let l = hex(it[it.startIndex + 1]) {
            out.append(h << 4 | l)
            it = it.dropFirst(2)
        } else {
            out.append(c)
        }
    }
    return String(decoding: out, as: UTF8.self)
}

private func hex(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
}
