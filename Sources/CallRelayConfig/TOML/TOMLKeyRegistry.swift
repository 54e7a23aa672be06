// Which keys and tables a TOML file has defined so far, so that defining one twice is an error
// (TOML 1.0: "Defining a key multiple times is invalid", and the same for tables), reported with
// the line of the first definition.

struct TOMLKeyRegistry {
    private enum Kind {
        /// `key = value` (not a table).
        case value
        /// `key = { ... }`: complete once written, cannot be extended.
        case inlineTable
        /// `[a.b]` written as a header.
        case headerTable
        /// `a` in `[a.b]`: exists, may still get its own `[a]` header once.
        case implicitTable
        /// `a` in `a.b = 1`: may be extended by more dotted keys and by `[a.c]` sub-table headers,
        /// never by an `[a]` header.
        case dottedTable
    }

    private struct Node {
        var kind: Kind
        var line: Int
    }

    private var nodes: [[String]: Node] = [:]

    /// True if `[path]` was already written as a header (a duplicate table, merged by the parser).
    func isHeaderTable(_ path: [String]) -> Bool {
        if case .headerTable = nodes[path]?.kind { return true }
        return false
    }

    mutating func defineHeader(_ path: [String], line: Int) throws(TOMLSyntaxError) {
        let name = TOMLText.key(path)
        for length in 1..<path.count {
            let prefix = Array(path.prefix(length))
            guard let node = nodes[prefix] else {
                nodes[prefix] = Node(kind: .implicitTable, line: line)
                continue
            }
            switch node.kind {
            case .value:
                throw TOMLSyntaxError(
                    line: line,
                    message:
                        "cannot define table [\(name)]: '\(TOMLText.key(prefix))' already has a value (line \(node.line))"
                )
            case .inlineTable:
                throw TOMLSyntaxError(
                    line: line,
                    message:
                        "cannot define table [\(name)]: '\(TOMLText.key(prefix))' is an inline table (line \(node.line)), which cannot be extended"
                )
            case .headerTable, .implicitTable, .dottedTable:
                continue
            }
        }
        guard let node = nodes[path] else {
            nodes[path] = Node(kind: .headerTable, line: line)
            return
        }
        switch node.kind {
        case .implicitTable:
            nodes[path] = Node(kind: .headerTable, line: line)
        case .headerTable:
            throw TOMLSyntaxError(line: line, message: "duplicate table [\(name)], first defined at line \(node.line)")
        case .dottedTable:
            throw TOMLSyntaxError(
                line: line, message: "table [\(name)] was already defined with dotted keys at line \(node.line)")
        case .value, .inlineTable:
            throw TOMLSyntaxError(
                line: line, message: "table [\(name)] clashes with the key '\(name)' defined at line \(node.line)")
        }
    }

    /// Defines `path` (the full key) as a value. `tableDepth` is how many leading parts of `path`
    /// name the current `[header]` table; the parts after it up to the last are dotted-key tables.
    mutating func defineValue(_ path: [String], tableDepth: Int, isInlineTable: Bool, line: Int) throws(TOMLSyntaxError)
    {
        let name = TOMLText.key(path)
        if tableDepth + 1 < path.count {
            for length in (tableDepth + 1)..<path.count {
                let prefix = Array(path.prefix(length))
                guard let node = nodes[prefix] else {
                    nodes[prefix] = Node(kind: .dottedTable, line: line)
                    continue
                }
                let prefixName = TOMLText.key(prefix)
                switch node.kind {
                case .dottedTable:
                    continue
                case .value:
                    throw TOMLSyntaxError(
                        line: line,
                        message: "cannot define '\(name)': '\(prefixName)' already has a value (line \(node.line))")
                case .inlineTable:
                    throw TOMLSyntaxError(
                        line: line,
                        message:
                            "cannot define '\(name)': '\(prefixName)' is an inline table (line \(node.line)), which cannot be extended"
                    )
                case .headerTable, .implicitTable:
                    throw TOMLSyntaxError(
                        line: line,
                        message:
                            "cannot define '\(name)' with a dotted key: table [\(prefixName)] has its own header (line \(node.line)); write the key under it"
                    )
                }
            }
        }
        if let node = nodes[path] {
            throw TOMLSyntaxError(line: line, message: "duplicate key '\(name)', first defined at line \(node.line)")
        }
        nodes[path] = Node(kind: isInlineTable ? .inlineTable : .value, line: line)
    }
}
