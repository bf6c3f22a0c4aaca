//! Who may read the page: with `[http] token_file`, every request needs
//! its token — as `Authorization: Bearer TOKEN` (scripts, Prometheus), or
//! as the cookie a `?token=TOKEN` link sets (people: open the link once,
//! it redirects to the same page without the token and the browser keeps
//! the cookie). Without a token file the page only listens on loopback
//! (`daemon` refuses any other address) and asks nothing.
//!
//! The token file is read like `asana.token_file`: refused if group or
//! others may read or write it, or if it is empty. The token is a secret
//! (`secrecy`): never logged, never in an error. The cookie holds a hash of
//! it, not the token. Comparisons take the same time whatever matches.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};

use super::Page;

/// The cookie a `?token=` link sets.
pub const COOKIE: &str = "pushgate_page";

/// The page's token, read once when the daemon starts.
pub struct PageToken {
    secret: SecretString,
    /// What the cookie holds: a hash of the token.
    cookie: String,
}

impl std::fmt::Debug for PageToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageToken([REDACTED])")
    }
}

fn sha256(s: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (sha256(a), sha256(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

impl PageToken {
    /// Reads `http.token_file`; the error names the file and what is wrong.
    pub fn read(path: &Path) -> Result<PageToken, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("http.token_file: cannot read {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("http.token_file: {shown} is not a file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "http.token_file: {shown} is accessible by group or others (mode {mode:04o}); run: chmod 600 {shown}"
            ));
        }
        let value = std::fs::read_to_string(path)
            .map_err(|e| format!("http.token_file: cannot read {shown}: {e}"))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("http.token_file: {shown} is empty"));
        }
        if value
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b';' || b == b',')
        {
            return Err(format!(
                "http.token_file: {shown} holds spaces, separators or control characters"
            ));
        }
        if value.len() < 16 {
            return Err(format!(
                "http.token_file: {shown} holds a token of {} characters; use at least 16 (e.g. `openssl rand -hex 32`)",
                value.len()
            ));
        }
        Ok(PageToken::new(value))
    }

    pub fn new(value: &str) -> PageToken {
        let mut salted = b"pushgate page cookie\0".to_vec();
        salted.extend_from_slice(value.as_bytes());
        let cookie = sha256(&salted).iter().map(|b| format!("{b:02x}")).collect();
        PageToken {
            secret: SecretString::from(value.to_owned()),
            cookie,
        }
    }

    fn is(&self, offered: &str) -> bool {
        same(self.secret.expose_secret().as_bytes(), offered.as_bytes())
    }

    fn is_cookie(&self, offered: &str) -> bool {
        same(self.cookie.as_bytes(), offered.as_bytes())
    }
}

/// What a request offered: any of a bearer token, the cookie, a
/// `?token=` link (with the rest of its query, to redirect to).
#[derive(Debug, Default, PartialEq, Eq)]
struct Offered<'a> {
    bearer: Option<&'a str>,
    cookie: Option<&'a str>,
    link: Option<(String, String)>,
}

fn offered(req: &Request) -> Offered<'_> {
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let link = req.uri().query().and_then(|q| {
        let mut token = None;
        let mut rest = Vec::new();
        for pair in q.split('&') {
            match pair.strip_prefix("token=") {
                Some(t) if token.is_none() => token = Some(percent_decode(t)),
                _ => rest.push(pair),
            }
        }
        token.map(|t| (t, rest.join("&")))
    });
    let cookie = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    Offered {
        bearer,
        cookie,
        link,
    }
}

/// `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The middleware: lets a request through, redirects a good `?token=`
/// link with the cookie set, or answers 401.
pub async fn guard(State(page): State<std::sync::Arc<Page>>, req: Request, next: Next) -> Response {
    let Some(token) = page.token.as_ref() else {
        return next.run(req).await;
    };
    let o = offered(&req);
    if o.bearer.is_some_and(|t| token.is(t)) || o.cookie.is_some_and(|c| token.is_cookie(c)) {
        return next.run(req).await;
    }
    match o.link {
        Some((t, rest)) if token.is(&t) => {
            // Back to the same page, without the token in the address bar
            // (never to another site: `//host` is not a path here).
            let path = req.uri().path();
            let path = if path.starts_with("//") { "/" } else { path };
            let to = if rest.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{rest}")
            };
            let https = req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000{}",
                token.cookie,
                if https { "; Secure" } else { "" }
            );
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let h = resp.headers_mut();
            if let (Ok(loc), Ok(c)) = (HeaderValue::from_str(&to), HeaderValue::from_str(&cookie)) {
                h.insert(header::LOCATION, loc);
                h.insert(header::SET_COOKIE, c);
            }
            super::html::secure(&mut resp);
            resp
        }
        _ => denied(),
    }
}

fn denied() -> Response {
    let mut resp = super::html::page(
        StatusCode::UNAUTHORIZED,
        "token needed",
        super::html::BodyData::default(),
        maud::html! {
            h1 { "This page needs its token" }
            p { "Open the link with " code { "?token=…" } " that the operators of this pushgate hand out, or send "
                code { "Authorization: Bearer …" } " (the token is in the file " code { "[http] token_file" } " names)." }
        },
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"pushgate\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn a_token_comes_as_a_bearer_a_cookie_or_a_link() {
        let r = req("/", &[("authorization", "Bearer abc")]);
        assert_eq!(offered(&r).bearer, Some("abc"));
        let r = req("/", &[("cookie", "a=1; pushgate_page=ff00")]);
        let o = offered(&r);
        assert_eq!((o.bearer, o.cookie), (None, Some("ff00")));
        let r = req(
            "/cluster/web/beta?since=7d&token=a%2Bb&outcome=failed",
            &[("cookie", "pushgate_page=ff00")],
        );
        let o = offered(&r);
        assert_eq!(
            o.link,
            Some(("a+b".into(), "since=7d&outcome=failed".into()))
        );
        assert_eq!(o.cookie, Some("ff00"), "both, when both come");
        let r = req("/", &[("authorization", "Basic eA==")]);
        assert_eq!(offered(&r), Offered::default());
    }

    #[test]
    fn the_token_file_is_refused_when_others_may_read_it_or_it_is_short_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = PageToken::read(&p).unwrap_err();
        assert!(
            e.contains("accessible by group or others (mode 0644)") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = PageToken::read(&p).unwrap();
        assert!(t.is("0123456789abcdef0123") && !t.is("0123456789abcdef012"));
        assert!(!format!("{t:?}").contains("0123"));
        std::fs::write(&p, "\n").unwrap();
        assert!(PageToken::read(&p).unwrap_err().contains("is empty"));
        std::fs::write(&p, "short").unwrap();
        assert!(PageToken::read(&p).unwrap_err().contains("at least 16"));
        let e = PageToken::read(&dir.path().join("missing")).unwrap_err();
        assert!(e.starts_with("http.token_file: cannot read"), "{e}");
    }
}
