//! [`eventually`]: the one way a test waits for something that happens in the background (a
//! webhook delivered, a refresh done, a server listening). It polls a check until it holds or
//! a generous limit passes, then fails naming what never happened. Tests wait on an outcome,
//! never for a fixed time, so they are as fast as the machine allows and fail with a message
//! rather than hang.

use std::time::Duration;

/// How long [`eventually`] sleeps between checks: short next to any limit, long enough not to
/// keep a core busy on a machine the tests share.
const POLL: Duration = Duration::from_millis(25);

/// What a check returns: `Some(value)` or `true` when it holds, `None` or `false` when not yet.
pub trait Outcome {
    /// What [`eventually`] returns once the check holds.
    type Value;
    /// `Some` once the check holds.
    fn ready(self) -> Option<Self::Value>;
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

impl Outcome for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

/// Runs `check` until it yields `Some(value)` (or `true`), and returns that value; panics
/// naming `what` when it has not after `limit`. The check runs at least once, and once more
/// after the limit, so a slow last poll is not a failure.
pub async fn eventually<R: Outcome>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> R,
) -> R::Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let past = tokio::time::Instant::now() >= deadline;
        if let Some(value) = check().await.ready() {
            return value;
        }
        assert!(!past, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn returns_the_value_once_the_check_holds() {
        let calls = AtomicUsize::new(0);
        let value = eventually(Duration::from_secs(5), "the third call", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn a_boolean_check_works_too() {
        eventually(Duration::from_secs(5), "true", || async { true }).await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for something that never happens")]
    async fn panics_naming_what_never_happened() {
        eventually(
            Duration::from_millis(50),
            "something that never happens",
            || async { false },
        )
        .await;
    }
}
