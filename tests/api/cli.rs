//! The command line of API.md: flags, environment, the maintenance commands,
//! how bad input is refused (one line, never a panic), and how signals stop
//! the server.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::crash::{
    assert_all_replay, assert_balances_match, assert_verify_passes, entries_of, open_wallets, send,
    users, Workload,
};
use crate::helpers::{
    run_wallet, wallet_command, without_wallet_variables, TestApp, SEED_BALANCES, SEED_ENTRIES,
};

/// A command that should end on its own is killed, and the test failed, after this.
const EXIT_TIME_MAX: Duration = Duration::from_secs(20);

/// `wallet` with a clean environment: no `WALLET_*` or `PORT` from the caller.
fn clean_wallet_command() -> Command {
    let mut command = wallet_command();
    without_wallet_variables(&mut command)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// Runs a command that must end by itself (a `serve` that should refuse to
/// start, for one): (exit status, stdout, stderr). Killed and failed if it
/// is still running after `EXIT_TIME_MAX`.
pub(crate) fn run_to_exit(mut command: Command) -> (ExitStatus, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wallet binary starts");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let status = wait_with_deadline(&mut child, EXIT_TIME_MAX);
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process was still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The command failed with exactly one non-empty line on stderr and no panic;
/// returns that line.
pub(crate) fn assert_one_line_failure(status: ExitStatus, stdout: &str, stderr: &str) -> String {
    assert!(!status.success(), "it succeeded:\n{stdout}\n{stderr}");
    assert!(status.code().is_some(), "it died of a signal: {status}");
    assert!(!stderr.contains("panicked"), "it panicked:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line on stderr:\n{stderr}");
    assert!(!lines[0].trim().is_empty());
    lines[0].to_owned()
}

pub(crate) fn serve_command(db_path: &Path) -> Command {
    let mut command = clean_wallet_command();
    command.arg("serve").arg("--db").arg(db_path);
    command
}

fn cli(args: &[&str], db_path: &Path) -> (ExitStatus, String, String) {
    let db = db_path.to_str().expect("a UTF-8 path");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--db", db]);
    run_wallet(&all)
}

fn open_db(db_path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db_path).expect("the database opens")
}

fn user_version(db_path: &Path) -> i64 {
    open_db(db_path)
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

fn entry_count(db_path: &Path) -> i64 {
    open_db(db_path)
        .query_row("SELECT count(*) FROM ledger_entries", [], |row| row.get(0))
        .unwrap()
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// A `wallet serve` this module starts and stops itself.
pub(crate) struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Serving {
    pub(crate) fn start(mut command: Command) -> Serving {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the wallet binary starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        // Drain stderr for the server's whole life, so logging never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Serving {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The address of the `listening on http://ADDR` line.
    pub(crate) fn wait_until_listening(&mut self) -> String {
        let deadline = Instant::now() + EXIT_TIME_MAX;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        // The host and port, whatever follows them (a
                        // space, or the quote of a JSON line).
                        return rest
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')
                            })
                            .collect();
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "the server never said it was listening:\n{}",
            self.log.join("\n")
        );
    }

    /// Every line logged so far: those read while waiting, and any since.
    pub(crate) fn log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        &self.log
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn wait_for_exit(&mut self) -> ExitStatus {
        wait_with_deadline(&mut self.child, EXIT_TIME_MAX)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /health on `address` answers 200 with `status: ok`.
fn assert_healthy(address: &str) {
    let response = reqwest::blocking::Client::new()
        .get(format!("http://{address}/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap_or_else(|error| panic!("no answer on {address}: {error}"));
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["data"]["status"], "ok");
}

fn send_signal(signal: &str, pid: &str) {
    let sent = Command::new("kill")
        .args([signal, pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

#[test]
fn a_bogus_flag_exits_non_zero_with_one_line_and_no_panic() {
    let (status, stdout, stderr) = run_wallet(&["--bogus-flag"]);
    let line = assert_one_line_failure(status, &stdout, &stderr);
    assert!(line.contains("--bogus-flag"), "{line}");
}

#[test]
fn help_exits_zero_and_describes_every_command() {
    let (status, stdout, stderr) = run_wallet(&["--help"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.lines().count() > 5, "{stdout}");
    for command in ["serve", "migrate", "seed", "verify", "--db", "--bind"] {
        assert!(
            stdout.contains(command),
            "--help does not mention {command}:\n{stdout}"
        );
    }
}

#[test]
fn a_database_in_a_missing_folder_is_refused_in_one_line_naming_the_folder() {
    let db_path = Path::new("/nonexistent-folder/x.db");
    let mut serve = serve_command(db_path);
    serve.args(["--bind", "127.0.0.1:0"]);
    let mut runs = vec![("serve", run_to_exit(serve))];
    for command in ["migrate", "seed", "verify"] {
        runs.push((command, cli(&[command], db_path)));
    }
    for (command, (status, stdout, stderr)) in runs {
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(line.contains("/nonexistent-folder"), "{command}: {line}");
    }
    assert!(!Path::new("/nonexistent-folder").exists());
}

#[test]
fn a_file_that_is_not_a_database_is_refused_in_one_line_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("notes.db");
    let mut state: u64 = 7;
    let text: String = (0..4096)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            if i % 64 == 63 {
                '\n'
            } else {
                char::from(b' ' + ((state >> 33) % 95) as u8)
            }
        })
        .collect();
    std::fs::write(&db_path, &text).unwrap();

    let mut serve = serve_command(&db_path);
    serve.args(["--bind", "127.0.0.1:0"]);
    let mut runs = vec![("serve", run_to_exit(serve))];
    for command in ["migrate", "seed", "verify"] {
        runs.push((command, cli(&[command], &db_path)));
    }
    for (command, (status, stdout, stderr)) in runs {
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(
            line.contains("not a database"),
            "{command} does not say what is wrong: {line}"
        );
        assert_eq!(
            std::fs::read_to_string(&db_path).unwrap(),
            text,
            "{command} changed the file"
        );
    }
}

#[test]
fn a_database_at_schema_version_99_is_refused_by_serve_migrate_seed_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("future.db");
    assert!(cli(&["seed"], &db_path).0.success());
    open_db(&db_path)
        .pragma_update(None, "user_version", 99)
        .unwrap();

    let mut serve = serve_command(&db_path);
    serve.args(["--bind", "127.0.0.1:0"]);
    let mut runs = vec![("serve", run_to_exit(serve))];
    for command in ["migrate", "seed", "verify"] {
        runs.push((command, cli(&[command], &db_path)));
    }
    for (command, (status, stdout, stderr)) in runs {
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(
            line.contains("schema version") && line.contains("99"),
            "{command} does not name the schema version: {line}"
        );
    }
    assert_eq!(user_version(&db_path), 99);
    assert_eq!(entry_count(&db_path), SEED_ENTRIES);
}

#[test]
fn migrate_creates_the_schema_at_version_eight_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let schema = || -> Vec<(String, String)> {
        open_db(&db_path)
            .prepare("SELECT type, name FROM sqlite_schema ORDER BY type, name")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };

    let (status, stdout, stderr) = cli(&["migrate"], &db_path);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("schema at version 8"), "{stdout}");
    assert_eq!(user_version(&db_path), 8);
    let first = schema();
    for table in [
        "accounts",
        "api_keys",
        "asset_types",
        "ledger_entries",
        "postings",
    ] {
        assert!(
            first.contains(&("table".to_owned(), table.to_owned())),
            "no {table} in {first:?}"
        );
    }
    assert!(first.contains(&(
        "trigger".to_owned(),
        "ledger_entries_refuse_update".to_owned()
    )));
    assert_eq!(entry_count(&db_path), 0, "migrate does not seed");

    let (status, stdout, stderr) = cli(&["migrate"], &db_path);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(user_version(&db_path), 8);
    assert_eq!(schema(), first);
}

#[test]
fn seeding_twice_writes_the_seed_once_with_the_balances_of_api_md() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");

    let (status, stdout, stderr) = cli(&["seed"], &db_path);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("6 entries created"), "{stdout}");
    assert_eq!(entry_count(&db_path), SEED_ENTRIES);

    let (status, stdout, stderr) = cli(&["seed"], &db_path);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 entries created"), "{stdout}");
    assert_eq!(entry_count(&db_path), SEED_ENTRIES);

    let keys: Vec<String> = open_db(&db_path)
        .prepare(
            "SELECT r.key FROM ledger_entries e JOIN idempotency_records r ON r.id = e.request_id
              WHERE e.kind = 'TOPUP' ORDER BY e.seq",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        keys,
        [
            "seed:user_alice:GOLD",
            "seed:user_alice:DIAMOND",
            "seed:user_alice:LOYALTY",
            "seed:user_bob:GOLD",
            "seed:user_bob:DIAMOND",
            "seed:user_bob:LOYALTY",
        ]
    );
    let app = TestApp::spawn_on(&db_path);
    let seeded = SEED_BALANCES;
    for (user, asset, balance) in seeded {
        assert_eq!(app.balance(user, asset), balance, "{user} {asset}");
    }
    assert_eq!(
        app.entry_count(),
        SEED_ENTRIES,
        "serving re-seeded the file"
    );
}

#[test]
fn verify_on_a_freshly_seeded_database_exits_zero_and_prints_ok() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    assert!(cli(&["seed"], &db_path).0.success());
    let (status, stdout, stderr) = cli(&["verify"], &db_path);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("entries checked: 6"), "{stdout}");
}

#[test]
fn the_wallet_db_variable_names_the_database_for_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("from-env.db");
    // Run from another empty folder, where the default ./wallet.db would land.
    let workdir = tempfile::tempdir().unwrap();
    let run = |command: &str| {
        let output = clean_wallet_command()
            .arg(command)
            .env("WALLET_DB", &db_path)
            .current_dir(workdir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{command}: {stdout}\n{stderr}");
        stdout
    };

    let migrated = run("migrate");
    assert!(migrated.contains("from-env.db"), "{migrated}");
    assert_eq!(user_version(&db_path), 8);
    run("seed");
    assert_eq!(entry_count(&db_path), SEED_ENTRIES);
    assert!(run("verify").contains("verify: OK"));
    let stray: Vec<PathBuf> = std::fs::read_dir(workdir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(stray.is_empty(), "the default path was used too: {stray:?}");
}

#[test]
fn port_alone_makes_serve_listen_on_every_interface_at_that_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = serve_command(&dir.path().join("wallet.db"));
    // Every interface and no key: allowed only when the operator says so.
    command
        .env("PORT", port.to_string())
        .env("WALLET_INSECURE_NO_AUTH", "true");
    let mut server = Serving::start(command);
    let address = server.wait_until_listening();
    assert_eq!(address, format!("0.0.0.0:{port}"));
    assert_healthy(&format!("127.0.0.1:{port}"));
}

/// Goal: the demo money of API.md never reaches a production ledger. Off
/// loopback an empty database stays empty; `--seed-demo` (or its variable,
/// with any yes spelling) asks for the demo seed there; on loopback the quick
/// start seeds as before.
#[test]
fn the_demo_seed_reaches_an_empty_database_only_on_loopback_or_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let served = |name: &str, args: &[&str], seed_variable: Option<&str>| -> PathBuf {
        let db_path = dir.path().join(name);
        let mut command = serve_command(&db_path);
        command.args(args);
        if let Some(value) = seed_variable {
            command.env("WALLET_SEED_DEMO", value);
        }
        let mut server = Serving::start(command);
        let port = server
            .wait_until_listening()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        assert_healthy(&format!("127.0.0.1:{port}"));
        db_path
    };
    let asset_types = |db_path: &Path| -> i64 {
        open_db(db_path)
            .query_row("SELECT count(*) FROM asset_types", [], |row| row.get(0))
            .unwrap()
    };
    let public = ["--bind", "0.0.0.0:0", "--insecure-no-auth"];

    let production = served("production.db", &public, None);
    assert_eq!((asset_types(&production), entry_count(&production)), (0, 0));
    let declined = served("declined.db", &public, Some("false"));
    assert_eq!((asset_types(&declined), entry_count(&declined)), (0, 0));

    let flagged = served(
        "flagged.db",
        &[&public[..], &["--seed-demo"]].concat(),
        None,
    );
    assert_eq!(
        (asset_types(&flagged), entry_count(&flagged)),
        (3, SEED_ENTRIES)
    );
    let from_variable = served("variable.db", &public, Some("yes"));
    assert_eq!(
        (asset_types(&from_variable), entry_count(&from_variable)),
        (3, SEED_ENTRIES)
    );
    let local = served("local.db", &["--bind", "127.0.0.1:0"], None);
    assert_eq!(
        (asset_types(&local), entry_count(&local)),
        (3, SEED_ENTRIES)
    );

    // A production ledger gets the demo currencies only on demand.
    let (status, stdout, stderr) = cli(&["seed"], &production);
    assert!(status.success(), "{stdout}{stderr}");
    assert_eq!(asset_types(&production), 3);
}

#[test]
fn a_yes_no_variable_that_is_neither_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for variable in ["WALLET_SEED_DEMO", "WALLET_INSECURE_NO_AUTH"] {
        let mut command = serve_command(&dir.path().join("wallet.db"));
        command
            .args(["--bind", "127.0.0.1:0"])
            .env(variable, "maybe");
        let (status, stdout, stderr) = run_to_exit(command);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(line.contains("yes/no"), "{variable}: {line}");
    }
}

#[test]
fn bind_wins_over_port() {
    let dir = tempfile::tempdir().unwrap();
    let (port, bind_port) = (free_port(), free_port());
    let mut command = serve_command(&dir.path().join("wallet.db"));
    command
        .env("PORT", port.to_string())
        .args(["--bind", &format!("127.0.0.1:{bind_port}")]);
    let mut server = Serving::start(command);
    let address = server.wait_until_listening();
    assert_eq!(address, format!("127.0.0.1:{bind_port}"));
    assert_healthy(&address);
}

#[test]
fn a_bad_bind_value_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for bind in ["nonsense", "127.0.0.1:99999", "127.0.0.1:"] {
        let mut command = serve_command(&dir.path().join("wallet.db"));
        command.args(["--bind", bind]);
        let (status, stdout, stderr) = run_to_exit(command);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(line.contains("bind"), "{bind}: {line}");
    }
}

/// Goal: a mistyped subcommand or flag is refused in one line that names
/// the one meant, and a folder given as the database is called a folder.
#[test]
fn a_mistyped_command_suggests_the_right_one_and_a_folder_is_named_as_one() {
    for (args, suggestion) in [
        (&["verfy"][..], "did you mean 'verify'?"),
        (&["keys", "revok", "x"][..], "did you mean 'revoke'?"),
        (&["serve", "--db-path", "x"][..], "did you mean '--db'?"),
    ] {
        let (status, stdout, stderr) = run_wallet(args);
        assert_eq!(status.code(), Some(2), "{args:?}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(suggestion), "{args:?}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().to_str().unwrap();
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", folder]);
    let line = assert_one_line_failure(status, &stdout, &stderr);
    assert!(line.contains("it is a folder"), "{line}");
}

/// Goal: a long command shows how far it has got on a terminal, and says
/// nothing more when its output is piped. `script` (util-linux) gives
/// `wallet verify` a terminal.
#[test]
fn verify_backup_and_restore_show_progress_on_a_terminal_and_nothing_more_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let db = db_path.to_str().unwrap();
    assert!(run_wallet(&["seed", "--db", db]).0.success());
    let binary = env!("CARGO_BIN_EXE_wallet");
    let on_terminal = Command::new("script")
        .args([
            "-qec",
            &format!("'{binary}' verify --db '{db}'"),
            "/dev/null",
        ])
        .output()
        .expect("script (util-linux) runs");
    let shown = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(on_terminal.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("\rverify: {SEED_ENTRIES} entries checked")),
        "{shown:?}"
    );
    assert!(shown.contains("verify: OK"), "{shown:?}");

    let (status, stdout, stderr) = run_wallet(&["verify", "--db", db]);
    assert!(status.success());
    assert!(
        stderr.is_empty(),
        "piped, verify wrote to stderr: {stderr:?}"
    );
    assert!(!stdout.contains('\r'), "{stdout:?}");

    // backup and restore audit what they copy, and say so the same way.
    let copy = dir.path().join("copy.db");
    let copy = copy.to_str().unwrap();
    let restored = dir.path().join("restored.db");
    let restored = restored.to_str().unwrap();
    for (args, shows) in [
        (
            format!("'{binary}' backup '{copy}' --db '{db}'"),
            "backup: auditing the copy",
        ),
        (
            format!("'{binary}' restore '{copy}' --db '{restored}'"),
            "restore: auditing the backup",
        ),
    ] {
        let run = Command::new("script")
            .args(["-qec", &args, "/dev/null"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{args}: {shown}");
        assert!(
            shown.contains(&format!("\r{shows}: {SEED_ENTRIES} entries checked")),
            "{shown:?}"
        );
    }
}

#[test]
fn a_bad_port_value_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for port in ["80a", "65536", "-1"] {
        let mut command = serve_command(&dir.path().join("wallet.db"));
        command.env("PORT", port);
        let (status, stdout, stderr) = run_to_exit(command);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(line.contains("PORT"), "PORT={port}: {line}");
    }
}

/// Goal: a SIGTERM mid-burst is a clean stop. The server finishes what it
/// accepted, answers each with a proper envelope, exits 0, and loses nothing
/// it acknowledged.
#[test]
fn sigterm_during_a_burst_of_writes_exits_zero_and_keeps_every_acknowledged_write() {
    const THREADS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let users = users("graceful", 3);
    let app = TestApp::spawn_on(&db_path);
    let mut acked = open_wallets(&app, &users);
    let workload = Workload::start(&app.client, &app.address, &users, THREADS, "graceful");
    workload.wait_for_acks(50, Duration::from_secs(15));
    let status = app.terminate();
    let tally = workload.finish();

    assert_eq!(status.code(), Some(0), "SIGTERM: {status}");
    assert!(tally.bad_envelopes.is_empty(), "{:?}", tally.bad_envelopes);
    assert!(
        tally.refused.is_empty(),
        "requests in flight were refused: {:?}",
        tally.refused
    );
    acked.extend(tally.acked);

    let app = TestApp::spawn_on(&db_path);
    assert_all_replay(&app, &acked);
    for op in tally.unanswered {
        let reply = send(&app.client, &app.address, &op).expect("a retry is answered");
        // Requests in flight are finished and answered, so one that got no
        // answer was never applied: its retry is new.
        assert_eq!(
            (reply.status, reply.replayed),
            (op.created_status(), false),
            "the unanswered {op:?} was applied; its retry got {reply:?}"
        );
        acked.push((op, reply.data()));
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES + entries_of(&acked));
    assert_balances_match(&app, &users, &acked);
    assert_verify_passes(&db_path);
}

#[test]
fn sigint_stops_the_server_with_exit_status_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_command(&dir.path().join("wallet.db"));
    command.args(["--bind", "127.0.0.1:0"]);
    let mut server = Serving::start(command);
    let address = server.wait_until_listening();
    assert_healthy(&address);
    send_signal("-INT", &server.pid());
    let status = server.wait_for_exit();
    assert_eq!(status.code(), Some(0), "SIGINT: {status}");
}

/// Goal: `wallet assets create` and `list` as API.md's command table says:
/// created or already the same exits 0, another name or decimals exits
/// non-zero with one line, the list is one line per asset in symbol order,
/// and a running server sees a new asset without a restart.
#[test]
fn assets_create_and_list_manage_the_catalogue_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    let create = |symbol: &str, name: &str, decimals: &str| {
        cli(
            &[
                "assets",
                "create",
                "--symbol",
                symbol,
                "--name",
                name,
                "--decimals",
                decimals,
            ],
            &db_path,
        )
    };
    let (status, stdout, stderr) = create("GEMS", "Gems", "2");
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("created asset GEMS"), "{stdout}");
    let (status, stdout, _) = create("GEMS", "Gems", "2");
    assert!(status.success());
    assert!(stdout.contains("exists already"), "{stdout}");
    let (status, _, stderr) = create("GEMS", "Other gems", "2");
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("another name or decimals"), "{stderr}");
    let (status, _, stderr) = create("gems", "Gems", "0");
    assert!(
        !status.success(),
        "a lower-case symbol is refused: {stderr}"
    );
    let (status, _, _) = create("RUBY", "Rubies", "19");
    assert!(!status.success(), "decimals past 18 are refused");

    let (status, stdout, _) = cli(&["assets", "list"], &db_path);
    assert!(status.success());
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "DIAMOND\tDiamonds\t0",
            "GEMS\tGems\t2",
            "GOLD\tGold Coins\t0",
            "LOYALTY\tLoyalty Points\t0"
        ]
    );
    // The running server credits the new asset at once.
    let topup = app.post_topup("gem_collector", "GEMS", 1050, "gems-1");
    assert_eq!(topup.status, 201, "{:?}", topup.body);
    let listed = app.get("/assets");
    let gems = listed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|asset| asset["symbol"] == "GEMS")
        .cloned()
        .unwrap();
    assert_eq!(gems["decimals"], 2);
    assert_verify_passes(&db_path);
}
