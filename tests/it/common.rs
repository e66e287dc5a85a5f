//! The test harness: a fresh database and Redis prefix per test, the real app in-process, and
//! helpers that act as a client would.

use std::sync::atomic::{AtomicU64, Ordering};

use api::AppState;
use migration::{Migrator, MigratorTrait};
use poem::Endpoint;
use poem::test::{TestClient, TestResponse};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use shared::{Infra, Settings};
use tokio::sync::OnceCell;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

pub const PASSWORD: &str = "Seguro123!";

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn admin_conn() -> DatabaseConnection {
    Database::connect(format!("{}/postgres", server_url())).await.expect("connect to PostgreSQL")
}

/// A migrated template database, created once per test run.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("corredor_tpl_{}", std::process::id());
            let admin = admin_conn().await;
            admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop template");
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create template");
            let db = Database::connect(format!("{}/{name}", server_url())).await.expect("connect template");
            Migrator::up(&db, None).await.expect("migrate template");
            db.close().await.expect("close template");
            admin.close().await.ok();
            name
        })
        .await
}

/// One test's world: its own database and Redis prefix, and the app built on them.
pub struct TestApp {
    pub state: AppState,
    pub db_name: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| None).await
    }

    /// With extra settings (e.g. `JWT_EXPIRE_MINUTES`).
    pub async fn spawn_with(extra: impl Fn(&str) -> Option<String>) -> Self {
        shared::install_crypto_provider();
        let template = template().await;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}_{}_{}", std::process::id(), n, &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let db_name = format!("corredor_t_{id}");
        let admin = admin_conn().await;
        let mut attempt = 0;
        loop {
            match admin.execute_unprepared(&format!("CREATE DATABASE {db_name} TEMPLATE {template}")).await {
                Ok(_) => break,
                Err(e) if attempt < 20 && e.to_string().contains("being accessed") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        admin.close().await.ok();
        let database_url = format!("{}/{db_name}", server_url());
        let prefix = format!("t_{id}");
        let redis = redis_url();
        let settings = Settings::from_lookup(|k| match k {
            "DATABASE_URL" => Some(database_url.clone()),
            "REDIS_URL" => Some(redis.clone()),
            "REDIS_PREFIX" => Some(prefix.clone()),
            "DB_MAX_CONNECTIONS" => Some("5".into()),
            other => extra(other),
        })
        .expect("settings");
        let infra = Infra::connect(settings).await.expect("infra");
        TestApp { state: AppState::new(infra), db_name }
    }

    pub fn infra(&self) -> &Infra {
        &self.state.infra
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.state.infra.db
    }

    /// Serves this app on a real loopback port (for WebSockets) and returns its address.
    pub async fn serve(&self) -> std::net::SocketAddr {
        Self::serve_state(api::AppState::new(self.state.infra.clone())).await
    }

    /// Serves an app built on `state` (a second API instance when `state` has its own hub).
    pub async fn serve_state(state: AppState) -> std::net::SocketAddr {
        use poem::listener::{Acceptor, Listener, TcpListener};
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().expect("socket address");
        tokio::spawn(api::serve(acceptor, state, std::future::pending()));
        addr
    }

    pub fn client(&self) -> TestClient<impl Endpoint + use<>> {
        TestClient::new(api::app(self.state.clone()))
    }

    /// Registers a brokerage and returns its admin.
    pub async fn register(&self, email: &str, broker_name: &str) -> User {
        let resp = self
            .client()
            .post("/auth/register")
            .body_json(&json!({"email": email, "password": PASSWORD, "broker_name": broker_name}))
            .send()
            .await;
        resp.assert_status_is_ok();
        let token = body(resp).await["access_token"].as_str().expect("token").to_string();
        self.me(token).await
    }

    /// A fresh brokerage with a unique name.
    pub async fn new_broker(&self) -> User {
        let n = uuid::Uuid::new_v4().simple().to_string();
        self.register(&format!("admin-{}@test.cl", &n[..10]), &format!("Broker {}", &n[..6])).await
    }

    /// Creates a user of `admin`'s broker with the given role and logs in as it.
    pub async fn user_in(&self, admin: &User, role: &str) -> User {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("{role}-{}@test.cl", &n[..10]);
        let resp = self
            .client()
            .post("/api/broker/users")
            .header("authorization", admin.bearer())
            .body_json(&json!({"email": email, "password": PASSWORD, "name": format!("{role} user"), "role": role}))
            .send()
            .await;
        resp.assert_status_is_ok();
        self.login(&email).await
    }

    pub async fn login(&self, email: &str) -> User {
        let resp =
            self.client().post("/auth/login").body_json(&json!({"email": email, "password": PASSWORD})).send().await;
        resp.assert_status_is_ok();
        let token = body(resp).await["access_token"].as_str().expect("token").to_string();
        self.me(token).await
    }

    /// The platform superadmin (created through the same service `api create-superadmin` uses).
    pub async fn superadmin(&self) -> User {
        shared::auth::service::upsert_superadmin(self.db(), "root@corredor.cl", PASSWORD, true)
            .await
            .expect("superadmin");
        self.login("root@corredor.cl").await
    }

    async fn me(&self, token: String) -> User {
        let resp = self.client().get("/auth/me").header("authorization", format!("Bearer {token}")).send().await;
        resp.assert_status_is_ok();
        let me = body(resp).await;
        User {
            token,
            id: me["id"].as_i64().expect("id"),
            broker_id: me["broker_id"].as_i64(),
            email: me["email"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// Creates a lead through the API and returns its JSON.
    pub async fn lead(&self, user: &User, body_json: Value) -> Value {
        let resp = self
            .client()
            .post("/api/v1/leads")
            .header("authorization", user.bearer())
            .body_json(&body_json)
            .send()
            .await;
        resp.assert_status(poem::http::StatusCode::CREATED);
        body(resp).await
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub token: String,
    pub id: i64,
    pub broker_id: Option<i64>,
    pub email: String,
}

impl User {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The JSON body of a response.
pub async fn body(resp: TestResponse) -> Value {
    let text = resp.0.into_body().into_string().await.expect("body");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// Asserts status and error code, and returns the body.
pub async fn expect_error(resp: TestResponse, status: u16, code: &str) -> Value {
    let actual = resp.0.status().as_u16();
    let b = body(resp).await;
    assert_eq!(actual, status, "unexpected status; body: {b}");
    assert_eq!(b["code"], code, "unexpected code; body: {b}");
    assert!(!b["detail"].is_null(), "error without detail: {b}");
    b
}

/// A unique valid Chilean mobile: eight digits after `+569` from 10000000 to 99899999, never the
/// `+569999…` placeholders the product refuses to call or message.
pub fn phone() -> String {
    let n =
        COUNTER.fetch_add(1, Ordering::Relaxed) + u64::from(uuid::Uuid::new_v4().as_u128() as u32 % 1_000_000) * 100;
    format!("+569{:08}", 10_000_000 + n % 89_900_000)
}
