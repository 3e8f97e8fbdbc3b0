//! What several test binaries of the `tether` binary share: waiting for a started `tether
//! serve` to say where it listens.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use url::Url;

/// Reads `child`'s stdout until it prints `Tether is listening on URL` (panicking after
/// `limit`, or when it exits first), then keeps draining stdout in the background so the
/// process never blocks on a full pipe. The child must have been spawned with piped stdout.
pub async fn wait_listening(child: &mut Child, limit: Duration) -> Url {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let url = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Tether is listening on ") {
                return url.to_owned();
            }
        }
        panic!("tether exited before listening");
    })
    .await
    .unwrap_or_else(|_| panic!("tether listens within {limit:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Url::parse(&url).expect("tether prints a URL")
}
