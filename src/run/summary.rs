//! What a push's comments say about its hosts, at any fleet size: a few
//! hosts get a line each, as always; past [`LIST_ALL`] hosts a comment (and
//! so its Asana notification) holds the counts, the slowest hosts and the
//! hosts that failed with their causes — each up to [`NAME_EACH`], past it
//! grouped by cause in a bounded number of lines — never a line per host
//! that is fine.
//! The full per-host record stays in `push --json` and in the state
//! directory (`clusters/NAME/runs/RUN_ID.hosts.json`).
//!
//! Pure text from plain values: nothing here reads a host or a clock.

use crate::domain::text::{bytes, count};

/// Up to this many hosts, every host has its line.
pub const LIST_ALL: usize = 10;
/// How many of the slowest hosts a summary names.
pub const SLOWEST: usize = 5;
/// Up to this many hosts that are not fine get a line each; past it they
/// are grouped by what happened ([`grouped`]).
pub const NAME_EACH: usize = 20;
/// How many groups, and how many hosts per group, a grouped list names.
pub const GROUPS: usize = 10;
pub const NAMED_PER_GROUP: usize = 3;

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
    let bad: Vec<&StageLine> = lines.iter().filter(|l| l.outcome.is_err()).collect();
    if !bad.is_empty() {
        out.push(format!("{} failed:", count(bad.len(), "host")));
        if bad.len() <= NAME_EACH {
            out.extend(bad.iter().filter_map(|l| failed(l)));
        } else {
            let why: Vec<(String, String)> = bad
                .iter()
                .map(|l| {
                    let e = l.outcome.as_ref().err().cloned().unwrap_or_default();
                    (l.host.clone(), format!("FAILED: {e}"))
                })
                .collect();
            out.extend(grouped(&why));
        }
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
/// few hosts, else only the hosts whose line is not `fine` — each of them
/// up to [`NAME_EACH`], past it grouped by what happened.
pub fn hosts_not_fine(lines: &[(String, String)], fine: &str) -> Vec<String> {
    if lines.len() <= LIST_ALL {
        return lines.iter().map(|(h, r)| format!("- {h}: {r}")).collect();
    }
    let not_fine: Vec<(String, String)> =
        lines.iter().filter(|(_, r)| r != fine).cloned().collect();
    if not_fine.len() <= NAME_EACH {
        return not_fine
            .iter()
            .map(|(h, r)| format!("- {h}: {r}"))
            .collect();
    }
    grouped(&not_fine)
}

/// Many hosts and what happened to each, as a bounded list: one line per
/// distinct outcome, the most common first (at most [`GROUPS`]), each with
/// how many hosts and the first [`NAMED_PER_GROUP`] of them; the rest in
/// one line. However large the fleet, at most `GROUPS + 1` lines.
pub fn grouped(hosts: &[(String, String)]) -> Vec<String> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (h, why) in hosts {
        match groups.iter_mut().find(|(w, _)| *w == why.as_str()) {
            Some((_, v)) => v.push(h),
            None => groups.push((why, vec![h])),
        }
    }
    // Most hosts first; equal counts keep the order they were met in.
    groups.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
    let mut out: Vec<String> = groups
        .iter()
        .take(GROUPS)
        .map(|(why, hs)| {
            let named: Vec<&str> = hs.iter().take(NAMED_PER_GROUP).copied().collect();
            let more = hs.len().saturating_sub(NAMED_PER_GROUP);
            let names = if more > 0 {
                format!("{} and {more} more", named.join(", "))
            } else {
                named.join(", ")
            };
            format!("- {}: {why} ({names})", count(hs.len(), "host"))
        })
        .collect();
    if groups.len() > GROUPS {
        let rest: usize = groups.iter().skip(GROUPS).map(|(_, hs)| hs.len()).sum();
        out.push(format!(
            "- {} with {} other outcomes (every host's own is in the run's record)",
            count(rest, "host"),
            groups.len() - GROUPS
        ));
    }
    out
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
    fn a_fleet_wide_failure_is_grouped_by_cause_in_a_few_lines() {
        let mut lines: Vec<StageLine> = (1..=1000)
            .map(|i| line(i, Err("timed out after 10m (host_timeout)".into()), 600.0))
            .collect();
        for (i, l) in lines.iter_mut().enumerate().take(30) {
            l.outcome = Err(format!("unreachable: host {i} refused"));
        }
        lines[500].outcome = Ok(Some(1 << 20));
        let text = stage("stage: 1/1000 hosts staged R in 600.0 s", &lines);
        expect![[r#"
            stage: 1/1000 hosts staged R in 600.0 s
            sent 1.0 MiB in all, at most 1.0 MiB to one host
            slowest: web-501 600.0 s
            999 hosts failed:
            - 969 hosts: FAILED: timed out after 10m (host_timeout) (web-31, web-32, web-33 and 966 more)
            - 1 host: FAILED: unreachable: host 0 refused (web-1)
            - 1 host: FAILED: unreachable: host 1 refused (web-2)
            - 1 host: FAILED: unreachable: host 2 refused (web-3)
            - 1 host: FAILED: unreachable: host 3 refused (web-4)
            - 1 host: FAILED: unreachable: host 4 refused (web-5)
            - 1 host: FAILED: unreachable: host 5 refused (web-6)
            - 1 host: FAILED: unreachable: host 6 refused (web-7)
            - 1 host: FAILED: unreachable: host 7 refused (web-8)
            - 1 host: FAILED: unreachable: host 8 refused (web-9)
            - 21 hosts with 21 other outcomes (every host's own is in the run's record)"#]]
        .assert_eq(&text);
        let fine = "runs R";
        let switch: Vec<(String, String)> = (1..=5000)
            .map(|i| {
                (
                    format!("web-{i}"),
                    "runs R, but after_switch failed: exit 1".to_owned(),
                )
            })
            .collect();
        let out = hosts_not_fine(&switch, fine);
        assert_eq!(
            out,
            vec!["- 5000 hosts: runs R, but after_switch failed: exit 1 (web-1, web-2, web-3 and 4997 more)"]
        );
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
