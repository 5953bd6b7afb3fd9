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
