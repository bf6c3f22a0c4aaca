//! Text for people: untrusted text made printable, errors on one line,
//! sizes and counts. Pure functions; no IO.

/// Untrusted text made safe for a terminal or a log line: control
/// characters escaped, long text cut.
pub fn printable(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        // Control characters, and the invisible ones that reorder or hide
        // what a terminal shows (bidirectional overrides, zero-width
        // characters, the byte-order mark).
        if c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error with its causes, on one line.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// "512 KiB", "1.5 MiB": a size for people, in IEC units as rsync
/// reports them. The one byte formatter.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

/// `"1 host"`, `"3 hosts"`: a count and its noun, plural when it is not one.
pub fn count(n: usize, noun: &str) -> String {
    format!("{n} {}", plural(n, noun))
}

/// `noun`, in the plural unless `n` is one (`push` → `pushes`). The one
/// plural helper.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        noun.to_owned()
    } else if ["s", "sh", "ch", "x"].iter().any(|e| noun.ends_with(e)) {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

/// `s` for XML text or a double-quoted attribute: `&`, `<`, `>`, `"`, `'`.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A text written twice as it is built: as plain text, and as Asana rich
/// text (`html_notes`: `<body>…</body>`, links as `<a href>`) whose plain
/// text is exactly the first — so a task made with the rich text is
/// recognised by its plain notes.
#[derive(Clone, Debug, Default)]
pub struct Rich {
    plain: String,
    html: String,
    linked: bool,
}

impl Rich {
    pub fn text(&mut self, s: &str) -> &mut Rich {
        self.plain.push_str(s);
        self.html.push_str(&xml_escape(s));
        self
    }

    /// `text` linking to `url` in the rich text.
    pub fn link(&mut self, text: &str, url: &str) -> &mut Rich {
        self.plain.push_str(text);
        self.html.push_str(&format!(
            "<a href=\"{}\">{}</a>",
            xml_escape(url),
            xml_escape(text)
        ));
        self.linked = true;
        self
    }

    /// The plain text, and the rich text when it holds a link.
    pub fn finish(self) -> (String, Option<String>) {
        let html = self.linked.then(|| format!("<body>{}</body>", self.html));
        (self.plain, html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_in_iec_units_and_counts_agree_with_their_noun() {
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(150 * 1024 * 1024), "150 MiB");
        assert_eq!(count(1, "host"), "1 host");
        assert_eq!(count(0, "host"), "0 hosts");
        assert_eq!(plural(2, "commit"), "commits");
        assert_eq!(count(2, "push"), "2 pushes");
        assert_eq!(count(1, "push"), "1 push");
    }

    #[test]
    fn rich_text_escapes_everything_and_keeps_the_plain_text_equal() {
        let mut r = Rich::default();
        r.text("- ")
            .link("3f2a9c1", "https://git.example.com/c/3f2a9c1?a=1&b=\"2\"")
            .text(" <script> & co\n");
        let (plain, html) = r.finish();
        assert_eq!(plain, "- 3f2a9c1 <script> & co\n");
        assert_eq!(
            html.unwrap(),
            "<body>- <a href=\"https://git.example.com/c/3f2a9c1?a=1&amp;b=&quot;2&quot;\">3f2a9c1</a> &lt;script&gt; &amp; co\n</body>"
        );
        let mut r = Rich::default();
        r.text("no links");
        assert_eq!(r.finish(), ("no links".to_owned(), None));
    }
}
