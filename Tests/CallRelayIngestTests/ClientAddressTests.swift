@testable import CallRelayIngest
import CallRelayCore
import NIOCore
import Testing

@Suite struct ClientAddressTests {
    let proxy: [CIDR] = [CIDR("10.0.0.0/8")!]

    @Test func withoutTrustedProxiesThePeerIsTheClient() {
        #expect(ClientAddress.resolve(peer: [10, 0, 0, 1], forwardedFor: ["203.0.113.9"], trusted: []) == [10, 0, 0, 1])
    }

    @Test func aTrustedProxyNamesTheClient() {
        #expect(ClientAddress.resolve(peer: [10, 0, 0, 1], forwardedFor: ["203.0.113.9"], trusted: proxy) == [203, 0, 113, 9])
    }

    @Test func theRightmostUntrustedHopWinsSoPrependedAddressesAreIgnored() {
        let forged = ["1.2.3.4, 203.0.113.9", "10.0.0.7"]
        #expect(ClientAddress.resolve(peer: [10, 0, 0, 1], forwardedFor: forged, trusted: proxy) == [203, 0, 113, 9])
    }

    @Test func anUntrustedPeerIsNeverOverridden() {
        #expect(ClientAddress.resolve(peer: [198, 51, 100, 1], forwardedFor: ["10.0.0.2"], trusted: proxy) == [198, 51, 100, 1])
    }

    @Test func garbageInTheHeaderStopsAtTheLastGoodHop() {
        #expect(ClientAddress.resolve(peer: [10, 0, 0, 1], forwardedFor: ["nonsense"], trusted: proxy) == [10, 0, 0, 1])
        #expect(ClientAddress.resolve(peer: [10, 0, 0, 1], forwardedFor: ["[2001:db8::1]:443"], trusted: proxy) == IPAddressBytes.parse("2001:db8::1"))
    }

    @Test func socketAddressesBecomeBytes() throws {
        #expect(ClientAddress.bytes(of: try SocketAddress(ipAddress: "192.0.2.1", port: 1)) == [192, 0, 2, 1])
        #expect(ClientAddress.bytes(of: try SocketAddress(ipAddress: "::1", port: 1))?.count == 16)
    }
}
