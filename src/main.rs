//! Parses the command line, starts logging and dispatches; no logic of its own.

use std::process::ExitCode;

use clap::Parser;
use log::info;

use wallet::auth::{self, Access};
use wallet::cli::{
    AssetsCommand, BackupArgs, Cli, Command, CopyArgs, DbArgs, HealthArgs, KeysCommand,
    MaxBalanceOption, RestoreArgs, ServeArgs,
};
use wallet::config::{self, ServeSettings};
use wallet::domain::{AssetDecimals, AssetRulesChange, FieldChange, Limits};
use wallet::http::{format_timestamp, Application};
use wallet::ledger::engine::NewAsset;
use wallet::limits::API_KEYS_RELOAD_INTERVAL;
use wallet::progress::Progress;
use wallet::store::{
    commands, AssetOutcome, BackupOutcome, CopyStage, DatabaseLocation, NewKey, OpenedStore,
    RestoreOutcome, RulesChange, RulesOutcome,
};

/// mimalloc instead of the system allocator: every request allocates (its
/// body, the command, the answer), and glibc's malloc and free were about
/// 7% of a spend's instructions under callgrind (`wallet bench` spend).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{}", one_line_usage_error(&error));
            return ExitCode::from(2);
        }
    };
    let is_bench = matches!(cli.command, Some(Command::Bench(_)));
    let log_format = match config::log_format() {
        Ok(format) => format,
        Err(reason) => {
            eprintln!("wallet: {reason}");
            return ExitCode::from(2);
        }
    };
    // Held to the end: dropping it writes out the lines still queued.
    let _log = wallet::logging::init(&config::log_filter(is_bench), log_format);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("wallet: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A usage error in one line: clap's reason, and the subcommand or flag
/// it suggests for a mistyped one (`did you mean 'verify'?`).
fn one_line_usage_error(error: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let rendered = error.render().to_string();
    let first_line = rendered.lines().next().unwrap_or("invalid arguments");
    let mut reason = first_line.trim_start_matches("error: ").to_owned();
    // clap repeats a refused value; a database URL's password must not be.
    if let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue) {
        reason = reason.replace(value.as_str(), &DatabaseLocation::shown(value));
    }
    let suggested: Vec<String> = [ContextKind::SuggestedSubcommand, ContextKind::SuggestedArg]
        .into_iter()
        .filter_map(|kind| error.get(kind))
        .flat_map(|value| match value {
            ContextValue::String(one) => vec![one.clone()],
            ContextValue::Strings(many) => many.clone(),
            _ => Vec::new(),
        })
        .collect();
    match suggested.as_slice() {
        [] => format!("wallet: {reason} (see `wallet --help`)"),
        names => format!(
            "wallet: {reason}; did you mean {}? (see `wallet --help`)",
            names
                .iter()
                .map(|name| format!("'{name}'"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Migrate(args)) => migrate(args),
        Some(Command::Seed(args)) => seed(args),
        Some(Command::Verify(args)) => verify(args),
        Some(Command::Keys(args)) => keys(args.command),
        Some(Command::Assets(args)) => assets(args.command),
        Some(Command::Bench(args)) => wallet::bench::run(args),
        Some(Command::Backup(args)) => backup(args),
        Some(Command::Restore(args)) => restore(args),
        Some(Command::Copy(args)) => copy(args),
        Some(Command::Health(args)) => health(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    wallet::clock::check_clock()?;
    let write_batch_max = args.writer.write_batch_max;
    let settings = ServeSettings::resolve(args)?;
    let storage = OpenedStore::open(&settings.db, write_batch_max, settings.seed_demo_if_empty)?;
    let access = match Access::start(storage.store(), &settings.db, &settings.access) {
        Ok(access) => access,
        Err(error) => {
            storage.close();
            return Err(error);
        }
    };
    actix_web::rt::System::new().block_on(async move {
        let app = match Application::build(storage, access, &settings.bind) {
            Ok(app) => app,
            Err(error) => return Err(error),
        };
        info!(
            "listening on http://{} with database {}",
            app.local_addr(),
            settings.db.display()
        );
        app.run_until_stopped().await
    })?;
    if OpenedStore::files_lost() {
        anyhow::bail!(
            "stopped: the database files changed under the server (see the log); run `wallet verify` before serving again"
        );
    }
    info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

fn migrate(args: DbArgs) -> anyhow::Result<ExitCode> {
    let version = commands::migrate(&args.db)?;
    println!("{}: schema at version {version}", args.db.display());
    Ok(ExitCode::SUCCESS)
}

fn seed(args: DbArgs) -> anyhow::Result<ExitCode> {
    let summary = commands::seed(&args.db)?;
    println!(
        "{}: seed applied: {} entries created, {} already present",
        args.db.display(),
        summary.created,
        summary.already_present
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: DbArgs) -> anyhow::Result<ExitCode> {
    let report = {
        let mut progress = Progress::new("verify", "entries checked", None);
        commands::verify_reporting(&args.db, &mut |checked| progress.set(checked))?
    };
    println!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `wallet assets rules`: one line per rule, as API.md's names have them.
fn print_rules(row: &wallet::ledger::engine::AssetRow) {
    println!("spendOrder {}", row.rules.spend_order.as_str());
    match row.rules.max_balance {
        Some(max) => println!("maxBalance {max}"),
        None => println!("maxBalance none"),
    }
    if row.rules.limits.is_empty() {
        println!("limits none");
    }
    for limit in row.rules.limits.as_slice() {
        println!(
            "limit {} {} {}",
            limit.kind.as_str(),
            limit.window_seconds,
            limit.max
        );
    }
    match row.rules.updated_at_ms {
        Some(at) => println!("updatedAt {}", format_timestamp(at)),
        None => println!("updatedAt never"),
    }
}

fn assets(command: AssetsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AssetsCommand::Create(args) => {
            let asset = NewAsset {
                symbol: args.symbol,
                name: args.name,
                decimals: AssetDecimals::parse(u64::from(args.decimals))?,
            };
            match commands::create_asset(&args.db.db, asset)? {
                Ok(AssetOutcome::Created(row)) => {
                    println!("created asset {} ({}), id {}", row.symbol, row.name, row.id);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(AssetOutcome::AlreadyTheSame(row)) => {
                    println!(
                        "asset {} ({}) exists already with these settings, id {}",
                        row.symbol, row.name, row.id
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(rejection) => anyhow::bail!("the asset was not created: {rejection}"),
            }
        }
        AssetsCommand::Rules(args) => {
            let change = AssetRulesChange {
                spend_order: args.spend_order,
                max_balance: match args.max_balance {
                    None => FieldChange::Keep,
                    Some(MaxBalanceOption::None) => FieldChange::Clear,
                    Some(MaxBalanceOption::Set(max)) => FieldChange::Set(max),
                },
                limits: if args.no_limits {
                    FieldChange::Clear
                } else if args.limits.is_empty() {
                    FieldChange::Keep
                } else {
                    match Limits::parse(args.limits) {
                        Ok(limits) => FieldChange::Set(limits),
                        Err(problems) => {
                            let (_, message) = problems.into_iter().next().unwrap_or_default();
                            anyhow::bail!("--limit: {message}");
                        }
                    }
                },
            };
            let change = RulesChange::Asset {
                asset: args.asset,
                change,
            };
            match commands::change_rules(&args.db.db, change)? {
                Ok(RulesOutcome::Asset(row)) => {
                    print_rules(&row);
                    Ok(ExitCode::SUCCESS)
                }
                Ok(RulesOutcome::User(_)) => anyhow::bail!("the rules changed are not the asset's"),
                Err(rejection) => anyhow::bail!("the rules were not changed: {rejection}"),
            }
        }
        AssetsCommand::List(args) => {
            println!("SYMBOL\tNAME\tDECIMALS");
            for row in commands::list_assets(&args.db)? {
                println!("{}\t{}\t{}", row.symbol, row.name, row.decimals);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create(args) => {
            let (secret, secret_sha256) = auth::secret::generate()?;
            let key = NewKey {
                name: args.name.clone(),
                scopes: args.scopes,
                secret_sha256,
            };
            if let Err(rejection) = commands::create_key(&args.db.db, key)? {
                anyhow::bail!("{rejection}");
            }
            // The secret alone on stdout, so a script can capture it; the
            // rest on stderr.
            println!("{secret}");
            eprintln!(
                "created key {} with scopes {}: send it as `Authorization: Bearer <key>`; this is the only time it is shown",
                args.name.as_str(),
                args.scopes
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List(args) => {
            let keys = commands::list_keys(&args.db)?;
            println!("NAME\tSCOPES\tCREATED\tLAST USED\tSTATUS");
            for key in keys {
                let status = match key.revoked_at_ms {
                    Some(revoked) => format!("revoked {}", format_timestamp(revoked)),
                    None => "active".to_owned(),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    key.name,
                    key.scopes,
                    format_timestamp(key.created_at_ms),
                    key.last_used_at_ms
                        .map_or_else(|| "never".to_owned(), format_timestamp),
                    status
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke(args) => {
            if let Err(rejection) = commands::revoke_key(&args.db.db, &args.name)? {
                anyhow::bail!("{rejection}");
            }
            println!(
                "revoked key {}: running servers refuse it within {} ms",
                args.name.as_str(),
                API_KEYS_RELOAD_INTERVAL.as_millis()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let outcome = {
        let mut progress = Progress::new("backup: auditing the copy", "entries checked", None);
        commands::backup(&args.db.db, &args.dest, &mut |checked| {
            progress.set(checked)
        })?
    };
    match outcome {
        BackupOutcome::Written(report) => {
            println!("{report}");
            println!(
                "{}: backup of {} written and verified",
                args.dest.display(),
                args.db.db.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupOutcome::FailedAudit(report) => {
            println!("{report}");
            eprintln!(
                "wallet: the copy of {} failed its audit and was deleted; run `wallet verify` on it",
                args.db.db.display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let outcome = {
        let mut progress = Progress::new("restore: auditing the backup", "entries checked", None);
        commands::restore(&args.db.db, &args.source, &mut |checked| {
            progress.set(checked)
        })?
    };
    match outcome {
        RestoreOutcome::Restored(report) => {
            println!("{report}");
            println!(
                "{}: restored from {}, which passed its audit; start the server",
                args.db.db.display(),
                args.source.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        RestoreOutcome::FailedAudit(report) => {
            println!("{report}");
            eprintln!(
                "wallet: {} failed its audit; {} was not touched",
                args.source.display(),
                args.db.db.display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn copy(args: CopyArgs) -> anyhow::Result<ExitCode> {
    let outcome = {
        let mut shown: Option<(CopyStage, Progress)> = None;
        commands::copy(&args.from, &args.to, &mut |stage, done, total| {
            if shown.as_ref().map(|(current, _)| *current) != Some(stage) {
                let (label, unit) = match stage {
                    CopyStage::Copying => ("copy", "entries and changes of holds written"),
                    CopyStage::Auditing => ("copy: auditing the copy", "entries checked"),
                    CopyStage::Comparing => ("copy: comparing balances", "accounts compared"),
                };
                shown = Some((stage, Progress::new(label, unit, total)));
            }
            if let Some((_, progress)) = shown.as_mut() {
                progress.set(done);
            }
        })?
    };
    println!("{}", outcome.report);
    let counts = outcome.counts;
    if outcome.is_proven() {
        println!(
            "{}: copy of {} written and verified: {} asset types, {} accounts, {} API keys, {} idempotency records, {} entries, {} holds; every balance equals the source's ({} accounts compared)",
            args.to.display(),
            args.from.display(),
            counts.assets,
            counts.accounts,
            counts.keys,
            counts.requests,
            counts.entries,
            counts.holds,
            outcome.accounts_compared
        );
        return Ok(ExitCode::SUCCESS);
    }
    for mismatch in &outcome.mismatches {
        println!("DIFFERENT: {mismatch}");
    }
    eprintln!(
        "wallet: the copy at {} does not match {} ({}; {} differences in balances or counts); do not serve it",
        args.to.display(),
        args.from.display(),
        if outcome.report.is_clean() {
            "its audit passed"
        } else {
            "its audit failed"
        },
        outcome.mismatch_count
    );
    Ok(ExitCode::FAILURE)
}

fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let url = match args.url {
        Some(url) => url,
        None => config::health_url(args.bind)?,
    };
    println!("{}", wallet::http::probe::check(&url)?);
    Ok(ExitCode::SUCCESS)
}
