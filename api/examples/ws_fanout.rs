//! WebSocket fan-out (bench scenario `ws_fanout`, see bench/README.md).
//!
//!   ws_fanout [BASE_URL]        # default http://127.0.0.1:$PORT (PORT default 8000)
//!
//! Against a running `api serve`: registers a broker (`POST /auth/register`, then `GET /auth/me` for the
//! user and broker ids), opens `BENCH_WS_SOCKETS` (500) WebSockets to `/ws/{broker_id}/{user_id}?token=…`
//! and waits for each one's `connected` frame; then publishes `BENCH_WS_RATE` (100) events per second
//! for `BENCH_WS_SECONDS` (10) straight to the Redis channel `{REDIS_PREFIX}:ws:broker:{broker_id}`,
//! frames `{"event":"bench","data":{"seq":n,"sent_us":<unix µs>},"ts":…}`. Every socket checks that
//! every event arrived (once) and records the delivery latency (receipt time − `sent_us`; same clock,
//! same machine). After the last event it waits up to `BENCH_WS_GRACE_MS` (3000) for stragglers.
//!
//! Prints progress on stderr and one `BENCH_JSON {...}` line on stdout (sockets, events, missing and
//! duplicate deliveries, latency percentiles).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| format!("{name} must be a number")),
        _ => Ok(default),
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A minimal HTTP/1.0 request (no client dependency needed for two calls): returns (status, JSON body).
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP response")?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.chars().take(300).collect()));
    Ok((status, value))
}

/// What one socket saw.
#[derive(Default)]
struct SocketResult {
    seen: Vec<bool>,
    duplicates: u64,
    latencies_us: Vec<u64>,
    closed_early: bool,
    other_frames: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sockets = env_num("BENCH_WS_SOCKETS", 500)?.max(1) as usize;
    let rate = env_num("BENCH_WS_RATE", 100)?.max(1);
    let seconds = env_num("BENCH_WS_SECONDS", 10)?.max(1);
    let grace = Duration::from_millis(env_num("BENCH_WS_GRACE_MS", 3000)?);
    let open_parallel = env_num("BENCH_WS_OPEN_PARALLEL", 32)?.max(1) as usize;
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", std::env::var("PORT").unwrap_or_else(|_| "8000".into())));
    let addr =
        base.strip_prefix("http://").context("BASE_URL must start with http://")?.trim_end_matches('/').to_string();
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = std::env::var("REDIS_PREFIX").unwrap_or_else(|_| "corredor".into());
    let events = rate * seconds;

    // A broker of our own.
    let email = format!("ws-fanout-{}-{}@bench.cl", std::process::id(), now_us());
    let (status, reg) = http(
        &addr,
        "POST",
        "/auth/register",
        None,
        Some(&json!({"email": email, "password": "Bench-pass-123!", "broker_name": format!("WS fanout {}", now_us())})),
    )
    .await?;
    if !(200..300).contains(&status) {
        bail!("POST /auth/register answered {status}: {reg}");
    }
    let token = reg["access_token"].as_str().context("no access_token")?.to_string();
    let (status, me) = http(&addr, "GET", "/auth/me", Some(&token), None).await?;
    if status != 200 {
        bail!("GET /auth/me answered {status}: {me}");
    }
    let user_id = me["id"].as_i64().context("no user id")?;
    let broker_id = me["broker_id"].as_i64().context("no broker id")?;
    eprintln!("[ws_fanout] broker {broker_id}, user {user_id}; opening {sockets} sockets");

    // Open every socket and wait for its `connected` frame.
    let url = format!("ws://{addr}/ws/{broker_id}/{user_id}?token={token}");
    let t_open = Instant::now();
    let gate = Arc::new(Semaphore::new(open_parallel));
    let mut opening = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let (url, gate) = (url.clone(), gate.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let started = Instant::now();
            let (mut ws, _) =
                tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url.as_str()))
                    .await
                    .context("connect timed out")??;
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .context("no `connected` frame within 10 s")?;
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str())?;
                        if v["event"] == "connected" {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(c))) => bail!("closed before `connected`: {c:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("closed before `connected`"),
                }
            }
            Ok::<_, anyhow::Error>((ws, started.elapsed()))
        }));
    }
    let mut streams = Vec::with_capacity(sockets);
    let mut open_errors: HashMap<String, u64> = HashMap::new();
    let mut connect_ms = Vec::new();
    for h in opening {
        match h.await? {
            Ok((ws, took)) => {
                streams.push(ws);
                connect_ms.push(took.as_secs_f64() * 1000.0);
            }
            Err(e) => *open_errors.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    let open_s = t_open.elapsed().as_secs_f64();
    let connected = streams.len();
    eprintln!("[ws_fanout] {connected}/{sockets} sockets connected in {open_s:.2} s; errors: {open_errors:?}");
    if connected == 0 {
        bail!("no socket connected: {open_errors:?}");
    }

    // Readers.
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::with_capacity(connected);
    for mut ws in streams {
        let received = received.clone();
        let mut stop = stop_rx.clone();
        readers.push(tokio::spawn(async move {
            let mut r = SocketResult { seen: vec![false; events as usize], ..SocketResult::default() };
            r.latencies_us.reserve(events as usize);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            let at = now_us();
                            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { r.other_frames += 1; continue };
                            if v["event"] != "bench" {
                                r.other_frames += 1;
                                continue;
                            }
                            let (Some(seq), Some(sent)) = (v["data"]["seq"].as_u64(), v["data"]["sent_us"].as_u64()) else {
                                r.other_frames += 1;
                                continue;
                            };
                            match r.seen.get_mut(seq as usize) {
                                Some(s) if !*s => {
                                    *s = true;
                                    r.latencies_us.push(at.saturating_sub(sent));
                                    received.fetch_add(1, Ordering::Relaxed);
                                }
                                Some(_) => r.duplicates += 1,
                                None => r.other_frames += 1,
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            r.closed_early = true;
                            break;
                        }
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = ws.close(None).await;
            r
        }));
    }

    // Publisher: `rate` events per second, straight to the broker's channel.
    let client = redis::Client::open(redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let channel = format!("{prefix}:ws:broker:{broker_id}");
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut subscribers = (u64::MAX, 0u64);
    eprintln!("[ws_fanout] publishing {events} events at {rate}/s to {channel}");
    let t_pub = Instant::now();
    for seq in 0..events {
        tick.tick().await;
        let frame = json!({
            "event": "bench",
            "data": {"seq": seq, "sent_us": now_us()},
            "ts": chrono::Utc::now().to_rfc3339(),
        })
        .to_string();
        let n: u64 = redis::cmd("PUBLISH").arg(&channel).arg(frame).query_async(&mut conn).await?;
        subscribers = (subscribers.0.min(n), subscribers.1.max(n));
    }
    let publish_s = t_pub.elapsed().as_secs_f64();

    // Wait for stragglers, then stop.
    let expected = events * connected as u64;
    let deadline = Instant::now() + grace;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained_after_ms = t_pub.elapsed().as_secs_f64() * 1000.0 - publish_s * 1000.0;
    let _ = stop_tx.send(true);
    let mut latencies = Vec::with_capacity(expected as usize);
    let (mut delivered, mut duplicates, mut closed_early, mut other_frames, mut sockets_missing) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut missing_by_seq = vec![0u64; events as usize];
    for h in readers {
        let r = h.await?;
        let got = r.seen.iter().filter(|s| **s).count() as u64;
        delivered += got;
        if got < events {
            sockets_missing += 1;
        }
        for (seq, s) in r.seen.iter().enumerate() {
            if !*s {
                missing_by_seq[seq] += 1;
            }
        }
        duplicates += r.duplicates;
        closed_early += u64::from(r.closed_early);
        other_frames += r.other_frames;
        latencies.extend(r.latencies_us);
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        if latencies.is_empty() {
            return None;
        }
        let i = ((p / 100.0) * (latencies.len() - 1) as f64).round() as usize;
        Some(round2(latencies[i] as f64 / 1000.0))
    };
    let mean = if latencies.is_empty() {
        None
    } else {
        Some(round2(latencies.iter().sum::<u64>() as f64 / latencies.len() as f64 / 1000.0))
    };
    let missing = expected - delivered + (sockets - connected) as u64 * events;
    let events_with_missing = missing_by_seq.iter().filter(|m| **m > 0).count();
    connect_ms.sort_by(f64::total_cmp);
    let out = json!({
        "sockets": sockets,
        "sockets_connected": connected,
        "open_errors": open_errors,
        "open_s": round2(open_s),
        "connect_ms_p50": connect_ms.get(connect_ms.len() / 2).copied().map(round2),
        "connect_ms_max": connect_ms.last().copied().map(round2),
        "events": events,
        "rate_per_sec": rate,
        "publish_s": round2(publish_s),
        "redis_subscribers_per_publish": {"min": subscribers.0, "max": subscribers.1},
        "expected_deliveries": events * sockets as u64,
        "deliveries": delivered,
        "missing": missing,
        "duplicates": duplicates,
        "sockets_missing_events": sockets_missing,
        "events_missing_somewhere": events_with_missing,
        "sockets_closed_early": closed_early,
        "other_frames": other_frames,
        "drain_after_last_publish_ms": round2(drained_after_ms),
        "deliveries_per_sec": round2(delivered as f64 / publish_s),
        "latency_ms": {"mean": mean, "p50": pct(50.0), "p90": pct(90.0), "p99": pct(99.0), "p99.9": pct(99.9), "max": pct(100.0)},
    });
    eprintln!(
        "[ws_fanout] {delivered}/{} deliveries, {missing} missing, {duplicates} duplicates; latency p50 {:?} ms, p99 {:?} ms, max {:?} ms",
        events * sockets as u64,
        pct(50.0),
        pct(99.0),
        pct(100.0)
    );
    println!("BENCH_JSON {out}");
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
