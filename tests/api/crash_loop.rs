//! The long form of the crash test: hundreds of cycles of concurrent writes
//! over HTTP, SIGKILL at a random moment, restart on the same file. Ignored
//! by `cargo test`; run it with
//!
//! ```sh
//! CRASH_LOOP_CYCLES=500 cargo test --release --test api crash_loop -- --ignored --nocapture
//! ```
//!
//! It ends with one summary line: cycles survived, requests acknowledged,
//! entries lost and invariant violations; it fails unless the last two are 0.
//! `CRASH_LOOP_SEED` replays the same kill moments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crash::{
    balance_mismatches, entries_of, hold_problems, open_wallets, replay_problem, send, users,
    verify_failure, Workload,
};
use crate::helpers::{TestApp, SEED_ENTRIES};

const CYCLES_DEFAULT: u64 = 200;
/// The kill falls anywhere from the workload's first request to this much
/// later, so it lands before, during and between acknowledged writes.
const KILL_DELAY_MAX: Duration = Duration::from_millis(300);
const THREADS: usize = 6;

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

/// xorshift64: enough to spread kill moments, and replayable from its seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
#[ignore = "long run; see the module comment"]
fn crash_loop() {
    let cycles = env_number("CRASH_LOOP_CYCLES").unwrap_or(CYCLES_DEFAULT);
    let seed = env_number("CRASH_LOOP_SEED").unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        now.as_nanos() as u64 | 1
    });
    let mut random = seed;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let users = users("loop", 4);
    let mut app = TestApp::spawn_on(&db_path);
    let mut acked = open_wallets(&app, &users);
    let mut acknowledged = acked.len();
    let mut lost = 0_usize;
    let mut violations: Vec<String> = Vec::new();

    for cycle in 0..cycles {
        let workload = Workload::start(
            &app.client,
            &app.address,
            &users,
            THREADS,
            &format!("loop-c{cycle}"),
        );
        let delay_ms = next_random(&mut random) % (KILL_DELAY_MAX.as_millis() as u64 + 1);
        std::thread::sleep(Duration::from_millis(delay_ms));
        app.kill();
        let tally = workload.finish();
        acknowledged += tally.acked.len();
        let mut problems: Vec<String> = tally.bad_envelopes;
        problems.extend(
            tally
                .refused
                .iter()
                .map(|(op, reply)| format!("{op:?} was refused: {reply:?}")),
        );
        // The file as the crash left it, before a restart recovers it.
        problems.extend(verify_failure(&db_path));

        app = TestApp::spawn_on(&db_path);
        for (op, original) in &tally.acked {
            if let Some(problem) = replay_problem(&app, op, original) {
                lost += 1;
                eprintln!("cycle {cycle}: LOST: {problem}");
            }
        }
        acked.extend(tally.acked);
        // A request whose answer was lost, retried with its key: applied now
        // or then, never twice.
        for op in tally.unanswered {
            match send(&app.client, &app.address, &op) {
                Ok(reply)
                    if (reply.status, reply.replayed) == (op.created_status(), false)
                        || (reply.status, reply.replayed) == (200, true) =>
                {
                    acked.push((op, reply.data()));
                }
                other => problems.push(format!("the retry of {op:?} got {other:?}")),
            }
        }
        let entries = app.entry_count();
        if entries != SEED_ENTRIES + entries_of(&acked) {
            problems.push(format!(
                "{entries} entries for {} acknowledged keys and {SEED_ENTRIES} seed entries",
                acked.len()
            ));
        }
        problems.extend(balance_mismatches(&app, &users, &acked));
        problems.extend(hold_problems(&app, &acked));
        problems.extend(verify_failure(&db_path));
        for problem in problems {
            eprintln!("cycle {cycle} (killed after {delay_ms} ms): {problem}");
            violations.push(problem);
        }
    }
    // Once more at the end: every write acknowledged in any cycle is there.
    for (op, original) in &acked {
        if let Some(problem) = replay_problem(&app, op, original) {
            lost += 1;
            eprintln!("at the end: LOST: {problem}");
        }
    }
    let invariant_violations = violations.len();
    println!(
        "crash loop: {cycles} cycles survived, {acknowledged} requests acknowledged, \
         {lost} entries lost, {invariant_violations} invariant violations (seed {seed})"
    );
    assert_eq!((lost, invariant_violations), (0, 0));
}
