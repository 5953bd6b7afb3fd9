//! The accept layer: every TCP connection passes through here before
//! actix-http's HTTP/1.1 dispatcher sees it. It owns the bounds actix-web
//! cannot set (HTTP server bounds in API.md and `limits.rs`):
//!
//! - connection slots: far more than actix-web's default, a cap per client
//!   address, and past either a canned `503` and a close;
//! - the whole request (head and body) within `HTTP_REQUEST_TIMEOUT`, and
//!   every head (not only a connection's first, which is all actix-http
//!   times) within `HTTP_CLIENT_REQUEST_TIMEOUT`; past it a bare `408` and a
//!   close;
//! - answers queued for a client that does not read them: while the socket
//!   takes no more, the connection is not read (so no new request is
//!   parsed), and past `HTTP_UNSENT_BYTES_MAX` queued or
//!   `HTTP_WRITE_STALL_MAX` without progress it is closed;
//! - an idle keep-alive that shrinks as the slots fill up, so idle
//!   connections cannot hold every slot.
//!
//! It never reads or writes a byte of HTTP itself, except the canned answers
//! it sends instead of the dispatcher on a connection the dispatcher never
//! got (503) or whose request head never arrived (408).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::limits::{
    HTTP_CLIENT_REQUEST_TIMEOUT, HTTP_CONNECTIONS_PER_ADDRESS_MAX, HTTP_KEEP_ALIVE,
    HTTP_KEEP_ALIVE_MIN, HTTP_READ_CHUNK_BYTES, HTTP_REFUSED_LINGER, HTTP_REFUSED_LINGERING_MAX,
    HTTP_REQUEST_TIMEOUT, HTTP_UNSENT_BYTES_MAX, HTTP_WRITE_STALL_MAX,
};

/// The connections open across every worker, by client address.
#[derive(Debug)]
pub struct ConnectionTable {
    capacity: usize,
    per_address_max: u32,
    open: AtomicUsize,
    by_address: Mutex<HashMap<AddressKey, u32>>,
}

/// Whose connections count together: one IPv4 address, or one IPv6 /64 (a
/// single host is usually handed a whole /64, so counting single IPv6
/// addresses would cap nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddressKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl AddressKey {
    fn of(address: IpAddr) -> AddressKey {
        match address {
            IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    AddressKey::V6Prefix(prefix)
                }
            },
        }
    }
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Full,
    /// This client address holds its share already.
    AddressFull,
}

impl ConnectionTable {
    pub fn new(capacity: usize) -> Arc<ConnectionTable> {
        Self::with_address_cap(capacity, HTTP_CONNECTIONS_PER_ADDRESS_MAX)
    }

    pub fn with_address_cap(capacity: usize, per_address_max: u32) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable {
            capacity,
            per_address_max,
            open: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a connection from `peer`; the slot is given back
    /// when the `Admission` drops.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Admission, Refusal> {
        let key = peer.map(AddressKey::of);
        let mut by_address = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.open.load(Ordering::Relaxed) >= self.capacity {
            return Err(Refusal::Full);
        }
        if let Some(key) = key {
            let count = by_address.entry(key).or_insert(0);
            if *count >= self.per_address_max {
                return Err(Refusal::AddressFull);
            }
            *count += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Admission {
            table: Arc::clone(self),
            key,
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// How long an idle connection is kept: `HTTP_KEEP_ALIVE` while at most
    /// half the slots are taken, then shrinking in step with the free slots
    /// to `HTTP_KEEP_ALIVE_MIN` when all are, so idle connections make room
    /// for new clients instead of locking them out.
    pub fn keep_alive(&self) -> Duration {
        keep_alive_at(self.open(), self.capacity)
    }
}

fn keep_alive_at(open: usize, capacity: usize) -> Duration {
    let half = capacity / 2;
    if open <= half || capacity == 0 {
        return HTTP_KEEP_ALIVE;
    }
    let free = capacity.saturating_sub(open) as f64;
    let span = (capacity - half).max(1) as f64;
    let shrunk = HTTP_KEEP_ALIVE.as_secs_f64() * (free / span);
    Duration::from_secs_f64(shrunk).max(HTTP_KEEP_ALIVE_MIN)
}

/// A connection's slot in the table.
#[derive(Debug)]
pub struct Admission {
    table: Arc<ConnectionTable>,
    key: Option<AddressKey>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut by_address = self
            .table
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = self.key {
            if let Some(count) = by_address.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    by_address.remove(&key);
                }
            }
        }
        self.table.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the request middleware and the stream share about one connection.
/// A connection lives on one worker thread, so plain cells suffice.
#[derive(Debug)]
pub struct ConnectionState {
    /// When the first byte of the request now arriving was read; `None`
    /// between requests.
    request_started: Cell<Option<Instant>>,
    /// Whether that request's head has reached the service.
    head_arrived: Cell<bool>,
    /// Requests the service is handling on this connection.
    in_flight: Cell<u32>,
    /// The last byte read or written, or the last answer finished.
    last_activity: Cell<Instant>,
    /// The connection's task, parked while the service handles a request:
    /// woken when the answer is made, to read the next.
    parked_reader: RefCell<Option<Waker>>,
    /// Answers still streaming after their handler returned (event streams).
    streams: Cell<u32>,
    /// Set once the client has closed its side while a stream runs; the
    /// stream waits on `peer_gone` to end at once rather than at its next
    /// write.
    peer_closed: Cell<bool>,
    peer_gone: tokio::sync::Notify,
}

impl ConnectionState {
    fn new(now: Instant) -> ConnectionState {
        ConnectionState {
            request_started: Cell::new(None),
            head_arrived: Cell::new(false),
            in_flight: Cell::new(0),
            last_activity: Cell::new(now),
            parked_reader: RefCell::new(None),
            streams: Cell::new(0),
            peer_closed: Cell::new(false),
            peer_gone: tokio::sync::Notify::new(),
        }
    }

    /// A request's head has reached the service. Returns the instant by
    /// which its body must have arrived.
    pub fn request_began(&self, now: Instant) -> Instant {
        self.in_flight.set(self.in_flight.get() + 1);
        // A pipelined request read along with the one before it had no
        // bytes of its own to start its clock; it starts now.
        let started = self.request_started.get().unwrap_or(now);
        self.request_started.set(Some(started));
        self.head_arrived.set(true);
        started + HTTP_REQUEST_TIMEOUT
    }

    /// The request's body has been read whole (or it has none): its clock
    /// stops, and the next bytes start the next request's.
    pub fn body_read(&self) {
        if self.head_arrived.get() {
            self.request_started.set(None);
            self.head_arrived.set(false);
        }
    }

    /// The service has answered a request.
    pub fn request_ended(&self, now: Instant) {
        self.body_read();
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        self.last_activity.set(now);
        if let Some(reader) = self.parked_reader.borrow_mut().take() {
            reader.wake();
        }
    }

    /// An answer that goes on after its handler returned (an event stream)
    /// began: until it ends the connection is busy, never idle, so the
    /// keep-alive timer does not close it under a stream.
    pub fn stream_began(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.streams.set(self.streams.get() + 1);
    }

    /// Resolves once the client has closed the connection (at once if it
    /// already has).
    pub async fn peer_closed(&self) {
        if !self.peer_closed.get() {
            self.peer_gone.notified().await;
        }
    }

    /// That answer has ended.
    pub fn stream_ended(&self, now: Instant) {
        self.streams.set(self.streams.get().saturating_sub(1));
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        self.last_activity.set(now);
        if let Some(reader) = self.parked_reader.borrow_mut().take() {
            reader.wake();
        }
    }

    /// Whether the service is handling a request whose body has been read
    /// whole: then nothing more is read until it answers, so requests
    /// pipelined behind it wait in the socket, not in memory.
    fn is_busy(&self) -> bool {
        self.in_flight.get() > 0 && !self.head_arrived.get()
    }

    fn bytes_read(&self, now: Instant) {
        self.last_activity.set(now);
        if self.request_started.get().is_none() {
            self.request_started.set(Some(now));
            self.head_arrived.set(false);
        }
    }

    fn is_idle(&self) -> bool {
        self.request_started.get().is_none() && self.in_flight.get() == 0
    }
}

/// A TCP stream under the bounds above.
pub struct GuardedStream {
    io: TcpStream,
    state: Rc<ConnectionState>,
    table: Arc<ConnectionTable>,
    /// Since when the socket has taken none of what the dispatcher wrote.
    write_blocked_since: Option<Instant>,
    /// Wakes the connection at its next deadline even when no byte moves.
    timer: Pin<Box<Sleep>>,
    /// Whether the dispatcher was handed bytes since it last saw `Pending`:
    /// it then gets `Pending` once, to parse and answer what it has before
    /// it reads more. (It otherwise reads up to 128 KiB in one go, thousands
    /// of pipelined requests parsed at once, about 18 MB a connection.)
    read_this_turn: bool,
    _admission: Admission,
}

/// What a connection's clocks say now.
enum Verdict {
    /// Go on; look again by this instant.
    Fine(Instant),
    /// A request took too long to arrive.
    RequestTimedOut,
    /// Idle past its keep-alive.
    Idle,
    /// The client has not read its answers for too long.
    WriteStalled,
}

/// A bare 408 for a request whose head never arrived in time, as actix-http
/// sends for a connection's first request (API.md's exception to the
/// envelope).
const REQUEST_TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The answer to a connection refused for want of a slot.
pub const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 126\r\n\r\n{\"success\":false,\"data\":null,\"error\":{\"code\":\"SERVICE_OVERLOADED\",\"message\":\"Too many connections are open; retry shortly.\"}}\n";

impl GuardedStream {
    pub fn new(io: TcpStream, table: Arc<ConnectionTable>, admission: Admission) -> GuardedStream {
        let now = Instant::now();
        GuardedStream {
            io,
            state: Rc::new(ConnectionState::new(now)),
            table,
            write_blocked_since: None,
            timer: Box::pin(tokio::time::sleep_until(now.into())),
            read_this_turn: false,
            _admission: admission,
        }
    }

    pub fn state(&self) -> Rc<ConnectionState> {
        Rc::clone(&self.state)
    }

    fn verdict(&self, now: Instant) -> Verdict {
        let state = &self.state;
        let mut next = now + HTTP_KEEP_ALIVE;
        if let Some(started) = state.request_started.get() {
            // A head must arrive within the head timeout; the service times
            // the body itself (it answers 408 in the envelope), so the
            // stream gives it a second more before closing outright.
            let deadline = if state.head_arrived.get() {
                started + HTTP_REQUEST_TIMEOUT + Duration::from_secs(1)
            } else {
                // A moment past actix-http's own head timer, which answers
                // a connection's first request with its bare 408 itself.
                started + HTTP_CLIENT_REQUEST_TIMEOUT + Duration::from_millis(500)
            };
            if now >= deadline {
                return Verdict::RequestTimedOut;
            }
            next = next.min(deadline);
        } else if state.is_idle() && self.write_blocked_since.is_none() {
            let deadline = state.last_activity.get() + self.table.keep_alive();
            if now >= deadline {
                return Verdict::Idle;
            }
            next = next.min(deadline);
        }
        if let Some(since) = self.write_blocked_since {
            let deadline = since + HTTP_WRITE_STALL_MAX;
            if now >= deadline {
                return Verdict::WriteStalled;
            }
            next = next.min(deadline);
        }
        Verdict::Fine(next)
    }

    /// Registers the task to be woken at `deadline` (besides by the socket).
    fn wake_at(&mut self, deadline: Instant, cx: &mut Context<'_>) {
        if self.timer.deadline() != deadline.into() {
            self.timer.as_mut().reset(deadline.into());
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    fn close_with(&mut self, verdict: &Verdict) -> io::Error {
        match verdict {
            Verdict::RequestTimedOut => {
                // The canned answer is sent only where it cannot land inside
                // another answer: nothing in flight, nothing left unsent.
                if self.state.in_flight.get() == 0 && self.write_blocked_since.is_none() {
                    let _ = self.io.try_write(REQUEST_TIMEOUT_RESPONSE);
                }
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request took too long to arrive",
                )
            }
            Verdict::WriteStalled => io::Error::new(
                io::ErrorKind::TimedOut,
                "the client has not read its answers",
            ),
            Verdict::Idle | Verdict::Fine(_) => {
                io::Error::new(io::ErrorKind::TimedOut, "idle connection closed")
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let now = Instant::now();
        let next = match this.verdict(now) {
            Verdict::Fine(next) => next,
            // Read as the end of the stream: the dispatcher closes quietly.
            Verdict::Idle => return Poll::Ready(Ok(())),
            verdict => return Poll::Ready(Err(this.close_with(&verdict))),
        };
        if this.write_blocked_since.is_some() {
            // Answers are waiting for the client to read them: read no new
            // request until the socket takes them.
            match this.io.poll_write_ready(cx) {
                Poll::Ready(_) => this.write_blocked_since = None,
                Poll::Pending => {
                    this.wake_at(next, cx);
                    return Poll::Pending;
                }
            }
        }
        if this.state.is_busy() {
            if this.state.streams.get() > 0 && !this.state.peer_closed.get() {
                // A stream may run for hours: notice a client that hangs up
                // now, not at the stream's next write. A peek leaves any
                // bytes the client sent where they are.
                let mut probe = [0u8; 1];
                let mut probe = ReadBuf::new(&mut probe);
                if let Poll::Ready(Ok(0) | Err(_)) = this.io.poll_peek(cx, &mut probe) {
                    this.state.peer_closed.set(true);
                    this.state.peer_gone.notify_one();
                }
            }
            *this.state.parked_reader.borrow_mut() = Some(cx.waker().clone());
            this.wake_at(next, cx);
            return Poll::Pending;
        }
        if this.read_this_turn {
            this.read_this_turn = false;
            // More may be waiting: come back for it once what was read has
            // been dealt with. Nothing waiting: the socket wakes the task.
            if this.io.poll_read_ready(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
            this.wake_at(next, cx);
            return Poll::Pending;
        }
        let mut chunk = buf.take(HTTP_READ_CHUNK_BYTES);
        match Pin::new(&mut this.io).poll_read(cx, &mut chunk) {
            Poll::Ready(Ok(())) => {
                let read = chunk.filled().len();
                // SAFETY: `chunk` is a window on `buf`'s unfilled part, and
                // the stream initialised and filled its first `read` bytes.
                unsafe { buf.assume_init(read) };
                buf.advance(read);
                if read > 0 {
                    this.state.bytes_read(now);
                    this.read_this_turn = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.wake_at(next, cx);
                Poll::Pending
            }
            failed => failed,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let now = Instant::now();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                this.write_blocked_since = None;
                this.state.last_activity.set(now);
                Poll::Ready(Ok(written))
            }
            Poll::Pending => {
                // The dispatcher hands over everything it has not sent yet,
                // so `buf` is exactly what this client has left unread.
                if buf.len() > HTTP_UNSENT_BYTES_MAX {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client leaves too many answers unread",
                    )));
                }
                let since = *this.write_blocked_since.get_or_insert(now);
                if now >= since + HTTP_WRITE_STALL_MAX {
                    return Poll::Ready(Err(this.close_with(&Verdict::WriteStalled)));
                }
                this.wake_at(since + HTTP_WRITE_STALL_MAX, cx);
                Poll::Pending
            }
            failed => failed,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|slice| slice.len()).sum();
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(written)) => {
                this.write_blocked_since = None;
                this.state.last_activity.set(Instant::now());
                Poll::Ready(Ok(written))
            }
            Poll::Pending => {
                let now = Instant::now();
                if total > HTTP_UNSENT_BYTES_MAX {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client leaves too many answers unread",
                    )));
                }
                let since = *this.write_blocked_since.get_or_insert(now);
                this.wake_at(since + HTTP_WRITE_STALL_MAX, cx);
                Poll::Pending
            }
            failed => failed,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Refused connections still waiting for their client to read the 503.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// Answers a connection that gets no slot: the canned 503, then a moment to
/// let the client's request arrive and be discarded, so that closing does
/// not reset the connection and lose the answer. Bounded in time
/// (`HTTP_REFUSED_LINGER`) and in number (`HTTP_REFUSED_LINGERING_MAX`);
/// past the number a refused connection is closed at once.
pub async fn refuse(io: TcpStream) {
    if LINGERING.fetch_add(1, Ordering::Relaxed) >= HTTP_REFUSED_LINGERING_MAX {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
        // Best effort without waiting: the socket is new and empty.
        let _ = io.try_write(REFUSED_RESPONSE);
        return;
    }
    let drain = async {
        let mut io = io;
        // A new socket's readiness is not known yet, so the answer is
        // written by awaiting, not tried.
        if tokio::io::AsyncWriteExt::write_all(&mut io, REFUSED_RESPONSE)
            .await
            .is_err()
        {
            return;
        }
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
        let mut discard = [0u8; 1024];
        while let Ok(read) = tokio::io::AsyncReadExt::read(&mut io, &mut discard).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(HTTP_REFUSED_LINGER, drain).await;
    LINGERING.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn the_keep_alive_shrinks_as_the_slots_fill() {
        assert_eq!(keep_alive_at(0, 1000), HTTP_KEEP_ALIVE);
        assert_eq!(keep_alive_at(500, 1000), HTTP_KEEP_ALIVE);
        let three_quarters = keep_alive_at(750, 1000);
        assert!(three_quarters < HTTP_KEEP_ALIVE && three_quarters > HTTP_KEEP_ALIVE_MIN);
        assert_eq!(keep_alive_at(1000, 1000), HTTP_KEEP_ALIVE_MIN);
        assert_eq!(keep_alive_at(2000, 1000), HTTP_KEEP_ALIVE_MIN);
    }

    #[test]
    fn an_address_gets_its_share_and_the_table_its_capacity() {
        let table = ConnectionTable::with_address_cap(3, 2);
        let a = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        let first = table.admit(a).unwrap();
        let _second = table.admit(a).unwrap();
        assert_eq!(table.admit(a).unwrap_err(), Refusal::AddressFull);
        let _third = table.admit(b).unwrap();
        assert_eq!(table.admit(b).unwrap_err(), Refusal::Full);
        drop(first);
        assert_eq!(table.open(), 2);
        assert!(table.admit(a).is_ok(), "a slot given back is free again");
    }

    #[test]
    fn ipv6_addresses_of_one_64_prefix_count_together() {
        let one = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(AddressKey::of(one), AddressKey::of(other));
        assert_eq!(
            AddressKey::of(mapped),
            AddressKey::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }

    #[test]
    fn the_refusal_declares_its_own_length() {
        let text = std::str::from_utf8(REFUSED_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["error"]["code"], "SERVICE_OVERLOADED");
    }
}
