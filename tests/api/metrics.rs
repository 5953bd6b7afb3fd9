//! `GET /metrics` and the log lines, on the real binary: the exposition read
//! by a Prometheus parser, counters that move by exactly the requests sent,
//! labels that never carry a user id, who may scrape, and JSON logs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::json;

use crate::cli::{serve_command, Serving};
use crate::helpers::{
    client_with_key, create_key, send, wallet_command, without_wallet_variables, TestApp,
};

/// Every route pattern the service serves, and the label of all else.
const ROUTE_LABELS: &[&str] = &[
    "/health",
    "/assets",
    "/assets/{asset}/supply",
    "/events",
    "/metrics",
    "/wallets/{userId}/balance",
    "/wallets/{userId}/transactions",
    "/wallets/{userId}/topup",
    "/wallets/{userId}/bonus",
    "/wallets/{userId}/spend",
    "/wallets/{userId}/transfer",
    "/wallets/{userId}/holds",
    "/transactions/{id}",
    "/transactions/{id}/reverse",
    "/batch",
    "/holds/{holdId}",
    "/holds/{holdId}/capture",
    "/holds/{holdId}/void",
    "/openapi.json",
    "/keys",
    "/keys/{name}/revoke",
    "unmatched",
];

fn scrape_text(client: &Client, base: &str) -> (String, String) {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .expect("the scrape is answered");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, response.text().expect("a text body"))
}

/// One sample as Prometheus' own parser read it.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    family: String,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: Option<f64>,
}

struct Scrape {
    samples: Vec<Sample>,
}

/// Parses an exposition with `tests/parse_metrics.py` (Python's
/// prometheus_client, the Prometheus project's own parser; `.ci/run`
/// installs it).
fn parse(text: &str) -> Scrape {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused the exposition (is prometheus_client installed? \
         `pip install prometheus_client`):\n{}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Scrape {
        samples: serde_json::from_slice(&output.stdout).expect("the parser's JSON"),
    }
}

/// Whether Python's prometheus_client is there for `parse`.
fn parser_present() -> bool {
    let importable = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    crate::helpers::tool_present(
        importable,
        "Python's prometheus_client (the exposition parser)",
        "python3 -m pip install prometheus_client",
    )
}

fn scrape(app: &TestApp) -> Scrape {
    let (_, text) = scrape_text(&app.client, &app.address);
    parse(&text)
}

/// The value of the sample `name` with exactly `labels`; 0 when the
/// series does not exist yet.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            sample.labels.len() == labels.len()
                && labels.iter().all(|(label, wanted)| {
                    sample.labels.get(*label).map(String::as_str) == Some(wanted)
                })
        })
        .map(|sample| sample.value.expect("a finite value"))
        .sum()
}

/// A histogram's count: its `_count` sample.
fn histogram_count(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let family = scrape
        .samples
        .iter()
        .find(|sample| sample.name == format!("{metric}_count"));
    if let Some(sample) = family {
        assert_eq!(sample.kind, "histogram", "{metric}");
    }
    value(scrape, &format!("{metric}_count"), labels)
}

fn is_counter(scrape: &Scrape, name: &str) -> bool {
    scrape.samples.iter().any(|sample| {
        sample.name == name
            && sample.kind == "counter"
            && name == format!("{}_total", sample.family)
    })
}

/// Goal: an operator's Prometheus reads the exposition, and what it reads
/// is exact: the request counters and the latency histogram's count move by
/// exactly the requests sent, rejections by their code, entries by the
/// entries written; the per-asset figures are the supply's; and no label
/// anywhere carries a user id or a raw path.
#[test]
fn counters_move_by_exactly_the_requests_sent_and_no_label_names_a_user() {
    if !parser_present() {
        return;
    }
    let app = TestApp::spawn();
    let (content_type, _) = scrape_text(&app.client, &app.address);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let before = scrape(&app);
    let spend = [("route", "/wallets/{userId}/spend"), ("method", "POST")];

    const SPENT: usize = 23;
    const REFUSED: usize = 7;
    const READS: usize = 11;
    for index in 0..SPENT {
        let response = app.post_spend("user_alice", "GOLD", 1, &format!("metrics-spend-{index}"));
        assert_eq!(response.status, 201, "{:?}", response.body);
    }
    for index in 0..REFUSED {
        let response = app.post_spend(
            "user_bob",
            "GOLD",
            1_000_000,
            &format!("metrics-short-{index}"),
        );
        assert_eq!(response.status, 422, "{:?}", response.body);
    }
    for _ in 0..READS {
        assert_eq!(app.get("/wallets/user_bob/balance").status, 200);
    }
    assert_eq!(
        app.get("/wallets/user_secret_name/nothing-here").status,
        404
    );
    let hold = app.post(
        "/wallets/user_alice/holds",
        &json!({"asset": "GOLD", "amount": 40, "idempotencyKey": "metrics-hold"}),
    );
    assert_eq!(hold.status, 201, "{:?}", hold.body);

    let after = scrape(&app);
    let delta = |metric: &str, labels: &[(&str, &str)]| {
        value(&after, metric, labels) - value(&before, metric, labels)
    };
    let with_status = |status: &'static str| {
        let mut labels = spend.to_vec();
        labels.push(("status", status));
        labels
    };
    assert_eq!(
        delta("wallet_http_requests_total", &with_status("201")),
        SPENT as f64
    );
    assert_eq!(
        delta("wallet_http_requests_total", &with_status("422")),
        REFUSED as f64
    );
    assert_eq!(
        delta(
            "wallet_http_requests_total",
            &[
                ("route", "/wallets/{userId}/balance"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        READS as f64
    );
    assert_eq!(
        delta(
            "wallet_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        1.0
    );
    let spend_route = [("route", "/wallets/{userId}/spend")];
    assert_eq!(
        histogram_count(&after, "wallet_http_request_duration_seconds", &spend_route)
            - histogram_count(
                &before,
                "wallet_http_request_duration_seconds",
                &spend_route
            ),
        (SPENT + REFUSED) as f64
    );
    assert_eq!(
        delta("wallet_rejections_total", &[("code", "INSUFFICIENT_FUNDS")]),
        REFUSED as f64
    );
    assert_eq!(
        delta("wallet_rejections_total", &[("code", "NOT_FOUND")]),
        1.0
    );
    assert_eq!(delta("wallet_entries_total", &[]), SPENT as f64);
    assert!(
        histogram_count(&after, "wallet_write_batch_size", &[])
            >= histogram_count(&before, "wallet_write_batch_size", &[]) + 1.0
    );
    assert!(histogram_count(&after, "wallet_commit_duration_seconds", &[]) >= 1.0);
    assert_eq!(value(&after, "wallet_write_queue_depth", &[]), 0.0);
    // The WAL is SQLite's; PostgreSQL's is the server's own to watch.
    if crate::helpers::postgres_server().is_none() {
        assert!(value(&after, "wallet_wal_bytes", &[]) > 0.0);
    }
    for counter in [
        "wallet_http_requests_total",
        "wallet_rejections_total",
        "wallet_entries_total",
        "wallet_checkpoints_total",
        "wallet_write_batches_failed_total",
    ] {
        assert!(
            is_counter(&after, counter),
            "{counter} is not typed a counter"
        );
    }

    // Per asset: what the supply route says, for every asset.
    for asset in ["GOLD", "DIAMOND", "LOYALTY"] {
        let supply = app.get(&format!("/assets/{asset}/supply"));
        let data = supply.data();
        let labels = [("asset", asset)];
        assert_eq!(
            value(&after, "wallet_asset_outstanding", &labels),
            data["outstanding"].as_f64().unwrap(),
            "{asset}"
        );
        assert_eq!(
            value(&after, "wallet_asset_held", &labels),
            data["held"].as_f64().unwrap(),
            "{asset}"
        );
    }
    assert_eq!(
        value(&after, "wallet_asset_held", &[("asset", "GOLD")]),
        40.0
    );

    // No label value is a user id or a raw path: routes are patterns only.
    let mut routes = BTreeSet::new();
    for sample in &after.samples {
        for (name, label) in sample.labels.iter() {
            assert!(
                !label.contains("user_") && !label.contains("nothing-here"),
                "{} has {name}={label:?}",
                sample.name
            );
            if name == "route" {
                routes.insert(label.clone());
            }
        }
    }
    for route in &routes {
        assert!(
            ROUTE_LABELS.contains(&route.as_str()),
            "unknown route label {route:?}"
        );
    }
}

/// Goal: API.md's access to `/metrics`: open on a loopback bind even once
/// keys exist (a sidecar's scraper beside it); on any other bind it needs
/// `admin`, like every admin route.
#[test]
fn metrics_are_open_on_loopback_and_need_admin_elsewhere() {
    let (app, keys) = TestApp::spawn_with_keys(&[("ops", "admin"), ("game", "read,spend")], &[]);
    let anonymous = Client::new();
    let (_, text) = scrape_text(&anonymous, &app.address);
    assert!(text.contains("wallet_http_requests_total"), "{text}");
    // Other routes still need their key there.
    assert_eq!(send(anonymous.get(app.url("/assets"))).status, 401);
    drop(app);

    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let admin = create_key(&db_path, "ops", "admin");
    let read = create_key(&db_path, "game", "read,spend");
    let mut command = serve_command(&db_path);
    command.args(["--bind", "0.0.0.0:0"]);
    let mut server = Serving::start(command);
    let port = server
        .wait_until_listening()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let unauthorized = send(anonymous.get(&url));
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.error_code(), "UNAUTHORIZED");
    let forbidden = send(client_with_key(Some(&read)).get(&url));
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.body["error"]["details"]["requiredScope"], "admin");
    let base = format!("http://127.0.0.1:{port}");
    let (_, text) = scrape_text(&client_with_key(Some(&admin)), &base);
    assert!(text.contains("wallet_entries_total"), "{text}");
    let _ = keys;
}

/// Goal: logs a shipper can read. With `WALLET_LOG_FORMAT=json` every line
/// is one JSON object, and a request's line carries its request id, route
/// (the pattern), status, latency and caller key name, never the secret.
#[test]
fn json_logs_are_one_object_a_line_with_the_request_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_command(&dir.path().join("wallet.db"));
    command
        .args(["--bind", "127.0.0.1:0"])
        .env("WALLET_LOG_FORMAT", "json");
    let mut server = Serving::start(command);
    let address = server.wait_until_listening();
    let client = Client::new();
    let response = client
        .get(format!("http://{address}/wallets/user_alice/balance"))
        .header("x-request-id", "json-log-check-1")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = server
            .log()
            .iter()
            .find(|line| line.contains("json-log-check-1"))
        {
            break line.clone();
        }
        assert!(Instant::now() < deadline, "not logged: {:?}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    // Every line so far, the start's included, is one JSON object.
    for seen in server.log() {
        let record: serde_json::Value =
            serde_json::from_str(seen).unwrap_or_else(|_| panic!("not a JSON line: {seen:?}"));
        assert!(
            record.is_object() && record["message"].is_string(),
            "{seen}"
        );
    }
    let record: serde_json::Value = serde_json::from_str(&line).expect("the line is JSON");
    assert_eq!(record["request_id"], "json-log-check-1", "{line}");
    assert_eq!(record["route"], "/wallets/{userId}/balance", "{line}");
    assert_eq!(record["path"], "/wallets/user_alice/balance", "{line}");
    assert_eq!(record["method"], "GET", "{line}");
    assert_eq!(record["status"], 200, "{line}");
    assert!(record["latency_ms"].as_f64().is_some(), "{line}");
    assert_eq!(record["key"], "-", "{line}");
    assert_eq!(record["level"], "INFO", "{line}");
    drop(server);

    // Keyed: the key's name is logged, its secret never.
    let (app, keys) = TestApp::spawn_with_keys(&[("game-server", "read")], &[]);
    let client = client_with_key(Some(&keys[0]));
    let response = send(
        client
            .get(app.url("/wallets/user_alice/balance"))
            .header("x-request-id", "keyed-log-check"),
    );
    assert_eq!(response.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = app
            .logs()
            .into_iter()
            .find(|line| line.contains("keyed-log-check"))
        {
            break line;
        }
        assert!(Instant::now() < deadline, "not logged: {:?}", app.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(line.contains("key=\"game-server\""), "{line}");
    assert!(
        !app.logs().join("\n").contains(&keys[0][3..]),
        "the secret is in the log"
    );
}

/// Goal: a mistyped format is one clear line and a non-zero exit, not a
/// silent fallback.
#[test]
fn an_unknown_log_format_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = without_wallet_variables(&mut wallet_command())
        .args(["verify", "--db"])
        .arg(dir.path().join("wallet.db"))
        .env("WALLET_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("WALLET_LOG_FORMAT must be text or json"),
        "{stderr}"
    );
}

/// Goal: the Grafana dashboard in the repo asks only for metrics the service
/// exposes, so no panel is silently empty after a rename.
#[test]
fn the_dashboard_names_only_metrics_the_service_exposes() {
    if !parser_present() {
        return;
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/wallet.json"),
        )
        .expect("dashboards/wallet.json is readable"),
    )
    .expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    fn collect(value: &serde_json::Value, into: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("expr" | "query", serde_json::Value::String(text)) => {
                            into.push(text.clone())
                        }
                        _ => collect(inner, into),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, into)),
            _ => {}
        }
    }
    collect(&dashboard, &mut expressions);
    let app = TestApp::spawn();
    // One request of each kind that makes a labelled series exist.
    assert_eq!(app.get("/wallets/user_alice/balance").status, 200);
    assert_eq!(
        app.post_spend("user_bob", "GOLD", 1_000_000, "dash-short")
            .status,
        422
    );
    let exposed: BTreeSet<String> = scrape(&app)
        .samples
        .into_iter()
        .map(|sample| sample.name)
        .collect();
    let mut named = BTreeSet::new();
    for expression in &expressions {
        let mut rest = expression.as_str();
        while let Some(at) = rest.find("wallet_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            named.insert(name);
        }
    }
    assert!(named.len() >= 10, "the dashboard names only {named:?}");
    for name in &named {
        assert!(
            exposed.contains(name),
            "the dashboard asks for {name}, which is not exposed"
        );
    }
}
