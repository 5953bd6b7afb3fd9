//! The PostgreSQL backend: its location (a `postgres://` URL, never shown
//! with its password), its connections, its versioned schema
//! (`migrations/postgres/`), a server's writer and reads (many instances
//! on one database), the seed, the audit, and the keys and assets
//! commands, whose rules are the shared write loop's.

pub mod assets;
pub mod copy;
pub mod keys;
pub mod migrate;
mod parts;
mod reads;
pub mod rules;
pub mod seed;
pub mod serving;
pub mod verify;
mod writer;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long a command waits for the database before it says it cannot
/// reach it (API.md: one line within 30 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `postgres://` (or `postgresql://`) URL. Compared by its text; shown
/// with the password replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    raw: String,
    shown: String,
}

impl PostgresUrl {
    /// The URL, if it is one `tokio-postgres` reads. The message of a
    /// refusal never repeats the URL: it may hold a password.
    pub fn parse(raw: &str) -> Result<PostgresUrl, String> {
        let config = postgres::Config::from_str(raw).map_err(|_| {
            "is not a PostgreSQL URL this wallet can read (postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
                .to_owned()
        })?;
        if config.get_dbname().is_none() {
            return Err("names no database (postgres://USER:PASSWORD@HOST:PORT/DATABASE)".into());
        }
        Ok(PostgresUrl {
            raw: raw.to_owned(),
            shown: without_password(raw),
        })
    }

    fn config(&self) -> postgres::Config {
        // Parsed once already: a URL that parsed then parses now.
        let mut config = postgres::Config::from_str(&self.raw).unwrap_or_default();
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("wallet");
        config
    }
}

/// The URL with its password, if any, replaced by `***`; text that is not
/// a URL as it is.
pub fn without_password(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_owned();
    };
    // A password may come as a query parameter: its value is hidden
    // wherever it stands, first.
    let rest = without_password_parameters(rest);
    // The user information runs to the last `@`: a password pasted with a
    // raw `/`, `?` or `@` in it is hidden whole (a host never holds an `@`).
    let shown = match rest.rsplit_once('@') {
        Some((user_info, after)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{after}"),
            None => rest.clone(),
        },
        None => rest.clone(),
    };
    format!("{scheme}://{shown}")
}

/// `password=VALUE` (any case) with VALUE, up to the next `&`, as `***`.
fn without_password_parameters(text: &str) -> String {
    const NAME: &str = "password=";
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find(NAME) {
        let value_starts = at + NAME.len();
        shown.push_str(&rest[..value_starts]);
        shown.push_str("***");
        rest = &rest[value_starts..];
        rest = rest.find('&').map_or("", |end| &rest[end..]);
    }
    shown.push_str(rest);
    shown
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(&self.shown)
    }
}

/// Never the password, in a log or a panic message either.
impl fmt::Debug for PostgresUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "PostgresUrl({})", self.shown)
    }
}

/// One connection to `url`, for the commands that do one thing and exit.
/// Blocking: never call it from async code.
fn connect(url: &PostgresUrl) -> anyhow::Result<postgres::Client> {
    url.config()
        .connect(postgres::NoTls)
        .map_err(|error| anyhow::anyhow!("cannot reach the database {url}: {}", reason(&error)))
}

impl From<postgres::Error> for crate::store::StorageError {
    fn from(error: postgres::Error) -> Self {
        use postgres::error::SqlState;
        // A closed connection, a server shutting down or starting, a
        // statement past its time limit may pass; a refused statement will
        // not.
        let transient = error.is_closed()
            || error.as_db_error().is_none()
            || error.code().is_some_and(|code| {
                code.code().starts_with("08")
                    || code.code().starts_with("53")
                    || code.code().starts_with("57")
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
            });
        if transient {
            crate::store::StorageError::Unavailable(Box::new(error))
        } else {
            crate::store::StorageError::Backend(Box::new(error))
        }
    }
}

impl From<postgres::Error> for crate::store::LedgerError {
    fn from(error: postgres::Error) -> Self {
        crate::store::LedgerError::Storage(error.into())
    }
}

/// A transaction on a migrated database at this wallet's version, holding
/// the advisory lock named `lock` until it ends: what a command that must
/// not race another of its kind (two key creations, two asset creations)
/// runs in.
fn locked_transaction<'c>(
    client: &'c mut postgres::Client,
    lock: &str,
) -> anyhow::Result<postgres::Transaction<'c>> {
    let mut tx = client.transaction()?;
    migrate::check_current(&mut tx)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock])?;
    Ok(tx)
}

/// What went wrong, in words that never hold the URL.
fn reason(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut text = error.to_string();
            if let Some(source) = std::error::Error::source(error) {
                text = format!("{text} ({source})");
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_shown() {
        for (raw, shown) in [
            (
                "postgres://wallet:s3cret@db.internal:5432/wallet",
                "postgres://wallet:***@db.internal:5432/wallet",
            ),
            (
                "postgresql://wallet@localhost/wallet",
                "postgresql://wallet@localhost/wallet",
            ),
            (
                "postgres://localhost/wallet?user=w&password=s3cret&sslmode=disable",
                "postgres://localhost/wallet?user=w&password=***&sslmode=disable",
            ),
            (
                "postgres://wallet:p%40ss@h:1/db",
                "postgres://wallet:***@h:1/db",
            ),
        ] {
            let url = PostgresUrl::parse(raw).unwrap();
            assert_eq!(url.to_string(), shown);
            assert_eq!(format!("{url:?}"), format!("PostgresUrl({shown})"));
            assert!(!format!("{url} {url:?}").contains("s3cret"));
        }
    }

    /// What a caller typed, shown in a refusal even when it is no URL the
    /// driver reads: a password with raw `/`, `?` or `@`, or one given as
    /// a parameter after an `@`, is hidden whole.
    #[test]
    fn an_odd_url_is_shown_without_its_password_too() {
        for (raw, shown) in [
            (
                "postgres://wallet:s3cret/with?odd@chars@h:1/db",
                "postgres://wallet:***@h:1/db",
            ),
            (
                "postgres://h/db?options=a@b&PASSWORD=s3cret@x",
                "postgres://h/db?options=a@b&PASSWORD=***",
            ),
            ("./wallet.db", "./wallet.db"),
        ] {
            assert_eq!(without_password(raw), shown);
        }
    }

    #[test]
    fn a_url_that_is_not_one_is_refused_without_repeating_it() {
        for bad in [
            "postgres://wallet:s3cret@host:notaport/db",
            "postgres://host",
        ] {
            let refusal = PostgresUrl::parse(bad).unwrap_err();
            assert!(!refusal.contains("s3cret"), "{refusal}");
        }
    }
}
