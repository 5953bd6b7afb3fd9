//! `wallet restore`: replaces the database with an audited copy of a backup,
//! atomically, and only while nothing else has the database open. Needs no
//! shell, so it runs in the distroless image through `docker run --rm` and on
//! a Fly machine. Never writes to the backup.
//!
//! How "a server holds it" is detected: SQLite itself. A process that has the
//! file open in WAL mode (a server's writer, its readers, its key watcher)
//! keeps a shared lock on it for as long as it is open, so leaving WAL mode,
//! which needs the only lock, fails with `SQLITE_BUSY` while any of them
//! lives. With `locking_mode=EXCLUSIVE` the lock taken to leave WAL mode is
//! then kept: from that moment no server can open the file (it waits, then
//! fails), and the old file's `-wal` is checkpointed and gone. Only then is
//! the copy renamed over it. A `<db>.lock` file held by `serve`, where there
//! is one, is a second guard; this one needs nothing but the database.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{migrate, open, verify};
use crate::store::RestoreOutcome;

/// Audits `source`, then, holding the database exclusively, puts a copy of
/// it in place of `db` with one rename.
/// `checked` hears how many entries of the backup's audit are checked so far.
pub fn restore(
    source: &Path,
    db: &Path,
    checked: &mut dyn FnMut(u64),
) -> anyhow::Result<RestoreOutcome> {
    let folder = open::existing_folder_of(db)
        .with_context(|| format!("cannot restore to {}", db.display()))?;
    if db.is_dir() {
        bail!("cannot restore to {}: it is a folder", db.display());
    }
    let mut source_conn = open::open_read_only(source)?;
    if db.exists() && same_file(source, db)? {
        bail!(
            "{} is the database itself; restore from a backup elsewhere",
            source.display()
        );
    }
    migrate::check_current(&source_conn)
        .with_context(|| format!("cannot restore from {}", source.display()))?;
    let report = verify::audit_reporting(&mut source_conn, checked)
        .with_context(|| format!("reading the backup {} failed", source.display()))?;
    if !report.is_clean() {
        return Ok(RestoreOutcome::FailedAudit(report));
    }

    // Held until the rename is done, so no server opens the old file
    // meanwhile: the lock a server holds for as long as it serves (a server
    // starting now refuses at once), and SQLite's only lock on the file.
    let _serving = open::lock_for_serving(db).map_err(|_| {
        anyhow::anyhow!(
            "{} is in use by a running `wallet serve`; stop it, then restore",
            db.display()
        )
    })?;
    let _hold = hold_exclusively(db)?;
    let partial = partial_path(db);
    if partial.exists() {
        bail!("{} exists already; remove it and retry", partial.display());
    }
    let replaced = copy_durably(&source_conn, &partial).and_then(|()| {
        remove_stale_companions(db)?;
        std::fs::rename(&partial, db)
            .with_context(|| format!("cannot move the copy to {}", db.display()))?;
        // The rename itself is durable only once the folder is.
        File::open(folder)
            .and_then(|folder| folder.sync_all())
            .with_context(|| format!("cannot sync the folder {}", folder.display()))
    });
    if replaced.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    replaced.map(|()| RestoreOutcome::Restored(report))
}

/// The only connection to `db`, holding SQLite's exclusive lock; `None` when
/// there is no database there yet (nothing can be serving it).
fn hold_exclusively(db: &Path) -> anyhow::Result<Option<Connection>> {
    if !db.exists() {
        return Ok(None);
    }
    let in_use = || {
        anyhow::anyhow!(
            "{} is in use: a server (or another wallet command) has it open; stop it first (`docker stop`, `docker compose stop`), then restore",
            db.display()
        )
    };
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    // No waiting: a lock held now belongs to a live process, and the
    // operator is better told at once than after a timeout.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    // MEMORY, not DELETE: leaving WAL checkpoints and removes the -wal, and
    // in exclusive mode a DELETE journal would leave a -journal file behind
    // that SQLite could later take for the new file's own.
    match conn.query_row("PRAGMA journal_mode = MEMORY", [], |row| {
        row.get::<_, String>(0)
    }) {
        Ok(mode) if mode.eq_ignore_ascii_case("memory") => Ok(Some(conn)),
        Ok(_) => Err(in_use()),
        Err(error) => {
            match error.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Err(in_use()),
                // A file that is not a database is what a restore is for, and
                // no server can be serving it.
                Some(ErrorCode::NotADatabase) => Ok(None),
                _ => Err(anyhow::Error::new(error)
                    .context(format!("cannot take hold of {}", db.display()))),
            }
        }
    }
}

/// Writes one committed state of `source` to `copy` and syncs it to disk.
fn copy_durably(source: &Connection, copy: &Path) -> anyhow::Result<()> {
    let copy_name = copy
        .to_str()
        .with_context(|| format!("the path {} is not UTF-8", copy.display()))?;
    source
        .execute("VACUUM INTO ?1", [copy_name])
        .with_context(|| format!("cannot copy the backup to {}", copy.display()))?;
    File::open(copy)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot sync {}", copy.display()))
}

/// The old file's `-wal`, `-shm` and `-journal`, if any are left. A `-wal`
/// beside the new file would be replayed into it, so none may survive the
/// rename. Safe to remove: no process has the old file open (it is held
/// exclusively, or absent).
fn remove_stale_companions(db: &Path) -> anyhow::Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        let companion = PathBuf::from(name);
        match std::fs::remove_file(&companion) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot remove {}", companion.display()))
            }
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let canonical = |path: &Path| {
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))
    };
    Ok(canonical(a)? == canonical(b)?)
}

fn partial_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".restore-{}", std::process::id()));
    db.with_file_name(name)
}
