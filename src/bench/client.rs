//! A minimal HTTP/1.1 keep-alive client for the bench. A general client would
//! spend more of the machine's two cores than the server it measures; this
//! one writes a prepared request and reads back one response with a
//! `Content-Length` body, which is every answer the service gives.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head or body the bench accepts; the service's answers are
/// a few hundred bytes, a history page some tens of KiB.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    host: String,
    /// `Authorization: Bearer <key>\r\n`, or nothing.
    authorization: String,
}

/// One response: its status and its body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Connection {
    /// A connection to `addr` that sends `api_key`, if any, on every request.
    pub async fn open(addr: SocketAddr, api_key: Option<&str>) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are single small writes: send each at once.
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(4096),
            host: addr.to_string(),
            authorization: api_key
                .map(|key| format!("Authorization: Bearer {key}\r\n"))
                .unwrap_or_default(),
        })
    }

    pub async fn get(&mut self, path: &str) -> io::Result<Response> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{}Accept: application/json\r\n\r\n",
            self.host, self.authorization
        );
        self.exchange(request.as_bytes()).await
    }

    pub async fn post_json(&mut self, path: &str, body: &str) -> io::Result<Response> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            self.authorization,
            body.len()
        );
        self.exchange(request.as_bytes()).await
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).map_err(|_| invalid("head"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid("status line"))?;
        let body_len = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .ok_or_else(|| invalid("missing Content-Length"))?;
        if body_len > RESPONSE_BYTES_MAX {
            return Err(invalid("body too large"));
        }
        while self.buffer.len() < head_end + body_len {
            self.fill().await?;
        }
        let body = self.buffer[head_end..head_end + body_len].to_vec();
        self.buffer.drain(..head_end + body_len);
        Ok(Response { status, body })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buffer.len() > RESPONSE_BYTES_MAX {
            return Err(invalid("response too large"));
        }
        let mut chunk = [0u8; 8192];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed response: {what}"),
    )
}
