//! `/ws/{broker_id}/{user_id}`: authentication, the `connected` frame, and events relayed through
//! Redis between API instances, never across brokers.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::{TestApp, User, phone};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: std::net::SocketAddr, broker: i64, user: i64, token: Option<&str>) -> Socket {
    let url = match token {
        Some(t) => format!("ws://{addr}/ws/{broker}/{user}?token={t}"),
        None => format!("ws://{addr}/ws/{broker}/{user}"),
    };
    tokio_tungstenite::connect_async(url).await.expect("websocket handshake").0
}

/// The next JSON frame, skipping pings.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["event"] != "ping" {
                return v;
            }
        }
    }
}

async fn expect_closed_4001(socket: &mut Socket) {
    let msg = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("closed in time");
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::from(4001)),
        other => panic!("expected close 4001, got {other:?}"),
    }
}

async fn connected(addr: std::net::SocketAddr, user: &User) -> Socket {
    let mut s = open(addr, user.broker_id.unwrap(), user.id, Some(&user.token)).await;
    let hello = next_frame(&mut s).await;
    assert_eq!(hello["event"], "connected");
    assert_eq!(hello["data"]["user_id"], user.id);
    assert!(hello["ts"].is_string());
    s
}

#[tokio::test]
async fn a_socket_receives_its_brokers_events() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let addr = app.serve().await;
    let mut socket = connected(addr, &admin).await;
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    app.client()
        .put(format!("/api/v1/leads/{}/pipeline", lead["id"]))
        .header("authorization", admin.bearer())
        .body_json(&json!({"stage": "agendado"}))
        .send()
        .await
        .assert_status_is_ok();
    let mut seen = Vec::new();
    loop {
        let frame = next_frame(&mut socket).await;
        seen.push(frame["event"].as_str().unwrap().to_string());
        if frame["event"] == "stage_changed" {
            assert_eq!(frame["data"]["lead_id"], lead["id"]);
            assert_eq!(frame["data"]["new_stage"], "agendado");
            break;
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("lead_created"), "{seen:?}");
}

#[tokio::test]
async fn the_token_may_come_as_the_first_frame() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let state = api::AppState::new(app.infra().clone());
    let addr = TestApp::serve_state(state.clone()).await;
    let mut socket = open(addr, admin.broker_id.unwrap(), admin.id, None).await;
    socket.send(Message::Text(json!({"token": admin.token}).to_string().into())).await.unwrap();
    assert_eq!(next_frame(&mut socket).await["event"], "connected");
    socket.send(Message::Text(json!({"event": "ping"}).to_string().into())).await.unwrap();
    assert_eq!(next_frame(&mut socket).await["event"], "pong");
    let health =
        crate::common::body(poem::test::TestClient::new(api::app(state.clone())).get("/health").send().await).await;
    assert_eq!(health["websocket"]["connections"], 1);
    socket.close(None).await.unwrap();
    for _ in 0..50 {
        if state.ws_connections.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the connection count did not drop after the socket closed");
}

#[tokio::test]
async fn bad_tokens_other_brokers_and_other_users_are_closed_with_4001() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let agent = app.user_in(&admin, "agent").await;
    let other = app.new_broker().await;
    let addr = app.serve().await;
    let broker = admin.broker_id.unwrap();
    for (b, u, token) in [
        (broker, admin.id, Some("garbage".to_string())),
        (other.broker_id.unwrap(), admin.id, Some(admin.token.clone())),
        (broker, agent.id, Some(admin.token.clone())),
        (broker, admin.id, None),
    ] {
        let mut socket = open(addr, b, u, token.as_deref()).await;
        if token.is_none() {
            socket.send(Message::Text("not json".into())).await.unwrap();
        }
        expect_closed_4001(&mut socket).await;
    }
}

#[tokio::test]
async fn events_cross_api_instances_but_never_brokers() {
    let app = TestApp::spawn().await;
    let a = app.new_broker().await;
    let b = app.new_broker().await;
    // Two API instances, each with its own Redis subscription and sockets.
    let first = app.serve().await;
    let second = TestApp::serve_state(api::AppState::new(app.infra().clone())).await;
    let mut a_on_first = connected(first, &a).await;
    let mut b_on_second = connected(second, &b).await;

    // An event of broker B caused through the first instance reaches B's socket on the second.
    let lead_b = app.lead(&b, json!({"phone": phone(), "name": "De B"})).await;
    let frame = next_frame(&mut b_on_second).await;
    assert_eq!(frame["event"], "lead_created");
    assert_eq!(frame["data"]["lead_id"], lead_b["id"]);

    // Broker A's socket saw nothing of B; its own event is the next thing it receives.
    let lead_a = app.lead(&a, json!({"phone": phone()})).await;
    let frame = next_frame(&mut a_on_first).await;
    assert_eq!(frame["data"]["lead_id"], lead_a["id"], "broker A must not receive broker B's events: {frame}");
}

#[tokio::test]
async fn superadmin_may_watch_any_broker() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let root = app.superadmin().await;
    let addr = app.serve().await;
    let mut socket = open(addr, admin.broker_id.unwrap(), root.id, Some(&root.token)).await;
    assert_eq!(next_frame(&mut socket).await["event"], "connected");
    app.lead(&admin, json!({"phone": phone()})).await;
    assert_eq!(next_frame(&mut socket).await["event"], "lead_created");
}

#[tokio::test]
async fn a_socket_on_another_api_process_receives_the_event() {
    use std::io::BufRead;
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_it-api"))
        .env("DATABASE_URL", format!("{}/{}", crate::common::server_url(), app.db_name))
        .env("REDIS_URL", crate::common::redis_url())
        .env("REDIS_PREFIX", app.infra().prefix())
        .env("DB_MAX_CONNECTIONS", "3")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a second API process");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let addr: std::net::SocketAddr = line.trim().strip_prefix("listening ").expect("address line").parse().unwrap();
    let mut socket = connected(addr, &admin).await;
    // Caused through this (in-process) API instance, delivered by the other process.
    let lead = app.lead(&admin, json!({"phone": phone()})).await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(frame["event"], "lead_created");
    assert_eq!(frame["data"]["lead_id"], lead["id"]);
    child.kill().unwrap();
    child.wait().unwrap();
}
