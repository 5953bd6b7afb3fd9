//! The command line of API.md: each flag beside its variable and default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::domain::{
    parse_max_balance, AssetDecimals, AssetName, AssetRef, AssetSymbol, KeyName, Limit,
    LimitedKind, ParseError, Scopes, SpendOrder,
};
use crate::limits::{
    RATE_LIMIT_BURST_DEFAULT, RATE_LIMIT_PER_SECOND_DEFAULT, RATE_LIMIT_SETTING_MAX,
    WRITE_BATCH_MAX,
};
use crate::store::DatabaseLocation;

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
    /// Open (creating if needed) and migrate the database, seed an empty one on loopback
    /// (or with --seed-demo), and serve HTTP.
    Serve(ServeArgs),
    /// Apply the schema and exit.
    Migrate(DbArgs),
    /// Apply the seed data (idempotent) and exit.
    Seed(DbArgs),
    /// Audit the ledger: recompute every balance from the entries; exit 0 only when all hold.
    Verify(DbArgs),
    /// Manage API keys: create, list, revoke.
    Keys(KeysArgs),
    /// Manage asset types: create, list.
    Assets(AssetsArgs),
    /// Drive HTTP load at a server (by default one started in-process on a
    /// temporary database), report throughput, latency and memory, then audit.
    Bench(crate::bench::BenchArgs),
    /// Copy the database, consistently even while it serves, to a new file, then audit the copy.
    Backup(BackupArgs),
    /// Replace the database with an audited backup, atomically; refused while a server has it open.
    Restore(RestoreArgs),
    /// Copy a whole ledger into a new or empty database, SQLite to PostgreSQL and back,
    /// then audit the copy and prove every balance equal to the source's.
    Copy(CopyArgs),
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
pub struct RestoreArgs {
    /// The backup to restore (from `wallet backup`); audited first, never changed.
    #[arg(value_name = "SRC")]
    pub source: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    /// The ledger to copy: a SQLite file or a postgres:// URL; only read, in one transaction,
    /// so a server may go on writing to it.
    #[arg(long, value_name = "PATH|URL", value_parser = DatabaseLocation::parse)]
    pub from: DatabaseLocation,
    /// Where to copy it: a new SQLite file (its folder must exist) or a postgres:// URL of a
    /// database with no ledger (migrated here if empty); refused if it holds one.
    #[arg(long, value_name = "PATH|URL", value_parser = DatabaseLocation::parse)]
    pub to: DatabaseLocation,
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
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret, once: only a digest of it is stored.
    Create(KeysCreateArgs),
    /// List every key: name, scopes, created, last used, revoked; never secrets.
    List(DbArgs),
    /// Revoke a key; running servers refuse it within a fraction of a second.
    Revoke(KeysRevokeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeysCreateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The key's name: 1-64 characters of A-Z a-z 0-9 _ . -; never reused.
    #[arg(long, value_name = "NAME", value_parser = KeyName::parse)]
    pub name: KeyName,
    /// What the key may do: a comma-separated list of read, spend, grant, admin.
    #[arg(long, value_name = "SCOPES", value_parser = Scopes::parse)]
    pub scopes: Scopes,
}

#[derive(Debug, Clone, Args)]
pub struct AssetsArgs {
    #[command(subcommand)]
    pub command: AssetsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AssetsCommand {
    /// Create an asset type and its Treasury, as `POST /assets` does.
    Create(AssetsCreateArgs),
    /// List every asset type: symbol, name, decimals, in symbol order.
    List(DbArgs),
    /// Show an asset's rules on value, or change them as `PUT /assets/{asset}/rules` does;
    /// prints the rules in force.
    Rules(AssetsRulesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AssetsRulesArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The asset: its symbol or id.
    #[arg(value_name = "SYMBOL", value_parser = AssetRef::parse)]
    pub asset: AssetRef,
    /// Which part of a balance a debit takes first: free-first or paid-first.
    #[arg(long, value_name = "O", value_parser = SpendOrder::parse)]
    pub spend_order: Option<SpendOrder>,
    /// The most a user's balance may reach by a credit, 0 to 2^53 - 1, or `none`.
    #[arg(long, value_name = "N|none", value_parser = parse_max_balance_option)]
    pub max_balance: Option<MaxBalanceOption>,
    /// A cap, TYPE:WINDOW_SECONDS:MAX (TYPE one of TOPUP, BONUS, SPEND, TRANSFER); repeat for
    /// several, at most 8. Replaces the asset's limits.
    #[arg(long = "limit", value_name = "TYPE:WINDOW_SECONDS:MAX", value_parser = parse_limit, conflicts_with = "no_limits")]
    pub limits: Vec<Limit>,
    /// Clear the asset's limits.
    #[arg(long)]
    pub no_limits: bool,
}

/// `--max-balance`: a value, or `none` to clear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxBalanceOption {
    Set(i64),
    None,
}

fn parse_max_balance_option(raw: &str) -> Result<MaxBalanceOption, ParseError> {
    if raw == "none" {
        return Ok(MaxBalanceOption::None);
    }
    raw.parse::<u64>()
        .map_err(|_| ParseError::new("must be none or an integer from 0 to 9007199254740991"))
        .and_then(parse_max_balance)
        .map(MaxBalanceOption::Set)
}

fn parse_limit(raw: &str) -> Result<Limit, ParseError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let [kind, window, max] = parts[..] else {
        return Err(ParseError::new(
            "must be TYPE:WINDOW_SECONDS:MAX, such as SPEND:86400:1000",
        ));
    };
    let kind = LimitedKind::parse(kind)?;
    let window = window
        .parse::<u64>()
        .map_err(|_| ParseError::new("WINDOW_SECONDS must be an integer from 60 to 2592000"))?;
    let max = max
        .parse::<u64>()
        .map_err(|_| ParseError::new("MAX must be an integer from 1 to 9007199254740991"))?;
    Limit::new(kind, window, max)
}

#[derive(Debug, Clone, Args)]
pub struct AssetsCreateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The asset's symbol: 1-32 of A-Z 0-9 _; never renamed.
    #[arg(long, value_name = "S", value_parser = AssetSymbol::parse)]
    pub symbol: AssetSymbol,
    /// Its display name: 1-128 characters.
    #[arg(long, value_name = "N", value_parser = AssetName::parse)]
    pub name: AssetName,
    /// Decimal places for display, 0-18.
    #[arg(long, value_name = "D", default_value_t = 0, value_parser = parse_decimals)]
    pub decimals: u8,
}

fn parse_decimals(raw: &str) -> Result<u8, ParseError> {
    raw.parse::<u64>()
        .map_err(|_| ParseError::new("must be an integer from 0 to 18"))
        .and_then(AssetDecimals::parse)
        .map(AssetDecimals::get)
}

#[derive(Debug, Clone, Args)]
pub struct KeysRevokeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The name of the key to revoke.
    #[arg(value_name = "NAME", value_parser = KeyName::parse)]
    pub name: KeyName,
}

/// A yes/no setting, as a flag (`--seed-demo`) or a variable
/// (`WALLET_SEED_DEMO=1`): true, yes, on, 1 or false, no, off, 0, in any
/// case. Anything else is refused rather than read as either.
pub fn boolean_setting(raw: &str) -> Result<bool, ParseError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" | "" => Ok(false),
        _ => Err(ParseError::new(format!(
            "{raw:?} is not a yes/no value; use true, yes, on, 1 or false, no, off, 0"
        ))),
    }
}

/// A rate-limit setting: 1 to `RATE_LIMIT_SETTING_MAX`.
fn rate_limit_setting(raw: &str) -> Result<u32, ParseError> {
    raw.parse::<u32>()
        .ok()
        .filter(|value| (1..=RATE_LIMIT_SETTING_MAX).contains(value))
        .ok_or_else(|| {
            ParseError::new(format!(
                "must be a whole number from 1 to {RATE_LIMIT_SETTING_MAX}"
            ))
        })
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The SQLite database file (its folder must exist), or a
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE URL.
    #[arg(
        long,
        env = "WALLET_DB",
        default_value = "./wallet.db",
        value_name = "PATH",
        value_parser = DatabaseLocation::parse
    )]
    pub db: DatabaseLocation,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on [default: 127.0.0.1:8080, or 0.0.0.0:$PORT when only PORT is set].
    #[arg(long, env = "WALLET_BIND", value_name = "ADDR")]
    pub bind: Option<String>,
    /// Serve an address other machines can reach without any API key. Without
    /// it, such a server with no active key starts locked: every route but
    /// /health and /openapi.json answers 401 until the first key is created.
    #[arg(long, env = "WALLET_INSECURE_NO_AUTH", value_name = "BOOL",
          action = clap::ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = boolean_setting)]
    pub insecure_no_auth: bool,
    /// Apply the demo seed (GOLD, DIAMOND, LOYALTY; user_alice and user_bob
    /// with balances) to an empty database even off loopback, where a
    /// production server otherwise starts with an empty ledger.
    #[arg(long, env = "WALLET_SEED_DEMO", value_name = "BOOL",
          action = clap::ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = boolean_setting)]
    pub seed_demo: bool,
    /// Requests a second each API key may make, sustained.
    #[arg(long, env = "WALLET_RATE_LIMIT_PER_SECOND", value_name = "N",
          default_value_t = RATE_LIMIT_PER_SECOND_DEFAULT, value_parser = rate_limit_setting)]
    pub rate_limit_per_second: u32,
    /// Requests each API key may make at once above the sustained rate.
    #[arg(long, env = "WALLET_RATE_LIMIT_BURST", value_name = "N",
          default_value_t = RATE_LIMIT_BURST_DEFAULT, value_parser = rate_limit_setting)]
    pub rate_limit_burst: u32,
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
        value_parser = crate::limits::parse_write_batch_max
    )]
    pub write_batch_max: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yes_no_setting_takes_the_usual_spellings_and_refuses_the_rest() {
        for yes in ["true", "TRUE", "yes", "on", "1"] {
            assert_eq!(boolean_setting(yes), Ok(true), "{yes}");
        }
        for no in ["false", "No", "off", "0", ""] {
            assert_eq!(boolean_setting(no), Ok(false), "{no}");
        }
        for bad in ["2", "enable", "y e s"] {
            assert!(boolean_setting(bad).is_err(), "{bad}");
        }
    }
}
