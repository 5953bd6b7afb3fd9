//! Opening the database file: the pragmas every connection needs, the one
//! read-write connection, and the pool of read-only ones.

use std::path::Path;

use anyhow::{bail, Context};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use super::ReadPool;
use crate::limits::{
    INTEGRITY_CHECK_FILE_BYTES_MAX, READ_POOL_CHECKOUT_TIMEOUT, READ_POOL_SIZE, SQLITE_BUSY_TIMEOUT,
};

/// Opens (creating if needed) the file for the writer. Its folder must exist:
/// creating folders is the operator's decision, not ours.
pub fn open_read_write(path: &Path) -> anyhow::Result<Connection> {
    existing_folder_of(path).with_context(|| format!("cannot open database {}", path.display()))?;
    if path.is_dir() {
        bail!("cannot open database {}: it is a folder", path.display());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open database {}", path.display()))?;
    configure_read_write(&conn)
        .with_context(|| format!("cannot use database {}", path.display()))?;
    Ok(conn)
}

/// The folder `path` is in, which must exist: creating folders is the
/// operator's decision, not ours.
pub fn existing_folder_of(path: &Path) -> anyhow::Result<&Path> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!("folder {} does not exist", folder.display());
    }
    Ok(folder)
}

fn configure_read_write(conn: &Connection) -> anyhow::Result<()> {
    configure_common(conn)?;
    // journal_mode must be set outside a transaction, where it silently keeps
    // the old mode; it returns the mode now in force, so read it back.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("the database would not switch to WAL mode (it is in {mode} mode)");
    }
    // FULL: a commit is fsynced before it returns, so an entry acknowledged
    // with 201 survives a power cut.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Opens the file read-only, for `verify` and the read pool. The file must exist.
pub fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
    if path.is_dir() {
        bail!(
            "cannot open database {}: it is a folder; name the database file in it (such as {})",
            path.display(),
            path.join("wallet.db").display()
        );
    }
    if !path.is_file() {
        bail!("cannot open database {}: no such file", path.display());
    }
    let conn = Connection::open_with_flags(path, read_only_flags())
        .with_context(|| format!("cannot open database {}", path.display()))?;
    configure_common(&conn).with_context(|| format!("cannot use database {}", path.display()))?;
    Ok(conn)
}

fn read_only_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Per connection, whatever its use: SQLite keeps these per connection.
fn configure_common(conn: &Connection) -> rusqlite::Result<()> {
    // A lock held by another process (a CLI command, a backup) is waited for,
    // up to a bound, instead of failing at once.
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Touches the file, so a file that is not a database fails here, at
    // start-up, with SQLite's own words for it.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    Ok(())
}

/// Refuses, in one line, a file SQLite would serve but that is damaged: the
/// whole `PRAGMA quick_check` on a file up to `INTEGRITY_CHECK_FILE_BYTES_MAX`
/// (milliseconds), and on a larger one the cheap sign of a cut-off file: fewer
/// bytes than the pages its header counts. So start-up stays fast on a ledger
/// of millions of entries while a truncated or garbled file never serves.
pub fn check_integrity(conn: &Connection, path: &Path) -> anyhow::Result<()> {
    let file_bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if file_bytes == 0 {
        return Ok(()); // A new file, about to get its schema.
    }
    if file_bytes <= INTEGRITY_CHECK_FILE_BYTES_MAX {
        let verdict: String = conn
            .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
            .with_context(|| format!("cannot check database {}", path.display()))?;
        if verdict != "ok" {
            bail!(
                "database {} is damaged ({verdict}); restore it from a backup",
                path.display()
            );
        }
        return Ok(());
    }
    let mut header = [0u8; 100];
    use std::io::Read;
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .with_context(|| format!("cannot read the header of {}", path.display()))?;
    let page_bytes = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        other => u64::from(other),
    };
    let pages = u64::from(u32::from_be_bytes([
        header[28], header[29], header[30], header[31],
    ]));
    if file_bytes < pages * page_bytes {
        bail!(
            "database {} is damaged (it holds {file_bytes} bytes, fewer than its {pages} pages of {page_bytes}: it was cut off); restore it from a backup",
            path.display()
        );
    }
    Ok(())
}

/// Holds `<db>.lock` exclusively for as long as it lives: one `serve` per
/// file, so a second one refuses in one line instead of running beside the
/// first with rate limits of its own. The lock is the kernel's, so it goes
/// with the process however it ends.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
}

pub fn lock_for_serving(path: &Path) -> anyhow::Result<ServeLock> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(ServeLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `wallet serve` is serving {} (it holds {}); stop it first",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

/// The pool of read-only connections. Reads run beside the writer: WAL lets a
/// reader see the last committed state while a write is in progress.
pub fn read_pool(path: &Path) -> anyhow::Result<ReadPool> {
    read_pool_of(path, READ_POOL_SIZE)
}

/// A pool of `size` read-only connections.
pub fn read_pool_of(path: &Path, size: u32) -> anyhow::Result<ReadPool> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(read_only_flags())
        .with_init(|conn| configure_common(conn));
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(READ_POOL_CHECKOUT_TIMEOUT)
        .test_on_check_out(false)
        .build(manager)
        .with_context(|| format!("cannot open read connections to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.pragma_query_value(None, name, |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn the_write_connection_is_wal_fully_synchronous_with_foreign_keys_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_read_write(&dir.path().join("wallet.db")).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(pragma(&conn, "synchronous"), 2, "2 is FULL");
        assert_eq!(pragma(&conn, "foreign_keys"), 1);
        assert_eq!(
            pragma(&conn, "busy_timeout"),
            SQLITE_BUSY_TIMEOUT.as_millis() as i64
        );
    }

    #[test]
    fn pooled_connections_are_read_only_with_foreign_keys_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.db");
        let _writer = open_read_write(&path).unwrap();
        let pool = read_pool(&path).unwrap();
        let conn = pool.get().unwrap();
        assert_eq!(pragma(&conn, "foreign_keys"), 1);
        assert_eq!(
            pragma(&conn, "busy_timeout"),
            SQLITE_BUSY_TIMEOUT.as_millis() as i64
        );
        let refused = conn
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap_err();
        assert_eq!(
            refused.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ReadOnly)
        );
        assert_eq!(pool.max_size(), READ_POOL_SIZE);
    }

    #[test]
    fn a_missing_folder_or_a_folder_as_the_file_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = open_read_write(&dir.path().join("no/such/wallet.db")).unwrap_err();
        assert!(
            format!("{missing:#}").contains("does not exist"),
            "{missing:#}"
        );
        let folder = open_read_write(dir.path()).unwrap_err();
        assert!(folder.to_string().contains("is a folder"), "{folder}");
        let absent = open_read_only(&dir.path().join("absent.db")).unwrap_err();
        assert!(absent.to_string().contains("no such file"), "{absent}");
    }
}
