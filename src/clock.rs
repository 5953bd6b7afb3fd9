//! The wall clock, as every part of the service reads it: milliseconds
//! since the Unix epoch, the unit every stored time is in.

/// Refuses to serve while the system clock reads before 1970: no entry could
/// be timed, and actix-http's `Date` header cannot be written either.
pub fn check_clock() -> anyhow::Result<()> {
    if std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .is_err()
    {
        anyhow::bail!("the system clock reads before 1970; set it, then start again");
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Where the store reads the time: the system clock, or one a test sets by
/// hand to move time (a hold's expiry) at will. The writer reads it for
/// every batch and the reads for what is held and due "now", so with a
/// hand-set clock the whole store stands at the test's instant.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Milliseconds since the epoch, as the test last set them.
    Manual(std::sync::Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// A clock that reads `ms` until moved, and the handle that moves it.
    pub fn manual(ms: i64) -> (Clock, std::sync::Arc<std::sync::atomic::AtomicI64>) {
        let handle = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(ms));
        (Clock::Manual(std::sync::Arc::clone(&handle)), handle)
    }

    /// The time, as the system clock gives it (so it may read before 1970).
    pub fn now(&self) -> std::time::SystemTime {
        match self {
            Clock::System => std::time::SystemTime::now(),
            Clock::Manual(ms) => {
                let ms = ms.load(std::sync::atomic::Ordering::SeqCst);
                let offset = std::time::Duration::from_millis(ms.unsigned_abs());
                if ms >= 0 {
                    std::time::UNIX_EPOCH + offset
                } else {
                    std::time::UNIX_EPOCH - offset
                }
            }
        }
    }

    /// Milliseconds since the Unix epoch, 0 before it.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(ms) => ms.load(std::sync::atomic::Ordering::SeqCst).max(0),
        }
    }
}
