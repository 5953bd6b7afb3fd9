//! The PostgreSQL backend as far as it is built, on a real server: `wallet
//! migrate` creates the schema once and refuses a newer or a foreign
//! database; `wallet keys` and `wallet assets` keep the same rules and say
//! the same things as on SQLite; a password never appears in any output;
//! the commands not yet built on PostgreSQL say so in one line; and the
//! schema itself refuses what must never be, whoever writes to it.
//!
//! Each test starts a throwaway cluster of its own from Debian's
//! `postgresql` packages (initdb and pg_ctl in a temporary folder, fsync
//! on, as the `postgres` user when the tests run as root, since PostgreSQL
//! refuses root) and stops it when it ends.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::helpers::{run_wallet, tool_present};

/// A PostgreSQL cluster in a temporary folder, stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The tests run as root: the server runs as `postgres`.
    as_postgres: bool,
}

impl Cluster {
    /// A started cluster, or None when the server's programs are missing
    /// (skipped on a developer's machine, a failure under CI).
    pub fn start() -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|version| version.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
        let postgres_user = Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|output| output.status.success());
        let present = bin.is_some() && (!root || postgres_user);
        if !tool_present(
            present,
            "the PostgreSQL server (initdb, pg_ctl, and a postgres user to run it as root)",
            "apt-get install postgresql",
        ) {
            return None;
        }
        let cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            bin: bin.unwrap(),
            port: TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            as_postgres: root,
        };
        if root {
            let status = Command::new("chown")
                .args(["postgres", cluster.dir.path().to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = cluster.dir.path().join("data");
        let output = cluster.server_program(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "wallet",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        assert!(output.status.success(), "initdb: {output:?}");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            cluster.port,
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("server.log");
        let output = cluster.server_program(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(output.status.success(), "pg_ctl start: {output:?}");
        Some(cluster)
    }

    /// Stops the server at once (`-m immediate`: as a crash, recovery at
    /// the next start), waits `down`, and starts it again on the same port.
    pub fn crash_and_restart(&self, down: Duration) {
        self.crash();
        std::thread::sleep(down);
        self.start_again();
    }

    /// Stops the server at once, as a crash.
    pub fn crash(&self) {
        let data = self.dir.path().join("data");
        let stop = [
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ];
        let output = self.server_program("pg_ctl", &stop);
        assert!(output.status.success(), "pg_ctl stop: {output:?}");
    }

    /// Starts a crashed or stopped server again on the same port.
    pub fn start_again(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let output = self.server_program(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(output.status.success(), "pg_ctl start: {output:?}");
    }

    fn server_program(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// `psql` on `database`, stopping at the first error.
    pub fn psql(&self, database: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &self.port.to_string(), "-U", "wallet", "-d", database])
            .args(["-c", sql])
            .output()
            .unwrap()
    }

    /// The one value `sql` selects.
    pub fn value(&self, database: &str, sql: &str) -> String {
        let output = self.psql(database, sql);
        assert!(output.status.success(), "{sql}: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// A new, empty database, and its URL with a password in it (the
    /// cluster trusts local connections, so any password is accepted).
    pub fn database(&self, name: &str) -> String {
        let output = self.psql("postgres", &format!("CREATE DATABASE {name}"));
        assert!(output.status.success(), "{output:?}");
        format!(
            "postgres://wallet:{PASSWORD}@127.0.0.1:{}/{name}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.server_program(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

pub const PASSWORD: &str = "pw-s3cret-never-shown";

/// Goal: `wallet migrate` on a `postgres://` URL creates the schema in one
/// transaction, a second run changes nothing, and a database at a newer
/// version or holding tables that are not a wallet's is refused in one line
/// and left as it was.
#[test]
fn migrate_creates_the_schema_once_and_refuses_a_newer_or_a_foreign_database() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.database("ledger");
    for _ in 0..2 {
        let (status, stdout, stderr) = run_wallet(&["migrate", "--db", &url]);
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("schema at version 4"), "{stdout}");
        assert!(!format!("{stdout}{stderr}").contains(PASSWORD));
    }
    assert_eq!(
        cluster.value("ledger", "SELECT version FROM wallet_schema_version"),
        "4"
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(name, ',' ORDER BY name) FROM entry_kinds"
        ),
        "BONUS,REVERSAL,SPEND,TOPUP,TRANSFER"
    );

    let newer = cluster.psql("ledger", "UPDATE wallet_schema_version SET version = 99");
    assert!(newer.status.success());
    let (status, _, stderr) = run_wallet(&["migrate", "--db", &url]);
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("newer than this wallet's"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert_eq!(
        cluster.value("ledger", "SELECT version FROM wallet_schema_version"),
        "99"
    );

    let foreign = cluster.database("foreign_app");
    assert!(cluster
        .psql("foreign_app", "CREATE TABLE orders (id int)")
        .status
        .success());
    let (status, _, stderr) = run_wallet(&["migrate", "--db", &foreign]);
    assert!(!status.success());
    assert!(stderr.contains("not a wallet's"), "{stderr}");
    assert_eq!(
        cluster.value(
            "foreign_app",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "1"
    );
}

/// Goal: a password in the URL appears in no output: not when the server
/// cannot be reached (answered within seconds, in one line, by every
/// command that runs on PostgreSQL), not in the refusal of backup and
/// restore, not in the refusal of a URL that does not parse.
#[test]
fn a_password_never_appears_and_an_unreachable_database_is_one_line() {
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://wallet:{PASSWORD}@127.0.0.1:{closed_port}/ledger");
    let started = Instant::now();
    let (status, stdout, stderr) = run_wallet(&["migrate", "--db", &unreachable]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach the database"), "{stderr}");
    assert!(stderr.contains("wallet:***@"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains(PASSWORD));

    for args in [
        vec!["keys", "list", "--db", &unreachable],
        vec!["assets", "list", "--db", &unreachable],
        vec!["serve", "--db", &unreachable],
        vec!["seed", "--db", &unreachable],
        vec!["verify", "--db", &unreachable],
    ] {
        let (status, stdout, stderr) = run_wallet(&args);
        assert!(!status.success(), "{args:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach the database"),
            "{args:?}: {stderr}"
        );
        assert!(!format!("{stdout}{stderr}").contains(PASSWORD), "{args:?}");
    }
    for args in [
        vec!["backup", "/tmp/never-written.db", "--db", &unreachable],
        vec!["restore", "/tmp/never-read.db", "--db", &unreachable],
    ] {
        let (status, _, stderr) = run_wallet(&args);
        assert!(!status.success(), "{args:?}");
        assert!(
            stderr.contains("PostgreSQL's own tools"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(PASSWORD), "{args:?}");
    }
    let malformed = format!("postgres://wallet:{PASSWORD}@127.0.0.1:notaport/ledger");
    let (status, _, stderr) = run_wallet(&["migrate", "--db", &malformed]);
    assert_eq!(status.code(), Some(2));
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

/// The ids the schema test writes with.
const GOLD: &str = "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a01";

/// The entry the statements before it in the transaction wrote.
const THIS_ENTRY: &str = "currval(pg_get_serial_sequence('ledger_entries', 'seq'))";

/// A request record and an entry of `amount` from account `debit` to
/// `credit`, all of it paid, in one statement list, without its postings
/// (which name it as `THIS_ENTRY`). `n` makes its key and id its own.
fn entry(n: i64, kind: &str, debit: i64, credit: i64, amount: i64) -> String {
    entry_of_parts(
        n,
        kind,
        debit,
        credit,
        amount,
        &format!("'[{{\"kind\":\"PAID\",\"amount\":{amount}}}]'"),
        amount,
    )
}

/// As `entry`, with `parts` (an SQL expression) as its parts and `paid` as
/// the PAID part stored beside them.
fn entry_of_parts(
    n: i64,
    kind: &str,
    debit: i64,
    credit: i64,
    amount: i64,
    parts: &str,
    paid: i64,
) -> String {
    let seq = n;
    format!(
        "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
              VALUES (0, 'k{seq}', '{{}}', 1, {seq});
         INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                     credit_account_id, amount, request_id, created_at, parts, paid)
              VALUES ('0190f0a0-0000-7000-8000-{seq:012}', '{kind}', '{GOLD}', {debit},
                      {credit}, {amount}, currval('idempotency_records_id_seq'), {seq},
                      {parts}, {paid});"
    )
}

/// Goal: the schema on PostgreSQL refuses what must never be, as SQLite's
/// does, whoever writes: a user below zero or below what is held, an entry
/// or a posting changed or deleted, a posting that is not a leg of its
/// entry or does not continue its account's balance, a reversal of more
/// than is left, a hold that does not fit or closes twice, a record of an
/// unknown caller. What is refused leaves every figure as it was; what is
/// accepted moves the user's row, the Treasury's totals and the feed.
#[test]
fn the_schema_refuses_what_must_never_be() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.database("ledger");
    let (status, _, stderr) = run_wallet(&["migrate", "--db", &url]);
    assert!(status.success(), "{stderr}");
    let run = |sql: &str| cluster.psql("ledger", &format!("BEGIN; {sql} COMMIT;"));
    // The Treasury (account 1) tops ann (account 2) up by 50.
    let setup = run(&format!(
        "INSERT INTO asset_types (id, symbol, name, created_at) VALUES ('{GOLD}', 'GOLD', 'Gold', 1);
         INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
              VALUES ('SYSTEM', NULL, '{GOLD}', 1), ('USER', 'ann', '{GOLD}', 1);
         {} INSERT INTO postings VALUES (1, {E}, -50, NULL, NULL), (2, {E}, 50, 50, 50);",
        entry(1, "TOPUP", 1, 2, 50),
        E = THIS_ENTRY
    ));
    assert!(setup.status.success(), "{setup:?}");
    let figures = || {
        cluster.value(
            "ledger",
            "SELECT (SELECT balance || '/' || held || '/' || paid || '/' || held_paid
                       FROM accounts WHERE id = 2) || ' '
                 || (SELECT sum(treasury) || '/' || sum(topup) || '/' || sum(holders)
                            || '/' || sum(held) || '/' || sum(paid) FROM asset_totals) || ' '
                 || (SELECT count(*) FROM events) || ' '
                 || (SELECT count(*) FROM ledger_entries)",
        )
    };
    assert_eq!(figures(), "50/0/50/0 -50/50/1/0/50 1 1");

    let refused =
        [
            ("UPDATE ledger_entries SET amount = 1;", "append-only"),
            ("DELETE FROM postings;", "append-only"),
            ("DELETE FROM idempotency_records;", "append-only"),
            ("UPDATE asset_types SET symbol = 'SILVER';", "never renamed"),
            (
                &format!(
                "{} INSERT INTO postings VALUES (2, {E}, -60, -10, -10), (1, {E}, 60, NULL, NULL);",
                entry(2, "SPEND", 2, 1, 60),
                E = THIS_ENTRY
            ),
                "no_user_below_zero",
            ),
            (
                &format!(
                    "{} INSERT INTO postings VALUES (2, {E}, -10, 41, 41);",
                    entry(3, "SPEND", 2, 1, 10),
                    E = THIS_ENTRY
                ),
                "continue its account's balance",
            ),
            (
                &format!(
                    "{} INSERT INTO postings VALUES (2, {E}, -11, 39, 39);",
                    entry(4, "SPEND", 2, 1, 10),
                    E = THIS_ENTRY
                ),
                "one leg of its entry",
            ),
            (
                "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
                  VALUES (7, 'k', '{}', 0, 1);",
                "caller must be an api key",
            ),
            (
                &format!(
                "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
                      VALUES (0, 'r', '{{}}', 1, 5);
                 INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                             credit_account_id, amount, request_id, created_at, reverses_seq,
                             reversed_after, parts, paid)
                      VALUES (gen_random_uuid(), 'REVERSAL', '{GOLD}', 2, 1, 51,
                              currval('idempotency_records_id_seq'), 5, 1, 51,
                              '[{{\"kind\":\"PAID\",\"amount\":51}}]', 51);"
            ),
                "undo what is left",
            ),
            (
                &format!(
                "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
                      VALUES (0, 'h', '{{}}', 0, 5);
                 INSERT INTO holds (id, account_id, user_id, asset_type_id, amount, status,
                                    request_id, expires_at, created_at, parts)
                      VALUES (gen_random_uuid(), 2, 'ann', '{GOLD}', 51, 'HELD',
                              currval('idempotency_records_id_seq'), 100, 5,
                              '[{{\"kind\":\"PAID\",\"amount\":51}}]');"
            ),
                "within its available balance",
            ),
            // Parts: every entry names them and its paid part, within its
            // amount; a user's paid part stays within its balance, and its
            // postings carry it. (That the parts add up, `wallet verify`
            // checks: see the migration test.)
            (
                &format!(
                "{} INSERT INTO postings VALUES (2, {E}, -10, 40, 40), (1, {E}, 10, NULL, NULL);",
                entry_of_parts(9, "SPEND", 2, 1, 10, "NULL", 10),
                E = THIS_ENTRY
            ),
                "null value in column \"parts\"",
            ),
            (
                &format!(
                "{} INSERT INTO postings VALUES (2, {E}, -10, 40, 40), (1, {E}, 10, NULL, NULL);",
                entry_of_parts(10, "SPEND", 2, 1, 10, "'[{\"kind\":\"PAID\",\"amount\":10}]'", 11),
                E = THIS_ENTRY
            ),
                "parts_paid_within_the_amount",
            ),
            (
                &format!(
                "{} INSERT INTO postings VALUES (2, {E}, -10, 40, 50), (1, {E}, 10, NULL, NULL);",
                entry_of_parts(11, "SPEND", 2, 1, 10, "'[{\"kind\":\"FREE\",\"amount\":10}]'", 0),
                E = THIS_ENTRY
            ),
                "parts_within_the_balance",
            ),
            (
                &format!(
                "{} INSERT INTO postings VALUES (2, {E}, -10, 40, 41), (1, {E}, 10, NULL, NULL);",
                entry(12, "SPEND", 2, 1, 10),
                E = THIS_ENTRY
            ),
                "continue its account's balance and paid part",
            ),
            (
                &format!(
                "{} INSERT INTO postings VALUES (2, {E}, -10, 40, 40), (1, {E}, 10, NULL, -40);",
                entry(13, "SPEND", 2, 1, 10),
                E = THIS_ENTRY
            ),
                "keeps no running balance",
            ),
            (
                &format!(
                "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
                      VALUES (0, 'h2', '{{}}', 0, 5);
                 INSERT INTO holds (id, account_id, user_id, asset_type_id, amount, status,
                                    request_id, expires_at, created_at, parts)
                      VALUES (gen_random_uuid(), 2, 'ann', '{GOLD}', 10, 'HELD',
                              currval('idempotency_records_id_seq'), 100, 5,
                              '[{{\"kind\":\"FREE\",\"amount\":10}}]');"
            ),
                "parts_within_what_is_held",
            ),
        ];
    for (sql, expected) in refused {
        let output = run(sql);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "accepted: {sql}");
        assert!(stderr.contains(expected), "{sql}: {stderr}");
        assert_eq!(figures(), "50/0/50/0 -50/50/1/0/50 1 1", "after {sql}");
    }

    // A hold of 30 fits; ann may then spend 20 but not 21, since 30 is held.
    let hold = run(&format!(
        "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
              VALUES (0, 'hold', '{{}}', 0, 6);
         INSERT INTO holds (id, account_id, user_id, asset_type_id, amount, status,
                            request_id, expires_at, created_at, parts)
              VALUES ('0190f0a0-0000-7000-8000-0000000000aa', 2, 'ann', '{GOLD}', 30, 'HELD',
                      currval('idempotency_records_id_seq'), 100, 6,
                      '[{{\"kind\":\"PAID\",\"amount\":30}}]');"
    ));
    assert!(hold.status.success(), "{hold:?}");
    assert_eq!(figures(), "50/30/50/30 -50/50/1/30/50 2 1");
    let too_much = run(&format!(
        "{} INSERT INTO postings VALUES (2, {E}, -21, 29, 29), (1, {E}, 21, NULL, NULL);",
        entry(7, "SPEND", 2, 1, 21),
        E = THIS_ENTRY
    ));
    assert!(String::from_utf8_lossy(&too_much.stderr).contains("no_debit_below_what_is_held"));
    let spend = run(&format!(
        "{} INSERT INTO postings VALUES (2, {E}, -20, 30, 30), (1, {E}, 20, NULL, NULL);",
        entry(8, "SPEND", 2, 1, 20),
        E = THIS_ENTRY
    ));
    assert!(spend.status.success(), "{spend:?}");
    assert_eq!(figures(), "30/30/30/30 -30/50/1/30/30 3 2");

    // The hold closes once; closing gives back what it set aside.
    let close = "UPDATE holds SET status = 'VOIDED', closed_at = 7;";
    assert!(run(close).status.success());
    assert_eq!(figures(), "30/0/30/0 -30/50/1/0/30 4 2");
    let again = run("UPDATE holds SET status = 'EXPIRED', closed_at = 100;");
    assert!(String::from_utf8_lossy(&again.stderr).contains("closes once"));
    assert!(String::from_utf8_lossy(&run("DELETE FROM holds;").stderr).contains("never deleted"));

    // The feed: every entry and hold change, numbered in commit order.
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(coalesce(type, 'entry'), ',' ORDER BY feed_seq) FROM events"
        ),
        "entry,hold.created,entry,hold.voided"
    );
}

/// Goal: the two claims the schema makes for many instances, on two
/// connections at once. A write for one user does not wait on a
/// transaction still open for another user (it locks no row every write
/// locks: not the Treasury's account, not its totals' row), and the event
/// feed numbers transactions in the order they commit, not in the order
/// their entries were numbered.
#[test]
fn writers_on_two_connections_share_no_row_and_the_feed_follows_commit_order() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.database("ledger");
    let (status, _, stderr) = run_wallet(&["migrate", "--db", &url]);
    assert!(status.success(), "{stderr}");
    let setup = cluster.psql(
        "ledger",
        &format!(
            "INSERT INTO asset_types (id, symbol, name, created_at) VALUES ('{GOLD}', 'GOLD', 'Gold', 1);
             INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
                  VALUES ('SYSTEM', NULL, '{GOLD}', 1), ('USER', 'ann', '{GOLD}', 1),
                         ('USER', 'ben', '{GOLD}', 1);"
        ),
    );
    assert!(setup.status.success(), "{setup:?}");

    // The first writer numbers its entry, then stays open.
    let mut first = Command::new(cluster.bin.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &cluster.port.to_string(),
            "-U",
            "wallet",
            "-d",
            "ledger",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_input = first.stdin.take().unwrap();
    use std::io::Write as _;
    writeln!(
        first_input,
        "SET application_name = 'first_writer'; BEGIN; {} INSERT INTO postings VALUES (1, {E}, -5, NULL, NULL), (2, {E}, 5, 5, 5);",
        entry(1, "TOPUP", 1, 2, 5),
        E = THIS_ENTRY
    )
    .unwrap();
    first_input.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.value(
        "ledger",
        "SELECT count(*) FROM pg_stat_activity
          WHERE application_name = 'first_writer' AND state = 'idle in transaction'",
    ) != "1"
    {
        assert!(
            Instant::now() < deadline,
            "the first writer did not get to its write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The second writer, on a connection whose totals row is not the
    // first's, writes for another user and commits, with no lock waited
    // for (lock_timeout would refuse it).
    let mut second = None;
    for _ in 0..32 {
        let output = cluster.psql(
            "ledger",
            &format!(
                "SET lock_timeout = '2s';
                 DO $$ BEGIN
                     IF wallet_shard() = (SELECT (pid % 16)::smallint FROM pg_stat_activity
                                           WHERE application_name = 'first_writer') THEN
                         RAISE EXCEPTION 'same totals row';
                     END IF;
                 END $$;
                 BEGIN; {} INSERT INTO postings VALUES (1, {E}, -7, NULL, NULL), (3, {E}, 7, 7, 7); COMMIT;",
                entry(2, "TOPUP", 1, 3, 7),
                E = THIS_ENTRY
            ),
        );
        if !String::from_utf8_lossy(&output.stderr).contains("same totals row") {
            second = Some(output);
            break;
        }
    }
    let second = second.expect("32 connections all had the first writer's totals row");
    assert!(
        second.status.success(),
        "the second writer waited on the first: {second:?}"
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'first_writer' AND state = 'idle in transaction'"
        ),
        "1",
        "the first writer was still open while the second committed"
    );

    writeln!(first_input, "COMMIT;").unwrap();
    drop(first_input);
    let finished = first.wait_with_output().unwrap();
    assert!(finished.status.success(), "{finished:?}");

    // Numbered 5 then 7, committed 7 then 5: the feed follows the commits.
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(amount::text, ',' ORDER BY seq) FROM ledger_entries"
        ),
        "5,7"
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(e.amount::text, ',' ORDER BY f.feed_seq)
               FROM events f JOIN ledger_entries e ON e.seq = f.entry_seq"
        ),
        "7,5"
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT sum(treasury) || '/' || sum(topup) || '/' || sum(holders) FROM asset_totals"
        ),
        "-12/12/2"
    );
}

/// Goal: `wallet keys` and `wallet assets` on PostgreSQL keep the rules
/// and the words they have on SQLite: a key's secret printed once, alone
/// on stdout, its name never reused, a revocation final (and each change
/// moves the generation every instance reloads on); an asset created once,
/// found the same again, refused with other settings, with its Treasury
/// and its totals' rows.
#[test]
fn keys_and_assets_commands_keep_their_rules_on_postgresql() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.database("ledger");
    assert!(run_wallet(&["migrate", "--db", &url]).0.success());
    let wallet = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--db", &url]);
        run_wallet(&all)
    };

    let (status, secret, stderr) =
        wallet(&["keys", "create", "--name", "game", "--scopes", "read,spend"]);
    assert!(status.success(), "{stderr}");
    let secret = secret.trim();
    assert!(secret.starts_with("wk_") && secret.len() == 51, "{secret}");
    let stored = cluster.value(
        "ledger",
        "SELECT count(*) FROM api_keys WHERE name = 'game'",
    );
    assert_eq!(stored, "1");
    assert_eq!(
        cluster.value(
            "ledger",
            &format!(
                "SELECT secret_sha256 = sha256(convert_to('{secret}', 'UTF8'))
                   FROM api_keys WHERE name = 'game'"
            )
        ),
        "t",
        "only the secret's digest is stored"
    );
    let (status, _, stderr) = wallet(&["keys", "create", "--name", "game", "--scopes", "read"]);
    assert!(!status.success());
    assert!(stderr.contains("exists already"), "{stderr}");
    let (status, listed, _) = wallet(&["keys", "list"]);
    assert!(status.success());
    assert!(listed.contains("game\tread,spend"), "{listed}");
    assert!(!listed.contains(secret));
    let (status, _, stderr) = wallet(&["keys", "revoke", "game"]);
    assert!(status.success(), "{stderr}");
    let (status, _, stderr) = wallet(&["keys", "revoke", "game"]);
    assert!(!status.success());
    assert!(stderr.contains("no active key is named game"), "{stderr}");
    assert_eq!(
        cluster.value("ledger", "SELECT generation FROM api_keys_generation"),
        "2",
        "a creation and a revocation, each a new generation"
    );

    let create = |name: &str| {
        wallet(&[
            "assets",
            "create",
            "--symbol",
            "GEMS",
            "--name",
            name,
            "--decimals",
            "2",
        ])
    };
    let (status, stdout, stderr) = create("Gems");
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("created asset GEMS (Gems)"), "{stdout}");
    let (status, stdout, _) = create("Gems");
    assert!(status.success());
    assert!(
        stdout.contains("exists already with these settings"),
        "{stdout}"
    );
    let (status, _, stderr) = create("Other gems");
    assert!(!status.success());
    assert!(stderr.contains("the asset was not created"), "{stderr}");
    let (status, listed, _) = wallet(&["assets", "list"]);
    assert!(status.success());
    assert_eq!(listed.lines().count(), 2, "a header and GEMS: {listed}");
    assert!(
        listed.contains("GEMS") && listed.contains("Gems"),
        "{listed}"
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT (SELECT count(*) FROM accounts WHERE owner_type = 'SYSTEM') || '/'
                 || (SELECT count(*) FROM asset_totals) || '/'
                 || (SELECT decimals FROM asset_types WHERE symbol = 'GEMS')"
        ),
        "1/16/2"
    );
}

/// A version 2 entry (no parts yet) of `amount` from `debit` to `credit`,
/// with its request record and its postings as version 2's writer wrote
/// them (a user's with its balance after, a Treasury's with none), and for
/// a REVERSAL the entry it reverses and the total reversed after it.
fn version_2_entry(
    n: i64,
    kind: &str,
    (debit, debit_after): (i64, Option<i64>),
    (credit, credit_after): (i64, Option<i64>),
    amount: i64,
    reverses: Option<(i64, i64)>,
) -> String {
    let shown = |after: Option<i64>| after.map_or("NULL".to_owned(), |after| after.to_string());
    let (reverses_seq, reversed_after) = match reverses {
        Some((seq, after)) => (seq.to_string(), after.to_string()),
        None => ("NULL".to_owned(), "NULL".to_owned()),
    };
    format!(
        "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
              VALUES (0, 'k{n}', '{{}}', 1, {n});
         INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                     credit_account_id, amount, request_id, created_at, reverses_seq,
                     reversed_after)
              VALUES ('0190f0a0-0000-7000-8000-{n:012}', '{kind}', '{GOLD}', {debit},
                      {credit}, {amount}, currval('idempotency_records_id_seq'), {n},
                      {reverses_seq}, {reversed_after});
         INSERT INTO postings VALUES ({debit}, {E}, -{amount}, {}), ({credit}, {E}, {amount}, {});",
        shown(debit_after),
        shown(credit_after),
        E = THIS_ENTRY
    )
}

/// Goal: a ledger written at schema version 2 (top-ups, bonuses, a spend,
/// a transfer, reversals of each way, a HELD hold and a closed one) is
/// split into paid and free parts by `wallet migrate` as API.md says
/// (replayed in order, debits free first, a reversal giving back the part
/// taken last, the HELD hold setting aside what is available), audits
/// clean, answers its parts, and takes new writes that keep them.
#[test]
fn a_version_2_ledger_migrates_into_paid_and_free_parts() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.database("ledger");
    for sql in [
        include_str!("../../migrations/postgres/001_ledger.sql"),
        include_str!("../../migrations/postgres/002_limits.sql"),
        "INSERT INTO wallet_schema_version (version) VALUES (2);",
    ] {
        let output = cluster.psql("ledger", sql);
        assert!(output.status.success(), "{output:?}");
    }
    // Treasury 1, ann 2, ben 3. Free first (no rules stored).
    let (t, ann, ben) = (1, 2, 3);
    let ledger = [
        version_2_entry(1, "TOPUP", (t, None), (ann, Some(100)), 100, None),
        version_2_entry(2, "BONUS", (t, None), (ann, Some(150)), 50, None),
        // Free 50, then paid 20.
        version_2_entry(3, "SPEND", (ann, Some(80)), (t, None), 70, None),
        version_2_entry(4, "BONUS", (t, None), (ann, Some(110)), 30, None),
        // Free 30, then paid 10: ben has paid 10, free 30.
        version_2_entry(5, "TRANSFER", (ann, Some(70)), (ben, Some(40)), 40, None),
        // Gives back the spend's part taken last: paid 20.
        version_2_entry(6, "REVERSAL", (t, None), (ann, Some(90)), 20, Some((3, 20))),
        version_2_entry(7, "TOPUP", (t, None), (ben, Some(65)), 25, None),
        // Takes back the top-up's part first: paid 10.
        version_2_entry(8, "REVERSAL", (ann, Some(80)), (t, None), 10, Some((1, 10))),
        // Paid 10, then free 5, from ben to ann.
        version_2_entry(
            9,
            "REVERSAL",
            (ben, Some(50)),
            (ann, Some(95)),
            15,
            Some((5, 15)),
        ),
    ]
    .concat();
    let written = cluster.psql(
        "ledger",
        &format!(
            "BEGIN;
             INSERT INTO asset_types (id, symbol, name, created_at) VALUES ('{GOLD}', 'GOLD', 'Gold', 1);
             INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
                  VALUES ('SYSTEM', NULL, '{GOLD}', 1), ('USER', 'ann', '{GOLD}', 1),
                         ('USER', 'ben', '{GOLD}', 1);
             {ledger}
             INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
                  VALUES (0, 'hold-ann', '{{}}', 0, 10);
             INSERT INTO holds (id, account_id, user_id, asset_type_id, amount, status,
                                request_id, expires_at, created_at)
                  VALUES ('0190f0a0-0000-7000-8000-0000000000aa', 2, 'ann', '{GOLD}', 30, 'HELD',
                          currval('idempotency_records_id_seq'), 4102444800000, 10);
             INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
                  VALUES (0, 'hold-ben', '{{}}', 0, 11);
             INSERT INTO holds (id, account_id, user_id, asset_type_id, amount, status,
                                request_id, expires_at, created_at)
                  VALUES ('0190f0a0-0000-7000-8000-0000000000bb', 3, 'ben', '{GOLD}', 10, 'HELD',
                          currval('idempotency_records_id_seq'), 4102444800000, 11);
             UPDATE holds SET status = 'VOIDED', closed_at = 12 WHERE user_id = 'ben';
             COMMIT;"
        ),
    );
    assert!(written.status.success(), "{written:?}");

    let (status, stdout, stderr) = run_wallet(&["migrate", "--db", &url]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("schema at version 4"), "{stdout}");
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", &url]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("verify: OK"), "{stdout}");
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(parts, ' ' ORDER BY seq) FROM ledger_entries"
        ),
        [
            r#"[{"kind":"PAID","amount":100}]"#,
            r#"[{"kind":"FREE","amount":50}]"#,
            r#"[{"kind":"FREE","amount":50},{"kind":"PAID","amount":20}]"#,
            r#"[{"kind":"FREE","amount":30}]"#,
            r#"[{"kind":"FREE","amount":30},{"kind":"PAID","amount":10}]"#,
            r#"[{"kind":"PAID","amount":20}]"#,
            r#"[{"kind":"PAID","amount":25}]"#,
            r#"[{"kind":"PAID","amount":10}]"#,
            r#"[{"kind":"PAID","amount":10},{"kind":"FREE","amount":5}]"#,
        ]
        .join(" ")
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(parts, ' ' ORDER BY seq) FROM holds"
        ),
        r#"[{"kind":"FREE","amount":5},{"kind":"PAID","amount":25}] []"#
    );
    // Each account's paid part, and held; each user posting's running paid
    // total; the asset's paid total.
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(id || ':' || balance || '/' || paid || '/' || held || '/' || held_paid,
                               ' ' ORDER BY id) FROM accounts"
        ),
        "1:0/0/0/0 2:95/90/30/25 3:50/25/0/0"
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(coalesce(paid_after::text, '-'), ',' ORDER BY entry_seq, account_id)
               FROM postings"
        ),
        "-,100,-,100,-,80,-,80,70,10,-,90,-,35,-,80,90,25"
    );
    assert_eq!(
        cluster.value("ledger", "SELECT sum(paid) FROM asset_totals"),
        "115"
    );

    let app = crate::helpers::TestApp::start(std::path::Path::new(&url), &[], None);
    let balance = app.get("/wallets/ann/balance");
    let gold = &balance.data()["balances"][0];
    assert_eq!(
        (
            &gold["balance"],
            &gold["paid"],
            &gold["free"],
            &gold["held"]
        ),
        (
            &serde_json::json!(95),
            &serde_json::json!(90),
            &serde_json::json!(5),
            &serde_json::json!(30)
        ),
        "{:?}",
        balance.body
    );
    let supply = app.get("/assets/GOLD/supply");
    assert_eq!(
        (
            &supply.data()["outstanding"],
            &supply.data()["paid"],
            &supply.data()["free"]
        ),
        (
            &serde_json::json!(145),
            &serde_json::json!(115),
            &serde_json::json!(30)
        ),
        "{:?}",
        supply.body
    );
    // What the hold set aside is not spent: 60 of the 65 paid available.
    let spent = app.post_spend("ann", "GOLD", 60, "spend-after");
    assert_eq!(spent.status, 201, "{:?}", spent.body);
    assert_eq!(
        spent.data()["transaction"]["parts"],
        serde_json::json!([{"kind": "PAID", "amount": 60}])
    );
    // A capture takes the hold's own parts, in spend order.
    let captured = app.post(
        "/holds/0190f0a0-0000-7000-8000-0000000000aa/capture",
        &serde_json::json!({"idempotencyKey": "capture-after", "amount": 20}),
    );
    assert_eq!(captured.status, 201, "{:?}", captured.body);
    assert_eq!(
        captured.data()["transaction"]["parts"],
        serde_json::json!([{"kind": "FREE", "amount": 5}, {"kind": "PAID", "amount": 15}])
    );
    let history = app.get("/wallets/ann/transactions?limit=1");
    assert_eq!(
        history.data()["items"][0]["parts"],
        captured.data()["transaction"]["parts"]
    );
    drop(app);
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT balance || '/' || paid || '/' || held || '/' || held_paid
               FROM accounts WHERE id = 2"
        ),
        "15/15/0/0"
    );
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", &url]);
    assert!(status.success(), "{stdout}\n{stderr}");
    // A paid part changed behind the service's back is found.
    let changed = cluster.psql("ledger", "UPDATE accounts SET paid = 14 WHERE id = 2");
    assert!(changed.status.success(), "{changed:?}");
    let (status, stdout, _) = run_wallet(&["verify", "--db", &url]);
    assert!(!status.success(), "{stdout}");
    assert!(
        stdout.contains("account 2: stores a paid part of 14 but the entries give 15"),
        "{stdout}"
    );
}

/// Goal: on PostgreSQL a debit takes the parts in its asset's spend order
/// as the rules now say (`paid-first` or `free-first`), a hold sets its
/// parts aside in that order, and the balance and the supply show them.
#[test]
fn a_debit_takes_the_parts_in_the_assets_spend_order() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = crate::instances::instances(&cluster, "spend_order", 1, &[]);
    let app = &apps[0];
    let bonus = app.post_bonus("user_alice", "GOLD", 100, "bonus-1");
    assert_eq!(bonus.status, 201, "{:?}", bonus.body);
    let parts =
        |response: &crate::helpers::ApiResponse| response.data()["transaction"]["parts"].clone();
    assert_eq!(
        parts(&bonus),
        serde_json::json!([{"kind": "FREE", "amount": 100}])
    );
    let set = |order: &str| {
        let answer = app.put(
            "/assets/GOLD/rules",
            &serde_json::json!({"spendOrder": order}),
        );
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    };
    set("paid-first");
    let spent = app.post_spend("user_alice", "GOLD", 50, "spend-1");
    assert_eq!(
        parts(&spent),
        serde_json::json!([{"kind": "PAID", "amount": 50}])
    );
    set("free-first");
    let spent = app.post_spend("user_alice", "GOLD", 60, "spend-2");
    assert_eq!(
        parts(&spent),
        serde_json::json!([{"kind": "FREE", "amount": 60}])
    );
    set("paid-first");
    let held = app.post(
        "/wallets/user_alice/holds",
        &serde_json::json!({"idempotencyKey": "hold-1", "asset": "GOLD", "amount": 960,
                            "expiresInSeconds": 600}),
    );
    assert_eq!(held.status, 201, "{:?}", held.body);
    assert_eq!(
        cluster.value("spend_order", "SELECT parts FROM holds"),
        r#"[{"kind":"PAID","amount":950},{"kind":"FREE","amount":10}]"#
    );
    // 990 left: 950 paid, 40 free, 960 of it held; 30 free available.
    let balance = app.get("/wallets/user_alice/balance");
    let gold = balance.data()["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GOLD")
        .unwrap()
        .clone();
    assert_eq!(
        (
            &gold["balance"],
            &gold["paid"],
            &gold["free"],
            &gold["available"]
        ),
        (
            &serde_json::json!(990),
            &serde_json::json!(950),
            &serde_json::json!(40),
            &serde_json::json!(30)
        )
    );
    let spent = app.post_spend("user_alice", "GOLD", 30, "spend-3");
    assert_eq!(
        parts(&spent),
        serde_json::json!([{"kind": "FREE", "amount": 30}])
    );
    crate::instances::verify_clean(&url);
}

/// A version 3 entry `n` (made at `n` seconds after the epoch) of `amount`
/// from `debit` to `credit` with `parts`, its request record and its
/// postings as version 3's writer wrote them (a user's with its balance and
/// paid part after, a Treasury's with neither); a REVERSAL names the entry
/// it reverses and the total reversed after it.
#[allow(clippy::too_many_arguments)]
fn version_3_entry(
    n: i64,
    kind: &str,
    (debit, debit_after): (i64, Option<(i64, i64)>),
    (credit, credit_after): (i64, Option<(i64, i64)>),
    amount: i64,
    parts: &str,
    reverses: Option<(i64, i64)>,
) -> String {
    let shown = |after: Option<(i64, i64)>| {
        after.map_or("NULL, NULL".to_owned(), |(balance, paid)| {
            format!("{balance}, {paid}")
        })
    };
    let (reverses_seq, reversed_after) = match reverses {
        Some((seq, after)) => (seq.to_string(), after.to_string()),
        None => ("NULL".to_owned(), "NULL".to_owned()),
    };
    let at = n * 1000;
    let paid = wallet::ledger::parts::paid_of(
        &wallet::ledger::parts::decode(parts).expect("the fixture's parts are parts"),
    );
    format!(
        "BEGIN;
         INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
              VALUES (0, 'k{n}', '{{}}', 1, {at});
         INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                     credit_account_id, amount, request_id, created_at, reverses_seq,
                     reversed_after, parts, paid)
              VALUES ('0190f0a0-0000-7000-8000-{n:012}', '{kind}', '{GOLD}', {debit},
                      {credit}, {amount}, currval('idempotency_records_id_seq'), {at},
                      {reverses_seq}, {reversed_after}, '{parts}', {paid});
         INSERT INTO postings (account_id, entry_seq, delta, balance_after, paid_after)
              VALUES ({debit}, {E}, -{amount}, {}), ({credit}, {E}, {amount}, {});
         COMMIT;",
        shown(debit_after),
        shown(credit_after),
        E = THIS_ENTRY
    )
}

/// Goal: a ledger written at schema version 3, its entries spread over
/// several of the asset's totals rows (each written on a connection of its
/// own), is given its supply's history by `wallet migrate` (version 4):
/// `?at=` of any instant of its past answers the figures as they stood
/// then, the figures now are unchanged, new writes continue the history,
/// `wallet verify` passes, and a history row changed behind the service's
/// back is found.
#[test]
fn a_version_3_ledger_migrates_and_answers_its_supply_back_in_time() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.database("ledger");
    for sql in [
        include_str!("../../migrations/postgres/001_ledger.sql"),
        include_str!("../../migrations/postgres/002_limits.sql"),
        include_str!("../../migrations/postgres/003_parts.sql"),
        include_str!("../../migrations/postgres/003_parts_checks.sql"),
        "INSERT INTO wallet_schema_version (version) VALUES (3);",
    ] {
        let output = cluster.psql("ledger", sql);
        assert!(output.status.success(), "{output:?}");
    }
    let setup = cluster.psql(
        "ledger",
        &format!(
            "INSERT INTO asset_types (id, symbol, name, created_at) VALUES ('{GOLD}', 'GOLD', 'Gold', 1);
             INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
                  VALUES ('SYSTEM', NULL, '{GOLD}', 1), ('USER', 'ann', '{GOLD}', 1),
                         ('USER', 'ben', '{GOLD}', 1);"
        ),
    );
    assert!(setup.status.success(), "{setup:?}");
    let (t, ann, ben) = (1, 2, 3);
    let paid = |amount: i64| format!(r#"[{{"kind":"PAID","amount":{amount}}}]"#);
    let free = |amount: i64| format!(r#"[{{"kind":"FREE","amount":{amount}}}]"#);
    // Each on a connection of its own: on the shard of its backend.
    for sql in [
        version_3_entry(
            1,
            "TOPUP",
            (t, None),
            (ann, Some((100, 100))),
            100,
            &paid(100),
            None,
        ),
        version_3_entry(
            2,
            "BONUS",
            (t, None),
            (ann, Some((150, 100))),
            50,
            &free(50),
            None,
        ),
        version_3_entry(
            3,
            "SPEND",
            (ann, Some((80, 80))),
            (t, None),
            70,
            r#"[{"kind":"FREE","amount":50},{"kind":"PAID","amount":20}]"#,
            None,
        ),
        version_3_entry(
            4,
            "TRANSFER",
            (ann, Some((50, 50))),
            (ben, Some((30, 30))),
            30,
            &paid(30),
            None,
        ),
        version_3_entry(
            5,
            "REVERSAL",
            (t, None),
            (ann, Some((70, 70))),
            20,
            &paid(20),
            Some((3, 20)),
        ),
    ] {
        let output = cluster.psql("ledger", &sql);
        assert!(output.status.success(), "{output:?}");
    }
    let now_before = cluster.value(
        "ledger",
        "SELECT sum(treasury) || '/' || sum(paid) || '/' || sum(topup) || '/' || sum(bonus)
                || '/' || sum(spent) || '/' || sum(reversed) || '/' || sum(held)
                || '/' || sum(holders) FROM asset_totals",
    );
    assert_eq!(now_before, "-100/100/100/50/70/20/0/2");

    let (status, stdout, stderr) = run_wallet(&["migrate", "--db", &url]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("schema at version 4"), "{stdout}");
    // Folded into shard 0, the same sums; its history the asset's running
    // totals in commit order, one row per entry that moves a figure.
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT sum(treasury) || '/' || sum(paid) || '/' || sum(topup) || '/' || sum(bonus)
                    || '/' || sum(spent) || '/' || sum(reversed) || '/' || sum(held)
                    || '/' || sum(holders) FROM asset_totals"
        ),
        now_before
    );
    assert_eq!(
        cluster.value(
            "ledger",
            "SELECT string_agg(shard || ':' || n || ':' || entry_seq || ':' || created_at || ':'
                               || treasury || ':' || paid, ' ' ORDER BY shard, n)
               FROM supply_history"
        ),
        "0:1:1:1000:-100:100 0:2:2:2000:-150:100 0:3:3:3000:-80:80 0:4:5:5000:-100:100"
    );
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", &url]);
    assert!(status.success(), "{stdout}\n{stderr}");

    let app = crate::helpers::TestApp::start(std::path::Path::new(&url), &[], None);
    let at = |time: &str| {
        let answer = app.get(&format!("/assets/GOLD/supply?at={time}"));
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.data().clone()
    };
    let figures = |outstanding, paid, topup, bonus, spent, reversed, as_of: Option<&str>| {
        serde_json::json!({"asset": "GOLD", "outstanding": outstanding, "paid": paid,
                           "free": outstanding - paid, "expired": 0,
                           "issued": {"TOPUP": topup, "BONUS": bonus}, "spent": spent,
                           "reversed": reversed, "asOf": as_of})
    };
    let answered = at("1970-01-01T00:00:00.999Z");
    assert_eq!(answered, figures(0, 0, 0, 0, 0, 0, None));
    let answered = at("1970-01-01T00:00:01Z");
    assert_eq!(
        answered["asOf"]
            .as_str()
            .map(|t| t.starts_with("1970-01-01T00:00:01")),
        Some(true)
    );
    let as_of = |answer: &serde_json::Value| answer["asOf"].as_str().unwrap().to_owned();
    assert_eq!(
        answered,
        figures(100, 100, 100, 0, 0, 0, Some(&as_of(&answered)))
    );
    let answered = at("1970-01-01T00:00:02.5Z");
    assert!(
        as_of(&answered).starts_with("1970-01-01T00:00:02"),
        "{answered}"
    );
    assert_eq!(
        answered,
        figures(150, 100, 100, 50, 0, 0, Some(&as_of(&answered)))
    );
    // The transfer moves no figure: as at the spend.
    let answered = at("1970-01-01T00:00:04Z");
    assert!(
        as_of(&answered).starts_with("1970-01-01T00:00:03"),
        "{answered}"
    );
    assert_eq!(
        answered,
        figures(80, 80, 100, 50, 70, 0, Some(&as_of(&answered)))
    );
    let answered = at("1970-01-01T00:00:05Z");
    assert!(
        as_of(&answered).starts_with("1970-01-01T00:00:05"),
        "{answered}"
    );
    assert_eq!(
        answered,
        figures(100, 100, 100, 50, 70, 20, Some(&as_of(&answered)))
    );

    // New writes continue the history, on whichever shard they move.
    let topped = app.post_entry("topup", "ben", "GOLD", 5, "after-1");
    assert_eq!(topped.status, 201, "{:?}", topped.body);
    let bonus = app.post_entry("bonus", "ann", "GOLD", 3, "after-2");
    assert_eq!(bonus.status, 201, "{:?}", bonus.body);
    let made = bonus.data()["transaction"]["createdAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = app.get("/assets/GOLD/supply");
    let mut expected = live.data().clone();
    let object = expected.as_object_mut().unwrap();
    object.remove("held");
    object.remove("holders");
    assert_eq!(at(&made.replace('+', "%2B")), expected);
    assert_eq!(expected["outstanding"], serde_json::json!(108));
    assert_eq!(expected["paid"], serde_json::json!(105));
    let answered = at("1970-01-01T00:00:05Z");
    assert_eq!(
        answered,
        figures(100, 100, 100, 50, 70, 20, Some(&as_of(&answered)))
    );
    drop(app);
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", &url]);
    assert!(status.success(), "{stdout}\n{stderr}");

    // A history row changed behind the service's back is found.
    let changed = cluster.psql(
        "ledger",
        "ALTER TABLE supply_history DISABLE TRIGGER supply_history_is_append_only;
         UPDATE supply_history SET paid = paid + 1 WHERE shard = 0 AND n = 2;",
    );
    assert!(changed.status.success(), "{changed:?}");
    let (status, stdout, _) = run_wallet(&["verify", "--db", &url]);
    assert!(!status.success(), "{stdout}");
    assert!(stdout.contains("the supply's back in time"), "{stdout}");
}
