//! The command line of API.md: each flag beside its variable and default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::limits::{WRITE_BATCH_MAX, WRITE_QUEUE_DEPTH_MAX};

#[derive(Debug, Parser)]
#[command(
    name = "wallet",
    version,
    about = "A double-entry ledger for virtual currencies on one SQLite file. With no command, serves.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for serving when no command is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open (creating if needed) and migrate the database, seed it if empty, and serve HTTP.
    Serve(ServeArgs),
    /// Apply the schema and exit.
    Migrate(DbArgs),
    /// Apply the seed data (idempotent) and exit.
    Seed(DbArgs),
    /// Audit the ledger: recompute every balance from the entries; exit 0 only when all hold.
    Verify(DbArgs),
    /// Drive HTTP load at a server (by default one started in-process on a
    /// temporary database), report throughput, latency and memory, then audit.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The SQLite database file; its folder must exist.
    #[arg(
        long,
        env = "WALLET_DB",
        default_value = "./wallet.db",
        value_name = "PATH"
    )]
    pub db: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on [default: 127.0.0.1:8080, or 0.0.0.0:$PORT when only PORT is set].
    #[arg(long, env = "WALLET_BIND", value_name = "ADDR")]
    pub bind: Option<String>,
    #[command(flatten)]
    pub writer: WriterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WriterArgs {
    /// Most queued writes committed together in one transaction (group
    /// commit); 1 commits every write alone.
    #[arg(
        long,
        env = "WALLET_WRITE_BATCH_MAX",
        default_value_t = WRITE_BATCH_MAX,
        value_name = "N",
        value_parser = parse_write_batch_max
    )]
    pub write_batch_max: usize,
}

/// 1 ..= the queue depth: a batch can never hold more than is queued.
pub fn parse_write_batch_max(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=WRITE_QUEUE_DEPTH_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number from 1 to {WRITE_QUEUE_DEPTH_MAX}, not {value:?}"
        )),
    }
}
