//! Checkpoints off the writer's path. SQLite's automatic checkpoint runs
//! inside the COMMIT that crosses its threshold: that commit copies the WAL
//! into the database file and fsyncs it, and every write waiting in the batch
//! behind it waits too; it was the largest item in the writer's profile after
//! the statements themselves, and what set p99 latency. Here a thread of its
//! own runs PASSIVE checkpoints, which never block the writer or readers,
//! while the writer's connection has automatic checkpoints turned off.
//!
//! A PASSIVE checkpoint racing steady writes may never catch up with the
//! WAL's end, and SQLite starts the WAL over only once one has. So the
//! checkpointer publishes the WAL's length, and past `WAL_FRAMES_MAX` the
//! writer checkpoints itself between two batches, which always catches up:
//! the WAL stays bounded under any load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use log::warn;
use rusqlite::Connection;

use crate::limits::{CHECKPOINT_INTERVAL, WAL_FRAMES_MAX};

/// The WAL's length in frames as last seen, shared with the writer.
#[derive(Clone, Default)]
pub struct WalLength(Arc<AtomicU64>);

impl WalLength {
    /// Whether the writer should checkpoint itself now.
    pub fn is_over_bound(&self) -> bool {
        self.0.load(Ordering::Relaxed) > WAL_FRAMES_MAX
    }
}

pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Checkpoints through `conn`, a read-write connection of its own, every
    /// `CHECKPOINT_INTERVAL`.
    pub fn start(conn: Connection, wal_length: WalLength) -> std::io::Result<Checkpointer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("wallet-checkpointer".into())
            .spawn(move || {
                while !stop_seen.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                    checkpoint(&conn, &wal_length);
                }
            })?;
        Ok(Checkpointer { stop, thread })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// One PASSIVE checkpoint on `conn`; records the WAL's length after it.
pub fn checkpoint(conn: &Connection, wal_length: &WalLength) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(1)
    });
    match result {
        // -1: the file is not in WAL mode, which open refuses; nothing to do.
        Ok(frames) => wal_length
            .0
            .store(u64::try_from(frames).unwrap_or(0), Ordering::Relaxed),
        // A failed checkpoint loses nothing: the WAL keeps every frame, and
        // the next one tries again.
        Err(error) => warn!("a checkpoint failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, AssetRef, Caller, EntryKind, IdempotencyKey, UserId};
    use crate::limits::WRITE_BATCH_MAX;
    use crate::storage::writer::Writer;
    use crate::storage::{migrate, open, seed, PostCommand};

    #[test]
    fn committed_writes_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.db");
        let mut conn = open::open_read_write(&path).unwrap();
        migrate::migrate(&mut conn).unwrap();
        seed::apply_catalogue(&mut conn).unwrap();
        let writer = Writer::start(conn, WRITE_BATCH_MAX).unwrap();
        let file_len_at_start = std::fs::metadata(&path).unwrap().len();
        let handle = writer.handle();
        for n in 0..200 {
            handle
                .post_blocking(PostCommand {
                    user: UserId::parse("alice").unwrap(),
                    kind: EntryKind::Topup,
                    asset: AssetRef::parse("GOLD").unwrap(),
                    amount: Amount::parse(1).unwrap(),
                    idempotency_key: IdempotencyKey::parse(&format!("k{n}")).unwrap(),
                    reference_id: None,
                    note: None,
                    caller: Caller::Anonymous,
                })
                .unwrap();
        }
        // In WAL mode only a checkpoint writes pages into the database file,
        // and the writer's connection has automatic checkpoints off: so the
        // file grows only if the checkpointer runs.
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let deadline = std::time::Instant::now() + CHECKPOINT_INTERVAL * 40;
        while file_len() <= file_len_at_start {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {file_len_at_start} bytes"
            );
            std::thread::sleep(CHECKPOINT_INTERVAL / 5);
        }
        writer.stop();
    }
}
