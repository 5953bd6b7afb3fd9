//! `wallet bench` in its short form: it runs every scenario, counts every
//! answer, checks the ledger afterwards, and reports in JSON; against a
//! running server (`--url`) it writes only when allowed, sends its API key,
//! its writes land and the ledger stays exact, and it never claims the audit
//! it could not run. Speed itself is never asserted: these machines are shared.

use serde_json::Value;

use crate::cli::assert_one_line_failure;
use crate::crash::assert_verify_passes;
use crate::helpers::{run_wallet, wallet_command, without_wallet_variables, TestApp};

/// The arguments of a short run against `url`: two scenarios, few users.
fn short_remote_run(url: &str) -> Vec<&str> {
    vec![
        "bench",
        "--url",
        url,
        "--duration",
        "300ms",
        "--users",
        "5",
        "--connections",
        "3",
        "--scenarios",
        "spend,read",
    ]
}

/// Runs `wallet bench` with `args` and returns its JSON report.
fn bench(args: &[&str]) -> Value {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = run_wallet(&all);
    assert!(status.success(), "wallet bench failed:\n{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON:\n{stdout}"))
}

fn count(result: &Value, status: &str) -> u64 {
    result["statuses"][status].as_u64().unwrap_or(0)
}

#[test]
fn every_scenario_runs_is_counted_and_checked_in_process() {
    let report = bench(&[
        "--duration",
        "300ms",
        "--users",
        "8",
        "--connections",
        "4",
        "--startup-runs",
        "1",
    ]);
    assert_eq!(report["failures"], Value::Array(vec![]), "{report:#}");
    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|result| result["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spend", "topup", "hot", "read", "history", "mixed"]);
    for result in scenarios {
        let name = result["scenario"].as_str().unwrap();
        let requests = result["requests"].as_u64().unwrap();
        assert!(requests > 0, "{name} sent nothing");
        let (ok, created) = (count(result, "200"), count(result, "201"));
        assert_eq!(ok + created, requests, "{name}: {result:#}");
        match name {
            "spend" | "topup" | "hot" => assert_eq!(created, requests, "{name}"),
            "read" | "history" => assert_eq!(ok, requests, "{name}"),
            _ => assert!(ok > 0 && created > 0, "mixed reads and writes: {result:#}"),
        }
        let latency = &result["latency"];
        let p50 = latency["p50_us"].as_u64().unwrap();
        let p99 = latency["p99_us"].as_u64().unwrap();
        assert!(p50 <= p99 && p99 <= latency["max_us"].as_u64().unwrap());
        assert_eq!(result["write_batch_max"], 128);
    }
    assert!(report["peak_rss_kib"].as_u64().unwrap() > 0);
    assert_eq!(report["startup"]["runs"], 1);
    assert!(report["startup"]["median_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn group_commit_sizes_and_ledger_sizes_are_compared_in_one_run() {
    let report = bench(&[
        "--duration",
        "200ms",
        "--users",
        "4",
        "--connections",
        "2",
        "--scenarios",
        "spend",
        "--write-batch-max",
        "1,128",
        "--entries",
        "0,500",
        "--startup-runs",
        "0",
    ]);
    assert_eq!(report["failures"], Value::Array(vec![]), "{report:#}");
    let runs: Vec<(u64, u64)> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| {
            (
                result["ledger_entries_before"].as_u64().unwrap(),
                result["write_batch_max"].as_u64().unwrap(),
            )
        })
        .collect();
    // The seed's 6 entries, then the 500 filled on top of them.
    assert_eq!(runs, [(6, 1), (6, 128), (506, 1), (506, 128)]);
    assert!(report["startup"].is_null());
}

#[test]
fn against_a_running_server_every_write_lands_and_the_ledger_stays_exact() {
    let app = TestApp::spawn();
    let before = app.entry_count();
    let report = bench(&[&short_remote_run(&app.address)[1..], &["--allow-writes"]].concat());
    assert_eq!(report["failures"], Value::Array(vec![]), "{report:#}");
    assert_eq!(report["audited"], false, "its file is not here");
    assert!(
        report["peak_rss_kib"].is_null(),
        "not this process's server"
    );
    let created: u64 = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| count(result, "201"))
        .sum();
    assert!(created > 0);
    // One funding top-up per user, then one entry per 201.
    assert_eq!(app.entry_count() - before, 5 + created as i64);
    // verify reads a consistent snapshot while the server runs.
    assert_verify_passes(&app.db_path);
}

/// Goal: pointed at a server, the bench writes nothing until told it may,
/// and then says what it writes, to which users.
#[test]
fn against_a_running_server_nothing_is_written_without_allow_writes() {
    let app = TestApp::spawn();
    let before = app.entry_count();
    let (status, stdout, stderr) = run_wallet(&short_remote_run(&app.address));
    let line = assert_one_line_failure(status, &stdout, &stderr);
    for told in ["bench_", "5 new users", "GOLD", "spend", "--allow-writes"] {
        assert!(line.contains(told), "{told}: {line}");
    }
    assert_eq!(app.entry_count(), before);

    let (status, stdout, stderr) =
        run_wallet(&[&short_remote_run(&app.address)[..], &["--allow-writes"]].concat());
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("this run writes to"), "{stderr}");
    // The text report claims only the checks it made.
    assert!(stdout.contains("the verify audit were not run"), "{stdout}");
    assert!(!stdout.contains("verify audit agree"), "{stdout}");
}

/// Goal: a keyed server is benched with a key from `--api-key` or
/// `WALLET_BENCH_API_KEY`; without one the run fails in one line, before
/// any write, instead of reporting figures of 401s.
#[test]
fn against_a_keyed_server_the_bench_sends_its_api_key() {
    // The bench outruns the default per-key rate limit on a fast machine; a
    // 429 there would be the limiter working, not the key missing.
    let (app, keys) = TestApp::spawn_with_keys(
        &[("bench", "read,spend,grant")],
        &[
            "--rate-limit-per-second",
            "1000000",
            "--rate-limit-burst",
            "1000000",
        ],
    );
    let run = |key_flag: Option<&str>, key_variable: Option<&str>| {
        let mut command = wallet_command();
        without_wallet_variables(&mut command)
            .args(short_remote_run(&app.address))
            .args(["--allow-writes", "--json"])
            .env("RUST_LOG", "warn");
        if let Some(key) = key_flag {
            command.args(["--api-key", key]);
        }
        if let Some(key) = key_variable {
            command.env("WALLET_BENCH_API_KEY", key);
        }
        let output = command.output().expect("the bench runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let before = app.entry_count();
    let (status, stdout, stderr) = run(None, None);
    let line = assert_one_line_failure(status, &stdout, &stderr);
    assert!(line.contains("401") && line.contains("--api-key"), "{line}");
    assert_eq!(app.entry_count(), before);
    for (flag, variable) in [
        (Some(keys[0].as_str()), None),
        (None, Some(keys[0].as_str())),
    ] {
        let (status, stdout, stderr) = run(flag, variable);
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(!stderr.contains(&keys[0]), "the key is never printed");
    }
}

#[test]
fn the_in_process_server_s_access_log_stays_out_of_the_run() {
    let output = without_wallet_variables(&mut wallet_command())
        .args([
            "bench",
            "--duration",
            "200ms",
            "--users",
            "2",
            "--connections",
            "2",
        ])
        .args(["--scenarios", "read", "--startup-runs", "0"])
        .env("RUST_LOG", "info")
        .output()
        .expect("the bench runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("verify audit agree"), "{stdout}");
    assert!(!stderr.contains("wallet::access"), "{stderr}");
    assert!(!stdout.contains("wallet::access"), "{stdout}");
}

#[test]
fn bad_bench_settings_fail_in_one_line() {
    for args in [
        &["bench", "--duration", "0s"][..],
        &["bench", "--duration", "soon"],
        &["bench", "--connections", "0"],
        &["bench", "--scenarios", "teleport"],
        &["bench", "--write-batch-max", "0"],
        &["bench", "--url", "localhost:8080"],
        &["bench", "--url", "http://127.0.0.1:9", "--entries", "10"],
        &[
            "bench",
            "--url",
            "http://127.0.0.1:9",
            "--api-key",
            "secret\r\nX-Evil: 1",
        ],
        &["bench", "--allow-writes"],
    ] {
        let (status, stdout, stderr) = run_wallet(args);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(line.starts_with("wallet: "), "{args:?}: {line}");
    }
}

/// Goal: the hold scenario (a hold, then its capture) and the balance read
/// of a user with 1000 active holds run clean: every answer 2xx, the
/// ledger holds exactly one entry per capture, balances and the audit agree.
#[test]
fn the_hold_and_held_read_scenarios_run_clean_and_the_ledger_stays_exact() {
    let report = bench(&[
        "--duration",
        "300ms",
        "--users",
        "4",
        "--connections",
        "2",
        "--scenarios",
        "hold,held-read",
        "--startup-runs",
        "0",
    ]);
    assert_eq!(report["failures"], Value::Array(vec![]), "{report:#}");
    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|result| result["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hold", "held-read"]);
    assert!(count(&scenarios[0], "201") >= 2, "{report:#}");
    assert!(count(&scenarios[1], "200") > 0, "{report:#}");
    assert_eq!(report["audited"], true);
}
