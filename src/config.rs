//! Resolved settings. clap reads the flags and `WALLET_*` variables; this is
//! the only other code that reads the environment (`PORT`, as Fly.io sets it).

use std::net::ToSocketAddrs;

use anyhow::{bail, Context};

use crate::auth::{AccessPolicy, RateLimit};
use crate::cli::ServeArgs;
use crate::logging::{LogFormat, ACCESS_LOG_TARGET};

pub const BIND_DEFAULT: &str = "127.0.0.1:8080";
/// The port to listen on when no address is given, as Fly.io sets it.
pub const PORT_VAR: &str = "PORT";
/// The log filter (tracing-subscriber's `EnvFilter` syntax).
pub const LOG_VAR: &str = "RUST_LOG";
/// How log lines are written: `text` (the default) or `json`.
pub const LOG_FORMAT_VAR: &str = "WALLET_LOG_FORMAT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    pub db: crate::store::DatabaseLocation,
    pub bind: String,
    pub access: AccessPolicy,
    /// Whether `serve` applies the demo seed to a database with no asset
    /// types: on a loopback address (the quick start), or when asked with
    /// `--seed-demo`. A production address starts with an empty ledger.
    pub seed_demo_if_empty: bool,
}

/// `--bind` / `WALLET_BIND` when given; else `0.0.0.0:$PORT` when `PORT` is
/// set; else `127.0.0.1:8080` (API.md, Command line).
pub fn resolve_bind(explicit: Option<String>, port: Option<String>) -> anyhow::Result<String> {
    let bind = match (explicit, port) {
        (Some(bind), _) => bind,
        (None, Some(port)) => {
            let port: u16 = port.trim().parse().with_context(|| {
                format!("PORT must be a port number from 0 to 65535, not {port:?}")
            })?;
            format!("0.0.0.0:{port}")
        }
        (None, None) => BIND_DEFAULT.to_owned(),
    };
    // Resolve now, so a malformed address fails as a bad setting, not later
    // as a failure to listen.
    let resolves = bind
        .to_socket_addrs()
        .is_ok_and(|mut addrs| addrs.next().is_some());
    match resolves {
        true => Ok(bind),
        false => bail!("--bind must be HOST:PORT, such as 127.0.0.1:8080, not {bind:?}"),
    }
}

/// Where `wallet health` asks by default: `/health` at the address `serve`
/// would listen on, with the every-interface address read as loopback.
pub fn health_url(explicit_bind: Option<String>) -> anyhow::Result<String> {
    let bind = resolve_bind(explicit_bind, port_from_environment())?;
    let local = match bind.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => bind,
    };
    Ok(format!("http://{local}/health"))
}

/// The log filter: `RUST_LOG`, by default `info`. For the bench, the access
/// log is raised to `warn` on top of it: its in-process server would log a
/// line per request of the load, burying the report and costing the
/// throughput it measures.
pub fn log_filter(is_bench: bool) -> String {
    let filter = std::env::var(LOG_VAR).unwrap_or_else(|_| "info".to_owned());
    match is_bench {
        true => format!("{filter},{ACCESS_LOG_TARGET}=warn"),
        false => filter,
    }
}

/// `WALLET_LOG_FORMAT`: `text` (also when unset or empty) or `json`.
pub fn log_format() -> Result<LogFormat, String> {
    match std::env::var(LOG_FORMAT_VAR).unwrap_or_default().trim() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "{LOG_FORMAT_VAR} must be text or json, not {other:?}"
        )),
    }
}

/// `PORT`, as Fly.io sets it; empty counts as unset.
fn port_from_environment() -> Option<String> {
    std::env::var(PORT_VAR).ok().filter(|port| !port.is_empty())
}

/// Whether every address `bind` resolves to is a loopback one, so only this
/// machine can connect. Anything that does not resolve counts as exposed.
pub fn is_loopback(bind: &str) -> bool {
    bind.to_socket_addrs().is_ok_and(|addrs| {
        let addrs: Vec<_> = addrs.collect();
        !addrs.is_empty() && addrs.iter().all(|addr| addr.ip().is_loopback())
    })
}

impl ServeSettings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<ServeSettings> {
        let bind = resolve_bind(args.bind, port_from_environment())?;
        let bind_is_loopback = is_loopback(&bind);
        Ok(ServeSettings {
            db: args.db.db,
            seed_demo_if_empty: bind_is_loopback || args.seed_demo,
            access: AccessPolicy {
                bind_is_loopback,
                bind: bind.clone(),
                insecure_no_auth: args.insecure_no_auth,
                rate_limit: RateLimit {
                    per_second: args.rate_limit_per_second,
                    burst: args.rate_limit_burst,
                },
            },
            bind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_bind_wins_over_port() {
        let bind = resolve_bind(Some("127.0.0.1:9000".into()), Some("7000".into())).unwrap();
        assert_eq!(bind, "127.0.0.1:9000");
    }

    #[test]
    fn port_alone_binds_every_interface() {
        assert_eq!(
            resolve_bind(None, Some("7000".into())).unwrap(),
            "0.0.0.0:7000"
        );
    }

    #[test]
    fn with_nothing_set_the_default_is_loopback_8080() {
        assert_eq!(resolve_bind(None, None).unwrap(), BIND_DEFAULT);
    }

    #[test]
    fn only_loopback_addresses_count_as_private() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("[::1]:8080"));
        assert!(!is_loopback("0.0.0.0:8080"));
        assert!(!is_loopback("[::]:8080"));
        assert!(!is_loopback("192.0.2.7:8080"));
        assert!(!is_loopback("nonsense"));
    }

    #[test]
    fn a_bad_port_or_bind_is_one_clear_error() {
        assert!(resolve_bind(None, Some("80a".into())).is_err());
        assert!(resolve_bind(None, Some("65536".into())).is_err());
        assert!(resolve_bind(Some("nonsense".into()), None).is_err());
        assert!(resolve_bind(Some("127.0.0.1:99999".into()), None).is_err());
    }
}
