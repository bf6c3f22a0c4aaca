//! The pages' frame: the layout every page shares, its one stylesheet and
//! its one script (both inline, allowed by their SHA-256 in the
//! Content-Security-Policy, so no other inline script or style can run),
//! the security headers, and small pieces the pages repeat (times, links,
//! tones). Every string goes through maud, which escapes it; untrusted
//! text is also made printable (`domain::text::printable`: control and
//! bidi characters shown as escapes).

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::domain::text::printable;

/// The page's stylesheet: no style attribute anywhere (the CSP allows
/// only this block).
pub const STYLE: &str = "\
:root{--good:#1a7f37;--warn:#9a6700;--bad:#cf222e;--busy:#0969da;--muted:#57606a;--line:#d0d7de}\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#fff}\
header.top{display:flex;gap:1.2rem;align-items:baseline;padding:.6rem 1.2rem;border-bottom:1px solid var(--line);background:#f6f8fa}\
header.top a{color:inherit}header.top .brand{font-weight:700;text-decoration:none}\
main{padding:1rem 1.2rem;max-width:90rem}h1{font-size:1.35rem;margin:.2rem 0 .8rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}\
table{border-collapse:collapse;width:100%}td,th{padding:.35rem .55rem;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}\
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}\
.state{font-weight:700;white-space:nowrap}.good{color:var(--good)}.warn{color:var(--warn)}.bad{color:var(--bad)}.busy{color:var(--busy)}\
.muted{color:var(--muted)}.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}\
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.6rem;border:1px solid var(--line);max-height:30rem;overflow:auto}\
ul.plain{list-style:none;margin:0;padding:0}ul.plain li{margin:.1rem 0}\
.verdict{margin:0 0 .2rem}.small{font-size:.85rem}\
progress{width:12rem;vertical-align:middle}\
.charts{display:flex;flex-wrap:wrap;gap:1rem}figure.chart{margin:0;border:1px solid var(--line);padding:.4rem}\
figure.chart figcaption{font-weight:600;margin-bottom:.2rem}figure.chart svg{max-width:100%;height:auto;display:block}\
form.filters{display:flex;gap:1rem;align-items:end;margin:.5rem 0}form.filters label{display:flex;flex-direction:column;font-size:.85rem}\
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .6rem}\
footer{padding:1rem 1.2rem;color:var(--muted);font-size:.8rem}\
@media (max-width:48rem){main{padding:.6rem .7rem}header.top{flex-wrap:wrap;gap:.3rem .9rem;padding:.5rem .7rem}\
table{display:block;overflow-x:auto}form.filters{flex-wrap:wrap}progress{width:100%}\
table#clusters,table#clusters tbody,table#clusters tr,table#clusters td{display:block;width:auto}table#clusters thead{display:none}\
table#clusters tr{border:1px solid var(--line);border-radius:6px;margin:0 0 .8rem;padding:.3rem .6rem}table#clusters td{border:0;padding:.25rem 0}\
table#clusters td[data-label]::before{content:attr(data-label);display:block;font-size:.72rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}\
table#clusters td:first-child::before{display:none}table#clusters td:first-child{font-size:1.1rem}}";

/// The page's script: the live view. It polls `/api/live.json` and
/// updates the elements marked `data-live` in place (state, progress);
/// when a push it showed running has ended, it reloads the page, whose
/// server-side parts (verdicts, charts, the timeline) change then.
pub const SCRIPT: &str = r#"(function () {
  "use strict";
  var body = document.body;
  var run = body.getAttribute("data-run") || "";
  var step = body.getAttribute("data-step") || "";
  var running = {};
  var cells = document.querySelectorAll("[data-live]");
  if (!cells.length && !run) { return; }
  Array.prototype.forEach.call(cells, function (el) {
    if (el.getAttribute("data-running") === "1") { running[el.getAttribute("data-live")] = true; }
  });
  function size(n) {
    var u = ["KiB", "MiB", "GiB", "TiB"], i = -1;
    if (n < 1024) { return n + " B"; }
    while (n >= 1024 && i < u.length - 1) { n = n / 1024; i++; }
    return (n < 10 ? n.toFixed(1) : n.toFixed(0)) + " " + u[i];
  }
  function words(c) {
    if (!c.running || !c.run_id) { return ""; }
    var s = c.step ? c.step : "starting";
    if (c.hosts) {
      s += ": " + c.staged + " of " + c.hosts + " hosts staged, " + size(c.bytes) + " sent";
      if (c.failed) { s += ", " + c.failed + " failed"; }
    }
    if (c.of) { s += "; wave " + c.wave + " of " + c.of; }
    return s;
  }
  function put(el, sel, text) {
    var t = el.querySelector(sel);
    if (t && t.textContent !== text) { t.textContent = text; }
  }
  function show(c) {
    var key = c.app + "/" + c.cluster;
    // A push has a journal (a run id); a run that only looked (nothing
    // new, held) holds the cluster's lock for an instant: not a push.
    var pushing = c.running && c.run_id;
    var els = document.querySelectorAll("[data-live=\"" + key + "\"]");
    Array.prototype.forEach.call(els, function (el) {
      if (pushing) {
        put(el, ".live-state", "pushing");
        var st = el.querySelector(".live-state");
        if (st) { st.className = "live-state state busy"; }
        put(el, ".live-progress", words(c));
        var bar = el.querySelector("progress.live-bar");
        if (bar && c.hosts) { bar.max = c.hosts; bar.value = c.staged; bar.hidden = false; }
      }
    });
    if (pushing) { running[key] = true; return false; }
    return running[key] === true;
  }
  function poll() {
    fetch("/api/live.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d) { return; }
        var ended = false;
        d.clusters.forEach(function (c) {
          if (show(c)) { ended = true; }
          if (run && c.run_id === run && c.running && (c.step || "") !== step) { ended = true; }
        });
        if (run && body.getAttribute("data-running") === "1" &&
            !d.clusters.some(function (c) { return c.running && c.run_id === run; })) { ended = true; }
        if (ended) { window.location.reload(); }
      })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 1000); });
  }
  poll();
})();"#;

fn sha256_b64(s: &str) -> String {
    base64(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref())
}

/// Standard base64 (with padding), for the CSP's hashes.
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Content-Security-Policy of every page: nothing but this page's own
/// script and stylesheet (by hash), requests to its own origin (the live
/// view), no frames, no plugins, forms only to itself.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            sha256_b64(SCRIPT),
            sha256_b64(STYLE)
        )
    })
}

/// The policy of the feeds (XML, SVG, JSON): no script at all; inline
/// style and `data:` images only for the browser's own viewers of XML and
/// JSON (their tree's arrows).
pub const FEED_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";

/// The headers every page carries.
pub fn secure(resp: &mut Response) {
    secure_with(resp, csp());
}

/// The headers every answer carries, with its policy.
pub fn secure_with(resp: &mut Response, policy: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(policy) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// What a page's body element says about it, for the script.
#[derive(Default)]
pub struct BodyData {
    /// A run page: its run id, whether it runs, its step.
    pub run: Option<String>,
    pub running: bool,
    pub step: Option<String>,
}

/// A whole page.
pub fn page(status: StatusCode, title: &str, data: BodyData, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · pushgate" }
                style { (PreEscaped(STYLE)) }
            }
            body data-run=[data.run.as_deref()] data-running=[data.running.then_some("1")] data-step=[data.step.as_deref()] {
                header.top {
                    a.brand href="/" { "pushgate" }
                    a href="/" { "overview" }
                    a href="/api/status.json" { "status.json" }
                    a href="/cc.xml" { "cc.xml" }
                    a href="/metrics" { "metrics" }
                }
                main { (body) }
                footer { "Read-only: nothing on this page changes anything. Shown at " (Utc::now().format("%Y-%m-%d %H:%M:%S UTC")) "." }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    let mut resp = (status, doc.into_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(&mut resp);
    resp
}

/// Renders off the async threads: the pages read the state directory
/// (histories, journals, reports), which must not hold up the pushes the
/// daemon runs on them.
pub async fn blocking(render: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(render)
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "on-call page: a page failed to render");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                BodyData::default(),
                html! { h1 { "This page could not be made" } p { "See the daemon's log." } },
            )
        })
}

/// A page that says what is not there.
pub fn not_found(what: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        "not found",
        BodyData::default(),
        html! { h1 { "Not found" } p { (what) } p { a href="/" { "Back to the overview" } } },
    )
}

/// Untrusted text for the page: printable, bounded (maud escapes it).
pub fn text(s: &str, max: usize) -> String {
    printable(s, max)
}

/// A time in `tz`, with the exact time for machines.
pub fn time(t: DateTime<Utc>, tz: Tz) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) { (t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")) }
    }
}

/// The tone's class (status's tones: 0 good, 1 warn, 2 bad, 3 busy).
pub fn tone(t: u8) -> &'static str {
    match t {
        0 => "good",
        1 => "warn",
        3 => "busy",
        _ => "bad",
    }
}

/// A link to the code, when `repo.web` says where commits are shown.
pub fn commit(web: Option<&crate::config::WebLinks>, sha: &str) -> Markup {
    let short: String = sha.chars().take(7).collect();
    let hex = !sha.is_empty() && sha.bytes().all(|b| b.is_ascii_hexdigit());
    match web.filter(|_| hex) {
        Some(w) => html! { a.mono href=(w.commit_url(sha)) title=(sha) { (short) } },
        None => html! { span.mono title=(text(sha, 64)) { (text(&short, 12)) } },
    }
}

/// A duration for people: `4.2 s`, `3 min 10 s`.
pub fn took(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 2.0 * 86_400.0 {
        format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else {
        format!("{} days", (s / 86_400.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn the_policy_names_the_hashes_of_the_page_own_script_and_style_only() {
        let p = csp();
        assert!(
            p.contains(&format!("'sha256-{}'", sha256_b64(SCRIPT))),
            "{p}"
        );
        assert!(
            !p.contains("unsafe-inline") && !p.contains("unsafe-eval"),
            "{p}"
        );
        assert!(p.starts_with("default-src 'none'"), "{p}");
    }
}
