//! Graceful shutdown: one signal that HTTP, subscriptions and WebSocket
//! connections all watch, and a tracker to wait for connections to close.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Shutdown {
    trigger: std::sync::Arc<watch::Sender<bool>>,
    signal: watch::Receiver<bool>,
    connections: TaskTracker,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        let (trigger, signal) = watch::channel(false);
        Shutdown {
            trigger: std::sync::Arc::new(trigger),
            signal,
            connections: TaskTracker::new(),
        }
    }
}

impl Shutdown {
    pub fn begin(&self) {
        self.trigger.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub async fn begun(&self) {
        let mut signal = self.signal.clone();
        // An error means the sender is gone, which only happens at exit.
        let _ = signal.wait_for(|begun| *begun).await;
    }

    /// Keeps the server's exit waiting until the returned token is dropped.
    pub fn track_connection(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.connections.token()
    }

    /// Waits (at most `limit`) for tracked connections to finish closing.
    pub async fn drain(&self, limit: Duration) {
        self.connections.close();
        if tokio::time::timeout(limit, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.connections.len(),
                "connections still open at shutdown"
            );
        }
    }
}
