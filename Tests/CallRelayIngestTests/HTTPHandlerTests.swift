@testable import CallRelayIngest
import CallRelayCore
import Foundation
import NIOCore
import Synchronization
import Testing

/// The listener's pipeline on an `EmbeddedChannel`: every answer framed, every refusal explained.
@Suite struct HTTPHandlerTests {
    func only(_ text: String) throws -> Response {
        let all = try #require(Response.parseAll(text), "unframed: \(text)")
        try #require(all.count == 1, "\(all.count) responses in \(text)")
        return all[0]
    }

    @Test func webhookIsStoredAndAnswered200AfterTheStore() throws {
        let c = try Connection()
        c.send(post())
        let r = try only(c.received())
        #expect(r.status == 200)
        #expect(r.body == #"{"id":"id1","duplicate":false}"#)
        #expect(c.store.storedBodies == [liveBody])
        #expect(c.isOpen)
    }

    @Test func answerWaitsForTheCommit() throws {
        let store = MemoryWebhookStore(hold: true)
        let c = try Connection(store: store)
        c.send(post())
        #expect(c.received().isEmpty)
        c.advance(seconds: 120)  // no timeout runs while the outbox stores it
        #expect(c.isOpen)
        store.release()
        #expect(try only(c.received()).status == 200)
    }

    @Test func routesAndMethods() throws {
        let c = try Connection()
        c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try only(c.received()).body == #"{"status":"ok"}"#)
        c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        let notFound = try only(c.received())
        #expect(notFound.status == 404 && notFound.errorReason != nil)
        c.send("GET /webhooks/piopiy/cdr HTTP/1.1\r\nHost: x\r\n\r\n")
        let wrongMethod = try only(c.received())
        #expect(wrongMethod.status == 405 && wrongMethod.header("allow") == "POST")
        c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try only(c.received()).body == "metric 1\n")
        #expect(c.isOpen)
    }

    @Test func adminRoutesMoveToTheAdminListener() throws {
        let public_ = try Connection { $0.routes = .webhooks }
        public_.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try only(public_.received()).status == 404)
        let admin = try Connection { $0.routes = .admin }
        admin.send(post())
        #expect(try only(admin.received()).status == 404)
        #expect(admin.store.count == 0)
        admin.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try only(admin.received()).status == 200)
    }

    @Test func tokenIsRequiredWhenSet() throws {
        let c = try Connection { $0.token = "s3cret-token-1234" }
        c.send(post())
        let missing = try only(c.received())
        #expect(missing.status == 401 && missing.body.contains("missing token"))
        c.send(post("/webhooks/piopiy/live?token=s3cret-token-1234"))
        #expect(try only(c.received()).status == 200)
        c.send(post(headers: ["Authorization: Bearer wrong"]))
        #expect(try only(c.received()).body.contains("wrong token"))
        #expect(c.store.count == 1)
        #expect(c.isOpen)
    }

    @Test func expectContinueGets100ThenTheAnswer() throws {
        let c = try Connection()
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\nContent-Length: \(liveBody.utf8.count)\r\nExpect: 100-continue\r\n\r\n")
        #expect(c.received() == "HTTP/1.1 100 Continue\r\n\r\n")
        c.send(liveBody)
        #expect(try only(c.received()).status == 200)
    }

    @Test func expectContinueWithAWrongTokenIsRefusedBeforeTheBody() throws {
        let c = try Connection { $0.token = "s3cret-token-1234" }
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
        let r = try only(c.received())
        #expect(r.status == 401 && r.header("connection") == "close")
        #expect(!c.isOpen)
    }

    @Test func connectIsFramedAndCloses() throws {
        let c = try Connection()
        c.send("CONNECT /webhooks/piopiy HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try only(c.received())
        #expect(r.status == 405 && r.errorReason != nil)
        #expect(!c.isOpen)
    }

    /// Found by FuzzHTTP (Fuzz/regressions/http/f1-connect-expect-unframed-417-min.http): the 417
    /// of a CONNECT with an expectation went through NIO's encoder, which dropped its body.
    @Test func everyAnswerToCONNECTIsFramed() throws {
        for extra in ["Expect: 100-continue\r\n", "Expect: nonsense\r\n", "Content-Length: 99999999\r\n", ""] {
            let c = try Connection()
            c.send("CONNECT relay.example:443 HTTP/1.1\r\nHost: relay.example:443\r\n\(extra)\r\n")
            let r = try only(c.received())
            #expect(r.errorReason != nil, "\(extra): \(r)")
            #expect(!c.isOpen)
        }
    }

    @Test func unsupportedTransferCodingGets501AndNothingIsStored() throws {
        let c = try Connection()
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n")
        let r = try only(c.received())
        #expect(r.status == 501 && r.errorReason != nil)
        #expect(c.store.count == 0)
        #expect(!c.isOpen)
    }

    @Test(arguments: [
        "Content-Length: +5", "Content-Length: -1", "Content-Length: 5, 6", "Content-Length: 0x10",
        "Content-Length: 5\r\nContent-Length: 6", "Content-Length: 99999999999999999999999",
        "Content-Length: 5\r\nTransfer-Encoding: chunked", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked ",
    ])
    func parserRejectsOnWebhookPathsCarryJSON(header: String) throws {
        let c = try Connection()
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\n\(header)\r\n\r\nhello")
        let r = try only(c.received())
        #expect([400, 501].contains(r.status))
        #expect(r.errorReason != nil, "\(r.body)")
        #expect(!c.isOpen)
        #expect(c.store.count == 0)
    }

    @Test func badChunkSizeGetsJSON400() throws {
        let c = try Connection()
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
        let r = try only(c.received())
        #expect(r.status == 400 && r.body.contains("chunk"))
    }

    @Test func bodyOverTheLimitGets413WhetherDeclaredOrNot() throws {
        let declared = try Connection()
        declared.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        #expect(try only(declared.received()).status == 413)
        #expect(!declared.isOpen)
        let chunked = try Connection()
        let chunk = String(repeating: "a", count: 800)
        chunked.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n\(chunk)\r\n320\r\n\(chunk)\r\n")
        #expect(try only(chunked.received()).status == 413)
        #expect(chunked.store.count == 0)
    }

    @Test func aRefusedRequestsBodyIsDroppedWithinTheSameLimit() throws {
        let c = try Connection()
        let chunk = String(repeating: "a", count: 800)
        c.send("POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n\(chunk)\r\n320\r\n\(chunk)\r\n")
        let r = try only(c.received())
        #expect(r.status == 413)
        #expect(!c.isOpen)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let c = try Connection()
        c.send(post(body: #"{"n":1}"#) + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + post(body: #"{"n":2}"#))
        let all = try #require(Response.parseAll(c.received()))
        #expect(all.map(\.status) == [200, 404, 200])
        #expect(c.store.storedBodies == [#"{"n":1}"#, #"{"n":2}"#])
    }

    // MARK: Timeouts

    @Test func partialHeadGets408AfterTheHeaderTimeout() throws {
        let c = try Connection { $0.headerTimeout = .seconds(10) }
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\n")
        c.advance(seconds: 9)
        #expect(c.received().isEmpty && c.isOpen)
        c.advance(seconds: 1)
        let r = try only(c.received())
        #expect(r.status == 408 && r.body.contains("header_timeout"))
        #expect(!c.isOpen)
    }

    @Test func silentNewConnectionIsClosedAfterTheHeaderTimeout() throws {
        let c = try Connection { $0.headerTimeout = .seconds(3) }
        c.advance(seconds: 3)
        #expect(try only(c.received()).status == 408)
        #expect(!c.isOpen)
    }

    @Test func slowBodyGets408AfterTheBodyTimeoutAndNothingIsStored() throws {
        let c = try Connection { $0.bodyTimeout = .seconds(30) }
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        for _ in 0..<29 {
            c.send("a")  // one byte a second
            c.advance(seconds: 1)
        }
        #expect(c.isOpen)
        c.advance(seconds: 1)
        let r = try only(c.received())
        #expect(r.status == 408 && r.body.contains("body_timeout"))
        #expect(c.store.count == 0)
        #expect(!c.isOpen)
    }

    @Test func idleKeepAliveConnectionIsClosedQuietly() throws {
        let c = try Connection { $0.idleTimeout = .seconds(60) }
        c.send(post())
        #expect(try only(c.received()).status == 200)
        c.advance(seconds: 59)
        #expect(c.isOpen)
        c.advance(seconds: 1)
        #expect(c.received().isEmpty)
        #expect(!c.isOpen)
    }

    @Test func keepAliveConnectionThatStartsARequestGetsTheHeaderTimeout() throws {
        let c = try Connection { $0.headerTimeout = .seconds(10); $0.idleTimeout = .seconds(60) }
        c.send(post())
        _ = c.received()
        c.advance(seconds: 30)
        c.send("POST /webhooks/piopiy/live HTTP/1.1\r\n")
        c.advance(seconds: 10)
        #expect(try only(c.received()).status == 408)
        #expect(!c.isOpen)
    }

    // MARK: Who may talk

    @Test func clientOutsideAllowGets403() throws {
        let c = try Connection(peer: "198.51.100.7") { $0.allow = [CIDR("203.0.113.0/24")!] }
        c.send(post())
        let r = try only(c.received())
        #expect(r.status == 403 && r.body.contains("198.51.100.7"))
        #expect(c.store.count == 0)
        #expect(!c.isOpen)
        let ok = try Connection(peer: "203.0.113.50") { $0.allow = [CIDR("203.0.113.0/24")!] }
        ok.send(post())
        #expect(try only(ok.received()).status == 200)
    }

    @Test func trustedProxyForwardsTheClientAddressToAllow() throws {
        let configure: (inout IngestConfiguration) -> Void = {
            $0.allow = [CIDR("203.0.113.0/24")!]
            $0.trustedProxies = [CIDR("10.0.0.0/8")!]
        }
        let allowed = try Connection(peer: "10.0.0.2", configure)
        allowed.send(post(headers: ["X-Forwarded-For: 203.0.113.9"]))
        #expect(try only(allowed.received()).status == 200)
        let refused = try Connection(peer: "10.0.0.2", configure)
        refused.send(post(headers: ["X-Forwarded-For: 203.0.113.9, 198.51.100.1"]))
        #expect(try only(refused.received()).status == 403)
        let spoofed = try Connection(peer: "198.51.100.1", configure)  // not a proxy: its header is ignored
        spoofed.send(post(headers: ["X-Forwarded-For: 203.0.113.9"]))
        #expect(try only(spoofed.received()).status == 403)
    }

    @Test func overTheRateLimitGets429WithRetryAfterAndNothingIsStored() throws {
        let c = try Connection { $0.rateLimit = .init(perSecond: 2, burst: 2) }
        c.send(post(body: #"{"n":1}"#) + post(body: #"{"n":2}"#))
        #expect(try #require(Response.parseAll(c.received())).map(\.status) == [200, 200])
        c.send(post(body: #"{"n":3}"#))
        let r = try only(c.received())
        #expect(r.status == 429 && r.header("retry-after") == "1" && r.errorReason != nil)
        #expect(c.store.count == 2)
        #expect(c.shared.metrics.count(.rateLimited) == 1)
    }

    @Test func rateLimitRefillsWithTime() throws {
        let store = MemoryWebhookStore()
        let limiterShared = try Connection(store: store) { $0.rateLimit = .init(perSecond: 1, burst: 1) }
        limiterShared.send(post(body: #"{"n":1}"#))
        #expect(try only(limiterShared.received()).status == 200)
        limiterShared.advance(seconds: 1)
        limiterShared.send(post(body: #"{"n":2}"#))
        #expect(try only(limiterShared.received()).status == 200)
    }

    @Test func unwritableOutboxGets503FromReadyz() throws {
        let c = try Connection()
        c.store.writable.store(false, ordering: .relaxed)
        c.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try only(c.received()).status == 503)
    }
}
