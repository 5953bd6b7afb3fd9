//! Faults from the disk: a full filesystem and a database made read-only
//! under a running server, and a truncated or corrupted file at start-up.
//! (A file that is not a database at all is in cli.rs.) Each gets a clear
//! answer: 503 DATABASE_UNAVAILABLE with `Retry-After` while serving, one
//! line and a non-zero exit at start-up. Nothing is half-written, and the
//! service recovers by itself once the fault is gone.
//!
//! The first two need root: one mounts a small tmpfs, the other sets the
//! immutable attribute (`chattr +i`), which, unlike a `chmod`, also refuses
//! writes through a file the server already holds open. Where that is not
//! possible they say so and pass without testing, rather than fail.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::{assert_one_line_failure, run_to_exit, serve_command};
use crate::crash::assert_verify_passes;
use crate::helpers::{ApiResponse, TestApp, SEED_ENTRIES};

/// A write the disk refused: 503 DATABASE_UNAVAILABLE, in the envelope, with
/// `Retry-After`, and the cause kept from the client.
fn assert_database_unavailable(response: &ApiResponse) {
    assert_eq!(response.status, 503, "{:?}", response.body);
    assert_eq!(response.error_code(), "DATABASE_UNAVAILABLE");
    assert_eq!(response.header("retry-after"), Some("1"));
    let text = response.body.to_string();
    assert!(!text.contains("disk") && !text.contains("I/O"), "{text}");
}

/// Runs a system command quietly; true when it succeeded.
fn system(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A small tmpfs mounted on a temporary folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().to_str().unwrap();
        let options = format!("size={size}");
        system(
            "mount",
            &["-t", "tmpfs", "-o", &options, "tmpfs", mount_point],
        )
        .then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still holds a file there cannot keep it mounted.
        system("umount", &["-l", self.dir.path().to_str().unwrap()]);
    }
}

/// Fills the filesystem holding `path` until it refuses another byte.
fn fill_up(path: &Path) {
    let mut filler = File::create(path).unwrap();
    let chunk = vec![0_u8; 64 * 1024];
    loop {
        if filler
            .write_all(&chunk)
            .and_then(|()| filler.sync_all())
            .is_err()
        {
            break;
        }
    }
    // Whatever still fits, a byte at a time.
    while filler
        .write_all(&[0])
        .and_then(|()| filler.sync_all())
        .is_ok()
    {}
}

#[test]
fn a_full_disk_is_503_without_a_partial_write_and_the_service_recovers_when_space_returns() {
    let Some(tmpfs) = Tmpfs::mount("4m") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let app = TestApp::spawn_on(&tmpfs.path().join("wallet.db"));
    assert_eq!(
        app.post_topup("disk", "GOLD", 10, "before-full").status,
        201
    );
    let filler = tmpfs.path().join("filler");
    fill_up(&filler);

    // Writes fit while SQLite reuses space it already holds; the first that
    // needs more is refused. Every write before it was acknowledged.
    let mut acknowledged = 1;
    let refused = (0..200)
        .map(|i| {
            (
                format!("full-{i}"),
                app.post_topup("disk", "GOLD", 1, &format!("full-{i}")),
            )
        })
        .find(|(_, response)| {
            let created = response.status == 201;
            acknowledged += i64::from(created);
            !created
        });
    let (refused_key, refused) = refused.expect("a write is refused once the disk is full");
    assert_database_unavailable(&refused);
    let again = app.post_topup("disk", "GOLD", 1, &refused_key);
    assert_database_unavailable(&again);
    // Reads go on, and health reports the failing writes (a load balancer
    // sees the full disk); nothing of the refused writes was kept.
    let health = app.get("/health");
    assert_eq!(health.status, 503);
    assert_eq!(health.error_code(), "DATABASE_UNAVAILABLE");
    assert_eq!(app.balance("disk", "GOLD"), 10 + acknowledged - 1);
    assert_eq!(app.entry_count(), SEED_ENTRIES + acknowledged);
    assert_verify_passes(&app.db_path);

    std::fs::remove_file(&filler).unwrap();
    let retried = app.post_topup("disk", "GOLD", 1, &refused_key);
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    assert_eq!(retried.data()["balance"], 10 + acknowledged);
    assert_eq!(
        app.get("/health").status,
        200,
        "a write that succeeds clears it"
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES + acknowledged + 1);
    assert_verify_passes(&app.db_path);
    drop(app);
}

/// Files given the immutable attribute, which is cleared on drop.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: &[PathBuf]) -> Immutable {
        for path in paths {
            assert!(
                system("chattr", &["+i", path.to_str().unwrap()]),
                "chattr +i {path:?}"
            );
        }
        Immutable(paths.to_vec())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            system("chattr", &["-i", path.to_str().unwrap()]);
        }
    }
}

/// Whether the immutable attribute works here and refuses a write through
/// an open file (it needs root and a filesystem that supports it).
fn immutable_refuses_open_writers(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&probe)
        .unwrap();
    if !system("chattr", &["+i", probe.to_str().unwrap()]) {
        return false;
    }
    let refused = file.write_all(b"x").is_err();
    system("chattr", &["-i", probe.to_str().unwrap()]);
    refused
}

#[test]
fn a_database_made_read_only_under_a_running_server_is_503_until_it_is_writable_again() {
    let dir = tempfile::tempdir().unwrap();
    if !immutable_refuses_open_writers(dir.path()) {
        eprintln!("SKIPPED: chattr +i needs root and a filesystem that supports it");
        return;
    }
    let db_path = dir.path().join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    assert_eq!(app.post_topup("ro", "GOLD", 10, "before-ro").status, 201);
    let wal = dir.path().join("wallet.db-wal");
    assert!(wal.exists(), "the server writes through its WAL");

    let read_only = Immutable::set(&[db_path.clone(), wal]);
    for _ in 0..2 {
        assert_database_unavailable(&app.post_topup("ro", "GOLD", 5, "while-ro"));
    }
    // Health reports the failing writes; reads go on.
    assert_eq!(app.get("/health").status, 503);
    assert_eq!(app.balance("ro", "GOLD"), 10);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);

    drop(read_only);
    let retried = app.post_topup("ro", "GOLD", 5, "while-ro");
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    assert_eq!(retried.data()["balance"], 15);
    assert_eq!(app.get("/health").status, 200);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 2);
    assert!(app.terminate().success());
    assert_verify_passes(&db_path);
}

/// A stopped server's file with a little history, checkpointed into the one
/// file (no WAL beside it); returns its bytes.
fn stopped_ledger(db_path: &Path) -> Vec<u8> {
    let app = TestApp::spawn_on(db_path);
    for i in 0..20 {
        assert_eq!(
            app.post_topup("disk", "GOLD", 3, &format!("h-{i}")).status,
            201
        );
    }
    assert!(app.terminate().success());
    assert!(!db_path.with_extension("db-wal").exists());
    std::fs::read(db_path).unwrap()
}

#[test]
fn a_truncated_or_corrupted_database_is_refused_at_start_up_in_one_line_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let original = stopped_ledger(&db_path);
    let page = 4096;
    assert!(original.len() > 4 * page, "{} bytes", original.len());

    let truncated = original[..original.len() / 2].to_vec();
    let mut schema_page_garbled = original.clone();
    // Page 1 past the 100-byte file header holds the schema's b-tree.
    schema_page_garbled[100..page].fill(0xA5);
    let mut header_garbled = original.clone();
    header_garbled[..100].fill(0x5A);
    for (fault, bytes) in [
        ("truncated", truncated),
        ("schema page garbled", schema_page_garbled),
        ("header garbled", header_garbled),
    ] {
        std::fs::write(&db_path, &bytes).unwrap();
        let mut serve = serve_command(&db_path);
        serve.args(["--bind", "127.0.0.1:0"]);
        let (status, stdout, stderr) = run_to_exit(serve);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(
            line.contains("malformed") || line.contains("not a database"),
            "{fault}: {line}"
        );
        assert!(line.contains(db_path.to_str().unwrap()), "{fault}: {line}");
        assert_eq!(
            std::fs::read(&db_path).unwrap(),
            bytes,
            "{fault}: the file was changed"
        );
    }

    // The operator puts the good file back: the service starts on it as it was.
    std::fs::write(&db_path, &original).unwrap();
    let app = TestApp::spawn_on(&db_path);
    assert_eq!(app.balance("disk", "GOLD"), 60);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 20);
}
