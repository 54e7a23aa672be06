/// The HTTP edge's settings (mapped from `[http]` by the daemon).
package struct IngestConfiguration: Sendable {
    package var host: String
    /// 0 picks a free port (tests).
    package var port: Int
    /// Empty: no authentication.
    package var token: String
    package var maxBodyBytes: Int

    package init(host: String, port: Int, token: String, maxBodyBytes: Int) {
        self.host = host
        self.port = port
        self.token = token
        self.maxBodyBytes = maxBodyBytes
    }
}
