import CallRelayCore
import Testing

@Suite struct CIDRTests {
    @Test func parsesNetworksAndBareAddresses() throws {
        #expect(CIDR("203.0.113.0/24")?.description == "203.0.113.0/24")
        #expect(CIDR("203.0.113.7")?.description == "203.0.113.7/32")
        #expect(CIDR("2001:db8::/32")?.description == "2001:db8::/32")
        #expect(CIDR("::1")?.description == "::1/128")
        #expect(CIDR("10.1.2.3/8")?.description == "10.0.0.0/8")  // host bits cleared
    }

    @Test func rejectsWhatIsNotANetwork() {
        for bad in ["", "10.0.0/8", "10.0.0.256", "10.0.0.0/33", "2001:db8::/129", "1:2:3:4:5:6:7:8:9", "1::2::3", "host.example", "10.0.0.0/", "10.0.0.0/-1", "::g"] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
    }

    @Test func matchesAddressesInside() throws {
        let v4 = try #require(CIDR("192.0.2.0/24"))
        #expect(v4.contains("192.0.2.200"))
        #expect(!v4.contains("192.0.3.1"))
        #expect(v4.contains("::ffff:192.0.2.5"))  // what a dual-stack socket reports
        let v6 = try #require(CIDR("2001:db8::/32"))
        #expect(v6.contains("2001:db8:1::5"))
        #expect(!v6.contains("2001:db9::1"))
        #expect(!v6.contains("192.0.2.1"))
        #expect(try #require(CIDR("0.0.0.0/0")).contains("8.8.8.8"))
    }

    @Test func formatsIPv6Compactly() {
        #expect(IPAddressBytes.format(IPAddressBytes.parse("2001:0db8:0000:0000:0000:0000:0000:0001")!) == "2001:db8::1")
        #expect(IPAddressBytes.format(IPAddressBytes.parse("::")!) == "::")
        #expect(IPAddressBytes.parse("::ffff:192.0.2.1")?.count == 16)
    }
}
