//! The worker process: starts, announces itself in Redis and stops cleanly when asked to.

use redis::AsyncCommands;

use crate::common::TestApp;

#[tokio::test]
async fn worker_heartbeats_and_stops_cleanly_on_shutdown() {
    let app = TestApp::spawn().await;
    let settings = (*app.infra().settings).clone();
    let key = worker::workers_key(&settings.redis_prefix);
    let name = worker::worker_name();
    // The default schedules run against the test database: nothing to fold, no error.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker::run(settings, async {
        let _ = stopped.await;
    }));
    let mut redis =
        redis::Client::open(crate::common::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut alive = false;
    for _ in 0..50 {
        if redis.zscore::<_, _, Option<i64>>(&key, &name).await.unwrap().is_some() {
            alive = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(alive, "the worker announced itself");
    let beat: i64 = redis.zscore(&key, &name).await.unwrap();
    assert!((chrono::Utc::now().timestamp() - beat).abs() <= 5, "the heartbeat is current: {beat}");
    stop.send(()).unwrap();
    let result =
        tokio::time::timeout(std::time::Duration::from_secs(5), handle).await.expect("stops promptly").unwrap();
    assert!(result.is_ok());
    let gone: Option<i64> = redis.zscore(&key, &name).await.unwrap();
    assert_eq!(gone, None, "the heartbeat is removed on a clean stop");
}

#[tokio::test]
async fn health_lists_the_live_workers() {
    let app = TestApp::spawn().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker::run_with(app.infra().clone(), "worker-health-1".into(), vec![], async {
        let _ = stopped.await;
    }));
    let mut listed = false;
    for _ in 0..50 {
        let health = crate::common::body(app.client().get("/health").send().await).await;
        if health["workers"] == serde_json::json!(["worker-health-1"]) {
            listed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(listed, "the worker shows in /health");
    stop.send(()).unwrap();
    handle.await.unwrap().unwrap();
    let health = crate::common::body(app.client().get("/health").send().await).await;
    assert_eq!(health["workers"], serde_json::json!([]), "a stopped worker is gone");
}
