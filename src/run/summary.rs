//! What a push's comments say about its hosts, at any fleet size: a few
//! hosts get a line each, as always; past [`LIST_ALL`] hosts a comment (and
//! so its Asana notification) holds the counts, the slowest hosts and every
//! host that failed, with its cause — never a line per host that is fine.
//! The full per-host record stays in `push --json` and in the state
//! directory (`clusters/NAME/runs/RUN_ID.hosts.json`).
//!
//! Pure text from plain values: nothing here reads a host or a clock.

use crate::domain::text::{bytes, count};

/// Up to this many hosts, every host has its line.
pub const LIST_ALL: usize = 10;
/// How many of the slowest hosts a summary names.
pub const SLOWEST: usize = 5;

/// One host's stage, as a comment tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct StageLine {
    pub host: String,
    /// `Err(cause)`: failed, after `attempts`.
    pub outcome: Result<Option<u64>, String>,
    pub attempts: usize,
    pub seconds: f64,
}

fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

/// The stage comment: its head line, then a line per host for a few
/// hosts, else the bytes sent, the slowest hosts and every failed one.
pub fn stage(head: &str, lines: &[StageLine]) -> String {
    let mut out = vec![head.to_owned()];
    let failed = |l: &StageLine| -> Option<String> {
        l.outcome.as_ref().err().map(|e| {
            format!(
                "- {}: FAILED after {}: {e}",
                l.host,
                count(l.attempts, "attempt")
            )
        })
    };
    if lines.len() <= LIST_ALL {
        for l in lines {
            out.push(match &l.outcome {
                Ok(sent) => format!(
                    "- {}: ok, {} sent, {}",
                    l.host,
                    sent.map_or("? bytes".into(), bytes),
                    secs(l.seconds)
                ),
                Err(_) => failed(l).unwrap_or_default(),
            });
        }
        return out.join("\n");
    }
    let ok: Vec<&StageLine> = lines.iter().filter(|l| l.outcome.is_ok()).collect();
    if !ok.is_empty() {
        let sent: Vec<u64> = ok
            .iter()
            .filter_map(|l| *l.outcome.as_ref().ok()?)
            .collect();
        if !sent.is_empty() {
            let total: u64 = sent.iter().sum();
            let max = sent.iter().copied().max().unwrap_or(0);
            out.push(format!(
                "sent {} in all, at most {} to one host",
                bytes(total),
                bytes(max)
            ));
        }
        out.push(slowest(ok.iter().map(|l| (l.host.as_str(), l.seconds))));
    }
    let bad: Vec<String> = lines.iter().filter_map(failed).collect();
    if !bad.is_empty() {
        out.push(format!("{} failed:", count(bad.len(), "host")));
        out.extend(bad);
    }
    out.join("\n")
}

/// "slowest: a 3.2 s, b 2.9 s, …" over (host, seconds).
pub fn slowest<'a>(hosts: impl Iterator<Item = (&'a str, f64)>) -> String {
    let mut v: Vec<(&str, f64)> = hosts.collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let named: Vec<String> = v
        .iter()
        .take(SLOWEST)
        .map(|(h, s)| format!("{h} {}", secs(*s)))
        .collect();
    format!("slowest: {}", named.join(", "))
}

/// The lines of a switch comment after its head: every host's line for a
/// few hosts, else only the hosts whose line is not `fine`, each of them.
pub fn hosts_not_fine(lines: &[(String, String)], fine: &str) -> Vec<String> {
    let all = lines.len() <= LIST_ALL;
    lines
        .iter()
        .filter(|(_, r)| all || r != fine)
        .map(|(h, r)| format!("- {h}: {r}"))
        .collect()
}

/// For a failure message: the failed hosts and why, the first `n` of
/// them, then how many more.
pub fn failed_hosts(failed: &[(String, String)], n: usize) -> String {
    let mut named: Vec<String> = failed
        .iter()
        .take(n)
        .map(|(h, why)| format!("{h}: {why}"))
        .collect();
    if failed.len() > n {
        named.push(format!("and {} more", failed.len() - n));
    }
    named.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn line(i: usize, outcome: Result<Option<u64>, String>, seconds: f64) -> StageLine {
        StageLine {
            host: format!("web-{i}"),
            outcome,
            attempts: 3,
            seconds,
        }
    }

    #[test]
    fn a_few_hosts_get_a_line_each() {
        let lines = vec![
            line(1, Ok(Some(2048)), 1.25),
            line(
                2,
                Err("disk full: /srv/app/releases has 1 KiB free".into()),
                0.5,
            ),
        ];
        expect![[r#"
            stage: 1/2 hosts staged R in 1.3 s
            - web-1: ok, 2.0 KiB sent, 1.2 s
            - web-2: FAILED after 3 attempts: disk full: /srv/app/releases has 1 KiB free"#]]
        .assert_eq(&stage("stage: 1/2 hosts staged R in 1.3 s", &lines));
    }

    #[test]
    fn a_thousand_hosts_are_counted_with_the_slowest_and_every_failed_host_named() {
        let mut lines: Vec<StageLine> = (1..=1000)
            .map(|i| line(i, Ok(Some(1 << 20)), i as f64 / 100.0))
            .collect();
        lines[10].outcome = Err("unreachable: connection refused".into());
        lines[999].outcome = Err("timed out after 10m (host_timeout)".into());
        let text = stage("stage: 998/1000 hosts staged R in 12.0 s", &lines);
        expect![[r#"
            stage: 998/1000 hosts staged R in 12.0 s
            sent 998 MiB in all, at most 1.0 MiB to one host
            slowest: web-999 10.0 s, web-998 10.0 s, web-997 10.0 s, web-996 10.0 s, web-995 9.9 s
            2 hosts failed:
            - web-11: FAILED after 3 attempts: unreachable: connection refused
            - web-1000: FAILED after 3 attempts: timed out after 10m (host_timeout)"#]]
        .assert_eq(&text);
        assert_eq!(text.lines().count(), 6);
    }

    #[test]
    fn a_big_switch_names_only_the_hosts_that_are_not_fine() {
        let fine = "runs R";
        let mut lines: Vec<(String, String)> = (1..=50)
            .map(|i| (format!("web-{i}"), fine.to_owned()))
            .collect();
        lines[3].1 = "runs R, but after_switch failed: exit 1".into();
        assert_eq!(
            hosts_not_fine(&lines, fine),
            vec!["- web-4: runs R, but after_switch failed: exit 1"]
        );
        assert_eq!(hosts_not_fine(&lines[..3], fine).len(), 3);
        assert_eq!(
            failed_hosts(&[("a".into(), "x".into()), ("b".into(), "y".into())], 1),
            "a: x; and 1 more"
        );
    }
}
