import Dispatch
import Synchronization

/// The retained `{prefix}/agents/{client_id}/status` topic: `online` on every connect, `offline`
/// as the last will and on clean shutdown.
package final class Presence: Sendable {
    package let topic: String
    private struct State {
        var client: MosquittoClient?
        var pendingMids: Set<Int32> = []
        var offlineMid: Int32?
        var offlineAcked: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    package init(topic: String) { self.topic = topic }

    package var client: MosquittoClient? {
        get { state.withLock { $0.client } }
        set { state.withLock { $0.client = newValue } }
    }

    package func announce(online: Bool) {
        guard let client else { return }
        if case .success(let mid) = client.publish(topic: topic, payload: Array((online ? "online" : "offline").utf8), qos: .atLeastOnce, retain: true) {
            state.withLock { s in
                s.pendingMids.insert(mid)
                if !online { s.offlineMid = mid }
            }
        }
    }

    /// True when `mid` was a presence message (so the pump ignores it).
    package func acknowledged(mid: Int32) -> Bool {
        let (mine, callback) = state.withLock { s -> (Bool, (@Sendable () -> Void)?) in
            guard s.pendingMids.remove(mid) != nil else { return (false, nil) }
            return (true, s.offlineMid == mid ? s.offlineAcked : nil)
        }
        callback?()
        return mine
    }

    package func announceOfflineAndWait(timeoutMilliseconds: Int) {
        guard let client, client.isConnected else { return }
        let done = DispatchSemaphore(value: 0)
        state.withLock { $0.offlineAcked = { done.signal() } }
        announce(online: false)
        _ = done.wait(timeout: .now() + .milliseconds(timeoutMilliseconds))
    }
}
