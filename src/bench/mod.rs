//! `wallet bench`: the benchmark the project carries. It starts the server
//! in-process on a temporary database (or targets `--url`), funds the users,
//! drives HTTP load from keep-alive connections in each scenario, and ends by
//! checking every user's balance against the answers it got, the entry count
//! against the 201s, and the `verify` audit: a run that is fast but wrong
//! fails.

mod client;
mod report;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use uuid::Uuid;

use self::client::Connection;
use self::report::{Latency, Report, ScenarioResult, Startup};
use crate::auth::{Access, AccessPolicy, RateLimit};
use crate::domain::{
    Amount, AssetRef, AssetRulesChange, Caller, FieldChange, IdempotencyKey, Limit, LimitedKind,
    Limits, UserId,
};
use crate::http::Application;
use crate::ledger::engine::Operation as LedgerOperation;
use crate::ledger::engine::{Command, CreditKind, EntryDetails, Outcome, Route};
use crate::limits::parse_write_batch_max;
use crate::limits::{
    AMOUNT_MAX, BENCH_CONNECTIONS_MAX, BENCH_DURATION_MAX, BENCH_ENTRIES_MAX, BENCH_USERS_MAX,
    RATE_LIMIT_BURST_DEFAULT, RATE_LIMIT_PER_SECOND_DEFAULT, WRITE_BATCH_MAX,
    WRITE_QUEUE_DEPTH_MAX,
};
use crate::progress::Progress;
use crate::store::{commands, DatabaseLocation, OpenedStore, RulesChange};

/// What every bench user is funded with before the load: enough that no spend
/// of 1 is ever short, so every write is expected to be a 201.
const FUNDING: u64 = 1_000_000_000_000;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Drive a running server (`http://HOST:PORT`) instead of one started
    /// in-process; several, comma-separated (instances sharing one
    /// PostgreSQL database), share the connections between them in turn.
    /// Its balances are checked; its file is not audited. Needs
    /// --allow-writes: the bench writes to its ledger, which cannot be undone.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Agree to what a --url run writes to that server: a funding top-up of
    /// GOLD to each of --users new users `bench_<run>_<n>`, then the
    /// scenarios' spends and top-ups of 1 GOLD to them.
    #[arg(long, requires = "url")]
    pub allow_writes: bool,
    /// The API key a --url run sends (`Authorization: Bearer`); it needs the
    /// scopes of the scenarios' routes: read, spend and grant (funding).
    #[arg(long, env = "WALLET_BENCH_API_KEY", value_name = "KEY",
          hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<String>,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "spend,topup,hot,read,history,mixed"
    )]
    pub scenarios: Vec<Scenario>,
    /// Keep-alive connections driving load at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=BENCH_CONNECTIONS_MAX as i64))]
    pub connections: u16,
    /// How long each scenario runs: `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Users the load is spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=BENCH_USERS_MAX as i64))]
    pub users: u32,
    /// Entries to put in the ledger first, through the writer in large
    /// batches, to measure cost as history grows: `0,10000000` runs every
    /// scenario on an empty ledger and on one of ten million entries, each
    /// on a fresh database (in-process only).
    #[arg(long, value_delimiter = ',', default_values_t = [0u64], value_parser = clap::value_parser!(u64).range(0..=BENCH_ENTRIES_MAX))]
    pub entries: Vec<u64>,
    /// Group commit sizes to compare, each on a fresh database: `1,128`
    /// measures committing every write alone against batching (in-process
    /// only).
    #[arg(long, value_delimiter = ',', default_values_t = [WRITE_BATCH_MAX], value_parser = parse_write_batch_max)]
    pub write_batch_max: Vec<usize>,
    /// Rules on GOLD to compare, each on a fresh database: `none,windows`
    /// measures writes with no rules against writes under three caps of 30
    /// days (TOPUP, SPEND, TRANSFER; too high to refuse anything, so each
    /// write reads every window's sum) (in-process only).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [BenchRules::None])]
    pub rules: Vec<BenchRules>,
    /// Folder for the temporary database; put it on the disk being measured.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Start-ups of the binary on the finished database to time (0: none).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(0..=100))]
    pub startup_runs: u16,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The rules on value a run's GOLD has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchRules {
    /// No rules: what every write cost before limits existed.
    None,
    /// Three caps of 30 days, none of them reached.
    Windows,
}

impl std::fmt::Display for BenchRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BenchRules::None => "none",
            BenchRules::Windows => "windows",
        })
    }
}

impl BenchRules {
    /// The change that sets these rules on GOLD, if any.
    fn change(self) -> Option<RulesChange> {
        let limits = LimitedKind::ALL
            .into_iter()
            .filter(|kind| *kind != LimitedKind::Bonus)
            .map(|kind| Limit::new(kind, 2_592_000, AMOUNT_MAX))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        match self {
            BenchRules::None => None,
            BenchRules::Windows => Some(RulesChange::Asset {
                asset: AssetRef::parse("GOLD").ok()?,
                change: AssetRulesChange {
                    limits: FieldChange::Set(Limits::parse(limits).ok()?),
                    ..AssetRulesChange::default()
                },
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Spends of 1 spread over every user.
    Spend,
    /// Top-ups of 1 spread over every user.
    Topup,
    /// Every request spends from the same user.
    Hot,
    /// GET balance spread over every user.
    Read,
    /// GET the first page of history spread over every user.
    History,
    /// 70% balance reads, 25% spends, 5% top-ups.
    Mixed,
    /// Transfers of 1 from a user to the next one.
    Transfer,
    /// `POST /batch` of 10 transfers of 1 from one user to ten others.
    Batch,
    /// A hold of 1, then its capture: two requests, one entry.
    Hold,
    /// GET balance of one user with 1000 active holds (beside `read`, it
    /// shows `held` costs the same however many holds there are).
    HeldRead,
    /// GET balance `?at=` a second ago, spread over every user (with
    /// `--entries`, it shows a balance back in time costs the same however
    /// long the ledger).
    ReadAt,
}

impl Scenario {
    /// Whether the scenario posts entries (every run also funds its users).
    fn writes(self) -> bool {
        !matches!(
            self,
            Scenario::Read | Scenario::History | Scenario::HeldRead | Scenario::ReadAt
        )
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Spend => "spend",
            Scenario::Topup => "topup",
            Scenario::Hot => "hot",
            Scenario::Read => "read",
            Scenario::History => "history",
            Scenario::Mixed => "mixed",
            Scenario::Transfer => "transfer",
            Scenario::Batch => "batch",
            Scenario::Hold => "hold",
            Scenario::HeldRead => "held-read",
            Scenario::ReadAt => "read-at",
        }
    }

    /// Ledger entries made by a scenario whose writes were answered 201
    /// `created` times: a batch makes ten, a hold none and its capture one.
    fn entries_made(name: &str, created: u64) -> u64 {
        if name == Scenario::Batch.name() {
            created * BATCH_TRANSFERS
        } else if name == Scenario::Hold.name() {
            created / 2
        } else {
            created
        }
    }
}

/// Operations in one `batch` scenario request.
const BATCH_TRANSFERS: u64 = 10;
/// The user whose balance `held-read` reads, and how many holds it has.
const HELD_READ_USER: u32 = 0;
const HELD_READ_HOLDS: u32 = 1000;

/// Gives `user` `HELD_READ_HOLDS` active holds of 1 GOLD (lasting 7 days),
/// as many as one account may have.
async fn hold_many(
    addr: SocketAddr,
    api_key: Option<&str>,
    user: &str,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(addr, api_key).await?;
    for _ in 0..HELD_READ_HOLDS {
        let response = connection
            .post_json(&format!("/wallets/{user}/holds"), &hold_body(604_800))
            .await?;
        if response.status != 201 {
            failures.push(format!(
                "held-read: a set-up hold was answered {}",
                response.status
            ));
            break;
        }
    }
    Ok(())
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let transfers = args
        .scenarios
        .iter()
        .any(|scenario| matches!(scenario, Scenario::Transfer | Scenario::Batch));
    if transfers && args.users < 2 {
        bail!("the transfer and batch scenarios need --users of 2 or more");
    }
    let report = match &args.url {
        Some(url) => bench_remote(&args, url)?,
        None => bench_in_process(&args)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench_remote(args: &BenchArgs, url: &str) -> anyhow::Result<Report> {
    if args.entries != [0]
        || args.write_batch_max != [WRITE_BATCH_MAX]
        || args.rules != [BenchRules::None]
    {
        bail!("--entries, --write-batch-max and --rules need the in-process server; drop --url");
    }
    let addrs = url
        .split(',')
        .map(parse_url)
        .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
    let users = Users::new(args.users);
    let writes = remote_writes(args, url, &users);
    if !args.allow_writes {
        bail!("{writes}; an append-only ledger cannot undo that, so point it at a test server and add --allow-writes");
    }
    for &addr in &addrs {
        check_remote_access(addr, url, args.api_key.as_deref())?;
    }
    eprintln!("wallet bench: {writes}");
    let mut failures = Vec::new();
    let run = Run {
        addrs,
        api_key: args.api_key.clone(),
        batch_max: None,
        ledger_entries_before: None,
        rules: None,
    };
    let scenarios = drive(args, &run, &users, &mut failures)?;
    Ok(Report {
        target: url.to_owned(),
        audited: false,
        scenarios,
        peak_rss_kib: None,
        startup: None,
        failures,
    })
}

/// One read before any write: a server that refuses the bench's key (or its
/// lack of one), or has no GOLD to fund users with, fails the run in one line
/// instead of producing figures of refusals.
fn check_remote_access(addr: SocketAddr, url: &str, api_key: Option<&str>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = runtime
        .block_on(async {
            let mut connection = Connection::open(addr, api_key).await?;
            connection.get("/assets").await
        })
        .with_context(|| format!("cannot reach {url}"))?;
    let scopes = "a key with the scopes read,spend,grant";
    match response.status {
        200 => {}
        401 => bail!("{url} answered 401: pass --api-key (or WALLET_BENCH_API_KEY) with {scopes}"),
        403 => bail!("{url} answered 403: the bench needs {scopes}"),
        status => bail!("{url} answered GET /assets with {status}"),
    }
    let has_gold = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|value| {
            value["data"]
                .as_array()
                .map(|assets| assets.iter().any(|asset| asset["symbol"] == "GOLD"))
        })
        .unwrap_or(false);
    if !has_gold {
        bail!("{url} has no GOLD asset for the bench to fund its users with");
    }
    Ok(())
}

/// What a `--url` run writes to the server, in one sentence.
fn remote_writes(args: &BenchArgs, url: &str, users: &Users) -> String {
    let writing: Vec<&str> = args
        .scenarios
        .iter()
        .filter(|scenario| scenario.writes())
        .map(|scenario| scenario.name())
        .collect();
    let load = match writing.as_slice() {
        [] => String::new(),
        names => format!(
            ", then spends and top-ups of 1 GOLD to them for {} s each in {}",
            args.duration.as_secs_f64(),
            names.join(", ")
        ),
    };
    format!(
        "this run writes to {url}: a top-up of {FUNDING} GOLD to each of {} new users {}0 to {}{}{load}",
        users.count,
        users.prefix,
        users.prefix,
        users.count - 1
    )
}

fn bench_in_process(args: &BenchArgs) -> anyhow::Result<Report> {
    let parent = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    let mut scenarios = Vec::new();
    let mut failures = Vec::new();
    let mut last_db = None;
    let runs = args.entries.iter().flat_map(|&fill| {
        args.write_batch_max
            .iter()
            .flat_map(move |&batch| args.rules.iter().map(move |&rules| (fill, batch, rules)))
    });
    for (fill_entries, batch_max, rules) in runs {
        let dir = tempfile::Builder::new()
            .prefix("wallet-bench-")
            .tempdir_in(&parent)
            .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
        let db = dir.path().join("wallet.db");
        let location = DatabaseLocation::Sqlite(db.clone());
        let users = Users::new(args.users);
        if fill_entries > 0 {
            // The largest batches the writer takes, whatever the batch size
            // being measured: the fill is set-up, not the measurement.
            let storage = OpenedStore::open(&location, WRITE_QUEUE_DEPTH_MAX, true)?;
            let filled = fill(&storage, &users, fill_entries);
            storage.close();
            filled?;
        }
        let storage = OpenedStore::open(&location, batch_max, true)?;
        if let Some(change) = rules.change() {
            let store = storage.store();
            tokio::runtime::Builder::new_current_thread()
                .build()?
                .block_on(store.change_rules(change, Caller::Anonymous))
                .map_err(|error| anyhow::anyhow!("cannot set the bench's rules: {error}"))?;
        }
        let entries_before = storage.store().entry_count()?;
        let server = InProcessServer::start(storage, &location)?;
        let run = Run {
            addrs: vec![server.addr],
            api_key: None,
            batch_max: Some(batch_max),
            ledger_entries_before: Some(entries_before),
            rules: Some(rules),
        };
        let result = drive(args, &run, &users, &mut failures);
        server.stop()?;
        let results = result?;
        // One entry per funding top-up and one per write answered 201.
        let expected_entries = entries_before
            + u64::from(users.count)
            + results
                .iter()
                .map(|result| {
                    Scenario::entries_made(
                        &result.scenario,
                        result.statuses.get(&201).copied().unwrap_or(0),
                    )
                })
                .sum::<u64>();
        scenarios.extend(results);
        check_file(&location, expected_entries, &mut failures)?;
        last_db = Some((dir, db));
    }
    let startup = match (&last_db, args.startup_runs) {
        (Some((_, db)), runs) if runs > 0 => Some(time_startups(db, usize::from(runs))?),
        _ => None,
    };
    Ok(Report {
        target: format!(
            "in-process server on a temporary database in {}",
            parent.display()
        ),
        audited: true,
        scenarios,
        peak_rss_kib: peak_rss_kib(),
        startup,
        failures,
    })
}

/// The bench's users, named so that runs against a shared server never meet.
struct Users {
    count: u32,
    prefix: String,
}

impl Users {
    fn new(count: u32) -> Users {
        let run = Uuid::new_v4().simple().to_string();
        Users {
            count,
            prefix: format!("bench_{}_", &run[..8]),
        }
    }

    fn name(&self, index: u32) -> String {
        format!("{}{index}", self.prefix)
    }

    /// The `step`th user after `user`, skipping `user` itself: the
    /// recipients of its transfers. Needs at least two users.
    fn next_after(&self, user: u32, step: u32) -> u32 {
        let others = self.count.saturating_sub(1).max(1);
        let offset = 1 + (step.saturating_sub(1) % others);
        ((u64::from(user) + u64::from(offset)) % u64::from(self.count)) as u32
    }
}

/// The servers the scenarios run against (several instances of one
/// ledger, or one), and what is known of them.
struct Run {
    /// Connection `i` goes to `addrs[i % len]`; funding and the balance
    /// check go to the first.
    addrs: Vec<SocketAddr>,
    /// Sent on every request of a `--url` run.
    api_key: Option<String>,
    batch_max: Option<usize>,
    ledger_entries_before: Option<u64>,
    rules: Option<BenchRules>,
}

/// Funds every user, runs each scenario, then checks every balance.
fn drive(
    args: &BenchArgs,
    run: &Run,
    users: &Users,
    failures: &mut Vec<String>,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let addr = run.addrs[0];
    let addrs = run.addrs.as_slice();
    let api_key = run.api_key.as_deref();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let connections = usize::from(args.connections);
        let mut expected = fund(addr, api_key, users, connections, failures).await?;
        let mut results = Vec::new();
        for &scenario in &args.scenarios {
            if scenario == Scenario::HeldRead {
                hold_many(addr, api_key, &users.name(HELD_READ_USER), failures).await?;
            }
            let load = Load {
                scenario,
                addrs,
                api_key,
                users,
                deadline: Instant::now() + args.duration,
            };
            let started = Instant::now();
            let tallies = futures_util::future::join_all(
                (0..connections).map(|index| load.run_connection(index as u64)),
            )
            .await;
            let elapsed = started.elapsed();
            let mut total = Tally::new(users.count);
            for tally in tallies {
                total.merge(tally?);
            }
            for (expected, delta) in expected.iter_mut().zip(&total.balance_deltas) {
                *expected += delta;
            }
            if total.transport_errors > 0 {
                failures.push(format!(
                    "{}: {} requests got no answer",
                    scenario.name(),
                    total.transport_errors
                ));
            }
            for (&status, &count) in &total.statuses {
                if !matches!(status, 200 | 201) {
                    failures.push(format!(
                        "{}: {count} answers with status {status}",
                        scenario.name()
                    ));
                }
            }
            let requests: u64 = total.statuses.values().sum();
            results.push(ScenarioResult {
                scenario: scenario.name().to_owned(),
                write_batch_max: run.batch_max,
                ledger_entries_before: run.ledger_entries_before,
                rules: run.rules.map(|rules| rules.to_string()),
                connections,
                seconds: report::seconds(elapsed),
                requests,
                requests_per_second: requests as f64 / elapsed.as_secs_f64(),
                latency: Latency::of(&mut total.latencies_us),
                statuses: total.statuses,
                transport_errors: total.transport_errors,
            });
        }
        check_balances(addr, api_key, users, &expected, failures).await?;
        Ok(results)
    })
}

/// Tops every user up with `FUNDING` and returns each user's balance after.
async fn fund(
    addr: SocketAddr,
    api_key: Option<&str>,
    users: &Users,
    connections: usize,
    failures: &mut Vec<String>,
) -> anyhow::Result<Vec<i64>> {
    let users_per_connection = users.count.div_ceil(connections as u32).max(1);
    let chunks = (0..users.count)
        .step_by(users_per_connection as usize)
        .map(|first| async move {
            let mut connection = Connection::open(addr, api_key).await?;
            let mut balances = Vec::new();
            for index in first..(first + users_per_connection).min(users.count) {
                let response = connection
                    .post_json(
                        &format!("/wallets/{}/topup", users.name(index)),
                        &write_body(FUNDING),
                    )
                    .await?;
                balances.push((index, response.status, balance_of(&response.body)));
            }
            anyhow::Ok(balances)
        });
    let mut expected = vec![0; users.count as usize];
    for chunk in futures_util::future::join_all(chunks).await {
        for (index, status, balance) in chunk? {
            match (status, balance) {
                (201, Some(balance)) => expected[index as usize] = balance,
                _ => failures.push(format!(
                    "funding {} was answered {status}",
                    users.name(index)
                )),
            }
        }
    }
    Ok(expected)
}

/// Every user's GOLD balance must be what the answers the bench got add up to.
async fn check_balances(
    addr: SocketAddr,
    api_key: Option<&str>,
    users: &Users,
    expected: &[i64],
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(addr, api_key).await?;
    let mut mismatches = 0;
    for index in 0..users.count {
        let response = connection
            .get(&format!("/wallets/{}/balance", users.name(index)))
            .await?;
        let actual = gold_balance(&response.body);
        if actual != Some(expected[index as usize]) {
            mismatches += 1;
            if mismatches <= 5 {
                failures.push(format!(
                    "{}: GOLD balance {actual:?}, but the answers add up to {}",
                    users.name(index),
                    expected[index as usize]
                ));
            }
        }
    }
    if mismatches > 5 {
        failures.push(format!("{mismatches} balances in all do not add up"));
    }
    Ok(())
}

/// One scenario's load, shared by its connections.
struct Load<'a> {
    scenario: Scenario,
    /// Connection `i` drives `addrs[i % len]`.
    addrs: &'a [SocketAddr],
    api_key: Option<&'a str>,
    users: &'a Users,
    deadline: Instant,
}

/// What one connection saw.
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    /// Per user: what the writes answered 201 moved.
    balance_deltas: Vec<i64>,
}

impl Tally {
    fn new(users: u32) -> Tally {
        Tally {
            latencies_us: Vec::new(),
            statuses: BTreeMap::new(),
            transport_errors: 0,
            balance_deltas: vec![0; users as usize],
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        for (total, delta) in self.balance_deltas.iter_mut().zip(other.balance_deltas) {
            *total += delta;
        }
    }
}

enum Operation {
    Read,
    History,
    Spend,
    Topup,
    Transfer,
    Batch,
    HoldThenCapture,
    ReadAt,
}

impl Load<'_> {
    async fn run_connection(&self, index: u64) -> anyhow::Result<Tally> {
        let mut tally = Tally::new(self.users.count);
        let mut random = SplitMix64(index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
        let addr = self.addrs[index as usize % self.addrs.len()];
        let mut connection = Connection::open(addr, self.api_key).await?;
        while Instant::now() < self.deadline {
            let (operation, user) = self.next(&mut random);
            let name = self.users.name(user);
            let started = Instant::now();
            let answer = match operation {
                Operation::Read => connection.get(&format!("/wallets/{name}/balance")).await,
                Operation::ReadAt => {
                    let at = crate::http::format_timestamp(crate::clock::now_ms() - 1_000);
                    connection
                        .get(&format!("/wallets/{name}/balance?at={at}"))
                        .await
                }
                Operation::History => {
                    connection
                        .get(&format!("/wallets/{name}/transactions"))
                        .await
                }
                Operation::Spend => {
                    connection
                        .post_json(&format!("/wallets/{name}/spend"), &write_body(1))
                        .await
                }
                Operation::Topup => {
                    connection
                        .post_json(&format!("/wallets/{name}/topup"), &write_body(1))
                        .await
                }
                Operation::Transfer => {
                    let to = self.users.name(self.users.next_after(user, 1));
                    connection
                        .post_json(&format!("/wallets/{name}/transfer"), &transfer_body(&to, 1))
                        .await
                }
                Operation::Batch => {
                    connection
                        .post_json("/batch", &batch_body(self.users, user))
                        .await
                }
                Operation::HoldThenCapture => {
                    let held = connection
                        .post_json(&format!("/wallets/{name}/holds"), &hold_body(900))
                        .await;
                    match held {
                        Ok(response) if response.status == 201 => {
                            // The hold is its own request: counted, then its capture.
                            *tally.statuses.entry(201).or_default() += 1;
                            match hold_id_of(&response.body) {
                                Some(id) => {
                                    connection
                                        .post_json(
                                            &format!("/holds/{id}/capture"),
                                            &format!(
                                                r#"{{"idempotencyKey":"{}"}}"#,
                                                Uuid::new_v4()
                                            ),
                                        )
                                        .await
                                }
                                None => Ok(response),
                            }
                        }
                        other => other,
                    }
                }
            };
            let latency = started.elapsed();
            match answer {
                Ok(response) => {
                    tally
                        .latencies_us
                        .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
                    *tally.statuses.entry(response.status).or_default() += 1;
                    if response.status == 201 {
                        match operation {
                            Operation::Spend | Operation::HoldThenCapture => {
                                tally.balance_deltas[user as usize] -= 1
                            }
                            Operation::Transfer => {
                                tally.balance_deltas[user as usize] -= 1;
                                tally.balance_deltas[self.users.next_after(user, 1) as usize] += 1;
                            }
                            Operation::Batch => {
                                for step in 1..=BATCH_TRANSFERS as u32 {
                                    tally.balance_deltas[user as usize] -= 1;
                                    tally.balance_deltas
                                        [self.users.next_after(user, step) as usize] += 1;
                                }
                            }
                            _ => tally.balance_deltas[user as usize] += 1,
                        }
                    }
                }
                Err(_) => {
                    // The answer is lost, so the write's outcome is unknown;
                    // the balance check will say whether it landed.
                    tally.transport_errors += 1;
                    connection = Connection::open(addr, self.api_key).await?;
                }
            }
        }
        Ok(tally)
    }

    fn next(&self, random: &mut SplitMix64) -> (Operation, u32) {
        let user = (random.next() % u64::from(self.users.count)) as u32;
        match self.scenario {
            Scenario::Spend => (Operation::Spend, user),
            Scenario::Topup => (Operation::Topup, user),
            Scenario::Hot => (Operation::Spend, 0),
            Scenario::Read => (Operation::Read, user),
            Scenario::History => (Operation::History, user),
            Scenario::Transfer => (Operation::Transfer, user),
            Scenario::Batch => (Operation::Batch, user),
            Scenario::Hold => (Operation::HoldThenCapture, user),
            Scenario::HeldRead => (Operation::Read, HELD_READ_USER),
            Scenario::ReadAt => (Operation::ReadAt, user),
            Scenario::Mixed => match random.next() % 100 {
                0..70 => (Operation::Read, user),
                70..95 => (Operation::Spend, user),
                _ => (Operation::Topup, user),
            },
        }
    }
}

/// A body moving `amount` GOLD under a fresh random key, as real callers send.
fn write_body(amount: u64) -> String {
    format!(
        r#"{{"asset":"GOLD","amount":{amount},"idempotencyKey":"{}"}}"#,
        Uuid::new_v4()
    )
}

/// A transfer of `amount` GOLD to `to` under a fresh random key.
fn transfer_body(to: &str, amount: u64) -> String {
    format!(
        r#"{{"to":"{to}","asset":"GOLD","amount":{amount},"idempotencyKey":"{}"}}"#,
        Uuid::new_v4()
    )
}

/// A batch of `BATCH_TRANSFERS` transfers of 1 GOLD from `user` to the
/// users after it, under a fresh random key.
fn batch_body(users: &Users, user: u32) -> String {
    let from = users.name(user);
    let operations: Vec<String> = (1..=BATCH_TRANSFERS as u32)
        .map(|step| {
            format!(
                r#"{{"type":"transfer","userId":"{from}","to":"{}","asset":"GOLD","amount":1}}"#,
                users.name(users.next_after(user, step))
            )
        })
        .collect();
    format!(
        r#"{{"idempotencyKey":"{}","operations":[{}]}}"#,
        Uuid::new_v4(),
        operations.join(",")
    )
}

/// A hold of 1 GOLD for `seconds` under a fresh random key.
fn hold_body(seconds: u32) -> String {
    format!(
        r#"{{"asset":"GOLD","amount":1,"expiresInSeconds":{seconds},"idempotencyKey":"{}"}}"#,
        Uuid::new_v4()
    )
}

fn hold_id_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["data"]["hold"]["id"].as_str().map(str::to_owned)
}

fn balance_of(body: &[u8]) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["data"]["balance"].as_i64()
}

fn gold_balance(body: &[u8]) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["data"]["balances"]
        .as_array()?
        .iter()
        .find(|row| row["asset"] == "GOLD")?["balance"]
        .as_i64()
}

/// A small, fast generator: the load's choices need spread, not secrecy.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Puts `entries` entries in the ledger through the writer, as fast as its
/// queue takes them: in rounds over every user, a top-up of 1 then a spend of
/// 1, under random keys as real callers send.
fn fill(storage: &OpenedStore, users: &Users, entries: u64) -> anyhow::Result<()> {
    let store = storage.store();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let started = Instant::now();
    runtime.block_on(async {
        let commands = (0..entries).map(|n| {
            let user = UserId::parse(&users.name((n % u64::from(users.count)) as u32))
                .expect("bench user ids are valid");
            let asset = AssetRef::parse("GOLD").expect("GOLD is a valid symbol");
            let amount = Amount::parse(1).expect("1 is a valid amount");
            let details = EntryDetails::default();
            let (route, operation) = match (n / u64::from(users.count)) % 2 {
                0 => (
                    Route::Topup,
                    LedgerOperation::Credit {
                        kind: CreditKind::Topup,
                        user,
                        asset,
                        amount,
                        details,
                    },
                ),
                _ => (
                    Route::Spend,
                    LedgerOperation::Spend {
                        user,
                        asset,
                        amount,
                        details,
                    },
                ),
            };
            Command {
                caller: Caller::Anonymous,
                key: IdempotencyKey::parse(&Uuid::new_v4().to_string())
                    .expect("a UUID is a valid key"),
                route,
                operations: vec![operation],
            }
        });
        // At most a queue's worth in flight, so the queue never refuses one.
        let mut outcomes = futures_util::stream::iter(commands)
            .map(|command| store.apply(command))
            .buffer_unordered(WRITE_QUEUE_DEPTH_MAX);
        let mut done: u64 = 0;
        let mut progress = Progress::new("wallet bench: filling", "entries", Some(entries));
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(Outcome::Created(_)) => done += 1,
                other => bail!("filling the ledger failed at entry {done}: {other:?}"),
            }
            progress.set(done);
            if done.is_multiple_of(1_000_000) {
                progress.line(&format!(
                    "wallet bench: {done} entries in {:.0} s",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        Ok(())
    })
}

/// The server on its own actix system thread, as `serve` runs it.
struct InProcessServer {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl InProcessServer {
    fn start(storage: OpenedStore, location: &DatabaseLocation) -> anyhow::Result<InProcessServer> {
        // A fresh file on loopback: no keys, so the service runs open, as the
        // quick start does.
        let bind = "127.0.0.1:0";
        let policy = AccessPolicy {
            bind: bind.to_owned(),
            bind_is_loopback: true,
            insecure_no_auth: false,
            rate_limit: RateLimit {
                per_second: RATE_LIMIT_PER_SECOND_DEFAULT,
                burst: RATE_LIMIT_BURST_DEFAULT,
            },
        };
        let access = match Access::start(storage.store(), location, &policy) {
            Ok(access) => access,
            Err(error) => {
                storage.close();
                return Err(error);
            }
        };
        let (started, ready) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wallet-bench-server".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let app = match Application::build(storage, access, bind) {
                        Ok(app) => app,
                        Err(error) => {
                            let _ = started.send(Err(error));
                            return Ok(());
                        }
                    };
                    let _ = started.send(Ok((app.local_addr(), app.handle())));
                    app.run_until_stopped().await
                })
            })?;
        let (addr, handle) = ready
            .recv()
            .context("the in-process server did not start")??;
        Ok(InProcessServer {
            addr,
            handle,
            thread,
        })
    }

    /// Stops as SIGTERM would: drains, then closes the database.
    fn stop(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        runtime.block_on(self.handle.stop(true));
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the in-process server panicked"),
        }
    }
}

/// After the server has closed the file: the entry count and the audit.
fn check_file(
    location: &DatabaseLocation,
    expected_entries: u64,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let audit = commands::verify(location).context("the audit could not read the ledger")?;
    if audit.entries != expected_entries {
        failures.push(format!(
            "the ledger holds {} entries; the funding and the 201 answers account for {expected_entries}",
            audit.entries
        ));
    }
    if !audit.is_clean() {
        failures.push(format!("verify failed:\n{audit}"));
    }
    Ok(())
}

/// Starts `wallet serve` on the finished database `runs` times and times each
/// from the spawn to the first 200 from `/health`.
fn time_startups(db: &Path, runs: usize) -> anyhow::Result<Startup> {
    let binary = std::env::current_exe().context("cannot find the wallet binary")?;
    let mut timings = Vec::with_capacity(runs);
    for _ in 0..runs {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let started = Instant::now();
        let mut child = std::process::Command::new(&binary)
            .args(["serve", "--db"])
            .arg(db)
            .args(["--bind", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start wallet serve")?;
        let healthy = wait_until_healthy(addr, Duration::from_secs(10));
        let elapsed = started.elapsed();
        // SIGTERM, so each start finds the file as a clean stop leaves it.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        if !healthy {
            bail!("wallet serve did not become healthy within 10 s");
        }
        timings.push(elapsed.as_secs_f64() * 1000.0);
    }
    timings.sort_by(f64::total_cmp);
    Ok(Startup {
        runs,
        median_ms: timings[timings.len() / 2],
        max_ms: timings[timings.len() - 1],
    })
}

fn wait_until_healthy(addr: SocketAddr, within: Duration) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            let request =
                format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let host_port = url
        .strip_prefix("http://")
        .with_context(|| format!("--url must be http://HOST:PORT, not {url:?}"))?
        .trim_end_matches('/');
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("--url must be http://HOST:PORT, not {url:?}"))
}

/// An API key as `wallet keys create` prints it; checked here so that nothing
/// else can end up in a request's header.
fn parse_api_key(value: &str) -> Result<String, String> {
    match crate::auth::secret::is_well_formed(value) {
        true => Ok(value.to_owned()),
        false => Err(
            "must be an API key as `wallet keys create` prints it: wk_ and 48 hex digits"
                .to_owned(),
        ),
    }
}

/// `10s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("must be like 10s, 500ms or 2m, not {value:?}"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        _ => return Err(format!("must be like 10s, 500ms or 2m, not {value:?}")),
    };
    if duration.is_zero() || duration > BENCH_DURATION_MAX {
        return Err(format!(
            "must be more than 0 and at most {} s",
            BENCH_DURATION_MAX.as_secs()
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_a_bound() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("100000m").is_err());
    }

    #[test]
    fn urls_are_http_host_and_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(parse_url("https://127.0.0.1:8080").is_err());
        assert!(parse_url("127.0.0.1:8080").is_err());
    }
}
