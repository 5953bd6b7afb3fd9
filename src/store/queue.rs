//! The writer's queue, the same for every backend: one thread per server
//! that takes the work handlers queue (commands, new assets and keys, last
//! uses of keys), gathers what is queued into one batch, and has the
//! backend apply the batch in one transaction (group commit: one commit for
//! the whole batch). Replies go out only after the commit, so a write that
//! is acknowledged is durable.
//!
//! A backend supplies a `BatchWriter`: how a batch is applied in its
//! transaction (through the shared loop, `store::write::apply_batch`), how
//! a failure is answered, how its connection is closed. This file owns the
//! queue's bound, the batching, the hold-expiry sweep's timing, the
//! writer's clock, and how work is handed over from async code and plain
//! threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use log::error;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::domain::{Caller, KeyName};
use crate::ledger::engine::{Command, NewAsset, Operation, Outcome};
use crate::limits::{HOLD_EXPIRY_SWEEP_INTERVAL, HOLD_EXPIRY_SWEEP_MAX, WRITE_QUEUE_DEPTH_MAX};
use crate::store::write::{Done, Work};
use crate::store::{
    AssetOutcome, KeyError, KeyListing, LedgerError, NewKey, RulesChange, RulesOutcome,
    StorageError,
};

enum Message {
    Work(Work),
    Stop,
}

/// How the writer's last batch went, for `GET /health`, and a count of
/// its commits for whoever follows the ledger as it grows (event streams).
#[derive(Debug)]
pub(crate) struct WriterStatus {
    /// The last batch failed as storage (disk full, I/O error, files lost,
    /// the database gone).
    pub failing: AtomicBool,
    /// Bumped after every commit that wrote something. A watch keeps only
    /// the newest value, so however many streams wait on it and however
    /// slowly they read, the writer's side is one store and a wake-up.
    pub commits: tokio::sync::watch::Sender<u64>,
}

impl Default for WriterStatus {
    fn default() -> WriterStatus {
        WriterStatus {
            failing: AtomicBool::new(false),
            commits: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl WriterStatus {
    /// A batch was committed: health is good again, and followers are woken
    /// when it wrote anything.
    pub fn committed(&self, wrote: bool) {
        self.failing.store(false, Ordering::Relaxed);
        if wrote {
            self.commits
                .send_modify(|commits| *commits = commits.wrapping_add(1));
        }
    }
}

/// What a backend's writer thread does with each batch.
pub(crate) trait BatchWriter {
    /// Applies `batch` at one time, read from `clock`, in one transaction,
    /// and answers every piece of work in it (draining it).
    fn write(&mut self, batch: &mut Vec<Work>, clock: &mut WriterClock);

    /// Closes the connection once the queue is drained.
    fn close(self);
}

/// The running writer threads (one lane each, SQLite runs one); whoever
/// started them stops them.
pub struct Writer {
    lanes: Vec<(SyncSender<Message>, JoinHandle<()>)>,
    status: Arc<WriterStatus>,
}

/// A cheap, cloneable way to hand the writer work.
#[derive(Clone)]
pub struct WriterHandle {
    /// One queue per lane; a command goes to its first user's lane.
    senders: Arc<[SyncSender<Message>]>,
    status: Arc<WriterStatus>,
}

impl Writer {
    /// Starts a writer thread named `name`. `open` runs on that thread
    /// (SQLite's WAL hook is per thread) and makes the backend's writer,
    /// which reports through the status it is given. Up to `batch_max`
    /// queued pieces of work are applied together; 1 applies each alone.
    pub(crate) fn start<W: BatchWriter>(
        name: &str,
        batch_max: usize,
        clock: Clock,
        open: impl FnOnce(Arc<WriterStatus>) -> W + Send + 'static,
    ) -> std::io::Result<Writer> {
        Writer::start_lanes(name, batch_max, clock, vec![open])
    }

    /// Starts one writer thread per element of `opens`, each on a
    /// connection of its own (a backend whose writers may run side by side:
    /// PostgreSQL). A command goes to the lane of its first user, so one
    /// user's writes queue in one lane and batch together; the queue's
    /// bound is shared out between the lanes; only the first lane sweeps
    /// holds.
    pub(crate) fn start_lanes<W: BatchWriter>(
        name: &str,
        batch_max: usize,
        clock: Clock,
        opens: Vec<impl FnOnce(Arc<WriterStatus>) -> W + Send + 'static>,
    ) -> std::io::Result<Writer> {
        let batch_max = batch_max.clamp(1, WRITE_QUEUE_DEPTH_MAX);
        let depth = (WRITE_QUEUE_DEPTH_MAX / opens.len().max(1)).max(1);
        let status = Arc::new(WriterStatus::default());
        let mut lanes = Vec::with_capacity(opens.len());
        for (lane, open) in opens.into_iter().enumerate() {
            let (sender, receiver) = mpsc::sync_channel(depth);
            let thread_status = Arc::clone(&status);
            let clock = clock.clone();
            let sweeps = lane == 0;
            let thread = std::thread::Builder::new()
                .name(if lane == 0 {
                    name.into()
                } else {
                    format!("{name}-{lane}")
                })
                .spawn(move || {
                    // A panic here is a defect in the writer. Its transaction
                    // is uncommitted and so lost, which is safe; serving on
                    // without a writer is not, so end the process.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut writer = open(thread_status);
                        let mut clock = WriterClock {
                            last_ms: 0,
                            source: clock,
                        };
                        run(&mut writer, &mut clock, receiver, batch_max, sweeps);
                        writer.close();
                    }));
                    if outcome.is_err() {
                        error!("the writer thread panicked; stopping the process");
                        std::process::abort();
                    }
                })?;
            lanes.push((sender, thread));
        }
        Ok(Writer { lanes, status })
    }

    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            senders: self
                .lanes
                .iter()
                .map(|(sender, _)| sender.clone())
                .collect(),
            status: Arc::clone(&self.status),
        }
    }

    /// Applies everything queued so far, then ends the threads and closes
    /// their connections.
    pub fn stop(self) {
        // A blocking send: the stop waits its turn behind queued work.
        for (sender, _) in &self.lanes {
            let _ = sender.send(Message::Stop);
        }
        for (_, thread) in self.lanes {
            if thread.join().is_err() {
                error!("the writer thread ended with a panic");
            }
        }
    }
}

/// The lane of a piece of work: a command's first user's (a reversal's
/// entry's, a capture's hold's, when its users are not known yet), the
/// first lane for the rest. Any lane would be correct (the backend's own
/// locks keep users apart); one lane per user keeps its writes in one
/// batch instead of queueing on each other's locks.
fn lane_of(work: &Work, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    if lanes <= 1 {
        return 0;
    }
    let Work::Command { command, .. } = work else {
        return 0;
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match command.operations.first() {
        Some(Operation::Credit { user, .. })
        | Some(Operation::Spend { user, .. })
        | Some(Operation::Hold { user, .. })
        | Some(Operation::Transfer { from: user, .. }) => user.as_str().hash(&mut hasher),
        Some(Operation::Reverse { entry, .. }) => entry.hash(&mut hasher),
        Some(Operation::Capture { hold, .. }) | Some(Operation::Void { hold }) => {
            hold.hash(&mut hasher)
        }
        None => return 0,
    }
    (hasher.finish() % lanes as u64) as usize
}

impl WriterHandle {
    /// Whether the writer's last batch failed as storage: `GET /health`
    /// answers 503 while it does.
    pub fn is_failing(&self) -> bool {
        self.status.failing.load(Ordering::Relaxed)
    }

    /// Changes after every commit that wrote something.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.status.commits.subscribe()
    }

    /// Wakes this server's followers of the ledger for a commit another
    /// server made (a PostgreSQL database shared by several instances).
    pub(crate) fn tell_followers(&self) {
        self.status
            .commits
            .send_modify(|commits| *commits = commits.wrapping_add(1));
    }

    /// Queues work without waiting: a full queue fails at once.
    pub(crate) fn submit<T, E>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, E>>) -> Work,
    ) -> Result<oneshot::Receiver<Result<T, E>>, StorageError> {
        let (reply, receiver) = oneshot::channel();
        // Counted before it is sent, so the writer's count down never
        // passes it.
        crate::metrics::metrics().command_queued();
        let work = make(reply);
        let lane = lane_of(&work, self.senders.len());
        match self.senders[lane].try_send(Message::Work(work)) {
            Ok(()) => Ok(receiver),
            Err(failure) => {
                crate::metrics::metrics().command_dequeued();
                match failure {
                    TrySendError::Full(_) => Err(StorageError::Overloaded),
                    TrySendError::Disconnected(_) => Err(StorageError::WriterStopped),
                }
            }
        }
    }

    /// Applies a command, from async code. If the caller goes away the
    /// command still completes, and a retry with the same key replays it.
    pub async fn apply(&self, command: Command) -> Result<Outcome, LedgerError> {
        let receiver = self.submit(|reply| Work::Command { command, reply })?;
        receiver.await.map_err(|_| StorageError::WriterStopped)?
    }

    /// Applies a command from a plain thread (the seed, the CLI).
    pub fn apply_blocking(&self, command: Command) -> Result<Outcome, LedgerError> {
        let receiver = self.submit(|reply| Work::Command { command, reply })?;
        receiver
            .blocking_recv()
            .map_err(|_| StorageError::WriterStopped)?
    }

    pub async fn create_asset(&self, asset: NewAsset) -> Result<AssetOutcome, LedgerError> {
        let receiver = self.submit(|reply| Work::CreateAsset { asset, reply })?;
        receiver.await.map_err(|_| StorageError::WriterStopped)?
    }

    pub fn create_asset_blocking(&self, asset: NewAsset) -> Result<AssetOutcome, LedgerError> {
        let receiver = self.submit(|reply| Work::CreateAsset { asset, reply })?;
        receiver
            .blocking_recv()
            .map_err(|_| StorageError::WriterStopped)?
    }

    /// Changes rules on value (`PUT /assets/{asset}/rules`,
    /// `PUT /wallets/{userId}/rules`).
    pub async fn change_rules(
        &self,
        change: RulesChange,
        caller: Caller,
    ) -> Result<RulesOutcome, LedgerError> {
        let receiver = self.submit(|reply| Work::ChangeRules {
            change,
            caller,
            reply,
        })?;
        receiver.await.map_err(|_| StorageError::WriterStopped)?
    }

    /// `change_rules`, from a plain thread (the command line).
    pub fn change_rules_blocking(
        &self,
        change: RulesChange,
        caller: Caller,
    ) -> Result<RulesOutcome, LedgerError> {
        let receiver = self.submit(|reply| Work::ChangeRules {
            change,
            caller,
            reply,
        })?;
        receiver
            .blocking_recv()
            .map_err(|_| StorageError::WriterStopped)?
    }

    /// Adds an API key (`POST /keys`).
    pub async fn create_key(&self, key: NewKey) -> Result<KeyListing, KeyError> {
        let receiver = self.submit(|reply| Work::CreateKey { key, reply })?;
        receiver.await.map_err(|_| StorageError::WriterStopped)?
    }

    /// Revokes an API key (`POST /keys/{name}/revoke`).
    pub async fn revoke_key(&self, name: KeyName) -> Result<KeyListing, KeyError> {
        let receiver = self.submit(|reply| Work::RevokeKey { name, reply })?;
        receiver.await.map_err(|_| StorageError::WriterStopped)?
    }

    /// Records keys' last uses, from a plain thread (the key watcher).
    pub fn record_key_uses_blocking(&self, uses: Vec<(i64, i64)>) -> Result<(), StorageError> {
        let receiver = self.submit(|reply| Work::KeyUses { uses, reply })?;
        match receiver
            .blocking_recv()
            .map_err(|_| StorageError::WriterStopped)?
        {
            Ok(()) => Ok(()),
            Err(LedgerError::Storage(error)) => Err(error),
            Err(LedgerError::Rejected(rejection)) => {
                Err(StorageError::Backend(rejection.to_string().into()))
            }
        }
    }
}

/// The writer's clock: milliseconds since the epoch, never going backwards
/// (a clock stepped back does not reorder entries), and no time at all while
/// the system clock reads before 1970.
pub(crate) struct WriterClock {
    last_ms: i64,
    source: Clock,
}

impl Default for WriterClock {
    fn default() -> WriterClock {
        WriterClock {
            last_ms: 0,
            source: Clock::System,
        }
    }
}

impl WriterClock {
    pub fn now_ms(&mut self) -> Result<i64, StorageError> {
        let now = self.source.now();
        self.read(now)
    }

    pub fn read(&mut self, now: std::time::SystemTime) -> Result<i64, StorageError> {
        let since_epoch = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| StorageError::ClockBeforeEpoch)?;
        let ms =
            i64::try_from(since_epoch.as_millis()).map_err(|_| StorageError::ClockBeforeEpoch)?;
        self.last_ms = self.last_ms.max(ms);
        Ok(self.last_ms)
    }
}

fn run(
    writer: &mut impl BatchWriter,
    clock: &mut WriterClock,
    receiver: Receiver<Message>,
    batch_max: usize,
    sweeps: bool,
) {
    let mut batch: Vec<Work> = Vec::with_capacity(batch_max + 1);
    let mut stopping = false;
    let mut last_sweep = std::time::Instant::now();
    while !stopping {
        match receiver.recv_timeout(HOLD_EXPIRY_SWEEP_INTERVAL) {
            Ok(Message::Work(work)) => take(&mut batch, work),
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < batch_max {
            match receiver.try_recv() {
                Ok(Message::Work(work)) => take(&mut batch, work),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        // At most once a sweep interval, busy or idle, the batch also
        // records the expiry of holds that fell due.
        if sweeps && last_sweep.elapsed() >= HOLD_EXPIRY_SWEEP_INTERVAL {
            last_sweep = std::time::Instant::now();
            batch.push(Work::ExpireHolds {
                max: HOLD_EXPIRY_SWEEP_MAX,
            });
        }
        if !batch.is_empty() {
            writer.write(&mut batch, clock);
        }
    }
    // Nothing should follow a stop, but whatever did is applied, not dropped.
    while let Ok(message) = receiver.try_recv() {
        if let Message::Work(work) = message {
            take(&mut batch, work);
            writer.write(&mut batch, clock);
        }
    }
}

/// Work taken off the queue into the batch.
fn take(batch: &mut Vec<Work>, work: Work) {
    crate::metrics::metrics().command_dequeued();
    batch.push(work);
}

/// Answers every piece of work of a committed batch with its result, and
/// tells health and the ledger's followers.
pub(crate) fn answer_committed(
    batch: &mut Vec<Work>,
    results: Vec<Done>,
    status: &WriterStatus,
    began: std::time::Instant,
) {
    crate::metrics::metrics().batch_committed(batch.len(), began.elapsed());
    // A sweep that found nothing due wrote nothing: followers are not woken
    // for it.
    status.committed(results.iter().any(Done::wrote));
    for (work, result) in batch.drain(..).zip(results) {
        // The caller may have gone; the entry stands either way.
        result.send(work);
    }
}

/// Answers every piece of work of a batch that was rolled back: nothing of
/// it was committed, every caller is told the database is unavailable and
/// may retry with the same key. The cause is logged once, here.
pub(crate) fn answer_rolled_back(
    batch: &mut Vec<Work>,
    error: StorageError,
    status: &WriterStatus,
) {
    status.failing.store(true, Ordering::Relaxed);
    crate::metrics::metrics().batch_failed();
    let clock_before_epoch = matches!(error, StorageError::ClockBeforeEpoch);
    error!(
        "a write batch of {} was rolled back: {:#}",
        batch.len(),
        anyhow::Error::from(error)
    );
    if clock_before_epoch {
        refuse_all(batch, || StorageError::ClockBeforeEpoch);
    } else {
        refuse_all(batch, || StorageError::BatchRolledBack);
    }
}

/// Answers every piece of work of `batch` with the same storage failure.
pub(crate) fn refuse_all(batch: &mut Vec<Work>, error: impl Fn() -> StorageError) {
    for work in batch.drain(..) {
        work.refuse(error());
    }
}
