//! The status page (`GET /`, docs/api.md#the-status-page): one HTML file,
//! `status.html`, with its style and script inline and no other asset,
//! which reads the JSON API from the browser (`fetch`) and renders it
//! again every two seconds.
//!
//! The page holds no data, so it is served to anyone, at the HTTP edge
//! without a trip through the event loop; its data calls need the token
//! wherever reads do. It is served with a Content-Security-Policy that
//! allows nothing but its own two inline blocks, by their SHA-256 (computed
//! once, when the router is built), and calls to its own origin: a value
//! that managed to get rendered as markup would still run nothing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The page.
const PAGE: &str = include_str!("status.html");

/// The page's answer, its policy computed once.
#[derive(Clone, Debug)]
pub(crate) struct StatusPage {
    csp: HeaderValue,
}

impl StatusPage {
    /// Hashes the page's inline blocks into its policy.
    pub(crate) fn new() -> StatusPage {
        let csp = HeaderValue::from_str(&policy(PAGE))
            // Base64 and fixed ASCII only; should it ever fail, the page
            // is served with a policy that runs nothing rather than none.
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        StatusPage { csp }
    }

    /// The page with its headers. `no-store`: after an upgrade the browser
    /// must not keep an old page whose hashes the new policy refuses.
    pub(crate) fn response(&self) -> Response {
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CONTENT_SECURITY_POLICY, self.csp.clone()),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
            PAGE,
        )
            .into_response()
    }
}

/// The Content-Security-Policy of `page`: its inline `<style>` and
/// `<script>` blocks by hash, `fetch` to its own origin, the empty
/// `data:` icon; nothing else (no framing, no form posts, no `<base>`).
fn policy(page: &str) -> String {
    let sources = |tag| {
        blocks(page, tag)
            .into_iter()
            .map(|b| {
                format!(
                    "'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b))
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sources("script"),
        sources("style")
    )
}

/// The text of every `<tag>...</tag>` block of `page`, exactly as the
/// browser hashes it (the page writes these tags without attributes).
fn blocks<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_inline_blocks() {
        let p = policy("<style>b{}</style><p>x</p><script>go()</script>");
        // sha256("go()") and sha256("b{}"), base64.
        assert_eq!(
            p,
            "default-src 'none'; script-src 'sha256-5KYv+PUboo5h+0+YAtGRPbwv5d/QxzHslP4YGnUaxRw='; \
             style-src 'sha256-7yqHVAesot11p6HczDsgKRipvI5UPgs97z80zNXlans='; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        let page = policy(PAGE);
        assert_eq!(blocks(PAGE, "script").len(), 1);
        assert_eq!(blocks(PAGE, "style").len(), 1);
        assert_eq!(page.matches("'sha256-").count(), 2, "{page}");
    }

    #[test]
    fn the_page_has_no_code_the_policy_would_block_and_no_outside_asset() {
        let lower = PAGE.to_ascii_lowercase();
        // Every script and style is one of the hashed blocks: no
        // attributes (src=), no inline handlers or style attributes.
        assert_eq!(lower.matches("<script").count(), 1);
        assert_eq!(lower.matches("<style").count(), 1);
        for bad in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " style=",
            "http://",
            "https://",
            "//cdn",
            "@import",
            "url(",
            "innerhtml",
            "outerhtml",
            "insertadjacenthtml",
            "document.write",
            "eval(",
        ] {
            assert!(!lower.contains(bad), "the page holds {bad:?}");
        }
        let r = StatusPage::new().response();
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
