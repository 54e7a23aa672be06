import Glibc

/// A point in time given on the command line (`replay --since/--until`), as epoch milliseconds.
///
/// Accepted: RFC 3339 (`2024-09-10T04:34:31Z`, `…31.456Z`, `…31+05:30`; a space may replace `T`;
/// no zone means UTC), a date (`2024-09-10`, UTC midnight), a duration ago (`90s`, `30m`, `2h`,
/// `7d`, optionally prefixed with `-`), `now`, or epoch seconds/milliseconds (10/13 digits).
enum TimeArgument {
    static func parse(_ text: String, now: Int64) -> Int64? {
        let t = text.trimmingSpaces
        if t == "now" { return now }
        if let ago = relative(t) { return now - ago }
        if t.allSatisfy(\.isNumber), let value = Int64(t) { return t.count >= 13 ? value : value * 1000 }
        return absolute(t)
    }

    private static func relative(_ t: String) -> Int64? {
        var body = Substring(t)
        if body.hasPrefix("-") { body = body.dropFirst() }
        guard let unit = body.last, let amount = Int64(body.dropLast()), amount >= 0 else { return nil }
        let factor: Int64? = switch unit {
        case "s": 1000
        case "m": 60_000
        case "h": 3_600_000
        case "d": 86_400_000
        default: nil
        }
        return factor.map { amount * $0 }
    }

    private static func absolute(_ t: String) -> Int64? {
        let c = Array(t.utf8)
        func num(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= c.count else { return nil }
            var v = 0
            for b in c[from..<(from + count)] {
                guard b >= 48 && b <= 57 else { return nil }
                v = v * 10 + Int(b - 48)
            }
            return v
        }
        guard c.count >= 10, let year = num(0, 4), c[4] == UInt8(ascii: "-"), let month = num(5, 2), c[7] == UInt8(ascii: "-"),
            let day = num(8, 2), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var hour = 0, minute = 0, second = 0, millis = 0, offsetMinutes = 0
        var i = 10
        if i < c.count {
            guard c[i] == UInt8(ascii: "T") || c[i] == UInt8(ascii: " ") || c[i] == UInt8(ascii: "t"), let h = num(i + 1, 2),
                c.count > i + 3, c[i + 3] == UInt8(ascii: ":"), let m = num(i + 4, 2)
            else { return nil }
            hour = h
            minute = m
            i += 6
            if i < c.count, c[i] == UInt8(ascii: ":") {
                guard let s = num(i + 1, 2) else { return nil }
                second = s
                i += 3
            }
            if i < c.count, c[i] == UInt8(ascii: ".") {
                i += 1
                var digits = 0
                while i < c.count, c[i] >= 48, c[i] <= 57 {
                    if digits < 3 { millis = millis * 10 + Int(c[i] - 48) }
                    digits += 1
                    i += 1
                }
                guard digits > 0 else { return nil }
                for _ in digits..<3 where digits < 3 { millis *= 10 }
            }
            if i < c.count {
                if c[i] == UInt8(ascii: "Z") || c[i] == UInt8(ascii: "z") {
                    i += 1
                } else if c[i] == UInt8(ascii: "+") || c[i] == UInt8(ascii: "-") {
                    guard let oh = num(i + 1, 2), c.count > i + 3, c[i + 3] == UInt8(ascii: ":"), let om = num(i + 4, 2) else { return nil }
                    offsetMinutes = (oh * 60 + om) * (c[i] == UInt8(ascii: "+") ? 1 : -1)
                    i += 6
                }
            }
            guard i == c.count, hour < 24, minute < 60, second < 61 else { return nil }
        }
        let days = daysFromCivil(year, month, day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetMinutes * 60)
        return seconds * 1000 + Int64(millis)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

extension String {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
