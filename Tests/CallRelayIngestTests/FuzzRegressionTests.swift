@testable import CallRelayIngest
import Foundation
import Testing

/// Inputs found by the libFuzzer harness Fuzz/FuzzHTTP (scripts/fuzz.sh, docs/fuzzing.md), fed to
/// the real connection pipeline outside the fuzzer. Their reproducers are in Fuzz/regressions/http/,
/// which scripts/fuzz.sh also runs first on every fuzzing run.
@Suite struct FuzzRegressionTests {
    /// F1 (fixed in d785d34): a CONNECT request whose `Expect` is not `100-continue` was refused 417
    /// by `RequestAdmission.decide` (the expectation is checked before the method) with an answer
    /// that went through NIO's `HTTPResponseEncoder`, which strips `Content-Length` and drops the
    /// body of every answer to CONNECT: the client read `HTTP/1.1 417 Expectation Failed`,
    /// `Content-Type: application/json`, `Connection: close` and then nothing.
    /// The exact input: Fuzz/regressions/http/f1-connect-expect-unframed-417-min.http.
    @Test func connectWithAnUnknownExpectationIsAnsweredFramed() throws {
        let c = try Connection()
        c.send("CONNECT a:1 HTTP/1.1\r\nExpect: x\r\n\r\n")
        let text = c.received()
        let responses = try #require(Response.parseAll(text), "unframed: \(text.debugDescription)")
        try #require(responses.count == 1, "\(responses.count) responses in \(text.debugDescription)")
        #expect(responses[0].header("connection") == "close")
        #expect(responses[0].errorReason != nil, "no JSON reason in \(text.debugDescription)")
        #expect(!c.isOpen)
    }
}
