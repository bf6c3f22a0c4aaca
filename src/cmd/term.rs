//! Terminal output for people: colour when stdout is a terminal (never
//! with `NO_COLOR` set, see <https://no-color.org>, or `TERM=dumb`), and
//! tables whose columns line up whatever the text (wide characters and
//! colour codes measured, not counted).
//!
//! It formats only; what to say is the command's business. Untrusted text
//! must already have gone through `plan::printable`.

use std::io::IsTerminal;

use console::Style;

/// Colour on stdout: a terminal, no `NO_COLOR`, not `TERM=dumb`.
pub fn colour_on_stdout() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Paints text, or leaves it plain.
#[derive(Clone, Copy, Debug)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    pub fn stdout() -> Paint {
        Paint {
            on: colour_on_stdout(),
        }
    }

    fn with(&self, style: Style, s: &str) -> String {
        if self.on {
            style.force_styling(true).apply_to(s).to_string()
        } else {
            s.to_owned()
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.with(Style::new().bold(), s)
    }
    pub fn good(&self, s: &str) -> String {
        self.with(Style::new().green(), s)
    }
    pub fn bad(&self, s: &str) -> String {
        self.with(Style::new().red().bold(), s)
    }
    pub fn warn(&self, s: &str) -> String {
        self.with(Style::new().yellow(), s)
    }
    pub fn busy(&self, s: &str) -> String {
        self.with(Style::new().cyan(), s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.with(Style::new().dim(), s)
    }
}

/// Columns separated by two spaces, each as wide as its widest cell; the
/// last column is not padded.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let width = |s: &str| console::measure_text_width(s);
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            line.push_str(cell);
            if i + 1 < columns {
                line.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_across_colour_codes_and_wide_characters() {
        let on = Paint { on: true };
        let header = vec!["CLUSTER".to_owned(), "LOCKS".into(), "NEXT".into()];
        let rows = vec![
            vec!["beta".into(), on.bad("1 open"), "Mon 11:00 PST".into()],
            vec!["日本".into(), on.good("none"), "-".into()],
        ];
        let plain: String = console::strip_ansi_codes(&table(&header, &rows)).into_owned();
        expect_test::expect![[r#"
            CLUSTER  LOCKS   NEXT
            beta     1 open  Mon 11:00 PST
            日本     none    -
        "#]]
        .assert_eq(&plain);
        assert!(table(&header, &rows).contains("\u{1b}["));
        assert_eq!(Paint { on: false }.bad("x"), "x");
    }
}
