//! Circuit breakers: shared through Redis, opened by consecutive transient failures, shown in `/health`.

use std::time::Duration;

use shared::Error;
use shared::integrations::breaker::{Breaker, State};

use crate::common::{TestApp, body};

fn down() -> shared::Result<()> {
    Err(Error::upstream_transient("test", Some(503), "down"))
}

#[tokio::test]
async fn consecutive_transient_failures_open_the_breaker_and_health_shows_it() {
    let app = TestApp::spawn().await;
    let b = shared::integrations::breaker::TELEGRAM;
    for _ in 0..b.threshold {
        assert!(b.call(app.infra(), || async { down() }).await.is_err());
    }
    assert_eq!(b.state(app.infra()).await, State::Open);
    // Open: the call is not even made.
    let mut called = false;
    let err = b
        .call(app.infra(), || async {
            called = true;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(!called);
    assert_eq!(err.code(), "circuit_open");
    assert!(!shared::jobs::is_permanent(&err), "an open circuit is retried later");

    let health = body(app.client().get("/health").send().await).await;
    assert_eq!(health["circuit_breakers"]["telegram"], "open");
    assert_eq!(health["circuit_breakers"]["llm"], "closed");
}

#[tokio::test]
async fn permanent_failures_and_successes_do_not_open_it() {
    let app = TestApp::spawn().await;
    let b = Breaker { name: "t_perm", threshold: 2, cooldown: Duration::from_secs(30) };
    for _ in 0..5 {
        let r: shared::Result<()> = b
            .call(app.infra(), || async { Err(Error::upstream_permanent("t", "upstream_rejected", Some(400), "bad")) })
            .await;
        assert!(r.is_err());
    }
    assert_eq!(b.state(app.infra()).await, State::Closed);
    // A success between failures resets the count.
    assert!(b.call(app.infra(), || async { down() }).await.is_err());
    b.call(app.infra(), || async { Ok(()) }).await.unwrap();
    assert!(b.call(app.infra(), || async { down() }).await.is_err());
    assert_eq!(b.state(app.infra()).await, State::Closed);
}

#[tokio::test]
async fn after_the_cooldown_one_trial_closes_or_reopens_it() {
    let app = TestApp::spawn().await;
    let b = Breaker { name: "t_trial", threshold: 1, cooldown: Duration::from_millis(300) };
    assert!(b.call(app.infra(), || async { down() }).await.is_err());
    assert_eq!(b.state(app.infra()).await, State::Open);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(b.state(app.infra()).await, State::HalfOpen);
    // A failed trial opens it again for a full cooldown.
    assert!(b.call(app.infra(), || async { down() }).await.is_err());
    assert_eq!(b.state(app.infra()).await, State::Open);
    tokio::time::sleep(Duration::from_millis(350)).await;
    b.call(app.infra(), || async { Ok(()) }).await.unwrap();
    assert_eq!(b.state(app.infra()).await, State::Closed);
}
