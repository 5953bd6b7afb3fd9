//! `wallet backup`: a consistent copy of a database that may be serving, made
//! with `VACUUM INTO` and audited before it takes its final name. Never
//! writes to the source, and never overwrites an existing file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{migrate, open, verify};
use crate::ledger::audit::AuditReport;
use crate::store::BackupOutcome;

/// Copies `source` to `dest`, audits the copy, and only then gives it the
/// name `dest`. Refuses a `dest` that exists.
/// `checked` hears how many entries of the copy's audit are checked so far.
pub fn backup(
    source: &Path,
    dest: &Path,
    checked: &mut dyn FnMut(u64),
) -> anyhow::Result<BackupOutcome> {
    if dest.exists() {
        bail!(
            "{} exists already; refusing to overwrite it",
            dest.display()
        );
    }
    open::existing_folder_of(dest).with_context(|| format!("cannot write {}", dest.display()))?;
    let source_conn = open::open_read_only(source)?;
    migrate::check_current(&source_conn)?;
    // The copy is written beside its destination under a name of its own, so
    // a copy that is cut short or fails its audit never bears the final name.
    // Copies left by runs that were killed would fill the volume: gone first.
    remove_partials_of_dead_runs(dest);
    let partial = partial_path(dest);
    if partial.exists() {
        bail!("{} exists already; remove it and retry", partial.display());
    }
    let result = copy_and_audit(&source_conn, &partial, checked);
    let outcome = match result {
        Ok(report) if report.is_clean() => {
            // A hard link, unlike a rename, fails if `dest` appeared meanwhile.
            std::fs::hard_link(&partial, dest)
                .with_context(|| format!("cannot create {}", dest.display()))
                .map(|()| BackupOutcome::Written(report))
        }
        Ok(report) => Ok(BackupOutcome::FailedAudit(report)),
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_file(&partial);
    outcome
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    dest.with_file_name(name)
}

/// Deletes `*.partial-PID` files beside `dest` whose backup process no longer
/// runs (a `wallet backup` killed mid-copy cannot clean up after itself). A
/// live backup's copy, this one's included, is left alone.
fn remove_partials_of_dead_runs(dest: &Path) {
    let Ok(folder) = open::existing_folder_of(dest) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.rsplit_once(".partial-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !is_running_backup(pid) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => log::info!(
                    "removed {}, left by a backup that did not finish",
                    entry.path().display()
                ),
                Err(error) => log::warn!("cannot remove {}: {error}", entry.path().display()),
            }
        }
    }
}

/// Whether `pid` is a live `wallet` process (a pid reused by another program
/// does not protect a stale copy).
fn is_running_backup(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(command) => command.trim() == "wallet",
        Err(_) => false,
    }
}

fn copy_and_audit(
    source: &rusqlite::Connection,
    copy: &Path,
    checked: &mut dyn FnMut(u64),
) -> anyhow::Result<AuditReport> {
    let copy_name = copy
        .to_str()
        .with_context(|| format!("the path {} is not UTF-8", copy.display()))?;
    // VACUUM INTO reads the source inside one read transaction, so the copy is
    // one committed state however the writer moves on meanwhile; in WAL mode
    // it blocks no writer, and it takes no write lock on the source.
    source
        .execute("VACUUM INTO ?1", [copy_name])
        .with_context(|| format!("cannot copy the database to {}", copy.display()))?;
    let mut copy_conn = open::open_read_only(copy)?;
    migrate::check_current(&copy_conn)?;
    verify::audit_reporting(&mut copy_conn, checked).context("reading the copy failed")
}
