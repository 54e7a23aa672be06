import CallRelayCore
import CallRelayNormalize
import CallRelayTesting
import Testing

private func normalize(
    _ json: String, endpoint: WebhookEndpoint = .combined, receivedAt: Int64 = goldenReceivedAt
) throws -> NormalizedEvent {
    PiopiyNormalizer.normalize(try JSONValue.parse(json), endpoint: endpoint, receivedAtMilliseconds: receivedAt)
}

@Suite("Event names and kinds")
struct EventNameTests {
    /// Every fixture and the event it must publish under (kind comes from the file name).
    static let table: [(String, String)] = [
        ("cdr_in_answered_leg_a.json", "in_answered"),
        ("cdr_in_missed_leg_a.json", "in_missed"),
        ("cdr_out_answered_leg_a.json", "out_answered"),
        ("cdr_out_missed_leg_a.json", "out_missed"),
        ("live_in_answered_leg_a.json", "in_answered"),
        ("live_in_hangup_leg_a.json", "in_hangup"),  // status "hangup", inbound
        ("live_out_answered_leg_a.json", "out_answered"),
        ("live_out_answered_leg_b.json", "out_answered"),  // status "out_bridged"
        ("live_out_started_leg_a.json", "out_started"),
        ("live_out_started_leg_b.json", "out_started"),
        ("live_stream_connected.json", "stream_connected"),
        ("live_stream_disconnected.json", "stream_disconnected"),  // "STREAM_DISCONNECTED"
        ("variants/cdr_in_answered_leg_a.india.json", "in_answered"),
        ("variants/cdr_in_missed_leg_a.india.json", "in_missed"),
        ("variants/cdr_in_missed_leg_a.piopiy_old.json", "in_missed"),
        ("variants/cdr_out_missed_leg_a.piopiy_old.json", "out_missed"),
        ("variants/live_in_answered_leg_a.india.json", "in_answered"),  // "answered" + inbound
        ("variants/live_in_hangup_leg_a.india.json", "in_hangup"),  // "hangup" + inbound
        ("variants/live_out_ringing_leg_a.india.json", "ringing"),  // unknown status kept
        ("variants/live_out_started_leg_a.india.json", "out_started"),  // "started" + outbound
        ("inferred/cdr_in_answered_leg_b.inferred.json", "in_answered"),  // leg b says outbound
        ("inferred/cdr_in_missed_leg_b.inferred.json", "in_missed"),  // leg b says outbound
        ("inferred/cdr_out_answered_leg_b.inferred.json", "out_answered"),
        ("inferred/cdr_out_missed_leg_b.inferred.json", "out_missed"),
        ("inferred/live_in_answered_leg_b.inferred.json", "in_answered"),
        ("inferred/live_in_hangup_leg_a.current_style.inferred.json", "in_hangup"),
        ("inferred/live_in_hangup_leg_b.inferred.json", "in_hangup"),
        ("inferred/live_out_hangup_leg_a.inferred.json", "out_hangup"),
        ("inferred/live_out_hangup_leg_b.inferred.json", "out_hangup"),
        ("inferred/live_stream_error.inferred.json", "stream_error"),
    ]

    @Test func tableCoversEveryFixture() {
        #expect(Set(Self.table.map(\.0)) == Set(Fixtures.all))
    }

    @Test(arguments: table)
    func eventName(_ fixture: String, _ expected: String) throws {
        let event = try Fixtures.normalized(fixture)
        #expect(event.event == expected)
        let payload = try event.payloadValue()
        #expect(payload["event"] == .string(expected))
    }

    @Test(arguments: Fixtures.all)
    func combinedClassificationMatchesFileName(_ fixture: String) throws {
        let stem = Fixtures.stem(fixture)
        let expected: WebhookKind = stem.hasPrefix("cdr_") ? .cdr : .live
        let event = try Fixtures.normalized(fixture)
        #expect(event.kind == expected)
        // The dedicated endpoint gives the same kind, event and id.
        let direct = try Fixtures.normalized(fixture, endpoint: expected == .cdr ? .cdr : .live)
        #expect(direct.kind == expected)
        #expect(direct.event == event.event)
        #expect(direct.id == event.id)
    }

    @Test func endpointOverridesPayload() throws {
        let cdrLooking = #"{"appid":1,"cmiuuid":"u","status":"missed","duration":0,"direction":"inbound","type":"cdr"}"#
        let live = try normalize(cdrLooking, endpoint: .live)
        #expect(live.kind == .live)
        #expect(live.event == "missed")
        let cdr = try normalize(#"{"appid":1,"cmiuuid":"u","status":"in_answered","type":"event"}"#, endpoint: .cdr)
        #expect(cdr.kind == .cdr)
        #expect(cdr.event == "in_answered")
    }

    @Test(arguments: [
        (#"{"type":"CDR","status":"in_answered"}"#, WebhookKind.cdr),
        (#"{"type":"Event","status":"missed","duration":3}"#, .live),
        (#"{"type":"other","balance":"1.0"}"#, .cdr),
        (#"{"call_rate":0}"#, .cdr),
        (#"{"answer_time":1632318515}"#, .cdr),
        (#"{"start_time":null,"status":"answered"}"#, .live),
        (#"{"status":"MISSED"}"#, .cdr),
        (#"{"status":"answered"}"#, .live),
        (#"{"ws_status":"{}"}"#, .live),
        ("{}", .live),
    ])
    func combinedClassificationRules(_ json: String, _ kind: WebhookKind) throws {
        #expect(try normalize(json).kind == kind)
    }

    @Test(arguments: [
        // leg a: direction decides; absent or unrecognized → request_id decides
        (#"{"type":"cdr","status":"missed","leg":"a","direction":"Outbound"}"#, "out_missed"),
        (#"{"type":"cdr","status":"missed","leg":"a","direction":"inbound","request_id":"r"}"#, "in_missed"),
        (#"{"type":"cdr","status":"missed","request_id":"r"}"#, "out_missed"),
        (#"{"type":"cdr","status":"missed","direction":"sideways"}"#, "in_missed"),
        (#"{"type":"cdr","status":"missed","request_id":""}"#, "in_missed"),
        // leg b: direction ignored; request_id or out decides
        (#"{"type":"cdr","status":"answered","leg":"B","direction":"outbound"}"#, "in_answered"),
        (#"{"type":"cdr","status":"answered","leg":"b","direction":"inbound","out":true}"#, "out_answered"),
        (#"{"type":"cdr","status":"answered","leg":"b","request_id":12}"#, "out_answered"),
        (#"{"type":"cdr","status":"answered","leg":"b","out":false}"#, "in_answered"),
        // CDR statuses
        (#"{"type":"cdr","direction":"inbound"}"#, "in_unknown"),
        (#"{"type":"cdr","direction":"outbound","status":"in_missed"}"#, "in_missed"),
        (#"{"type":"cdr","direction":"outbound","status":"Busy Here"}"#, "out_busy_here"),
        (#"{"type":"cdr","direction":"inbound","status":""}"#, "in_unknown"),
        (#"{"type":"cdr","direction":"inbound","status":404}"#, "in_404"),
        // live statuses
        (#"{"type":"event","direction":"outbound","status":"answered"}"#, "out_answered"),
        (#"{"type":"event","direction":"outbound","status":"Hangup"}"#, "out_hangup"),
        (#"{"type":"event","direction":"inbound","status":"started"}"#, "in_started"),
        (#"{"type":"event","leg":"b","direction":"inbound","status":"OUT_BRIDGED"}"#, "out_answered"),
        (#"{"type":"event","status":"Stream_Error"}"#, "stream_error"),
        (#"{"type":"event","status":"in_hangup","direction":"outbound"}"#, "in_hangup"),
        (#"{"type":"event"}"#, "unknown"),
        (#"{"type":"event","status":true}"#, "unknown"),
        (#"{"type":"event","status":"Weird/Status+#"}"#, "weird_status"),
        (#"{"type":"cdr","status":"Weird/Status+#"}"#, "in_weird_status"),
    ])
    func eventRules(_ json: String, _ expected: String) throws {
        #expect(try normalize(json).event == expected)
    }
}

@Suite("Topics and sanitizing")
struct TopicTests {
    @Test func topicShape() throws {
        let event = try Fixtures.normalized("live_out_answered_leg_b.json")
        #expect(event.topic(prefix: "piopiy") == "piopiy/2222224/live/out_answered")
        let cdr = try Fixtures.normalized("cdr_in_missed_leg_a.json")
        #expect(cdr.topic(prefix: "piopiy") == "piopiy/2222222/cdr/in_missed")
    }

    @Test func unknownStatusIsSanitized() throws {
        let event = try normalize(#"{"appid":"App/1+#","cmiuuid":"c","status":"Weird/Status+#","time":1}"#)
        #expect(event.event == "weird_status")
        #expect(event.appID == "app_1")
        #expect(event.topic(prefix: "p") == "p/app_1/live/weird_status")
        // The payload keeps the status exactly as received.
        #expect(try event.payloadValue()["status"] == .string("Weird/Status+#"))
        #expect(try event.payloadValue()["app_id"] == .string("App/1+#"))
    }

    @Test(arguments: [
        ("", "unknown"), ("___", "unknown"), ("/+#", "unknown"), ("a\u{0}b", "a_b"), ("--x--", "--x--"),
        ("__In_Answered__", "in_answered"), ("Ünïcödé ☎", "n_c_d"), ("a  b//c", "a_b_c"),
        (String(repeating: "x", count: 100), String(repeating: "x", count: 64)),
        (String(repeating: "x", count: 63) + "/y", String(repeating: "x", count: 63)),
    ])
    func sanitizing(_ status: String, _ expected: String) throws {
        let body = JSONValue.object([
            JSONMember(key: "status", value: .string(status)), JSONMember(key: "appid", value: .string(status)),
        ])
        let event = PiopiyNormalizer.normalize(body, endpoint: .live, receivedAtMilliseconds: 0)
        #expect(event.event == expected)
        #expect(event.appID == expected)
    }

    @Test func topicLevelsNeverContainWildcardsOrSeparators() throws {
        let nasty = ["a/b", "+", "#", "a\u{0}", "/", "x+y#z", " ", "\u{7f}", "é/", "in_/x", "a".repeated(200), "0/0"]
        for status in nasty {
            for app in nasty {
                for endpoint in [WebhookEndpoint.cdr, .live, .combined] {
                    let body = JSONValue.object([
                        JSONMember(key: "appid", value: .string(app)), JSONMember(key: "status", value: .string(status)),
                    ])
                    let event = PiopiyNormalizer.normalize(body, endpoint: endpoint, receivedAtMilliseconds: 0)
                    for level in [event.appID, event.event] {
                        #expect(!level.isEmpty && level.utf8.count <= 64)
                        #expect(level.utf8.allSatisfy { c in
                            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
                        }, "\(level)")
                    }
                    #expect(event.topic(prefix: "p").split(separator: "/", omittingEmptySubsequences: false).count == 4)
                }
            }
        }
    }

    @Test func numericAppIDUsesItsLiteral() throws {
        #expect(try normalize(#"{"appid":2222222}"#).appID == "2222222")
        #expect(try normalize(#"{"app_id":2223343}"#).appID == "2223343")
        #expect(try normalize(#"{"appid":1,"app_id":2}"#).appID == "1")
        #expect(try normalize(#"{"appid":1.5e+3}"#).appID == "1_5e_3")
        #expect(try normalize(#"{"appid":{"x":1}}"#).appID == "unknown")
        #expect(try normalize("{}").appID == "unknown")
    }
}

extension String {
    fileprivate func repeated(_ count: Int) -> String { String(repeating: self, count: count) }
}

@Suite("Dedupe keys and ids")
struct DedupeTests {
    @Test func documentedKeyShapes() throws {
        let cdr = try Fixtures.normalized("cdr_in_missed_leg_a.json")
        #expect(cdr.dedupeKey == "cdr|2222222|33079756-faed-4a29-8b36-c8ead67e047c|a")
        #expect(cdr.id == "c7291fdc5e859038c7b2fb6c473bd3c7")
        #expect(cdr.id == EventID.make(fromKey: cdr.dedupeKey))
        #expect(cdr.callID == "33079756-faed-4a29-8b36-c8ead67e047c")
        let live = try Fixtures.normalized("live_stream_disconnected.json")
        #expect(live.dedupeKey == "live|2222324|c4ec9bd2-efad-4296-aa5b-eeafa6aeeea0|b|stream_disconnected|1725975496000")
    }

    @Test func cdrResendWithOtherKeyOrderWhitespaceTimeAndBalanceIsTheSameEvent() throws {
        let first = try Fixtures.normalized("cdr_in_missed_leg_a.json")
        let resend = """
            {
              "status" : "missed",   "leg":"a",
              "conversation_uuid":"33079756-faed-4a29-8b36-c8ead67e047c",
              "answer_time":1632318515, "balance":"898.500000", "call_rate":"0.000000",
              "cmiuuid":"33079756-faed-4a29-8b36-c8ead67e047c",
              "extra_params":"{\\"key\\":\\"value\\"}", "duration":0, "direction":"inbound",
              "from":440000000001, "end_time":1632317073, "start_time":1632317068,
              "time":1632318971000, "appid":2222222, "to":440000000000
            }
            """
        let again = try normalize(resend)
        #expect(again.id == first.id)
        #expect(again.dedupeKey == first.dedupeKey)
        // A string app id or cmiuuid sent as the same text also collides.
        let typed = try normalize(#"{"appid":"2222222","cmiuuid":"33079756-faed-4a29-8b36-c8ead67e047c","leg":"A","type":"cdr"}"#)
        #expect(typed.id == first.id)
    }

    @Test func legsOfOneCallAreDifferentEvents() throws {
        // The inferred in_missed leg b reuses leg a's cmiuuid: `leg` keeps them apart.
        let a = try Fixtures.normalized("cdr_in_missed_leg_a.json")
        let b = try Fixtures.normalized("inferred/cdr_in_missed_leg_b.inferred.json")
        #expect(a.callID == b.callID)
        #expect(a.id != b.id)
    }

    @Test func liveEventsDifferByStatusAndTime() throws {
        let started = try Fixtures.normalized("live_out_started_leg_a.json")
        let answered = try Fixtures.normalized("live_out_answered_leg_a.json")
        #expect(started.callID == answered.callID)
        #expect(started.id != answered.id)
        let json = #"{"appid":1,"cmiuuid":"c","leg":"a","status":"ringing","time":1725942871456}"#
        let one = try normalize(json)
        let sameAgain = try normalize(#"{"time":1725942871456,"status":"RINGING","leg":"a","cmiuuid":"c","appid":1,"x":1}"#)
        #expect(one.id == sameAgain.id)
        let later = try normalize(#"{"appid":1,"cmiuuid":"c","leg":"a","status":"ringing","time":1725942871457}"#)
        #expect(one.id != later.id)
        let otherStatus = try normalize(#"{"appid":1,"cmiuuid":"c","leg":"a","status":"hangup","time":1725942871456}"#)
        #expect(one.id != otherStatus.id)
    }

    @Test func withoutCmiuuidTheCanonicalBodyIsTheKey() throws {
        let a = try normalize(#"{"appid":1,"status":"x","nested":{"b":[1,{"d":1,"c":2}],"a":null}}"#)
        let b = try normalize(#"{ "nested" : { "a" : null, "b" : [ 1, { "c" : 2, "d" : 1 } ] }, "status":"x", "appid":1 }"#)
        #expect(a.dedupeKey == #"live|body|{"appid":1,"nested":{"a":null,"b":[1,{"c":2,"d":1}]},"status":"x"}"#)
        #expect(a.id == b.id)
        #expect(a.callID == nil)
        let c = try normalize(#"{"appid":1,"status":"x","nested":{"b":[{"d":1,"c":2},1],"a":null}}"#)
        #expect(c.id != a.id)  // array order matters
        let empty = try normalize(#"{"cmiuuid":"","status":"x"}"#)
        #expect(empty.dedupeKey.hasPrefix("live|body|"))
    }

    @Test func separatorsInsideComponentsCannotForgeCollisions() throws {
        let a = try normalize(#"{"type":"cdr","appid":"1|2","cmiuuid":"3","leg":"a"}"#)
        let b = try normalize(#"{"type":"cdr","appid":"1","cmiuuid":"2|3","leg":"a"}"#)
        #expect(a.id != b.id)
        #expect(a.dedupeKey == "cdr|1%7C2|3|a")
        #expect(b.dedupeKey == "cdr|1|2%7C3|a")
        let c = try normalize(#"{"type":"cdr","appid":"1%7C2","cmiuuid":"3","leg":"a"}"#)
        #expect(c.dedupeKey == "cdr|1%257C2|3|a")
    }

    @Test func idsAreDistinctAcrossFixturesExceptDocumentedRepeats() throws {
        var byID: [String: [String]] = [:]
        for fixture in Fixtures.all {
            byID[try Fixtures.normalized(fixture).id, default: []].append(fixture)
        }
        let shared = byID.values.filter { $0.count > 1 }.map { $0.sorted() }.sorted { $0[0] < $1[0] }
        // Doc generations of the same sample (same app, cmiuuid, leg) are the same CDR.
        #expect(shared == [
            ["cdr_in_answered_leg_a.json", "variants/cdr_in_answered_leg_a.india.json"],
            ["cdr_in_missed_leg_a.json", "variants/cdr_in_missed_leg_a.piopiy_old.json"],
            ["cdr_out_missed_leg_a.json", "variants/cdr_out_missed_leg_a.piopiy_old.json"],
            // The inferred leg-b CDRs share one synthetic placeholder cmiuuid (fixture artefact).
            [
                "inferred/cdr_in_answered_leg_b.inferred.json", "inferred/cdr_out_answered_leg_b.inferred.json",
                "inferred/cdr_out_missed_leg_b.inferred.json",
            ],
        ])
    }
}

@Suite("Payload fields")
struct PayloadFieldTests {
    @Test func keyOrderIsFixed() throws {
        let order = [
            "schema", "id", "source", "kind", "event", "status", "app_id", "call_id", "conversation_id", "request_id",
            "leg", "direction", "from", "to", "caller_id", "virtual_number", "occurred_at", "received_at", "started_at",
            "answered_at", "ended_at", "duration_seconds", "call_rate", "balance", "extra_params", "stream",
            "other_fields", "raw",
        ]
        for fixture in Fixtures.all {
            let keys = try Fixtures.normalized(fixture).payloadValue().keys
            let positions = keys.map { order.firstIndex(of: $0) ?? -1 }
            #expect(!positions.contains(-1), "\(fixture): unknown key in \(keys)")
            #expect(positions == positions.sorted(), "\(fixture): \(keys)")
            #expect(Set(keys).count == keys.count)
        }
    }

    @Test func leadingZeroPhoneNumbersStayStrings() throws {
        let payload = try Fixtures.normalized("cdr_out_answered_leg_a.json").payloadValue()
        #expect(payload["caller_id"] == .string("04471000000"))
        #expect(payload["virtual_number"] == .string("4471000000"))
        #expect(payload["from"] == .string("4471000000"))
        let ringing = try Fixtures.normalized("variants/live_out_ringing_leg_a.india.json").payloadValue()
        #expect(ringing["caller_id"] == .string("04471000000"))
    }

    @Test func numbersAsStringsAreKept() throws {
        let payload = try Fixtures.normalized("live_in_hangup_leg_a.json").payloadValue()
        #expect(payload["from"] == .string("440000000000"))
        #expect(payload["to"] == .string("19170000000"))
        #expect(payload["raw"]?["to"] == .string("19170000000"))
    }

    @Test func extraParams() throws {
        let invalid = try Fixtures.normalized("live_in_answered_leg_a.json").payloadValue()
        #expect(invalid["extra_params"] == .string("{key: value}"))
        let singleQuoted = try Fixtures.normalized("cdr_in_answered_leg_a.json").payloadValue()
        #expect(singleQuoted["extra_params"] == .string("{ 'Name': 'Akil', 'ID':8915726 }"))
        let valid = try Fixtures.normalized("cdr_in_missed_leg_a.json").payloadValue()
        #expect(valid["extra_params"] == .object([JSONMember(key: "key", value: .string("value"))]))
        #expect(try normalize(#"{"extra_params":{"a":1}}"#).payloadValue()["extra_params"] == .object([JSONMember(key: "a", value: .number("1"))]))
        #expect(try normalize(#"{"extra_params":"[1, 2.50]"}"#).payloadValue()["extra_params"] == .array([.number("1"), .number("2.50")]))
        #expect(try normalize(#"{"extra_params":""}"#).payloadValue()["extra_params"] == .string(""))
        #expect(try normalize(#"{"extra_params":"null"}"#).payloadValue()["extra_params"] == .string("null"))
        #expect(try normalize(#"{"extra_params":null}"#).payloadValue()["extra_params"] == nil)
    }

    @Test func stream() throws {
        let payload = try Fixtures.normalized("live_stream_disconnected.json").payloadValue()
        #expect(payload["stream"]?["status"] == .string("disconnected"))
        #expect(payload["stream"]?["message"]?["code"] == .number("1006"))
        #expect(try normalize(#"{"ws_status":"not json"}"#).payloadValue()["stream"] == .string("not json"))
    }

    @Test func otherFieldsKeepUnknownMembers() throws {
        let old = try Fixtures.normalized("variants/cdr_out_missed_leg_a.piopiy_old.json").payloadValue()
        #expect(old["other_fields"] == .object([
            JSONMember(key: "out", value: .bool(true)), JSONMember(key: "api_init", value: .bool(true)),
            JSONMember(key: "type", value: .string("cdr")),
        ]))
        let india = try Fixtures.normalized("cdr_out_answered_leg_a.json").payloadValue()
        #expect(india["other_fields"]?["out"] == .bool(true))
        #expect(india["other_fields"]?["type"] == .string("cdr"))
        let current = try Fixtures.normalized("live_out_answered_leg_a.json").payloadValue()
        #expect(current["other_fields"] == nil)
        let renamed = try normalize(#"{"Hangup Cause":"x","hangup_cause":"y","":1,"record":true,"filename":"a.mp3"}"#)
            .payloadValue()
        #expect(renamed["other_fields"] == .object([
            JSONMember(key: "hangup_cause", value: .string("y")), JSONMember(key: "unknown", value: .number("1")),
            JSONMember(key: "record", value: .bool(true)), JSONMember(key: "filename", value: .string("a.mp3")),
        ]))
    }

    @Test func manyUnknownKeys() throws {
        let members = (0..<500).map { JSONMember(key: "k\($0 % 250)", value: .number("\($0)")) }
        let event = PiopiyNormalizer.normalize(.object(members), endpoint: .combined, receivedAtMilliseconds: 0)
        let other = try event.payloadValue()["other_fields"]
        #expect(other?.keys.count == 250)
        #expect(other?["k0"] == .number("250"))
    }

    @Test(arguments: [
        ("1632317068", "2021-09-22T13:24:28.000Z"),
        ("\"1632317068\"", "2021-09-22T13:24:28.000Z"),
        ("1632317068.9", "2021-09-22T13:24:28.000Z"),
        ("1.632317068e9", "2021-09-22T13:24:28.000Z"),
        ("1725942871456", "2024-09-10T04:34:31.456Z"),
        ("\"1725942871456\"", "2024-09-10T04:34:31.456Z"),
        ("1725942871456.7", "2024-09-10T04:34:31.456Z"),
        ("99999999999", "5138-11-16T09:46:39.000Z"),
        ("100000000000", "1973-03-03T09:46:40.000Z"),
        ("0", nil), ("0.9", nil), ("\"0\"", nil),  // zero means "not set"
        ("-1", nil), ("\"-1\"", nil), ("\"abc\"", nil), ("\"\"", nil), ("\"16e8\"", nil), ("\" 1\"", nil),
        ("true", nil), ("null", nil), ("[1]", nil), ("1e400", nil), ("253402300800000", nil),
        ("99999999999999999999999", nil), ("1e-400", nil), ("\"0001632317068\"", "2021-09-22T13:24:28.000Z"),
    ] as [(String, String?)])
    func timestamps(_ literal: String, _ expected: String?) throws {
        let payload = try normalize(#"{"time":\#(literal),"start_time":\#(literal)}"#).payloadValue()
        #expect(payload["occurred_at"] == expected.map(JSONValue.string))
        #expect(payload["started_at"] == expected.map(JSONValue.string))
        #expect(payload["received_at"] == .string("2023-11-14T22:13:20.000Z"))
    }

    @Test(arguments: [
        ("13", "13"), ("0", "0"), ("13.9", "13"), ("\"13\"", "13"), ("\"13.9\"", "13"), ("\"007\"", "7"),
        ("1.3e1", "13"), ("-0.5", "0"), ("-1", nil), ("\"-2\"", nil), ("\"1e3\"", nil), ("\"x\"", nil), ("false", nil),
        ("1e30", nil),
    ] as [(String, String?)])
    func duration(_ literal: String, _ expected: String?) throws {
        let payload = try normalize(#"{"duration":\#(literal)}"#).payloadValue()
        #expect(payload["duration_seconds"] == expected.map(JSONValue.number))
    }

    @Test(arguments: [
        ("440000000000", "440000000000"), ("\"04471000000\"", "04471000000"), ("4.4e11", "440000000000"),
        ("4400.0", "4400"), ("\"+44 20\"", "+44 20"), ("4.5", nil), ("-5", nil), ("true", nil), ("{}", nil),
        ("1e99", nil),
    ] as [(String, String?)])
    func phoneNumbers(_ literal: String, _ expected: String?) throws {
        let payload = try normalize(#"{"from":\#(literal),"to":\#(literal),"callerid":\#(literal),"vn":\#(literal)}"#)
            .payloadValue()
        for key in ["from", "to", "caller_id", "virtual_number"] {
            #expect(payload[key] == expected.map(JSONValue.string), "\(key)")
        }
    }

    @Test(arguments: [
        ("0", "0"), ("\"0.450000\"", "0.450000"), ("1.5e3", "1.5e3"), ("\"-3\"", "-3"), ("\"1.\"", nil),
        ("\"abc\"", nil), ("\"1e3\"", nil), ("null", nil), ("[]", nil),
    ] as [(String, String?)])
    func money(_ literal: String, _ expected: String?) throws {
        let payload = try normalize(#"{"call_rate":\#(literal),"balance":\#(literal)}"#).payloadValue()
        #expect(payload["call_rate"] == expected.map(JSONValue.string))
        #expect(payload["balance"] == expected.map(JSONValue.string))
    }

    @Test func textFields() throws {
        let payload = try normalize(
            #"{"status":7,"appid":2222222,"cmiuuid":123,"conversation_uuid":"c","request_id":"r","leg":"A","direction":"INBOUND"}"#
        ).payloadValue()
        #expect(payload["status"] == .string("7"))
        #expect(payload["app_id"] == .string("2222222"))
        #expect(payload["call_id"] == .string("123"))
        #expect(payload["conversation_id"] == .string("c"))
        #expect(payload["request_id"] == .string("r"))
        #expect(payload["leg"] == .string("a"))
        #expect(payload["direction"] == .string("INBOUND"))
        let other = try normalize(#"{"leg":"c","status":false,"appid":null,"app_id":"x"}"#).payloadValue()
        #expect(other["leg"] == .string("c"))
        #expect(other["status"] == nil)
        #expect(other["app_id"] == .string("x"))
    }

    @Test func rawIsTheBodyAsReceived() throws {
        for fixture in Fixtures.all {
            let body = try Fixtures.body(fixture)
            #expect(try Fixtures.normalized(fixture).payloadValue()["raw"] == body)
        }
        let odd = #"{"b":1.50,"a":-0,"b":"dup","s":"\u00e9\n"}"#
        #expect(try normalize(odd).payloadValue()["raw"] == (try JSONValue.parse(odd)))
    }

    @Test func fixedFields() throws {
        let payload = try Fixtures.normalized("live_stream_connected.json").payloadValue()
        #expect(payload["schema"] == .string("callrelay.call-event.v1"))
        #expect(payload["source"] == .string("piopiy"))
        #expect(payload["kind"] == .string("live"))
        #expect(payload["received_at"] == .string("2023-11-14T22:13:20.000Z"))
        #expect(payload["id"] == .string(try Fixtures.normalized("live_stream_connected.json").id))
    }
}

@Suite("Hostile input")
struct HostileInputTests {
    @Test func wrongTypesEverywhere() throws {
        let deep = String(repeating: "[", count: 60) + "1" + String(repeating: "]", count: 60)
        let tooDeepInside = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        let json = """
            {"appid":{"nested":[1,2]},"app_id":[],"cmiuuid":{"x":null},"conversation_uuid":false,"request_id":[null],
             "leg":7,"direction":42,"status":{"s":"in_answered"},"time":"abc","start_time":-5,"end_time":[],
             "answer_time":1e999999999999,"duration":{"d":1},"call_rate":"abc","balance":true,"from":true,
             "to":null,"callerid":-0.0,"vn":1e-999999999999,"extra_params":"\(tooDeepInside)","ws_status":7,
             "deep":\(deep),"\\u0000/#+":"\\u0000","type":["cdr"],"out":"yes"}
            """
        let body = try JSONValue.parse(json)
        for endpoint in [WebhookEndpoint.cdr, .live, .combined] {
            for receivedAt in [Int64.min, -1, 0, .max] {
                let event = PiopiyNormalizer.normalize(body, endpoint: endpoint, receivedAtMilliseconds: receivedAt)
                let payload = try event.payloadValue()
                #expect(event.appID == "unknown")
                #expect(event.callID == nil)
                #expect(payload["occurred_at"] == nil)
                #expect(payload["leg"] == .string("7"))
                #expect(payload["extra_params"] == .string(tooDeepInside))
                #expect(payload["stream"] == .number("7"))
                #expect(payload["other_fields"]?.keys == ["deep", "unknown", "type", "out"])
                #expect(payload["raw"] == body)
            }
        }
        let combined = PiopiyNormalizer.normalize(body, endpoint: .combined, receivedAtMilliseconds: 0)
        #expect(combined.kind == .cdr)  // start_time is present (even if unusable)
        #expect(combined.event == "in_unknown")
    }

    @Test func nonObjectBodiesDoNotCrash() throws {
        for json in ["[]", "[1,{\"status\":\"missed\"}]", "\"s\"", "1", "null", "true", "{}"] {
            let body = try JSONValue.parse(json)
            let event = PiopiyNormalizer.normalize(body, endpoint: .combined, receivedAtMilliseconds: 0)
            #expect(event.kind == .live)
            #expect(event.event == "unknown")
            let payload = try event.payloadValue()
            #expect(payload["raw"] == body)
        }
    }

    @Test func programmaticGarbageNumbersDoNotCrash() throws {
        let garbage = ["", "-", "abc", "1.", ".5", "1e", "--1", "1e+", "0x10", "١٢٣", "1e99999999999999999999"]
        for literal in garbage {
            let body = JSONValue.object(
                ["time", "duration", "from", "call_rate", "appid", "cmiuuid", "status", "leg"].map {
                    JSONMember(key: $0, value: .number(literal))
                })
            let event = PiopiyNormalizer.normalize(body, endpoint: .combined, receivedAtMilliseconds: 0)
            #expect(!event.id.isEmpty)
        }
    }
}
