//! `wallet health`: a minimal HTTP/1.1 client that asks a running server for
//! its `/health`, for container health checks in an image that has no curl.
//! Plain http only: it asks the server on its own machine.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use anyhow::{bail, Context};

use crate::limits::{HEALTH_PROBE_RESPONSE_BYTES_MAX, HEALTH_PROBE_TIMEOUT};

/// Asks `url` (`http://HOST:PORT/PATH`) and succeeds only on a 200; returns
/// the status line.
pub fn check(url: &str) -> anyhow::Result<String> {
    let (authority, path) = split_url(url)?;
    let address = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("{url}: {authority} is not HOST:PORT"))?;
    let mut stream = TcpStream::connect_timeout(&address, HEALTH_PROBE_TIMEOUT)
        .with_context(|| format!("{url}: cannot connect"))?;
    stream.set_read_timeout(Some(HEALTH_PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(HEALTH_PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("{url}: cannot send the request"))?;
    let mut answer = Vec::new();
    stream
        .take(HEALTH_PROBE_RESPONSE_BYTES_MAX)
        .read_to_end(&mut answer)
        .with_context(|| format!("{url}: no answer"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default().trim().to_owned();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(status_line),
        Some(_) => bail!("{url}: {status_line}"),
        None => bail!("{url}: not an HTTP answer"),
    }
}

/// `http://HOST:PORT/PATH` into (`HOST:PORT`, `/PATH`).
fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http://HOST:PORT/PATH URLs are supported");
    };
    Ok(match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_splits_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health").unwrap(),
            ("127.0.0.1:8080", "/health")
        );
        assert_eq!(split_url("http://host:1").unwrap(), ("host:1", "/"));
        assert!(split_url("https://host:1/health").is_err());
    }

    #[test]
    fn nothing_listening_is_an_error_not_a_panic() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert!(check(&format!("http://{address}/health")).is_err());
    }
}
