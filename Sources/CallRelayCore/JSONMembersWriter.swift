/// Appends `,"key":value` members to a JSON object under construction (the first one without
/// the comma), skipping absent values: how callrelay writes its payloads, keys in a fixed order.
package struct JSONMembersWriter {
    package var out: [UInt8]
    /// True until the first member is written (no comma before it).
    package var first: Bool

    /// `first`: whether `out` ends at an object's `{` (false: members are already there).
    package init(out: [UInt8] = [], first: Bool = false) {
        self.out = out
        self.first = first
    }

    package mutating func key(_ name: StaticString) {
        if !first { out.append(0x2C) }
        first = false
        out.append(0x22)
        JSONWriter.writeASCII(name, into: &out)
        out.append(0x22)
        out.append(0x3A)
    }

    package mutating func string(_ name: StaticString, _ value: String?) {
        guard let value else { return }
        key(name)
        JSONWriter.writeString(value, into: &out)
    }

    /// RFC 3339 with milliseconds (`Timestamp`), quoted.
    package mutating func timestamp(_ name: StaticString, _ ms: Int64?) {
        guard let ms else { return }
        key(name)
        out.append(0x22)
        Timestamp.write(millisecondsSinceEpoch: ms, into: &out)
        out.append(0x22)
    }

    package mutating func int(_ name: StaticString, _ value: Int64?) {
        guard let value else { return }
        key(name)
        JSONWriter.writeRaw(String(value), into: &out)
    }

    package mutating func value(_ name: StaticString, _ value: JSONValue?) {
        guard let value else { return }
        key(name)
        value.write(into: &out)
    }
}
