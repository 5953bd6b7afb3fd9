//! `wallet restore`: an audited backup replaces the database in one rename,
//! never while a server has the database open, never from a backup that
//! fails its audit, and never with the old file's WAL replayed into it.

use std::path::{Path, PathBuf};

use crate::crash::{assert_verify_passes, open_read_write, stopped_ledger_with_history};
use crate::helpers::{run_wallet, TestApp, SEED_ENTRIES};

fn restore(source: &Path, db: &Path) -> (std::process::ExitStatus, String, String) {
    run_wallet(&[
        "restore",
        source.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ])
}

fn backup(db: &Path, dest: &Path) {
    let (status, stdout, stderr) = run_wallet(&[
        "backup",
        dest.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(status.success(), "{stdout}\n{stderr}");
}

/// Every entry's id, in order.
fn entry_ids(db_path: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the file opens");
    let mut statement = conn
        .prepare("SELECT id FROM ledger_entries ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Goal: after a crash (SIGKILL leaves the old file's `-wal` full of frames),
/// restore puts the backup in place and the stale WAL is not replayed into
/// it: the restarted server serves exactly the backup's ledger.
#[test]
fn a_restore_after_a_crash_serves_exactly_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    assert_eq!(app.post_topup("restored", "GOLD", 70, "r-1").status, 201);
    let copy = dir.path().join("backup.db");
    backup(&db_path, &copy);
    let backed_up = entry_ids(&copy);
    assert_eq!(backed_up.len() as i64, SEED_ENTRIES + 1);
    for i in 0..20 {
        let key = format!("after-backup-{i}");
        assert_eq!(app.post_topup("restored", "GOLD", 1, &key).status, 201);
    }
    app.kill();
    assert!(companion(&db_path, "-wal").exists(), "the crash left a WAL");

    let (status, stdout, stderr) = restore(&copy, &db_path);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("verify: OK") && stdout.contains("restored from"),
        "{stdout}"
    );
    for suffix in ["-wal", "-shm", "-journal"] {
        assert!(
            !companion(&db_path, suffix).exists(),
            "{suffix} left behind"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(entry_ids(&db_path), backed_up);

    let app = TestApp::spawn_on(&db_path);
    assert_eq!(app.balance("restored", "GOLD"), 70);
    // The backup's entries replay: they are the same ledger, not a copy of it.
    assert_eq!(app.post_topup("restored", "GOLD", 70, "r-1").status, 200);
    assert!(app.terminate().success());
    assert_verify_passes(&db_path);
    assert_verify_passes(&copy);
}

#[test]
fn a_restore_is_refused_in_one_line_while_a_server_has_the_database_open() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    let copy = dir.path().join("backup.db");
    backup(&db_path, &copy);
    assert_eq!(app.post_topup("live", "GOLD", 5, "live-1").status, 201);

    let (status, stdout, stderr) = restore(&copy, &db_path);
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    // The server never noticed: its ledger and its writes carry on.
    assert_eq!(app.balance("live", "GOLD"), 5);
    assert_eq!(app.post_topup("live", "GOLD", 5, "live-2").status, 201);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 2);
    assert!(app.terminate().success());
    assert_verify_passes(&db_path);
}

#[test]
fn a_backup_that_fails_its_audit_is_not_restored_and_the_database_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (tampered, seq) = stopped_ledger_with_history(dir.path());
    let conn = open_read_write(&tampered);
    conn.execute_batch("DROP TRIGGER ledger_entries_refuse_update")
        .unwrap();
    conn.execute(
        "UPDATE ledger_entries SET amount = amount + 1000 WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    drop(conn);

    let live = tempfile::tempdir().unwrap();
    let db_path = live.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    assert!(app.terminate().success());
    let before = std::fs::read(&db_path).unwrap();

    let (status, stdout, stderr) = restore(&tampered, &db_path);
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("failed its audit"), "{stderr}");
    assert_eq!(std::fs::read(&db_path).unwrap(), before);
}

#[test]
fn a_restore_onto_a_fresh_volume_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    assert!(app.terminate().success());
    let volume = tempfile::tempdir().unwrap();
    let fresh = volume.path().join("wallet.db");
    let (status, stdout, stderr) = restore(&db_path, &fresh);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(entry_ids(&fresh), entry_ids(&db_path));
}

#[test]
fn a_bad_source_or_target_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    assert!(app.terminate().success());
    let not_a_wallet = dir.path().join("notes.txt");
    std::fs::write(&not_a_wallet, b"not a database").unwrap();
    for (source, target, expected) in [
        (
            dir.path().join("absent.db"),
            db_path.clone(),
            "no such file",
        ),
        (db_path.clone(), db_path.clone(), "the database itself"),
        (
            db_path.clone(),
            dir.path().join("no/such/wallet.db"),
            "does not exist",
        ),
        (not_a_wallet, db_path.clone(), "notes.txt"),
    ] {
        let (status, stdout, stderr) = restore(&source, &target);
        assert!(!status.success(), "{source:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_verify_passes(&db_path);
}
