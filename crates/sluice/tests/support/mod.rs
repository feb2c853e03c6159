//! What the engine's integration tests share.

use std::time::Duration;

use sluice_mock::MockServer;

/// Polls the mock's counters every 10 ms for at most 10 s until `done`.
pub async fn until(mock: &MockServer, done: impl Fn(&sluice_mock::Stats) -> bool) -> bool {
    for _ in 0..1000 {
        if done(&mock.stats()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
