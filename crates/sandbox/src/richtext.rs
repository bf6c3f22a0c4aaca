//! Asana's rich text, as the sandbox checks it: valid XML with one `<body>`
//! root, only the tags Asana documents, attributes only on `<a>`. Returns the
//! plain text Asana would put in `notes` / `text`.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Where the rich text goes: tasks also allow headings and rules.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TaskNotes,
    Comment,
}

const INLINE_AND_LISTS: &[&str] = &["strong", "em", "u", "s", "code", "ol", "ul", "li", "a"];
const TASK_ONLY: &[&str] = &["h1", "h2", "hr"];
const A_ATTRIBUTES: &[&str] = &["href", "data-asana-gid", "data-asana-type", "target"];

pub fn to_plain(xml: &str, kind: Kind) -> Result<String, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut plain = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("not valid XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let empty = matches!(event, Event::Empty(_));
                if depth == 0 {
                    if seen_root || name != "body" {
                        return Err(format!(
                            "the root element must be a single <body>, found <{name}>"
                        ));
                    }
                    seen_root = true;
                } else {
                    let allowed = INLINE_AND_LISTS.contains(&name.as_str())
                        || (kind == Kind::TaskNotes && TASK_ONLY.contains(&name.as_str()));
                    if !allowed {
                        return Err(format!("<{name}> is not an allowed tag here"));
                    }
                }
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
                    let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                    if name != "a" || !A_ATTRIBUTES.contains(&key.as_str()) {
                        return Err(format!("<{name}> does not take the attribute `{key}`"));
                    }
                }
                let starts_line = matches!(name.as_str(), "li" | "h1" | "h2");
                if starts_line && !plain.is_empty() && !plain.ends_with('\n') {
                    plain.push('\n');
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| format!("bad text: {e}"))?;
                if depth == 0 {
                    if !text.trim().is_empty() {
                        return Err("text outside <body>".into());
                    }
                } else {
                    plain.push_str(&text);
                }
            }
            Event::CData(_) => return Err("CDATA is not allowed".into()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {
                return Err("only elements and text are allowed".into())
            }
            Event::Eof => break,
        }
    }
    if !seen_root {
        return Err("missing <body>".into());
    }
    if depth != 0 {
        return Err("unclosed element".into());
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_asana_rich_text_and_derives_plain_text() {
        assert_eq!(
            to_plain("<body>Hi <strong>there</strong> &amp; <a href=\"https://x\">link</a><ul><li>a</li><li>b</li></ul></body>", Kind::Comment).unwrap(),
            "Hi there & link\na\nb"
        );
        assert!(to_plain("<body><h1>T</h1><hr/></body>", Kind::TaskNotes).is_ok());
    }

    #[test]
    fn refuses_what_asana_refuses() {
        for bad in [
            "plain text",
            "<p>x</p>",
            "<body><h1>T</h1></body>",
            "<body><b>x</b></body>",
            "<body><strong class=\"x\">x</strong></body>",
            "<body><strong>x</body>",
            "<body>a & b</body>",
            "<body></body><body></body>",
            "<body>x</body>trailing",
            "<body><!-- c --></body>",
        ] {
            assert!(to_plain(bad, Kind::Comment).is_err(), "{bad:?}");
        }
    }
}
