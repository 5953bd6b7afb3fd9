//! Whether the database and its WAL are still the files the writer opened.
//!
//! SQLite keeps writing to the file descriptors it holds: a WAL deleted or
//! truncated under a running server goes unnoticed by it, every commit is
//! still acknowledged, and the damage reaches the database at the shutdown
//! checkpoint (or a crash loses what was acknowledged). So before a batch is
//! acknowledged the writer checks, with two `stat` calls, that the paths still
//! name the files it opened and that the WAL holds at least the frames SQLite
//! says it wrote; on a mismatch it stops acknowledging.

use std::cell::Cell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// SQLite's WAL header, and each frame's header, in bytes (the WAL format).
const WAL_HEADER_BYTES: u64 = 32;
const WAL_FRAME_HEADER_BYTES: u64 = 24;
/// The WAL header's magic number, big- or little-endian checksums.
const WAL_MAGIC: [u32; 2] = [0x377f_0682, 0x377f_0683];
/// Frames after which a commit checkpoints, as SQLite's own default
/// auto-checkpoint does; the WAL hook below replaces that one.
const WAL_AUTOCHECKPOINT_FRAMES: i32 = 1000;

thread_local! {
    /// Frames in the WAL after the writer's last commit, from SQLite's WAL
    /// hook. The writer connection lives on one thread, and so does this.
    static WAL_FRAMES: Cell<i32> = const { Cell::new(0) };
}

/// After every commit: note the WAL's length in frames, and checkpoint past
/// `WAL_AUTOCHECKPOINT_FRAMES` as SQLite's default hook would.
fn wal_hook(wal: &rusqlite::hooks::Wal, frames: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|cell| cell.set(frames));
    if frames >= WAL_AUTOCHECKPOINT_FRAMES {
        // PASSIVE: never waits for readers; what it cannot copy now the
        // next one will. A failure here is not the commit's.
        let _ = wal.checkpoint();
        crate::metrics::metrics().checkpoint_run();
    }
    Ok(())
}

/// The WAL beside a database: its path with `-wal` appended.
pub fn wal_path_of(database: &Path) -> PathBuf {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// A file's identity: the device and inode its path named when opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
}

fn identity_of(path: &Path) -> std::io::Result<(Identity, std::fs::Metadata)> {
    let metadata = std::fs::metadata(path)?;
    Ok((
        Identity {
            device: metadata.dev(),
            inode: metadata.ino(),
        },
        metadata,
    ))
}

/// What went wrong with the files, for the log.
#[derive(Debug, thiserror::Error)]
pub enum FilesLost {
    #[error("{0} is gone or can no longer be read ({1})")]
    Missing(PathBuf, std::io::Error),
    #[error("{0} is no longer the file this server opened (it was replaced)")]
    Replaced(PathBuf),
    #[error("{path} holds {actual} bytes, fewer than the {expected} its {frames} frames take (it was truncated)")]
    Truncated {
        path: PathBuf,
        actual: u64,
        expected: u64,
        frames: i32,
    },
    #[error("{0} has lost frames it held (it was truncated and written past the cut)")]
    Holed(PathBuf),
}

impl FilesLost {
    /// The WAL alone was deleted (the database is still the one opened).
    pub fn is_deleted_wal(&self) -> bool {
        matches!(self, FilesLost::Missing(path, _) if path.to_string_lossy().ends_with("-wal"))
    }
}

/// The writer's view of its files.
#[derive(Debug)]
pub struct FileWatch {
    database: PathBuf,
    wal: PathBuf,
    database_identity: Identity,
    /// Known once the WAL exists (SQLite creates it at the first write).
    wal_identity: Option<Identity>,
    /// The WAL as it was opened, to read its headers back.
    wal_file: Option<std::fs::File>,
    page_bytes: u64,
    /// Frames in the WAL after the last batch checked.
    frames_checked: i32,
}

impl FileWatch {
    /// Starts watching the files of `conn`, the writer's connection, and
    /// installs the WAL hook that tells the WAL's length.
    pub fn start(conn: &Connection) -> anyhow::Result<Option<FileWatch>> {
        let Some(database) = conn.path().filter(|path| !path.is_empty()) else {
            // An in-memory database has no files to lose.
            return Ok(None);
        };
        let database = PathBuf::from(database);
        let wal = wal_path_of(&database);
        let (database_identity, _) = identity_of(&database)?;
        let page_bytes: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        conn.wal_hook(Some(wal_hook));
        let mut watch = FileWatch {
            database,
            wal,
            database_identity,
            wal_identity: None,
            wal_file: None,
            page_bytes: u64::try_from(page_bytes).unwrap_or(4096),
            frames_checked: 0,
        };
        watch.note_wal();
        Ok(Some(watch))
    }

    /// Records the WAL's identity and opens it, once it exists.
    fn note_wal(&mut self) {
        if self.wal_identity.is_none() {
            if let Ok(file) = std::fs::File::open(&self.wal) {
                if let Ok(metadata) = file.metadata() {
                    self.wal_identity = Some(Identity {
                        device: metadata.dev(),
                        inode: metadata.ino(),
                    });
                    self.wal_file = Some(file);
                }
            }
        }
    }

    fn expected_wal_bytes(&self, frames: i32) -> u64 {
        if frames <= 0 {
            return 0;
        }
        WAL_HEADER_BYTES
            + u64::try_from(frames).unwrap_or(0) * (self.page_bytes + WAL_FRAME_HEADER_BYTES)
    }

    /// Called before a batch writes anything: the files are the ones opened
    /// and the WAL still holds every frame already acknowledged. A batch
    /// refused here wrote nothing.
    pub fn check_before_write(&mut self) -> Result<(), FilesLost> {
        let frames = self.frames_checked;
        self.check_paths(frames)
    }

    fn check_paths(&mut self, frames: i32) -> Result<(), FilesLost> {
        let (identity, metadata) = identity_of(&self.database)
            .map_err(|error| FilesLost::Missing(self.database.clone(), error))?;
        if identity != self.database_identity || metadata.nlink() == 0 {
            return Err(FilesLost::Replaced(self.database.clone()));
        }
        if self.wal_identity.is_none() && frames <= 0 {
            return Ok(()); // No WAL written yet.
        }
        let (identity, metadata) =
            identity_of(&self.wal).map_err(|error| FilesLost::Missing(self.wal.clone(), error))?;
        self.note_wal();
        if self.wal_identity != Some(identity) {
            return Err(FilesLost::Replaced(self.wal.clone()));
        }
        let expected = self.expected_wal_bytes(frames);
        if metadata.len() < expected {
            return Err(FilesLost::Truncated {
                path: self.wal.clone(),
                actual: metadata.len(),
                expected,
                frames,
            });
        }
        Ok(())
    }

    /// The WAL's header is intact, and so is the last frame of the batch
    /// before this one: a WAL truncated under the writer and then written
    /// past the cut (which restores its length) has zeros there.
    fn check_wal_contents(&self, frames: i32) -> Result<(), FilesLost> {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.wal_file else {
            return Ok(());
        };
        if frames <= 0 {
            return Ok(()); // Nothing written to this WAL yet.
        }
        let holed = || FilesLost::Holed(self.wal.clone());
        let mut header = [0u8; WAL_HEADER_BYTES as usize];
        file.read_exact_at(&mut header, 0).map_err(|_| holed())?;
        let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if !WAL_MAGIC.contains(&magic) {
            return Err(holed());
        }
        let previous = self.frames_checked;
        if previous > 0 && frames > previous {
            // Frame `previous` (1-based): its header's salts match the
            // WAL header's while it is the file SQLite wrote.
            let offset = self.expected_wal_bytes(previous - 1);
            let mut frame_header = [0u8; WAL_FRAME_HEADER_BYTES as usize];
            file.read_exact_at(&mut frame_header, offset)
                .map_err(|_| holed())?;
            if frame_header[8..16] != header[16..24] {
                return Err(holed());
            }
        }
        Ok(())
    }

    /// Called after a COMMIT, before anyone is told of it.
    pub fn check(&mut self) -> Result<(), FilesLost> {
        let frames = WAL_FRAMES.with(Cell::get);
        self.check_paths(frames)?;
        self.check_wal_contents(frames)?;
        self.frames_checked = frames;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{migrate, open};

    fn watched() -> (tempfile::TempDir, Connection, FileWatch) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open::open_read_write(&dir.path().join("wallet.db")).unwrap();
        migrate::migrate(&mut conn).unwrap();
        let watch = FileWatch::start(&conn).unwrap().unwrap();
        (dir, conn, watch)
    }

    fn truncate_wal(dir: &tempfile::TempDir, bytes: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("wallet.db-wal"))
            .unwrap()
            .set_len(bytes)
            .unwrap();
    }

    fn write_something(conn: &Connection) {
        conn.execute_batch("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (randomblob(5000)); COMMIT")
            .unwrap();
    }

    #[test]
    fn untouched_files_pass() {
        let (_dir, conn, mut watch) = watched();
        write_something(&conn);
        watch.check().unwrap();
        write_something(&conn);
        watch.check().unwrap();
    }

    #[test]
    fn a_deleted_wal_is_seen() {
        let (dir, conn, mut watch) = watched();
        write_something(&conn);
        watch.check().unwrap();
        std::fs::remove_file(dir.path().join("wallet.db-wal")).unwrap();
        write_something(&conn);
        assert!(matches!(watch.check(), Err(FilesLost::Missing(..))));
    }

    #[test]
    fn a_truncated_wal_is_seen() {
        let (dir, conn, mut watch) = watched();
        write_something(&conn);
        watch.check().unwrap();
        truncate_wal(&dir, 100);
        assert!(matches!(
            watch.check_before_write(),
            Err(FilesLost::Truncated { .. })
        ));
    }

    #[test]
    fn a_wal_truncated_and_then_written_past_the_cut_is_seen() {
        let (dir, conn, mut watch) = watched();
        for _ in 0..3 {
            write_something(&conn);
            watch.check().unwrap();
        }
        truncate_wal(&dir, 0);
        // SQLite writes the next frames at their offsets, restoring the
        // length: only the zeros left behind tell.
        write_something(&conn);
        assert!(matches!(watch.check(), Err(FilesLost::Holed(..))));
    }

    #[test]
    fn a_replaced_database_is_seen() {
        let (dir, conn, mut watch) = watched();
        write_something(&conn);
        let path = dir.path().join("wallet.db");
        std::fs::copy(&path, dir.path().join("copy.db")).unwrap();
        std::fs::rename(dir.path().join("copy.db"), &path).unwrap();
        assert!(matches!(watch.check(), Err(FilesLost::Replaced(..))));
    }
}
