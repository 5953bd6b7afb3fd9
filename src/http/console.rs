//! The operator console of API.md (`GET /console`): a page and its script
//! and style, written by hand in `console/` at the root of the repository
//! and compiled into the binary, so the console needs no other server, no
//! build step and no network. This file only serves those files, with the
//! headers that keep the page to itself: a strict Content-Security-Policy
//! (no inline script, nothing from elsewhere), no framing, no sniffing, no
//! referrer. The page needs no key; every call it makes to the JSON API
//! sends the key the operator types, and the API checks it there. Nothing
//! here reads a request or a store: the answers are the same for everyone.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::HttpResponse;

use crate::error::ApiError;

/// The page: markup only. Its one script and one style sheet are the files
/// below, loaded from this origin.
const PAGE: &str = include_str!("../../console/index.html");
const STYLE: &str = include_str!("../../console/console.css");
/// The calls the console makes to the JSON API, and the event stream.
const API_SCRIPT: &str = include_str!("../../console/api.js");
/// The pages of the console, drawn with DOM calls (never `innerHTML`).
const PAGES_SCRIPT: &str = include_str!("../../console/console.js");

/// Scripts and styles from this origin only, no inline script or style, no
/// `eval`; calls to this origin only; images from this origin or `data:`
/// (the page's own icon). `base-uri`, `form-action` and `frame-ancestors`
/// are not covered by `default-src`, so each is named.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// API.md: GET /console
#[utoipa::path(get, path = "/console", tag = "console",
    summary = "The operator console, a web page for people holding an admin key",
    description = "Served bare (no envelope), with a strict Content-Security-Policy and \
        `X-Frame-Options: DENY`. The page needs no key; each call it makes to this API sends \
        the admin key typed into it, which the page keeps only in the tab's session storage.",
    responses((status = 200, description = "The console's page.",
        content_type = "text/html", body = String)))]
pub(super) async fn get_console() -> Result<HttpResponse, ApiError> {
    Ok(console_file("text/html; charset=utf-8", PAGE))
}

/// The console's style sheet.
#[utoipa::path(get, path = "/console/console.css", tag = "console",
    summary = "The operator console's style sheet",
    responses((status = 200, description = "The style sheet, bare (no envelope).",
        content_type = "text/css", body = String)))]
pub(super) async fn get_console_style() -> Result<HttpResponse, ApiError> {
    Ok(console_file("text/css; charset=utf-8", STYLE))
}

/// The console's client of this API, a JavaScript module.
#[utoipa::path(get, path = "/console/api.js", tag = "console",
    summary = "The operator console's client of this API (a JavaScript module)",
    responses((status = 200, description = "The script, bare (no envelope).",
        content_type = "text/javascript", body = String)))]
pub(super) async fn get_console_api_script() -> Result<HttpResponse, ApiError> {
    Ok(console_file("text/javascript; charset=utf-8", API_SCRIPT))
}

/// The console's pages, a JavaScript module.
#[utoipa::path(get, path = "/console/console.js", tag = "console",
    summary = "The operator console's pages (a JavaScript module)",
    responses((status = 200, description = "The script, bare (no envelope).",
        content_type = "text/javascript", body = String)))]
pub(super) async fn get_console_script() -> Result<HttpResponse, ApiError> {
    Ok(console_file("text/javascript; charset=utf-8", PAGES_SCRIPT))
}

/// One file of the console with the headers every one of them carries.
fn console_file(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut response = HttpResponse::Ok().content_type(content_type).body(body);
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The files change with the binary: a browser asks again each time
        // (a conditional request would need validators; the files are small).
        (header::CACHE_CONTROL, "no-cache"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `markup` has an attribute such as ` onclick=`: an inline
    /// event handler, which is inline script.
    fn has_inline_handler(markup: &str) -> bool {
        markup.match_indices(" on").any(|(at, _)| {
            let rest = &markup[at + 3..];
            let name_length = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_length > 0 && rest[name_length..].starts_with('=')
        })
    }

    #[test]
    fn the_page_loads_its_script_and_style_from_this_origin_and_has_no_inline_script() {
        assert!(PAGE.contains(r#"<script type="module" src="/console/console.js"></script>"#));
        assert!(PAGE.contains(r#"<link rel="stylesheet" href="/console/console.css">"#));
        assert_eq!(
            PAGE.matches("<script").count(),
            1,
            "one script, from a file"
        );
        assert!(!PAGE.contains("<style"));
        assert!(!PAGE.contains(" style="));
        assert!(!has_inline_handler(PAGE));
        assert!(has_inline_handler(r#"<img src=x onerror=alert(1)>"#));
    }

    #[test]
    fn the_scripts_never_write_markup_from_strings() {
        for script in [API_SCRIPT, PAGES_SCRIPT] {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!script.contains(sink), "{sink} in a console script");
            }
        }
    }

    #[test]
    fn the_policy_allows_no_inline_script_or_style() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }
}
