import Testing

@testable import CallRelayCommands

@Suite struct TimeArgumentTests {
    let now: Int64 = 1_725_942_871_456  // 2024-09-10T04:34:31.456Z

    @Test(arguments: [
        ("2024-09-10T04:34:31Z", 1_725_942_871_000),
        ("2024-09-10T04:34:31.456Z", 1_725_942_871_456),
        ("2024-09-10 04:34:31", 1_725_942_871_000),
        ("2024-09-10T10:04:31+05:30", 1_725_942_871_000),
        ("2024-09-10T04:34Z", 1_725_942_840_000),
        ("2024-09-10", 1_725_926_400_000),
        ("1970-01-01", 0),
        ("2000-02-29T00:00:00Z", 951_782_400_000),
        ("1725942871", 1_725_942_871_000),
        ("1725942871456", 1_725_942_871_456),
    ] as [(String, Int64)])
    func absoluteTimes(text: String, expected: Int64) {
        #expect(TimeArgument.parse(text, now: now) == expected)
    }

    @Test func relativeTimesCountBackFromNow() {
        #expect(TimeArgument.parse("now", now: now) == now)
        #expect(TimeArgument.parse("90s", now: now) == now - 90_000)
        #expect(TimeArgument.parse("30m", now: now) == now - 1_800_000)
        #expect(TimeArgument.parse("-2h", now: now) == now - 7_200_000)
        #expect(TimeArgument.parse("7d", now: now) == now - 604_800_000)
    }

    @Test(arguments: ["", "yesterday", "2024-13-01", "2024-09-10T25:00Z", "2024-09-10T04:34:31+0530", "2h30", "12x", "2024-09-10Tgarbage"])
    func garbageIsRefused(text: String) {
        #expect(TimeArgument.parse(text, now: now) == nil)
    }
}
