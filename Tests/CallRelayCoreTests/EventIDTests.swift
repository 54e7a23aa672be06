import CallRelayCore
import Testing

/// Reference values computed with this independent Python implementation of 128-bit FNV-1a:
///
///     def fnv1a_128(data: bytes) -> str:
///         h = 0x6c62272e07bb014262b821756295c58d
///         p = (1 << 88) + 0x13b
///         for b in data:
///             h ^= b
///             h = (h * p) % (1 << 128)
///         return "%032x" % h
///
/// "a" and "foobar" also match the published FNV test vectors.
@Suite("Event ids")
struct EventIDTests {
    @Test(arguments: [
        ("", "6c62272e07bb014262b821756295c58d"),
        ("a", "d228cb696f1a8caf78912b704e4a8964"),
        ("foobar", "343e1662793c64bf6f0d3597ba446f18"),
        ("cdr|2222222|33079756-faed-4a29-8b36-c8ead67e047c|a", "c7291fdc5e859038c7b2fb6c473bd3c7"),
    ])
    func referenceValues(_ key: String, _ expected: String) {
        #expect(EventID.make(fromKey: key) == expected)
    }

    @Test func stableAndDistinct() {
        let key = "live|2222224|ee6a7a9b-78ea-4693-9e77-5fc085567b2f|a|out_answered|1725942871456"
        let id = EventID.make(fromKey: key)
        #expect(id == EventID.make(fromKey: key))
        #expect(id.count == 32)
        #expect(id.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(id != EventID.make(fromKey: key + " "))
    }

    @Test func hashesUTF8Bytes() {
        #expect(EventID.fnv1a128("é".utf8) == EventID.fnv1a128([0xC3, 0xA9]))
        #expect(EventID.make(fromKey: "é") != EventID.make(fromKey: "e"))
    }
}
