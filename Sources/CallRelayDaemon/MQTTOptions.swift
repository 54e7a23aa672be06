import CallRelayConfig
import CallRelayMQTT

extension MQTTConnectionOptions {
    /// `[mqtt]` → the client's options, in one place: the agent, `check-config --connect` and
    /// `send-test` connect with the same settings (the two commands under their own client id).
    package init(configuration m: RelayConfiguration.MQTT, clientID: String? = nil) {
        self.init(host: m.host, port: m.port, clientID: clientID ?? m.clientID)
        username = m.username.isEmpty ? nil : m.username
        password = m.password.isEmpty ? nil : m.password
        keepaliveSeconds = m.keepaliveSeconds
        caFile = m.caFile
        certFile = m.certFile
        keyFile = m.keyFile
        tlsInsecure = m.tlsInsecure
        maxInflight = m.maxInflight
        protocolPreference = MQTTProtocolPreference(configValue: m.protocolVersion) ?? .auto
        backoff = ReconnectBackoff(minimumMilliseconds: m.reconnectMinMilliseconds, maximumMilliseconds: m.reconnectMaxMilliseconds)
    }
}
