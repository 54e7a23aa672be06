import CallRelayCore

/// Value conversions used by the normalizer. All are total: garbage in gives nil, never a trap.
enum FieldConversion {
    /// Latest instant accepted as a timestamp: 9999-12-31T23:59:59.999Z.
    static let maxEpochMilliseconds: Int64 = 253_402_300_799_999
    /// At or above this a timestamp is read as milliseconds, below it as seconds
    /// (1e11 s is the year 5138; 1e11 ms is 1973-03-03).
    static let millisecondsThreshold: Int64 = 100_000_000_000

    // MARK: Text

    /// A string as is, or a number's literal; nil for every other type.
    static func text(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let s)?: return s
        case .number(let literal)?: return literal
        default: return nil
        }
    }

    /// True when the value is a non-empty string or a number.
    static func isPresentText(_ value: JSONValue?) -> Bool {
        switch value {
        case .string(let s)?: return !s.isEmpty
        case .number?: return true
        default: return false
        }
    }

    /// ASCII case-insensitive comparison against a lower-case ASCII literal.
    static func equalsIgnoringASCIICase(_ s: String, _ lowerASCII: StaticString) -> Bool {
        let a = s.utf8
        guard a.count == lowerASCII.utf8CodeUnitCount else { return false }
        return lowerASCII.withUTF8Buffer { b in
            var i = 0
            for c in a {
                let l = (c >= 0x41 && c <= 0x5A) ? c | 0x20 : c
                if l != b[i] { return false }
                i &+= 1
            }
            return true
        }
    }

    // MARK: Topic levels

    /// Lower-case; every byte outside `[a-z0-9_-]` becomes `_`; runs of `_` collapse to one;
    /// `_` trimmed at both ends; at most 64 characters; empty gives `unknown`.
    /// The result never contains `/`, `+`, `#`, NUL or any non-ASCII byte.
    static func sanitizeLevel(_ s: String) -> String {
        let limit = 64
        var out: [UInt8] = []
        out.reserveCapacity(min(s.utf8.count, limit))
        var previousUnderscore = true  // drops leading underscores
        for c in s.utf8 {
            let mapped: UInt8
            switch c {
            case 0x61...0x7A, 0x30...0x39, 0x2D: mapped = c
            case 0x41...0x5A: mapped = c | 0x20
            default: mapped = 0x5F
            }
            if mapped == 0x5F {
                if previousUnderscore { continue }
                previousUnderscore = true
            } else {
                previousUnderscore = false
            }
            out.append(mapped)
            if out.count == limit { break }
        }
        while out.last == 0x5F { out.removeLast() }
        if out.isEmpty { return "unknown" }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Numbers

    /// The integer part of a decimal number text `-?digits(.digits)?([eE][+-]?digits)?`
    /// (leading zeros tolerated), truncated toward zero.
    struct IntegerPart {
        /// Digits without leading zeros; "0" for zero.
        var digits: [UInt8]
        /// True only for a non-zero negative value.
        var negative: Bool
        /// True when the number has no non-zero fraction (it denotes an integer).
        var exact: Bool

        /// The value, when it has at most 18 digits (always fits an Int64).
        var int64: Int64? {
            guard digits.count <= 18 else { return nil }
            var v: Int64 = 0
            for d in digits { v = v &* 10 &+ Int64(d &- 0x30) }
            return negative ? -v : v
        }
    }

    /// nil when `text` is not a decimal number or its integer part has more than `maxDigits` digits.
    static func integerPart(of text: String, maxDigits: Int, allowExponent: Bool = true) -> IntegerPart? {
        var text = text
        return text.withUTF8 { u -> IntegerPart? in
            let n = u.count
            var i = 0
            var negative = false
            if i < n && u[i] == 0x2D {
                negative = true
                i &+= 1
            }
            let intStart = i
            while i < n && u[i] &- 0x30 < 10 { i &+= 1 }
            let intCount = i &- intStart
            guard intCount > 0 else { return nil }
            var fracStart = i
            var fracCount = 0
            if i < n && u[i] == 0x2E {
                i &+= 1
                fracStart = i
                while i < n && u[i] &- 0x30 < 10 { i &+= 1 }
                fracCount = i &- fracStart
                guard fracCount > 0 else { return nil }
            }
            var exponent = 0
            if i < n && (u[i] == 0x65 || u[i] == 0x45) {
                guard allowExponent else { return nil }
                i &+= 1
                var expNegative = false
                if i < n && (u[i] == 0x2B || u[i] == 0x2D) {
                    expNegative = u[i] == 0x2D
                    i &+= 1
                }
                let expStart = i
                while i < n && u[i] &- 0x30 < 10 {
                    // Saturate: anything beyond ten million digits is out of every range anyway.
                    if exponent < 10_000_000 { exponent = exponent &* 10 &+ Int(u[i] &- 0x30) }
                    i &+= 1
                }
                guard i > expStart else { return nil }
                if expNegative { exponent = -exponent }
            }
            guard i == n else { return nil }

            let total = intCount &+ fracCount
            @inline(__always) func digit(_ k: Int) -> UInt8 {
                k < intCount ? u[intStart &+ k] : u[fracStart &+ (k &- intCount)]
            }
            // Position of the decimal point within the concatenated digits.
            let point = intCount &+ exponent
            let k = min(max(point, 0), total)
            var firstNonZero = -1
            var j = 0
            while j < k {
                if digit(j) != 0x30 {
                    firstNonZero = j
                    break
                }
                j &+= 1
            }
            var exact = true
            j = k
            while j < total {
                if digit(j) != 0x30 {
                    exact = false
                    break
                }
                j &+= 1
            }
            if firstNonZero < 0 {
                return IntegerPart(digits: [0x30], negative: false, exact: exact)
            }
            let trailingZeros = max(point &- total, 0)
            let length = (k &- firstNonZero) &+ trailingZeros
            guard length <= maxDigits else { return nil }
            var digits: [UInt8] = []
            digits.reserveCapacity(length)
            j = firstNonZero
            while j < k {
                digits.append(digit(j))
                j &+= 1
            }
            for _ in 0..<trailingZeros { digits.append(0x30) }
            return IntegerPart(digits: digits, negative: negative, exact: exact)
        }
    }

    /// True for `-?digits(.digits)?`.
    static func isPlainDecimal(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { u in
            var i = 0
            let n = u.count
            if i < n && u[i] == 0x2D { i &+= 1 }
            let intStart = i
            while i < n && u[i] &- 0x30 < 10 { i &+= 1 }
            guard i > intStart else { return false }
            if i == n { return true }
            guard u[i] == 0x2E else { return false }
            i &+= 1
            let fracStart = i
            while i < n && u[i] &- 0x30 < 10 { i &+= 1 }
            return i > fracStart && i == n
        }
    }

    /// True for one or more ASCII digits and nothing else.
    static func isDigits(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { $0 &- 0x30 < 10 }
    }

    // MARK: Field rules

    /// Phone numbers: an integer-valued number as its decimal digits; a string exactly as received.
    static func phoneNumber(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let s)?:
            return s
        case .number(let literal)?:
            guard let part = integerPart(of: literal, maxDigits: 32), part.exact, !part.negative else { return nil }
            return String(decoding: part.digits, as: UTF8.self)
        default:
            return nil
        }
    }

    /// Timestamps: integer number or digit string (fractions truncated); >= 1e11 is milliseconds,
    /// else seconds. Zero ("not set"), negative, non-numeric or after year 9999: nil.
    static func epochMilliseconds(_ value: JSONValue?) -> Int64? {
        let part: IntegerPart?
        switch value {
        case .number(let literal)?:
            part = integerPart(of: literal, maxDigits: 18)
        case .string(let s)?:
            part = isDigits(s) ? integerPart(of: s, maxDigits: 18) : nil
        default:
            return nil
        }
        guard let part, !part.negative, let v = part.int64, v > 0 else { return nil }
        let ms = v >= millisecondsThreshold ? v : v * 1000  // v < 1e11: no overflow
        return ms <= maxEpochMilliseconds ? ms : nil
    }

    /// Duration: integer number or decimal string, truncated toward zero; negative or garbage: nil.
    static func durationDigits(_ value: JSONValue?) -> [UInt8]? {
        let part: IntegerPart?
        switch value {
        case .number(let literal)?:
            part = integerPart(of: literal, maxDigits: 18)
        case .string(let s)?:
            part = isPlainDecimal(s) ? integerPart(of: s, maxDigits: 18, allowExponent: false) : nil
        default:
            return nil
        }
        guard let part, !part.negative else { return nil }
        return part.digits
    }

    /// Money: a number's literal text, or a string that is a plain decimal, kept exactly.
    static func decimalText(_ value: JSONValue?) -> String? {
        switch value {
        case .number(let literal)?: return literal
        case .string(let s)? where isPlainDecimal(s): return s
        default: return nil
        }
    }

    /// JSON carried inside a string: the decoded value when the string is strict JSON (and not
    /// `null`), else the string itself; a non-string, non-null value as is; null: nil.
    static func embeddedJSON(_ value: JSONValue?) -> JSONValue? {
        switch value {
        case nil, .null?:
            return nil
        case .string(let s)?:
            if let decoded = try? JSONValue.parse(s), decoded != .null { return decoded }
            return .string(s)
        case let other?:
            return other
        }
    }

    // MARK: Dedupe keys

    /// One component of a dedupe key: a string as is, a number's literal, `true`/`false`,
    /// empty for absent/null, canonical JSON for arrays and objects; then `%` → `%25` and
    /// `|` → `%7C` so components cannot run into each other.
    static func keyComponent(_ value: JSONValue?) -> String {
        escapeKeyComponent(rawKeyComponent(value))
    }

    /// `keyComponent` before escaping.
    static func rawKeyComponent(_ value: JSONValue?) -> String {
        switch value {
        case nil, .null?: return ""
        case .string(let s)?: return s
        case .number(let literal)?: return literal
        case .bool(let b)?: return b ? "true" : "false"
        case let container?:
            var bytes: [UInt8] = []
            container.writeCanonical(into: &bytes)
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    static func escapeKeyComponent(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x25 || $0 == 0x7C }) else { return s }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count &+ 8)
        for c in s.utf8 {
            switch c {
            case 0x25: out.append(contentsOf: [0x25, 0x32, 0x35])  // %25
            case 0x7C: out.append(contentsOf: [0x25, 0x37, 0x43])  // %7C
            default: out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
