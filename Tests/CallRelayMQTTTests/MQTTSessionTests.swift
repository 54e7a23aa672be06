import CallRelayMQTT
import Testing

@Suite struct MQTTSessionTests {
    @Test func theWindowFitsTheBroker() {
        let v5 = MQTTSessionInfo(protocolVersion: .v5, receiveMaximum: 20)
        #expect(v5.inflightWindow(configured: 100, qos: .atLeastOnce) == 20, "the broker's Receive Maximum")
        #expect(v5.inflightWindow(configured: 8, qos: .exactlyOnce) == 8)
        #expect(MQTTSessionInfo(protocolVersion: .v5).inflightWindow(configured: 100, qos: .exactlyOnce) == 100, "no Receive Maximum: 65,535")
        let v311 = MQTTSessionInfo(protocolVersion: .v311)
        #expect(v311.inflightWindow(configured: 100, qos: .exactlyOnce) == 20, "3.1.1 at QoS 2: a stock mosquitto's quota")
        #expect(v311.inflightWindow(configured: 100, qos: .atLeastOnce) == 100, "QoS 1 is not held by the broker's quota")
        #expect(v311.inflightWindow(configured: 5, qos: .exactlyOnce) == 5)
        #expect(MQTTSessionInfo(protocolVersion: .v5, receiveMaximum: 0).inflightWindow(configured: 10, qos: .atLeastOnce) == 1)
    }

    @Test func reasonCodesSayWhetherTheBrokerTookTheMessage() {
        #expect(!MQTTReasonCode.success.isFailure)
        #expect(!MQTTReasonCode.noMatchingSubscribers.isFailure, "0x10 is a delivery")
        #expect(MQTTReasonCode.notAuthorized.isFailure)
        #expect(MQTTReasonCode.notAuthorized.description == "not authorized (0x87)")
        #expect(MQTTReasonCode.quotaExceeded.description == "quota exceeded (0x97)")
        #expect(MQTTReasonCode(0x10).description == "no matching subscribers (0x10)")
        #expect(MQTTReasonCode(0x80).isFailure && MQTTReasonCode(0x7f).isFailure == false)
    }

    @Test func theProtocolKeyReadsItsThreeValues() {
        #expect(MQTTProtocolPreference(configValue: "auto") == .auto)
        #expect(MQTTProtocolPreference(configValue: "5") == .only(.v5))
        #expect(MQTTProtocolPreference(configValue: "3.1.1") == .only(.v311))
        #expect(MQTTProtocolPreference(configValue: "4") == nil)
        #expect(MQTTProtocolPreference.auto.first == .v5)
    }
}
