//! Waiting for an eventual state: what another task, thread or process does in the
//! background (a recording flushed, a session gone from the registry). Never a timing
//! assertion: the wait returns as soon as the state holds, and the deadline is long
//! enough for a slow, busy CI machine.

use std::time::{Duration, Instant};

/// How long the waits here give a state to come about.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Between two looks.
const STEP: Duration = Duration::from_millis(10);

/// Calls `cond` until it holds: `true`, or `false` after [`DEADLINE`].
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(STEP).await;
    }
}

/// [`eventually`], failing the test with `what` when the state never comes about.
pub async fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    assert!(eventually(cond).await, "never happened: {what}");
}
