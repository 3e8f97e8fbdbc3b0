//! The gateway's time decisions follow the clock it is built with (`GatewayBuilder::clock`),
//! not the system's: a connect link ends when the gateway's clock says so, and an API-key
//! limit window opens again when that clock has moved past it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tether_server::{Clock, GatewayConfig, SystemClock};

use crate::helpers::{AppOptions, spawn_app_with};

/// The system's clock, moved forward by hand.
#[derive(Default)]
struct MovedClock {
    ahead_secs: AtomicI64,
}

impl MovedClock {
    fn advance(&self, by: Duration) {
        self.ahead_secs
            .fetch_add(i64::try_from(by.as_secs()).unwrap(), Ordering::SeqCst);
    }

    fn ahead(&self) -> Duration {
        Duration::from_secs(self.ahead_secs.load(Ordering::SeqCst).unsigned_abs())
    }
}

impl Clock for MovedClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.ahead_secs.load(Ordering::SeqCst)
    }

    fn instant(&self) -> Instant {
        SystemClock.instant() + self.ahead()
    }
}

#[tokio::test]
async fn a_connect_link_expires_by_the_gateways_clock() {
    let clock = Arc::new(MovedClock::default());
    let app = spawn_app_with(AppOptions {
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("clocked-user", None).await;
    let link = session["connect_url"].as_str().unwrap().to_owned();

    let before = app.http.get(&link).send().await.unwrap();
    assert_eq!(before.status(), 200, "a fresh link opens");

    // Past the default 30-minute session lifetime, by the gateway's clock only.
    clock.advance(Duration::from_secs(31 * 60));
    let after = app.http.get(&link).send().await.unwrap();
    assert_eq!(after.status(), 410, "the link ended by the gateway's clock");
    let body = after.text().await.unwrap();
    assert!(body.contains("session_expired"), "{body}");
}

#[tokio::test]
async fn the_api_key_limit_window_ends_by_the_gateways_clock() {
    let clock = Arc::new(MovedClock::default());
    let app = spawn_app_with(AppOptions {
        clock: Some(clock.clone()),
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.api_key_failures.max = 2;
            config.api_key_failures.window = Duration::from_secs(60);
        })),
        ..AppOptions::default()
    })
    .await;
    let wrong = |app: &crate::helpers::TestApp| {
        app.http
            .get(app.url("v1/connections"))
            .bearer_auth("tether_sk_wrongwrongwrong")
            .send()
    };
    for _ in 0..2 {
        assert_eq!(wrong(&app).await.unwrap().status(), 401);
    }
    assert_eq!(wrong(&app).await.unwrap().status(), 429, "over the limit");

    clock.advance(Duration::from_secs(61));
    assert_eq!(
        wrong(&app).await.unwrap().status(),
        401,
        "a new window by the gateway's clock"
    );
}
