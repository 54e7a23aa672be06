#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// RFC 3339 timestamps without Foundation.
package enum Timestamp {
    /// `2024-09-10T04:34:31.456Z`: UTC, always three fraction digits and `Z`.
    /// Proleptic Gregorian calendar (days-from-civil inverse by H. Hinnant). Total for every
    /// `Int64`: years outside 0...9999 are written with more digits or a leading `-`.
    package static func rfc3339(millisecondsSinceEpoch ms: Int64) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(24)
        write(millisecondsSinceEpoch: ms, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the `rfc3339(millisecondsSinceEpoch:)` text (without quotes) to `out`.
    package static func write(millisecondsSinceEpoch ms: Int64, into out: inout [UInt8]) {
        let msPerDay: Int64 = 86_400_000
        // Floor division (Int64.min / msPerDay cannot overflow: the divisor is not -1).
        var days = ms / msPerDay
        var msOfDay = ms % msPerDay
        if msOfDay < 0 {
            msOfDay += msPerDay
            days -= 1
        }
        let (year, month, day) = civil(fromDays: days)

        if year < 0 { out.append(0x2D) }
        let absYear = year.magnitude
        if absYear < 10_000 {
            appendPadded(absYear, width: 4, into: &out)
        } else {
            appendPadded(absYear, width: 1, into: &out)
        }
        out.append(0x2D)
        appendPadded(UInt64(month), width: 2, into: &out)
        out.append(0x2D)
        appendPadded(UInt64(day), width: 2, into: &out)
        out.append(0x54)  // T
        let secondsOfDay = UInt64(msOfDay / 1000)
        appendPadded(secondsOfDay / 3600, width: 2, into: &out)
        out.append(0x3A)
        appendPadded(secondsOfDay / 60 % 60, width: 2, into: &out)
        out.append(0x3A)
        appendPadded(secondsOfDay % 60, width: 2, into: &out)
        out.append(0x2E)
        appendPadded(UInt64(msOfDay % 1000), width: 3, into: &out)
        out.append(0x5A)  // Z
    }

    /// Civil date from days since 1970-01-01. Safe for every day count derived from an Int64 of ms.
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097  // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365  // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)  // [0, 365]
        let mp = (5 * doy + 2) / 153  // [0, 11]
        let day = doy - (153 * mp + 2) / 5 + 1  // [1, 31]
        let month = mp < 10 ? mp + 3 : mp - 9  // [1, 12]
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func appendPadded(_ value: UInt64, width: Int, into out: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { buf in
            repeat {
                buf[count] = UInt8(truncatingIfNeeded: v % 10) &+ 0x30
                v /= 10
                count &+= 1
            } while v > 0 && count < 20
        }
        var pad = width - count
        while pad > 0 {
            out.append(0x30)
            pad -= 1
        }
        withUnsafeBytes(of: &digits) { buf in
            var k = count
            while k > 0 {
                k &-= 1
                out.append(buf[k])
            }
        }
    }

    /// Wall-clock time (CLOCK_REALTIME) in milliseconds since the Unix epoch.
    package static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1000 &+ Int64(ts.tv_nsec) / 1_000_000
    }
}
