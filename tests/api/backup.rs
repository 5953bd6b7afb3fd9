//! `wallet backup`: a consistent, audited copy of a database that is serving
//! writes, that never overwrites a file and never leaves a copy that failed
//! its audit.

use std::path::Path;
use std::time::Duration;

use crate::crash::{
    assert_verify_passes, open_read_write, open_wallets, stopped_ledger_with_history, users,
    Workload,
};
use crate::helpers::{run_wallet, TestApp, SEED_ENTRIES};

/// `(seq, id)` of every entry, in order.
fn entries(db_path: &Path) -> Vec<(i64, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the file opens");
    let mut statement = conn
        .prepare("SELECT seq, id FROM ledger_entries ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn backup(source: &Path, dest: &Path) -> (std::process::ExitStatus, String, String) {
    run_wallet(&[
        "backup",
        dest.to_str().unwrap(),
        "--db",
        source.to_str().unwrap(),
    ])
}

#[test]
fn backups_taken_under_concurrent_writes_are_consistent_prefixes_that_pass_verify() {
    const THREADS: usize = 4;
    const BACKUPS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    let users = users("backup", 4);
    open_wallets(&app, &users);
    let workload = Workload::start(&app.client, &app.address, &users, THREADS, "backup");
    let mut copies = Vec::new();
    for i in 0..BACKUPS {
        workload.wait_for_acks(50 * (i + 1), Duration::from_secs(30));
        let dest = dir.path().join(format!("copy-{i}.db"));
        let (status, stdout, stderr) = backup(&app.db_path, &dest);
        assert!(status.success(), "backup failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("verify: OK"), "{stdout}");
        copies.push(dest);
    }
    assert!(app.terminate().success());
    let tally = workload.finish();
    assert!(tally.refused.is_empty(), "{:?}", tally.refused);

    let source = entries(&db_path);
    let mut previous = 0;
    for copy in &copies {
        assert_verify_passes(copy);
        let copied = entries(copy);
        // Taken while writes went on, each copy holds the seed, the opening
        // topups and some of the workload, and is exactly the source's
        // history up to some entry: nothing torn, nothing missing between.
        assert!(copied.len() as i64 > SEED_ENTRIES + users.len() as i64);
        assert!(copied.len() >= previous, "a later copy holds less");
        assert_eq!(copied[..], source[..copied.len()]);
        previous = copied.len();
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_backup_refuses_to_overwrite_an_existing_file_in_one_line() {
    if !crate::helpers::sqlite_only("a backup is of a SQLite file") {
        return;
    }
    let app = TestApp::spawn();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("taken.db");
    std::fs::write(&dest, b"precious").unwrap();
    let (status, _, stderr) = backup(&app.db_path, &dest);
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("exists already"), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");

    let (status, _, stderr) = backup(&app.db_path, &dir.path().join("no/such/folder.db"));
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_copy_that_fails_its_audit_exits_non_zero_and_is_not_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (db_path, seq) = stopped_ledger_with_history(dir.path());
    let conn = open_read_write(&db_path);
    conn.execute_batch("DROP TRIGGER ledger_entries_refuse_update")
        .unwrap();
    conn.execute(
        "UPDATE ledger_entries SET amount = amount + 1000 WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    drop(conn);

    let dest = dir.path().join("copy.db");
    let (status, stdout, stderr) = backup(&db_path, &dest);
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("verify: OK"), "{stdout}");
    assert!(stderr.contains("failed its audit"), "{stderr}");
    assert!(!dest.exists());
}
