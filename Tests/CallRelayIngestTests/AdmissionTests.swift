@testable import CallRelayIngest
import NIOHTTP1
import Testing

@Suite struct AdmissionTests {
    func head(_ method: HTTPMethod, _ headers: [(String, String)] = [], version: HTTPVersion = .http1_1) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: "/webhooks/piopiy", headers: HTTPHeaders(headers))
    }
    func decide(_ h: HTTPRequestHead) -> Admission { RequestAdmission.decide(head: h, path: "/webhooks/piopiy", maxBodyBytes: 1000) }

    @Test func plainPostProceeds() {
        #expect(decide(head(.POST, [("Content-Length", "10")])) == .proceed(sendContinue: false))
        #expect(decide(head(.POST, [("Transfer-Encoding", "chunked")])) == .proceed(sendContinue: false))
    }

    @Test func expectContinueIsAnsweredOnlyOnHTTP11() {
        #expect(decide(head(.POST, [("Expect", "100-continue")])) == .proceed(sendContinue: true))
        #expect(decide(head(.POST, [("Expect", "100-Continue")])) == .proceed(sendContinue: true))
        #expect(decide(head(.POST, [("Expect", "100-continue")], version: .http1_0)) == .proceed(sendContinue: false))
    }

    @Test func otherExpectationsGet417AndClose() {
        guard case .reject(let answer, let refusal, let immediately) = decide(head(.POST, [("Expect", "200-ok")])) else {
            Issue.record("not rejected")
            return
        }
        #expect(answer.status == .expectationFailed)
        #expect(answer.close && immediately)
        #expect(refusal == .unsupported)
    }

    @Test func connectIsFramedRawAndCloses() {
        guard case .reject(let answer, _, true) = decide(head(.CONNECT)) else {
            Issue.record("not rejected at once")
            return
        }
        #expect(answer.status == .methodNotAllowed)
        #expect(answer.raw && answer.close)
        let text = String(decoding: answer.rawBytes, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        #expect(text.contains("Content-Length: \(answer.body.count)\r\n"))
        #expect(text.hasSuffix(String(decoding: answer.body, as: UTF8.self)))
    }

    @Test func unknownMethodsGet501() {
        guard case .reject(let answer, _, true) = decide(head(.RAW(value: "BREW"))) else {
            Issue.record("not rejected")
            return
        }
        #expect(answer.status == .notImplemented)
    }

    @Test func transferCodingsOtherThanChunkedGet501() {
        for coding in ["gzip, chunked", "chunked, identity", "identity", "deflate"] {
            guard case .reject(let answer, _, true) = decide(head(.POST, [("Transfer-Encoding", coding)])) else {
                Issue.record("\(coding) not rejected")
                continue
            }
            #expect(answer.status == .notImplemented)
            #expect(answer.close)
        }
    }

    @Test func transferEncodingInHTTP10IsFaultyFraming() {
        guard case .reject(let answer, _, true) = decide(head(.POST, [("Transfer-Encoding", "chunked")], version: .http1_0)) else {
            Issue.record("not rejected")
            return
        }
        #expect(answer.status == .badRequest && answer.close)
    }

    @Test func upgradesAreRefused() {
        guard case .reject(let answer, _, true) = decide(head(.POST, [("Connection", "Upgrade"), ("Upgrade", "h2c")])) else {
            Issue.record("not rejected")
            return
        }
        #expect(answer.status == .notImplemented)
    }

    @Test func declaredBodyOverTheLimitGets413() {
        guard case .reject(let answer, _, true) = decide(head(.POST, [("Content-Length", "1001")])) else {
            Issue.record("not rejected")
            return
        }
        #expect(answer.status == .payloadTooLarge)
    }

    @Test func clientTextInMessagesIsCleanedAndShort() {
        #expect(RequestAdmission.printable("a\u{0}b\u{7F}c") == "a?b?c")
        #expect(RequestAdmission.printable(String(repeating: "x", count: 100)).count == 41)
    }
}
