//! The harness every API test uses: the real `wallet` binary, started on a
//! random loopback port against a database file in a temporary folder, and
//! driven over real HTTP.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use reqwest::blocking::{Body, Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use tempfile::TempDir;
use wallet::config::{LOG_FORMAT_VAR, LOG_VAR, PORT_VAR};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Entries on a freshly seeded database: six seed topups (API.md).
pub const SEED_ENTRIES: i64 = 6;

/// The seed balances of API.md: (user, asset, balance), one topup each.
pub const SEED_BALANCES: [(&str, &str, i64); 6] = [
    ("user_alice", "GOLD", 1000),
    ("user_alice", "DIAMOND", 100),
    ("user_alice", "LOYALTY", 500),
    ("user_bob", "GOLD", 500),
    ("user_bob", "DIAMOND", 25),
    ("user_bob", "LOYALTY", 100),
];

/// Every field of API.md's Transaction object.
pub const TRANSACTION_FIELDS: [&str; 15] = [
    "id",
    "type",
    "asset",
    "amount",
    "direction",
    "balanceAfter",
    "counterparty",
    "reverses",
    "holdId",
    "idempotencyKey",
    "referenceId",
    "note",
    "metadata",
    "createdAt",
    "parts",
];

/// The `wallet` binary cargo built for these tests.
pub fn wallet_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wallet"))
}

/// Every variable the binary reads: clap's `env` settings, `PORT` and the
/// log filter.
pub fn variables_the_binary_reads() -> BTreeSet<String> {
    fn collect(command: &clap::Command, names: &mut BTreeSet<String>) {
        for argument in command.get_arguments() {
            if let Some(name) = argument.get_env() {
                names.insert(name.to_string_lossy().into_owned());
            }
        }
        for subcommand in command.get_subcommands() {
            collect(subcommand, names);
        }
    }
    let mut names = BTreeSet::from([
        PORT_VAR.to_owned(),
        LOG_VAR.to_owned(),
        LOG_FORMAT_VAR.to_owned(),
    ]);
    collect(&wallet::cli::Cli::command(), &mut names);
    names
}

/// `command` without any variable the binary reads but the log filter (the
/// caller sets that): a test sets the settings it means, never inherits them
/// from whoever runs the tests.
pub fn without_wallet_variables(command: &mut Command) -> &mut Command {
    for variable in variables_the_binary_reads() {
        if variable != LOG_VAR {
            command.env_remove(variable);
        }
    }
    command
}

/// Runs a CLI command to completion: (exit status, stdout, stderr).
pub fn run_wallet(args: &[&str]) -> (ExitStatus, String, String) {
    let output = without_wallet_variables(&mut wallet_command())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the wallet binary runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A response, read whole: status, headers and the JSON body.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl ApiResponse {
    pub fn read(response: reqwest::blocking::Response) -> ApiResponse {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().expect("a readable body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("the body of a {status} is not JSON: {text:?}"));
        ApiResponse {
            status,
            headers,
            body,
        }
    }

    /// `data` of a success envelope; panics (failing the test) on anything else.
    pub fn data(&self) -> &Value {
        assert_eq!(self.body["success"], true, "not a success: {:?}", self.body);
        assert!(self.body["error"].is_null(), "{:?}", self.body);
        &self.body["data"]
    }

    /// `error.code` of a failure envelope; panics on anything else.
    pub fn error_code(&self) -> &str {
        assert_eq!(
            self.body["success"], false,
            "not a failure: {:?}",
            self.body
        );
        assert!(self.body["data"].is_null(), "{:?}", self.body);
        self.body["error"]["code"]
            .as_str()
            .expect("error.code is a string")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The field names listed in `error.details.fields`.
    pub fn invalid_fields(&self) -> Vec<String> {
        self.body["error"]["details"]["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .map(|field| field["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sends a request built by hand and reads the answer whole.
pub fn send(request: RequestBuilder) -> ApiResponse {
    ApiResponse::read(request.send().expect("the request is answered"))
}

/// A POST of `body`, sent exactly as written, with `Content-Type: application/json`.
pub fn post_text(app: &TestApp, path: &str, body: impl Into<Body>) -> ApiResponse {
    send(
        app.client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body),
    )
}

/// Creates an API key on the database at `db_path` with `wallet keys
/// create`, and returns its secret.
pub fn create_key(db_path: &Path, name: &str, scopes: &str) -> String {
    let db = db_path.to_str().expect("a UTF-8 path");
    let (status, stdout, stderr) = run_wallet(&[
        "keys", "create", "--name", name, "--scopes", scopes, "--db", db,
    ]);
    assert!(status.success(), "keys create failed: {stdout}\n{stderr}");
    stdout.trim().to_owned()
}

/// An HTTP client that sends `key`, when given, as `Authorization: Bearer`
/// on every request.
pub fn client_with_key(key: Option<&str>) -> Client {
    let mut headers = HeaderMap::new();
    if let Some(key) = key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .expect("a key is a valid header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// A running `wallet serve` on its own database.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub db_path: PathBuf,
    /// Sends the app's API key, if it has one, on every request.
    pub client: Client,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    dir: Option<TempDir>,
}

impl TestApp {
    /// A fresh, seeded database in a new temporary folder (or on the
    /// server `WALLET_TEST_POSTGRES` names).
    pub fn spawn() -> TestApp {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db_path = PathBuf::from(fresh_database(dir.path()));
        let mut app = TestApp::spawn_on(&db_path);
        app.dir = Some(dir);
        app
    }

    /// A fresh, seeded database with one `admin` key, which `client` sends
    /// on every request: the contract as a keyed deployment sees it.
    pub fn spawn_with_key() -> TestApp {
        let (mut app, keys) = TestApp::spawn_with_keys(&[("acceptance", "admin")], &[]);
        app.client = client_with_key(Some(&keys[0]));
        app
    }

    /// A fresh, seeded database with a key for each `(name, scopes)`, made
    /// before the server starts with `extra_args`; returns their secrets, in
    /// order. `client` sends no key.
    pub fn spawn_with_keys(keys: &[(&str, &str)], extra_args: &[&str]) -> (TestApp, Vec<String>) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db_path = PathBuf::from(fresh_database(dir.path()));
        let secrets = keys
            .iter()
            .map(|(name, scopes)| create_key(&db_path, name, scopes))
            .collect();
        let mut app = TestApp::start(&db_path, extra_args, None);
        app.dir = Some(dir);
        (app, secrets)
    }

    /// A server on an existing path (for restarts); the caller keeps the folder.
    pub fn spawn_on(db_path: &Path) -> TestApp {
        TestApp::start(db_path, &[], None)
    }

    /// A fresh, seeded database in a new temporary folder, served by a
    /// process with these environment variables set as well (a preloaded
    /// library and its settings, such as libfaketime's).
    pub fn spawn_with_env(variables: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db_path = PathBuf::from(fresh_database(dir.path()));
        let mut app = TestApp::start_with_env(&db_path, &[], None, variables);
        app.dir = Some(dir);
        app
    }

    /// `wallet serve` on `db_path` with `extra_args`; `client` sends `key`.
    /// The caller keeps the folder.
    pub fn start(db_path: &Path, extra_args: &[&str], key: Option<&str>) -> TestApp {
        TestApp::start_with_env(db_path, extra_args, key, &[])
    }

    /// As `start`, with `variables` set in the server's environment.
    pub fn start_with_env(
        db_path: &Path,
        extra_args: &[&str],
        key: Option<&str>,
        variables: &[(&str, &str)],
    ) -> TestApp {
        let mut child = without_wallet_variables(&mut wallet_command())
            .args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(db_path)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .envs(variables.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wallet binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let log_sink = Arc::clone(&logs);
        // Drain stderr for the server's whole life: a full pipe would block
        // its logging, and so the server.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = address_sender.send(format!("http://{address}"));
                }
                log_sink.lock().unwrap().push(line);
            }
        });
        let address = match address_receiver.recv_timeout(START_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the server did not start; its log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let client = client_with_key(key);
        let app = TestApp {
            address,
            db_path: db_path.to_owned(),
            client,
            child,
            logs,
            dir: None,
        };
        app.wait_until_healthy();
        app
    }

    fn wait_until_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let healthy = self
                .client
                .get(format!("{}/health", self.address))
                .send()
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                return;
            }
            assert!(Instant::now() < deadline, "the server never became healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn get(&self, path: &str) -> ApiResponse {
        ApiResponse::read(
            self.client
                .get(self.url(path))
                .send()
                .expect("GET is answered"),
        )
    }

    /// POSTs `body` as JSON.
    pub fn post(&self, path: &str, body: &Value) -> ApiResponse {
        ApiResponse::read(
            self.client
                .post(self.url(path))
                .json(body)
                .send()
                .expect("POST is answered"),
        )
    }

    /// PUTs `body` as JSON.
    pub fn put(&self, path: &str, body: &Value) -> ApiResponse {
        ApiResponse::read(
            self.client
                .put(self.url(path))
                .json(body)
                .send()
                .expect("PUT is answered"),
        )
    }

    /// POST /wallets/{user}/{operation} with the usual fields.
    pub fn post_entry(
        &self,
        operation: &str,
        user: &str,
        asset: &str,
        amount: u64,
        key: &str,
    ) -> ApiResponse {
        self.post(
            &format!("/wallets/{user}/{operation}"),
            &json!({"asset": asset, "amount": amount, "idempotencyKey": key}),
        )
    }

    pub fn post_topup(&self, user: &str, asset: &str, amount: u64, key: &str) -> ApiResponse {
        self.post_entry("topup", user, asset, amount, key)
    }

    pub fn post_bonus(&self, user: &str, asset: &str, amount: u64, key: &str) -> ApiResponse {
        self.post_entry("bonus", user, asset, amount, key)
    }

    pub fn post_spend(&self, user: &str, asset: &str, amount: u64, key: &str) -> ApiResponse {
        self.post_entry("spend", user, asset, amount, key)
    }

    /// The user's balance in one asset, from GET /wallets/{user}/balance.
    pub fn balance(&self, user: &str, asset: &str) -> i64 {
        let response = self.get(&format!("/wallets/{user}/balance"));
        response.data()["balances"]
            .as_array()
            .expect("balances is a list")
            .iter()
            .find(|row| row["asset"] == asset)
            .and_then(|row| row["balance"].as_i64())
            .unwrap_or_else(|| panic!("no {asset} row in {:?}", response.body))
    }

    /// The id of the asset with this symbol, from GET /assets.
    pub fn asset_id(&self, symbol: &str) -> String {
        let response = self.get("/assets");
        response
            .data()
            .as_array()
            .expect("a list of assets")
            .iter()
            .find(|asset| asset["symbol"] == symbol)
            .and_then(|asset| asset["id"].as_str())
            .unwrap_or_else(|| panic!("no asset {symbol}"))
            .to_owned()
    }

    /// Every line the server has logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// SIGKILL: the process dies at once, mid-write if it was writing.
    /// Takes the temporary folder from the server, so that it outlives it
    /// (for a restart on the same file).
    pub fn keep_folder(&mut self) -> Option<TempDir> {
        self.dir.take()
    }

    /// The server's process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the server to exit on its own.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit and returns its status.
    pub fn terminate(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The number of ledger entries, as `wallet verify` counts them: through
    /// the binary, so the count needs no knowledge of the backend's tables.
    pub fn entry_count(&self) -> i64 {
        let db = self.db_path.to_str().expect("a UTF-8 path");
        let (_, stdout, stderr) = run_wallet(&["verify", "--db", db]);
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("entries checked: "))
            .and_then(|rest| rest.split(';').next())
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("verify counted no entries:\n{stdout}\n{stderr}"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small, seeded generator, so a failure can be replayed from its seed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// Whether a test that needs a tool from outside the Rust toolchain can run.
/// On a developer's machine a missing tool skips the test with one SKIPPED
/// line saying how to install it, so a newcomer's first `cargo test`
/// passes; under CI (`CI` set, as on the CI machine), where `.ci/run`
/// installs every such tool, a missing one fails the test instead.
pub fn tool_present(present: bool, what: &str, install: &str) -> bool {
    if present {
        return true;
    }
    let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    assert!(
        !in_ci,
        "{what} is missing under CI; .ci/run must install it ({install})"
    );
    eprintln!("SKIPPED: {what} is missing ({install})");
    false
}

pub use crate::test_database::{fresh_database, postgres_server};

/// Whether a test of what only a SQLite file has (its bytes, its WAL, a
/// backup of it, a raw SQL look inside) runs: not when the suite runs on
/// PostgreSQL (`WALLET_TEST_POSTGRES`), where it prints one SKIPPED line.
pub fn sqlite_only(what: &str) -> bool {
    if postgres_server().is_some() {
        println!("SKIPPED on PostgreSQL: {what}");
        return false;
    }
    true
}
