import CallRelayCore
import Testing

@Suite("RFC 3339 timestamps")
struct TimestampTests {
    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (1_725_942_871_456, "2024-09-10T04:34:31.456Z"),
        (1_632_317_068_000, "2021-09-22T13:24:28.000Z"),
        (1_700_000_000_000, "2023-11-14T22:13:20.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-86_400_000, "1969-12-31T00:00:00.000Z"),
        // Leap years: 2000 (divisible by 400), 2024; 2100 is not a leap year.
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (951_868_800_000, "2000-03-01T00:00:00.000Z"),
        (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
        (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
        (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        (4_133_894_400_000, "2100-12-31T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (253_402_300_800_000, "10000-01-01T00:00:00.000Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
        (-62_167_219_200_001, "-0001-12-31T23:59:59.999Z"),
    ])
    func knownValues(_ ms: Int64, _ expected: String) {
        #expect(Timestamp.rfc3339(millisecondsSinceEpoch: ms) == expected)
    }

    @Test func extremesDoNotTrap() {
        #expect(Timestamp.rfc3339(millisecondsSinceEpoch: .max).hasSuffix(".807Z"))
        #expect(Timestamp.rfc3339(millisecondsSinceEpoch: .min).hasPrefix("-"))
    }

    @Test func everyDayOfFourHundredYearsIsConsistent() {
        // Walk 1970...2370 day by day: dates must be strictly increasing and well-formed.
        var previous = ""
        for day in Int64(0)..<146_097 {
            let text = Timestamp.rfc3339(millisecondsSinceEpoch: day * 86_400_000)
            #expect(text.count == 24)
            #expect(text > previous)
            previous = text
        }
        #expect(previous == "2369-12-31T00:00:00.000Z")  // 146096 days: 400 Gregorian years minus one day
    }

    @Test func nowIsPlausible() {
        let now = Timestamp.nowMilliseconds()
        #expect(now > 1_700_000_000_000)
        #expect(now < 4_102_444_800_000)  // 2100
    }
}
