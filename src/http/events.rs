//! The events route of API.md: `GET /events`, a page of JSON, or a
//! Server-Sent Event stream that follows the ledger as it commits, and the
//! bounded set of open streams.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::caller_of;
use super::body::FieldErrors;
use super::connection::ConnectionState;
use super::envelope::ok;
use super::input::read_query;
use super::json::{EventJson, EventPageJson};
use super::params::EventsParams;
use crate::auth::Keyring;
use crate::domain::{Caller, Scope};
use crate::error::ApiError;
use crate::limits::{
    CURSOR_CHARS_MAX, EVENTS_PAGE_LIMIT_DEFAULT, EVENTS_PAGE_LIMIT_MAX, EVENT_STREAMS_MAX,
    EVENT_STREAM_KEEP_ALIVE, EVENT_STREAM_READ_BATCH,
};
use crate::store::{EventRow, Store};

const NOT_OUR_CURSOR: &str = "is not a cursor this service returned";

/// Where a feed starts, and how much of it a page holds.
struct EventsQuery {
    after: i64,
    limit: usize,
}

/// `after` is a cursor this service gave: an event's sequence number, or
/// `0` for the start. Digits only, no sign, no leading zero.
fn parse_event_cursor(raw: &str) -> Option<i64> {
    let digits_only = !raw.is_empty()
        && raw.len() <= CURSOR_CHARS_MAX
        && raw.bytes().all(|byte| byte.is_ascii_digit())
        && (raw == "0" || !raw.starts_with('0'));
    digits_only.then(|| raw.parse::<i64>().ok()).flatten()
}

fn parse_events_query(raw: &str, errors: &mut FieldErrors) -> EventsQuery {
    let mut query = EventsQuery {
        after: 0,
        limit: EVENTS_PAGE_LIMIT_DEFAULT,
    };
    read_query(raw, &["after", "limit"], errors, |name, value, errors| {
        match name {
            "after" => match parse_event_cursor(value) {
                Some(after) => query.after = after,
                None => errors.push("after", NOT_OUR_CURSOR),
            },
            "limit" => match value.parse::<usize>() {
                Ok(limit)
                    if (1..=EVENTS_PAGE_LIMIT_MAX).contains(&limit)
                        && value.bytes().all(|byte| byte.is_ascii_digit()) =>
                {
                    query.limit = limit
                }
                _ => errors.push(
                    "limit",
                    format!("must be an integer from 1 to {EVENTS_PAGE_LIMIT_MAX}"),
                ),
            },
            // read_query passes only the names given above.
            _ => {}
        }
    });
    query
}

/// API.md: GET /events?after=&limit=
#[utoipa::path(get, path = "/events", tag = "events",
    summary = "Every committed entry and hold change, in commit order",
    description = "A page of JSON, or with `Accept: text/event-stream` the same events as \
        Server-Sent Events (`id:` the cursor, `event:` the type, `data:` the event), kept open \
        and fed as writes commit. `Last-Event-ID` (a reconnect's, or a poller's) resumes \
        after that event, over `after`; like `after`, it is a cursor this service gave out, \
        never one past the newest event (400). \
        At most 100 streams are open at once; past it 503 SERVICE_OVERLOADED.",
    params(EventsParams),
    responses((status = 200, description = "A page of events and the cursor to ask with next \
        (never null); or, asked for, an event stream.", body = EventPageJson)))]
pub(super) async fn get_events(
    request: HttpRequest,
    store: web::Data<Store>,
    streams: web::Data<EventStreams>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let mut query = parse_events_query(request.query_string(), &mut errors);
    let wants_stream = request
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("text/event-stream"));
    let mut cursor_field = "after";
    // A reconnecting EventSource sends the last id it saw: it wins over the
    // `after` of the URL it first opened. A page reads it the same way, so
    // a header the document offers is never taken and then ignored.
    if let Some(value) = request.headers().get("last-event-id") {
        cursor_field = "Last-Event-ID";
        match value.to_str().ok().and_then(parse_event_cursor) {
            Some(after) => query.after = after,
            None => errors.push(cursor_field, NOT_OUR_CURSOR),
        }
    }
    errors.into_result()?;
    // Following a cursor past the feed's end would skip every event until
    // the ledger grew past it. The feed only grows, so one look suffices.
    if query.after > 0 && query.after > store.events_end()? {
        let mut past_end = FieldErrors::default();
        past_end.push(cursor_field, NOT_OUR_CURSOR);
        past_end.into_result()?;
    }
    if wants_stream && request.method() == actix_web::http::Method::HEAD {
        // The stream's head, and no stream: a HEAD has no body to wait for,
        // so it must neither hang its connection nor hold a stream's place.
        return Ok(stream_head().finish());
    }
    if wants_stream {
        let watcher = CallerWatch::of(&request)?;
        return open_stream(
            &request,
            store.get_ref().clone(),
            &streams,
            watcher,
            query.after,
        );
    }
    let events = store.events_after(query.after, query.limit).await?;
    let next_cursor = events.last().map_or(query.after, |event| event.seq);
    Ok(ok(EventPageJson {
        items: events.into_iter().map(EventJson::from).collect(),
        next_cursor: next_cursor.to_string(),
    }))
}

/// The open event streams, bounded, and the signal that ends them all when
/// the server stops (a stream would otherwise hold its connection open past
/// the graceful stop).
pub struct EventStreams {
    open: AtomicUsize,
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for EventStreams {
    fn default() -> EventStreams {
        EventStreams {
            open: AtomicUsize::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl EventStreams {
    /// Ends every stream, and refuses new ones.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    fn try_open(self: &Arc<Self>) -> Option<StreamSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < EVENT_STREAMS_MAX).then_some(open + 1)
            })
            .ok()?;
        crate::metrics::metrics().event_stream_opened();
        Some(StreamSlot(Arc::clone(self)))
    }
}

/// One of the `EVENT_STREAMS_MAX` places, given back when its stream ends.
struct StreamSlot(Arc<EventStreams>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::metrics().event_stream_closed();
    }
}

/// Keeps the connection busy while its stream runs (see
/// `ConnectionState::stream_began`).
struct StreamOnConnection(Option<Rc<ConnectionState>>);

impl Drop for StreamOnConnection {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            state.stream_ended(Instant::now());
        }
    }
}

/// The caller a stream serves, checked again each time the accepted keys
/// change and before each delivery: a key revoked (or left without the
/// route's scope) ends its open streams as soon as the running server
/// knows, as it refuses the key's new requests (API.md: within 100 ms).
struct CallerWatch {
    keyring: Arc<Keyring>,
    caller: Caller,
    replacements: tokio::sync::watch::Receiver<u64>,
}

impl CallerWatch {
    fn of(request: &HttpRequest) -> Result<CallerWatch, ApiError> {
        let caller = caller_of(request)?;
        let keyring = request
            .app_data::<web::Data<Keyring>>()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no keyring in the application")))?
            .clone()
            .into_inner();
        Ok(CallerWatch {
            replacements: keyring.replacements(),
            keyring,
            caller,
        })
    }

    /// Whether the caller may still read the feed. Marks the current keys
    /// seen, so the wait below wakes only for a later change.
    fn still_allowed(&mut self) -> bool {
        self.replacements.borrow_and_update();
        self.keyring.confirm(self.caller, Scope::Read).is_ok()
    }
}

/// What a stream carries between its chunks.
struct Following {
    store: Store,
    caller: CallerWatch,
    after: i64,
    /// When the next keep-alive comment is due if nothing else is sent.
    keep_alive_at: tokio::time::Instant,
    commits: tokio::sync::watch::Receiver<u64>,
    closing: tokio::sync::watch::Receiver<bool>,
    _slot: StreamSlot,
    _connection: StreamOnConnection,
}

/// The head of an event stream's answer.
fn stream_head() -> actix_web::HttpResponseBuilder {
    let mut head = HttpResponse::Ok();
    head.content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies that buffer answers (nginx) pass this one on as it comes.
        .insert_header(("x-accel-buffering", "no"));
    head
}

fn open_stream(
    request: &HttpRequest,
    store: Store,
    streams: &web::Data<EventStreams>,
    caller: CallerWatch,
    after: i64,
) -> Result<HttpResponse, ApiError> {
    let streams = streams.clone().into_inner();
    let closing = streams.closing.subscribe();
    if *closing.borrow() {
        return Err(ApiError::ServiceOverloaded);
    }
    let slot = streams.try_open().ok_or(ApiError::ServiceOverloaded)?;
    let connection = request.conn_data::<Rc<ConnectionState>>().cloned();
    if let Some(state) = &connection {
        state.stream_began();
    }
    let following = Following {
        commits: store.commits(),
        store,
        caller,
        after,
        keep_alive_at: tokio::time::Instant::now() + EVENT_STREAM_KEEP_ALIVE,
        closing,
        _slot: slot,
        _connection: StreamOnConnection(connection),
    };
    let stream = futures_util::stream::unfold(following, next_chunk);
    Ok(stream_head().streaming(stream))
}

/// The stream's next chunk: the events committed after the last one sent
/// (up to `EVENT_STREAM_READ_BATCH`, read from the database, so a reader
/// that falls behind costs the writer nothing), or once nothing new came
/// for a while a comment line, or the end when the server stops or the
/// caller's key no longer lets it read. A read that fails ends the stream;
/// the client's reconnect with `Last-Event-ID` resumes where it stopped.
async fn next_chunk(
    mut following: Following,
) -> Option<(Result<Bytes, std::io::Error>, Following)> {
    loop {
        if *following.closing.borrow() || !following.caller.still_allowed() {
            return None;
        }
        // Marked seen before the read: a commit during it wakes the wait
        // below at once, so nothing committed is left waiting.
        following.commits.borrow_and_update();
        let events = match following
            .store
            .events_after(following.after, EVENT_STREAM_READ_BATCH)
            .await
        {
            Ok(events) => events,
            Err(failure) => {
                tracing::warn!("an event stream ended: its read failed: {failure}");
                return None;
            }
        };
        // Checked again after the read: a key revoked while it ran gets
        // nothing it returned.
        if !following.caller.still_allowed() {
            return None;
        }
        if let Some(last) = events.last() {
            following.after = last.seq;
            following.keep_alive_at = tokio::time::Instant::now() + EVENT_STREAM_KEEP_ALIVE;
            return Some((Ok(Bytes::from(server_sent_events(events))), following));
        }
        let connection = following._connection.0.clone();
        let peer_closed = async move {
            match connection {
                Some(state) => state.peer_closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = following.commits.changed() => {
                if changed.is_err() {
                    // The writer has gone: the server is stopping.
                    return None;
                }
            }
            _ = following.closing.changed() => return None,
            // A key created or revoked: the loop's first check decides.
            _ = following.caller.replacements.changed() => {}
            // The client hung up: give its place back now.
            _ = peer_closed => return None,
            _ = tokio::time::sleep_until(following.keep_alive_at) => {
                following.keep_alive_at = tokio::time::Instant::now() + EVENT_STREAM_KEEP_ALIVE;
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), following));
            }
        }
    }
}

/// Events as Server-Sent Events: `id`, `event`, `data` (one line: compact
/// JSON has no raw newline), and a blank line each.
fn server_sent_events(events: Vec<EventRow>) -> String {
    let mut text = String::with_capacity(events.len() * 512);
    for event in events {
        let id = event.seq;
        let kind = event.kind.as_str();
        let json = serde_json::to_string(&EventJson::from(event)).unwrap_or_default();
        text.push_str(&format!("id: {id}\nevent: {kind}\ndata: {json}\n\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_digits_without_a_leading_zero_or_zero_itself() {
        assert_eq!(parse_event_cursor("0"), Some(0));
        assert_eq!(parse_event_cursor("17"), Some(17));
        for bad in [
            "",
            "00",
            "017",
            "-1",
            "+1",
            "1.0",
            "x",
            "99999999999999999999",
        ] {
            assert_eq!(parse_event_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_page_query_takes_after_and_limit_and_refuses_the_rest() {
        let mut errors = FieldErrors::default();
        let query = parse_events_query("after=5&limit=1000", &mut errors);
        assert!(errors.is_empty());
        assert_eq!((query.after, query.limit), (5, 1000));
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=+5",
            "after=abc",
            "after=1&after=2",
            "x=1",
        ] {
            let mut errors = FieldErrors::default();
            parse_events_query(bad, &mut errors);
            assert!(!errors.is_empty(), "{bad:?} was accepted");
        }
    }
}
