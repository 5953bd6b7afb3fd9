//! The command line of API.md: each flag beside its variable and default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Copy the database, consistently even while it serves, to a new file, then audit the copy.
    Backup(BackupArgs),
    /// Ask a running server's /health; exit 0 only when it answers 200 (for container health checks).
    Health(HealthArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The copy to write; refused if it exists already. Its folder must exist.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The health URL, plain http [default: /health at the address `serve` would listen on,
    /// with 0.0.0.0 read as 127.0.0.1].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The address `serve` listens on, to find the default URL.
    #[arg(long, env = "WALLET_BIND", value_name = "ADDR")]
    pub bind: Option<String>,
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
}
