/// Stable event ids derived from a dedupe key.
package enum EventID {
    /// FNV-1a 128-bit offset basis (decimal 144066263297769815596495629667062367629).
    package static let fnvOffsetBasis: UInt128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d
    /// FNV 128-bit prime: 2^88 + 2^8 + 0x3b (decimal 309485009821345068724781371).
    package static let fnvPrime: UInt128 = 0x0000_0000_0100_0000_0000_0000_0000_013b

    /// 128-bit FNV-1a over the UTF-8 bytes of `key`, as 32 lowercase hex characters.
    /// Deterministic across runs, processes and machines (no seeded hashing).
    package static func make(fromKey key: String) -> String {
        let hash = fnv1a128(key.utf8)
        return hex32(hash)
    }

    /// 128-bit FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/): for each byte,
    /// `hash ^= byte; hash = hash &* prime`, starting from the offset basis.
    package static func fnv1a128(_ bytes: some Sequence<UInt8>) -> UInt128 {
        var hash = fnvOffsetBasis
        for byte in bytes {
            hash ^= UInt128(byte)
            hash = hash &* fnvPrime
        }
        return hash
    }

    private static func hex32(_ value: UInt128) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 32) { buf in
            digits.withUTF8Buffer { hex in
                var v = value
                var i = 32
                while i > 0 {
                    i &-= 1
                    buf[i] = hex[Int(truncatingIfNeeded: v & 0xF)]
                    v >>= 4
                }
            }
            return 32
        }
    }
}
