//! The world of the fault-injection tests (`chaos.rs`): a private PostgreSQL 15 cluster and a
//! private Redis (each on a free port in a temp dir, so they can be stopped and restarted without
//! touching the shared servers other tests use), the API and two workers as real processes on
//! them, a fake Telegram Bot API that can fail on command, and the client-side traffic (webhook
//! deliveries retried like Telegram does, `/api/v1/chat/test` calls) with every answer recorded.
//! Everything started here is stopped and removed on drop, also when a test panics.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use poem::http::StatusCode;
use poem::{Request, Response};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use shared::{Infra, Settings};

use crate::common::PASSWORD;
use crate::fake_channels::tg_update;

pub const BOT_TOKEN: &str = "777000:ChaosBotTokenChaosBotToken12345";
pub const TG_SECRET: &str = "chaos-secret_1";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long a client waits for any answer. The product's own bounds are shorter (database
/// acquire/connect 5 s, Redis connect/response 2 s), so an answer later than this is a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The recovery target: the API serves again this soon after its dependency is back.
pub const RECOVERY_TARGET: Duration = Duration::from_secs(5);
/// Queues the channel traffic goes through.
const TRAFFIC_QUEUES: [&str; 2] = ["llm_reply", "channel_send"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("port").port()
}

/// A directory removed with everything in it on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    fn new(kind: &str) -> Self {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("corredor-chaos-{kind}-{}-{}", std::process::id(), &n[..8]));
        std::fs::create_dir_all(&dir).expect("create a scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("CHAOS_KEEP_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
}

impl Proc {
    /// SIGKILL now: no chance to hand anything back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill").args([sig, &c.id().to_string()]).status().is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {}", self.name);
        }
    }

    /// SIGSTOP: frozen where it is (its connections stay open).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Self::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Private Redis

pub struct PrivateRedis {
    pub port: u16,
    dir: Scratch,
    child: Option<Child>,
}

fn redis_cmd(port: u16, cmd: &str) -> std::io::Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).to_string())
}

impl PrivateRedis {
    pub fn start() -> Self {
        let mut r = PrivateRedis { port: free_port(), dir: Scratch::new("redis"), child: None };
        r.up();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it on its port; returns once it answers PING. The dataset saved by [`Self::down`]
    /// is loaded again (as a Redis with persistence comes back after a restart).
    pub fn up(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.0.to_string_lossy().to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &dir, "--dbfilename", "dump.rdb", "--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if redis_cmd(self.port, "PING").is_ok_and(|r| r.starts_with("+PONG")) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited at start-up: {status}");
            }
            assert!(Instant::now() < deadline, "the private Redis did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it: a clean `SHUTDOWN SAVE` (the dataset goes to its dump file, as a persistent Redis
    /// does on a restart), then waits for the process to end.
    pub fn down(&mut self) {
        let _ = redis_cmd(self.port, "SHUTDOWN SAVE");
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Private PostgreSQL

/// A PostgreSQL 15 cluster of its own (trust auth). `initdb` refuses to run as root, so as root the
/// cluster belongs to (and every `pg_ctl` runs as) the `postgres` OS user, in a directory it owns.
pub struct PrivatePg {
    pub port: u16,
    dir: Scratch,
    run_as: Option<String>,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn user_exists(name: &str) -> bool {
    Command::new("id").args(["-u", name]).output().is_ok_and(|o| o.status.success())
}

impl PrivatePg {
    pub fn start() -> Self {
        let dir = Scratch::new("pg");
        let run_as = if is_root() {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| user_exists(u))
                .expect("running as root: an OS user `postgres` (or `nobody`) is needed to own a private cluster");
            let ok = Command::new("chown").arg(format!("{user}:")).arg(&dir.0).status().is_ok_and(|s| s.success());
            assert!(ok, "chown the private cluster's dir to {user}");
            Some(user.to_string())
        } else {
            None
        };
        let pg = PrivatePg { port: free_port(), dir, run_as };
        let out = pg
            .cmd("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.up();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    fn cmd(&self, bin: &str) -> Command {
        let path = Path::new(PG_BIN).join(bin);
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        c.stdin(Stdio::null());
        c
    }

    /// `postgres://postgres@127.0.0.1:{port}` (no database).
    pub fn server(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Starts the cluster; returns once it accepts connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.0.display()
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &opts, "-l"])
            .arg(self.dir.0.join("pg.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.0.join("pg.log")).unwrap_or_default()
        );
    }

    /// `pg_ctl stop -m fast`: sessions are cut, the server is gone when this returns.
    pub fn down(&self) {
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// Fake Telegram Bot API that fails on command

#[derive(Default)]
pub struct TgState {
    /// Failing: the next `errors_left` sends get a 500, every later one hangs (never answered
    /// while failing; a time-out for the caller).
    pub down: bool,
    pub errors_left: u32,
    /// Sends answered `ok` (delivered) per chat id.
    pub delivered: HashMap<i64, u32>,
    pub errors_served: u32,
    pub hung: u32,
    next_id: u64,
}

pub struct FakeTelegram {
    pub base: String,
    pub state: Arc<Mutex<TgState>>,
}

impl FakeTelegram {
    pub fn delivered(&self) -> HashMap<i64, u32> {
        self.state.lock().unwrap().delivered.clone()
    }

    pub fn delivered_total(&self) -> u32 {
        self.state.lock().unwrap().delivered.values().sum()
    }

    /// Fails from now on: `errors` answers 500, then every call hangs.
    pub fn fail(&self, errors: u32) {
        let mut s = self.state.lock().unwrap();
        s.down = true;
        s.errors_left = errors;
    }

    pub fn recover(&self) {
        self.state.lock().unwrap().down = false;
    }
}

fn tg_reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(body.to_string())
}

enum Act {
    Deliver(u64),
    Fail,
    Hang,
}

async fn tg_handle(state: Arc<Mutex<TgState>>, mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    let bytes = req.take_body().into_vec().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if path.ends_with("/setWebhook") {
        return tg_reply(200, json!({"ok": true, "result": true, "description": "Webhook was set"}));
    }
    if !path.ends_with("/sendMessage") {
        return tg_reply(404, json!({"ok": false, "error_code": 404, "description": "Not Found"}));
    }
    let chat = body["chat_id"].as_i64().or_else(|| body["chat_id"].as_str().and_then(|s| s.parse().ok())).unwrap_or(-1);
    let act = {
        let mut s = state.lock().unwrap();
        if !s.down {
            *s.delivered.entry(chat).or_default() += 1;
            s.next_id += 1;
            Act::Deliver(s.next_id)
        } else if s.errors_left > 0 {
            s.errors_left -= 1;
            s.errors_served += 1;
            Act::Fail
        } else {
            s.hung += 1;
            Act::Hang
        }
    };
    match act {
        Act::Deliver(id) => tg_reply(
            200,
            json!({"ok": true, "result": {"message_id": 50_000 + id, "date": 1_700_000_000,
                   "chat": {"id": chat, "type": "private"}, "text": body["text"]}}),
        ),
        Act::Fail => tg_reply(500, json!({"ok": false, "error_code": 500, "description": "Internal Server Error"})),
        Act::Hang => {
            // Never delivered: the caller has long given up when this ends.
            while state.lock().unwrap().down {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tg_reply(504, json!({"ok": false, "error_code": 504, "description": "Gateway Timeout"}))
        }
    }
}

pub async fn fake_telegram() -> FakeTelegram {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let state = Arc::new(Mutex::new(TgState::default()));
    let shared_state = state.clone();
    let endpoint = poem::endpoint::make(move |req: Request| tg_handle(shared_state.clone(), req));
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    FakeTelegram { base: format!("http://{addr}"), state }
}

// ---------------------------------------------------------------------------------------------
// The client side

/// One answer a client got (or did not get).
#[derive(Clone, Debug)]
pub struct Answer {
    pub what: String,
    pub status: Option<u16>,
    pub body: Value,
    pub elapsed: Duration,
    /// Transport failure: time-out (a hang), connection refused or reset.
    pub error: Option<String>,
}

impl Answer {
    pub fn code(&self) -> Option<&str> {
        self.body["code"].as_str()
    }
}

/// An HTTP client of the API process (cheap to clone into tasks).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub broker: i64,
}

impl Client {
    pub async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Answer {
        let started = Instant::now();
        let res = req.send().await;
        let (status, body, error) = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(text) => (Some(status), serde_json::from_str(&text).unwrap_or(Value::String(text)), None),
                    Err(e) => (Some(status), Value::Null, Some(format!("body: {e}"))),
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() { "timed out (a hang)" } else { "transport error" };
                (None, Value::Null, Some(format!("{kind}: {e}")))
            }
        };
        Answer { what: what.to_string(), status, body, elapsed: started.elapsed(), error }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.token.is_empty() { req } else { req.bearer_auth(&self.token) }
    }

    pub async fn get(&self, path: &str) -> Answer {
        let req = self.authed(self.http.get(format!("{}{path}", self.base)));
        self.send(&format!("GET {path}"), req).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        let req = self.authed(self.http.post(format!("{}{path}", self.base))).json(body);
        self.send(&format!("POST {path}"), req).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        let req = self.authed(self.http.put(format!("{}{path}", self.base))).json(body);
        self.send(&format!("PUT {path}"), req).await
    }

    pub async fn health(&self) -> Answer {
        self.send("GET /health", self.http.get(format!("{}/health", self.base))).await
    }

    /// One Telegram webhook delivery of a private-chat message.
    pub async fn webhook(&self, update_id: i64, chat: i64, message_id: i64, text: &str) -> Answer {
        let req = self
            .http
            .post(format!("{}/webhooks/chat/{}/telegram", self.base, self.broker))
            .header("X-Telegram-Bot-Api-Secret-Token", TG_SECRET)
            .json(&tg_update(update_id, chat, message_id, text));
        self.send(&format!("webhook chat {chat}"), req).await
    }
}

/// The answers that are neither a success nor (when allowed) a 503 with an error code, within the
/// request time-out: hangs, dropped connections, 500s and any other error.
fn unclean(answers: &[Answer], allow_503: bool) -> Vec<&Answer> {
    answers
        .iter()
        .filter(|a| {
            let ok = matches!(a.status, Some(200..=299))
                || (allow_503 && a.status == Some(503) && a.code().is_some_and(|c| !c.is_empty()));
            !ok || a.error.is_some() || a.elapsed >= REQUEST_TIMEOUT
        })
        .collect()
}

/// The traffic of one test: webhook messages from distinct Telegram chats (`first_chat`, then up),
/// one message each, started `spacing` apart until at least `min_chats` are under way and `stop`
/// is set (so the traffic spans the whole fault, however long it takes), each delivered again (as
/// Telegram does) until it gets a 200. Ends with every answer and the number of chats.
pub fn webhook_traffic(
    client: &Client,
    first_chat: i64,
    min_chats: i64,
    spacing: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<Answer>, i64)> {
    let client = client.clone();
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        let mut chats = 0;
        while chats < min_chats || (!stop.load(Ordering::Relaxed) && chats < 20 * min_chats) {
            let client = client.clone();
            let chat = first_chat + chats;
            chats += 1;
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    let a = client.webhook(chat, chat, 1, "Hola, busco departamento de 2 dormitorios en Ñuñoa").await;
                    let done = a.status == Some(200);
                    answers.push(a);
                    if done || Instant::now() > deadline {
                        return answers;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }));
            tokio::time::sleep(spacing).await;
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("a webhook task"));
        }
        (all, chats)
    })
}

/// `/api/v1/chat/test` calls every 300 ms until `stop` is set.
pub fn chat_traffic(client: &Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Answer>> {
    let client = client.clone();
    tokio::spawn(async move {
        let mut answers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            answers.push(
                client
                    .post("/api/v1/chat/test", &json!({"message": "Hola, me interesa arrendar", "provider": "webchat"}))
                    .await,
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        answers
    })
}

// ---------------------------------------------------------------------------------------------
// The world

pub struct World {
    pub client: Client,
    // Processes first: they go before the servers they use. The API is only held for its drop.
    _api: Proc,
    pub workers: Vec<Proc>,
    pub infra: Infra,
    pub fake: FakeTelegram,
    pub pg: PrivatePg,
    pub redis: PrivateRedis,
    logs: Scratch,
}

impl World {
    /// Private PostgreSQL (migrated) and Redis, the fake Telegram, the API and two workers, a
    /// brokerage with its own Telegram bot; returns once both workers are live.
    pub async fn start(name: &str) -> World {
        shared::install_crypto_provider();
        let fake = fake_telegram().await;
        let (redis, pg) = tokio::task::block_in_place(|| (PrivateRedis::start(), PrivatePg::start()));
        let database_url = format!("{}/corredor", pg.server());
        let admin = Database::connect(format!("{}/postgres", pg.server())).await.expect("connect the private cluster");
        admin.execute_unprepared("CREATE DATABASE corredor").await.expect("create the database");
        admin.close().await.ok();
        let db = Database::connect(&database_url).await.expect("connect the private database");
        Migrator::up(&db, None).await.expect("migrate the private database");
        db.close().await.ok();

        let prefix = format!("chaos_{name}");
        let env: Vec<(&str, String)> = vec![
            ("DATABASE_URL", database_url.clone()),
            ("REDIS_URL", redis.url()),
            ("REDIS_PREFIX", prefix.clone()),
            ("TELEGRAM_API_BASE", fake.base.clone()),
            ("PROVIDER_TIMEOUT_MS", "1000".into()),
            ("JOB_BACKOFF_BASE_MS", "300".into()),
            ("JOB_BACKOFF_MAX_MS", "1500".into()),
            ("DB_MAX_CONNECTIONS", "5".into()),
            ("WORKER_CONCURRENCY", "4".into()),
            ("RATE_LIMITS", "off".into()),
            ("RUST_LOG", "warn".into()),
        ];
        let lookup = env.clone();
        let settings = Settings::from_lookup(move |k| lookup.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("settings");
        let infra = Infra::connect(settings).await.expect("infra on the private servers");

        let logs = Scratch::new("logs");
        let spawn = |bin: &str, name: &str| -> Proc {
            let log = std::fs::File::create(logs.0.join(format!("{name}.log"))).expect("a log file");
            let err = log.try_clone().expect("a log file");
            let child = Command::new(bin)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("HOSTNAME", name)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .expect("start a process");
            Proc { name: name.to_string(), child: Some(child) }
        };
        let mut api = spawn(env!("CARGO_BIN_EXE_it-api"), "api");
        let api_log = logs.0.join("api.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let text = std::fs::read_to_string(&api_log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("listening ")) {
                break addr.trim().to_string();
            }
            if let Some(status) = api.exited() {
                panic!("the API process exited at start-up ({status}): {text}");
            }
            assert!(Instant::now() < deadline, "the API process did not start: {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let workers = vec![
            spawn(env!("CARGO_BIN_EXE_it-worker"), "worker-a"),
            spawn(env!("CARGO_BIN_EXE_it-worker"), "worker-b"),
        ];
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("an HTTP client");
        let mut client = Client { http, base: format!("http://{addr}"), token: String::new(), broker: 0 };

        let n = uuid::Uuid::new_v4().simple().to_string();
        let reg = client
            .post(
                "/auth/register",
                &json!({"email": format!("chaos-{}@test.cl", &n[..10]), "password": PASSWORD,
                        "broker_name": format!("Chaos {name}")}),
            )
            .await;
        assert_eq!(reg.status, Some(200), "register: {reg:?}");
        client.token = reg.body["access_token"].as_str().expect("a token").to_string();
        let me = client.get("/auth/me").await;
        client.broker = me.body["broker_id"].as_i64().expect("a broker");
        let cfg = client
            .put(
                "/api/broker/chat-config",
                &json!({"enabled_providers": ["webchat", "telegram"],
                        "provider_configs": {"telegram": {"bot_token": BOT_TOKEN, "webhook_secret": TG_SECRET}}}),
            )
            .await;
        assert_eq!(cfg.status, Some(200), "chat config: {cfg:?}");

        let world = World { client, _api: api, workers, infra, fake, pg, redis, logs };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h = world.client.health().await;
            let live = h.body["workers"].as_array().map_or(0, Vec::len);
            if h.status == Some(200) && live >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the workers did not come up: {h:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        world
    }

    /// The end of a process' log (for failure messages).
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.logs.0.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// [`unclean`] answers fail the test, with the API's error log lines.
    pub fn assert_clean(&self, answers: &[Answer], allow_503: bool) {
        let bad = unclean(answers, allow_503);
        if !bad.is_empty() {
            let text = std::fs::read_to_string(self.logs.0.join("api.log")).unwrap_or_default();
            let errors: Vec<&str> =
                text.lines().filter(|l| l.contains("ERROR") && !l.contains("unavailable")).take(10).collect();
            panic!(
                "{} of {} requests got no clean answer, e.g. {:#?}\nAPI errors:\n{}",
                bad.len(),
                answers.len(),
                bad.iter()
                    .take(5)
                    .map(|a| format!("{}: {:?} {} after {:?} {:?}", a.what, a.status, a.body, a.elapsed, a.error))
                    .collect::<Vec<_>>(),
                errors.join("\n")
            );
        }
    }

    /// Polls `/health` until `pred` holds; returns that answer.
    pub async fn wait_health(&self, what: &str, within: Duration, pred: impl Fn(&Answer) -> bool) -> Answer {
        let deadline = Instant::now() + within;
        loop {
            let h = self.client.health().await;
            assert!(h.error.is_none() && h.elapsed < REQUEST_TIMEOUT, "/health hung or failed: {h:?}");
            if pred(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "/health never showed {what}; last: {h:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Time from now until `/health` is 200 `healthy` and an authenticated read is served again.
    pub async fn recovery_time(&self) -> Duration {
        let started = Instant::now();
        loop {
            let h = self.client.health().await;
            if h.status == Some(200) && h.body["status"] == "healthy" {
                let leads = self.client.get("/api/v1/leads?limit=1").await;
                if leads.status == Some(200) {
                    return started.elapsed();
                }
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the API never recovered: {h:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Outbound effects `worker` has claimed and not recorded yet (a provider call in flight, or
    /// just answered).
    pub async fn claims_of(&self, worker: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) AS n FROM performed_effects WHERE status = 'claimed' AND claimed_by LIKE '{worker}-%'"
        ))
        .await
    }

    /// Channel jobs `worker` has fetched and not acknowledged (its apalis in-flight sets).
    pub async fn inflight_of(&self, worker: &str) -> u64 {
        let mut conn = self.infra.redis.clone();
        let mut total = 0;
        for q in TRAFFIC_QUEUES {
            let pattern = format!("{}:inflight:{worker}*", shared::jobs::namespace(self.infra.prefix(), q));
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.expect("KEYS");
            for key in keys {
                let n: u64 = redis::cmd("SCARD").arg(&key).query_async(&mut conn).await.expect("SCARD");
                total += n;
            }
        }
        total
    }

    /// SIGKILLs worker `i` at a moment when it has jobs in flight and holds (`with_claim`) or does
    /// not hold an unrecorded outbound effect: the worker is frozen (SIGSTOP), its state is read,
    /// and it is killed frozen if the moment is right, else thawed and tried again.
    pub async fn kill_worker(&mut self, i: usize, with_claim: bool) {
        let name = self.workers[i].name.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.workers[i].freeze();
            let claims = self.claims_of(&name).await;
            let inflight = self.inflight_of(&name).await;
            if inflight > 0 && (claims > 0) == with_claim {
                self.workers[i].kill();
                return;
            }
            self.workers[i].thaw();
            assert!(Instant::now() < deadline, "{name} never was in the wanted state (claims held: {with_claim})");
            tokio::time::sleep(Duration::from_millis(if with_claim { 1 } else { 20 })).await;
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        let row = self
            .infra
            .db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_string()))
            .await
            .expect("query the private database")
            .expect("a row");
        row.try_get("", "n").expect("a count")
    }

    /// Waits until every chat in `chats` got its reply and the channel queues are idle (nothing
    /// pending or held by a worker, live or dead). With `retry_dead`, dead jobs are retried
    /// through the admin API (`bulk-retry`) once the Telegram breaker lets calls through again.
    pub async fn settle(&self, chats: std::ops::Range<i64>, within: Duration, retry_dead: bool) -> u64 {
        let deadline = Instant::now() + within;
        let mut retried = 0u64;
        loop {
            let delivered = self.fake.delivered();
            let missing = chats.clone().filter(|c| !delivered.contains_key(c)).count();
            let mut busy = 0;
            let mut dead_in_redis = 0;
            for q in TRAFFIC_QUEUES {
                let s = shared::jobs::stats(&self.infra, q).await.expect("queue stats");
                busy += s.pending + s.running;
                dead_in_redis += s.dead;
            }
            let dead = self.count("SELECT count(*) AS n FROM dead_jobs WHERE status = 'dead'").await;
            if retry_dead && dead > 0 {
                let h = self.client.health().await;
                if h.body["circuit_breakers"]["telegram"] != "open" {
                    let r = self
                        .client
                        .post("/api/v1/admin/tasks/bulk-retry", &json!({"filter": {"status": "dead"}}))
                        .await;
                    assert_eq!(r.status, Some(200), "bulk retry: {r:?}");
                    retried += r.body["retried"].as_u64().unwrap_or(0);
                }
            }
            if missing == 0 && busy == 0 && (dead == 0 || !retry_dead) {
                return retried;
            }
            assert!(
                Instant::now() < deadline,
                "not settled: {missing} chats unanswered, {busy} jobs pending/running, {dead} dead jobs \
                 ({dead_in_redis} dead in Redis)\nworker-a:\n{}\nworker-b:\n{}",
                self.log_tail("worker-a"),
                self.log_tail("worker-b")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every chat got exactly one reply at the provider, every inbound message is stored once and
    /// answered (`read`) by one reply, each reply `sent`, and no job left dead (in the DLQ, or in
    /// Redis when none was retried).
    pub async fn assert_exactly_once(&self, chats: std::ops::Range<i64>) {
        let delivered = self.fake.delivered();
        let missing: Vec<i64> = chats.clone().filter(|c| !delivered.contains_key(c)).collect();
        let twice: Vec<(i64, u32)> = delivered.iter().filter(|(_, n)| **n != 1).map(|(c, n)| (*c, *n)).collect();
        let strangers: Vec<i64> = delivered.keys().filter(|c| !chats.contains(c)).copied().collect();
        assert!(missing.is_empty(), "{} inbound messages never answered: {missing:?}", missing.len());
        assert!(twice.is_empty(), "replies delivered more than once: {twice:?}");
        assert!(strangers.is_empty(), "replies to unknown chats: {strangers:?}");
        let b = self.client.broker;
        let sql = |cond: &str| {
            format!(
                "SELECT count(*) AS n FROM chat_messages WHERE broker_id = {b} AND provider = 'telegram' AND {cond}"
            )
        };
        let n = chats.end - chats.start;
        assert_eq!(self.count(&sql("direction = 'in'")).await, n, "each inbound message stored once");
        assert_eq!(
            self.count(&sql("direction = 'in' AND status <> 'read'")).await,
            0,
            "every inbound message answered"
        );
        assert_eq!(self.count(&sql("direction = 'out'")).await, n, "one reply per message");
        let unsent: Vec<String> = self
            .infra
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT id, status, COALESCE(provider_metadata::text, '') AS pm FROM chat_messages \
                     WHERE broker_id = {b} AND provider = 'telegram' AND direction = 'out' AND status <> 'sent'"
                ),
            ))
            .await
            .expect("query the private database")
            .iter()
            .map(|r| {
                let id: i64 = r.try_get("", "id").unwrap_or_default();
                let status: String = r.try_get("", "status").unwrap_or_default();
                let pm: String = r.try_get("", "pm").unwrap_or_default();
                format!("{id} {status} {pm}")
            })
            .collect();
        assert!(unsent.is_empty(), "replies not recorded as sent: {unsent:#?}");
        let dead = self.count("SELECT count(*) AS n FROM dead_jobs WHERE status = 'dead'").await;
        assert_eq!(dead, 0, "dead jobs left in the DLQ");
        let requeued = self.count("SELECT count(*) AS n FROM dead_jobs WHERE status = 'requeued'").await;
        if requeued == 0 {
            for q in TRAFFIC_QUEUES {
                let s = shared::jobs::stats(&self.infra, q).await.expect("queue stats");
                assert_eq!(s.dead, 0, "dead {q} jobs in Redis");
            }
        }
    }
}
