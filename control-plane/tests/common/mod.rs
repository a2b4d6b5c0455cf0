//! Shared helpers: start the router in-process on a real socket (with a test clock) or the
//! real binary, send requests, and `#[track_caller]` expectations.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use control_plane::clock::ManualClock;
use control_plane::domain::token::{self, Role};
use control_plane::store::sql::{Backend, SqlStore};
use control_plane::store::{Counts, Store, TokenStore};
use control_plane::{AppState, Settings};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::watch;

/// The database engine the suite runs on: `EC_TEST_BACKEND=postgres` runs it on a
/// throwaway PostgreSQL cluster started for this test process (one database per server),
/// anything else on a SQLite file per server.
pub fn backend() -> Backend {
    match std::env::var("EC_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// The cluster of this test process (started on first use, stopped when it exits).
pub fn pg_cluster() -> &'static edge_testkit::postgres::PgCluster {
    static CLUSTER: OnceLock<edge_testkit::postgres::PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        edge_testkit::postgres::PgCluster::start().expect("starting a PostgreSQL cluster")
    })
}

/// A new, empty database on the suite's engine: a file in `dir`, or a database of its own
/// on the cluster.
pub fn fresh_database(dir: &Path) -> String {
    match backend() {
        Backend::Sqlite => format!("sqlite://{}", dir.join("cp.db").display()),
        Backend::Postgres => pg_cluster().create_database().expect("creating a database"),
    }
}

/// SQL that removes the trigger `name` of `table` (as an attacker with database access would).
pub fn drop_trigger_sql(name: &str, table: &str) -> String {
    match backend() {
        Backend::Sqlite => format!("DROP TRIGGER {name}"),
        Backend::Postgres => format!("DROP TRIGGER {name} ON {table}"),
    }
}

/// A response, read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[track_caller]
pub fn expect_status(r: &Resp, status: u16) -> &Value {
    assert_eq!(
        r.status,
        status,
        "unexpected status; body: {}",
        String::from_utf8_lossy(&r.bytes)
    );
    &r.json
}

/// Expect an error with this status naming `field` (and, when given, with this code).
#[track_caller]
pub fn expect_error(r: &Resp, status: u16, field: Option<&str>, code: Option<&str>) {
    let body = expect_status(r, status);
    let err = &body["error"];
    assert!(
        err["message"].is_string(),
        "error body without message: {body}"
    );
    if let Some(f) = field {
        assert_eq!(err["field"].as_str(), Some(f), "wrong field in {body}");
    }
    if let Some(c) = code {
        assert_eq!(err["code"].as_str(), Some(c), "wrong code in {body}");
    }
}

/// What a request carries.
#[derive(Clone, Debug, Default)]
pub struct Req {
    pub token: Option<String>,
    pub body: Option<String>,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
}

impl Req {
    pub fn token(t: &str) -> Req {
        Req {
            token: Some(t.to_string()),
            ..Req::default()
        }
    }
    pub fn json(mut self, v: Value) -> Req {
        self.body = Some(v.to_string());
        self.content_type = Some("application/json");
        self
    }
    pub fn raw(mut self, body: impl Into<String>, content_type: &'static str) -> Req {
        self.body = Some(body.into());
        self.content_type = Some(content_type);
        self
    }
    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Req {
        self.headers.push((k, v.into()));
        self
    }
}

/// An HTTP client bound to a base URL.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        Api {
            base: format!("http://{addr}"),
            addr,
            client,
        }
    }

    pub async fn send(&self, method: Method, path: &str, req: Req) -> Resp {
        self.try_send(method, path, req)
            .await
            .expect("request failed")
    }

    /// [`Api::send`], with `None` when the exchange fails (the server is gone).
    pub async fn try_send(&self, method: Method, path: &str, req: Req) -> Option<Resp> {
        let mut b = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &req.token {
            b = b.bearer_auth(t);
        }
        if let Some(ct) = req.content_type {
            b = b.header("content-type", ct);
        }
        for (k, v) in &req.headers {
            b = b.header(*k, v);
        }
        if let Some(body) = req.body {
            b = b.body(body);
        }
        let resp = b.send().await.ok()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.ok()?.to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Some(Resp {
            status,
            headers,
            bytes,
            json,
        })
    }

    pub async fn try_post(&self, path: &str, token: &str, body: Value) -> Option<Resp> {
        self.try_send(Method::POST, path, Req::token(token).json(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Req::token(token)).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Req::token(token).json(body))
            .await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Req::token(token).json(body))
            .await
    }

    /// Create a token through the API.
    pub async fn new_token(&self, admin: &str, name: &str, role: &str) -> (i64, String) {
        let r = self
            .post("/v1/tokens", admin, json!({"name": name, "role": role}))
            .await;
        let b = expect_status(&r, 201);
        (
            b["id"].as_i64().unwrap(),
            b["token"].as_str().unwrap().to_string(),
        )
    }

    pub async fn new_incident(&self, token: &str, title: &str) -> i64 {
        let r = self
            .post(
                "/v1/incidents",
                token,
                json!({"title": title, "severity": "P1", "summary": "test"}),
            )
            .await;
        expect_status(&r, 201)["id"].as_i64().unwrap()
    }

    /// Create an action; returns its JSON.
    pub async fn new_action(&self, token: &str, incident: i64, body: Value) -> Value {
        let r = self
            .post(&format!("/v1/incidents/{incident}/actions"), token, body)
            .await;
        expect_status(&r, 201).clone()
    }

    pub async fn block_host(&self, token: &str, incident: i64, host: &str) -> Value {
        self.new_action(
            token,
            incident,
            json!({"kind": "block", "target": {"host": host}, "reason": "test"}),
        )
        .await
    }

    pub async fn verify(&self, token: &str) -> Value {
        let r = self.get("/v1/audit/verify", token).await;
        expect_status(&r, 200).clone()
    }
}

/// The router served in-process on 127.0.0.1 with a manual clock.
pub struct TestServer {
    pub api: Api,
    pub admin: String,
    pub clock: ManualClock,
    pub store: Arc<SqlStore>,
    /// The served state (its caches, for tests that look inside).
    pub state: AppState,
    pub database_url: String,
    shutdown: watch::Sender<bool>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Self::settings()).await
    }

    /// The settings [`TestServer::start`] uses (fast expiry sweep, small evidence limit).
    pub fn settings() -> Settings {
        Settings {
            expiry_interval: Duration::from_millis(20),
            max_evidence_bytes: 1 << 20,
            ..Settings::default()
        }
    }

    pub async fn start_with(settings: Settings) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database(dir.path());
        let mut s = Self::serve(database_url, settings, ManualClock::starting_now(), None).await;
        s._dir = Some(dir);
        s
    }

    /// A server on a new database at `database_url` (whatever the suite's engine).
    pub async fn start_at(database_url: String, settings: Settings) -> TestServer {
        Self::serve(database_url, settings, ManualClock::starting_now(), None).await
    }

    /// Serve the database at `database_url` as it is (no bootstrap): for a database another
    /// server filled, `admin` being a token it holds.
    pub async fn attach(
        database_url: String,
        settings: Settings,
        clock: ManualClock,
        admin: &str,
    ) -> TestServer {
        Self::serve(database_url, settings, clock, Some(admin.to_string())).await
    }

    /// With `admin: None`, bootstrap a new database: an admin token and the test signing key.
    async fn serve(
        database_url: String,
        settings: Settings,
        clock: ManualClock,
        admin: Option<String>,
    ) -> TestServer {
        let store = Arc::new(SqlStore::connect(&database_url).await.unwrap());
        let admin = match admin {
            Some(a) => a,
            None => {
                let admin = token::generate();
                store
                    .create_token("test", "root", Role::Admin, token::hash(&admin), true, 0)
                    .await
                    .unwrap();
                // A known signing key, so any answer can be checked with [`unseal`].
                store
                    .add_signing_key("test", test_key(), 0, true, 0)
                    .await
                    .unwrap();
                admin
            }
        };
        let (state, shutdown) = AppState::new(store.clone(), Arc::new(clock.clone()), settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(control_plane::serve(listener, state.clone()));
        TestServer {
            api: Api::new(addr),
            admin,
            clock,
            store,
            state,
            database_url,
            shutdown,
            _dir: None,
        }
    }

    pub async fn counts(&self) -> Counts {
        self.store.counts().await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_control-plane")
}

/// Run the binary's `token create`; returns (success, stdout).
pub fn cli_token_create(db: &str, role: &str, name: &str) -> (bool, String) {
    let out = Command::new(binary())
        .args([
            "token",
            "create",
            "--role",
            role,
            "--name",
            name,
            "--database-url",
            db,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// The real binary serving on a free port.
pub struct BinServer {
    pub child: Child,
    pub api: Api,
}

impl BinServer {
    pub fn start(db: &str) -> BinServer {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("control-plane listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        BinServer {
            child,
            api: Api::new(addr),
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read from `stream` until the server closes it, or `guard` passes (a hung test fails
/// instead of waiting forever). Returns what was read and whether the server closed.
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    guard: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(guard, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// The status and JSON body of a raw HTTP/1.1 answer (`Content-Length` framed).
pub fn parse_raw(resp: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(resp);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, body)
}

/// Send `bytes` on a new connection and read the answer until the server closes.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(20)).await
}

/// The signing key every [`TestServer`] starts with (the real binary makes its own).
pub fn test_key() -> control_plane::domain::signing::SigningKeyRecord {
    control_plane::domain::signing::SigningKeyRecord::new([0x42; 32], 0)
}

/// The policy message inside a sealed policy answer of a [`TestServer`] (`edge_policy::seal`),
/// after checking its signature by [`test_key`] and its digest.
#[track_caller]
pub fn unseal(bytes: &[u8]) -> &[u8] {
    unseal_with(bytes, &[test_key().public_key()])
}

/// [`unseal`] with the given public keys (as `GET /v1/edge/keys` lists them).
#[track_caller]
pub fn unseal_with<'a>(bytes: &'a [u8], keys: &[String]) -> &'a [u8] {
    let trusted = edge_policy::seal::TrustedKeys::parse(keys).expect("keys");
    let seal = edge_policy::seal::open(&mut &bytes[..], &trusted, None, 0, 0, 1 << 20)
        .unwrap_or_else(|e| panic!("the answer's seal does not hold: {e}"));
    &bytes[seal.message_start..]
}

/// The public keys of `GET /v1/edge/keys` that still sign.
pub async fn signing_keys(api: &Api, token: &str) -> Vec<String> {
    let r = api.get("/v1/edge/keys", token).await;
    expect_status(&r, 200)
        .as_array()
        .expect("a list")
        .iter()
        .filter(|k| k["state"] != "retired")
        .map(|k| k["public_key"].as_str().expect("public_key").to_string())
        .collect()
}
