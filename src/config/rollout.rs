//! A cluster's waves and checks (`[clusters.NAME]`'s `waves`,
//! `health_check`, `health_timeout`, `health_retries`, `wave_check`,
//! `wave_soak`, `max_unhealthy_hosts`, `auto_rollback`): validated into
//! a `domain::plan::Rollout`, every problem naming its key. What the
//! sizes mean for a given number of hosts is decided at push time
//! (`decide::waves::assign`); here only what can be refused without the
//! hosts is: an empty list, a size that is not one, zero, more than every
//! host, a size twice, sizes that do not grow, anything after `100%`, and
//! keys that apply to a check that is not configured.

use std::path::Path;

use toml::{Table, Value};

use super::{join, type_name, Validator, MAX_ATTEMPTS};
use crate::domain::plan::{Rollout, WaveSize};

/// A wave size as written: `"5"` (hosts in all) or `"10%"` / `"2.5%"`
/// (a share of the hosts, at most two decimals).
pub fn parse_wave_size(s: &str) -> Result<WaveSize, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "`{}` is not a wave size: write a host count such as \"1\" or a share of the hosts such as \"10%\"",
            s.escape_debug()
        )
    };
    if let Some(p) = t.strip_suffix('%') {
        let (whole, frac) = p.split_once('.').unwrap_or((p, ""));
        let digits =
            |d: &str| !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit());
        let dotted = p.contains('.');
        if !digits(whole) || (dotted && !(frac.len() <= 2 && digits(frac))) {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        let bp = whole * 100 + frac;
        return match bp {
            0 => Err(format!("`{t}`: a wave has at least one host")),
            1..=10_000 => Ok(WaveSize::Share(bp)),
            _ => Err(format!("`{t}` is more than every host")),
        };
    }
    match t.parse::<u64>() {
        Ok(0) => Err(format!("`{t}`: a wave has at least one host")),
        Ok(n) => usize::try_from(n).map(WaveSize::Hosts).map_err(|_| bad()),
        Err(_) => Err(bad()),
    }
}

impl Validator {
    /// The rollout keys of cluster `p`.
    pub(super) fn rollout(&mut self, p: &str, t: &Table) -> Option<Rollout> {
        let before = self.problems.len();
        let d = Rollout::default();
        let waves = self.waves(p, t);
        let health_check = self.argv(p, t, "health_check");
        let wave_check = self.argv(p, t, "wave_check").map(|mut argv| {
            // A script beside the config: `["checks/canary.sh"]`.
            if argv[0].contains('/') && Path::new(&argv[0]).is_relative() {
                let rel: std::path::PathBuf = Path::new(&argv[0])
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect();
                argv[0] = self.base.join(rel).to_string_lossy().into_owned();
            }
            argv
        });
        let has = |k: &str| t.contains_key(k);
        let health_timeout = if has("health_timeout") {
            self.duration(p, t, "health_timeout")
        } else {
            Some(d.health_timeout)
        };
        let health_retries = if has("health_retries") {
            self.integer(p, t, "health_retries", 0, MAX_ATTEMPTS)
        } else {
            Some(d.health_retries)
        };
        let wave_soak = if has("wave_soak") {
            self.duration_or_zero(p, t, "wave_soak")
        } else {
            Some(d.wave_soak)
        };
        let max_unhealthy = if has("max_unhealthy_hosts") {
            self.non_negative(p, t, "max_unhealthy_hosts", 0)
        } else {
            Some(d.max_unhealthy)
        };
        let auto_rollback = match t.get("auto_rollback") {
            None => Some(true),
            Some(Value::Boolean(b)) => Some(*b),
            Some(other) => {
                self.problem(
                    join(p, "auto_rollback"),
                    format!("expected true or false, found {}", type_name(other)),
                );
                None
            }
        };
        // Keys of a check that is not there say the config is not what
        // its author thinks.
        let health = has("health_check");
        let wave = has("wave_check");
        for (key, needs, which) in [
            ("health_retries", health, "health_check"),
            ("max_unhealthy_hosts", health, "health_check"),
            ("wave_soak", wave, "wave_check"),
            (
                "health_timeout",
                health || wave,
                "health_check or wave_check",
            ),
            (
                "auto_rollback",
                health || wave,
                "health_check or wave_check",
            ),
        ] {
            if has(key) && !needs {
                self.problem(join(p, key), format!("only applies with {which}"));
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Rollout {
            waves: waves?,
            health_check,
            health_timeout: health_timeout?,
            health_retries: health_retries?,
            wave_check,
            wave_soak: wave_soak?,
            max_unhealthy: max_unhealthy?,
            auto_rollback: auto_rollback?,
        })
    }

    /// `waves`: absent is one wave of every host.
    fn waves(&mut self, p: &str, t: &Table) -> Option<Vec<WaveSize>> {
        let k = join(p, "waves");
        let items = match t.get("waves") {
            None => return Some(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    k,
                    format!(
                        "expected an array of wave sizes such as [\"1\", \"10%\", \"100%\"], found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.problem(
                k,
                "must list at least one wave; leave `waves` out for one wave of every host",
            );
            return None;
        }
        let mut out: Vec<WaveSize> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let key = format!("{k}[{i}]");
            let parsed = match item {
                Value::String(s) => parse_wave_size(s),
                Value::Integer(n) if *n >= 1 => Ok(WaveSize::Hosts(*n as usize)),
                Value::Integer(n) => Err(format!("`{n}`: a wave has at least one host")),
                other => Err(format!(
                    "expected a string such as \"1\" or \"10%\", found {}",
                    type_name(other)
                )),
            };
            let why = match parsed {
                Err(e) => Some(e),
                Ok(w) if out.contains(&w) => {
                    Some(format!("`{w}` appears twice: each wave must add hosts"))
                }
                Ok(_) if out.contains(&WaveSize::Share(10_000)) => {
                    Some("nothing can follow `100%`: it is every host".to_owned())
                }
                Ok(w) => match out.iter().rev().find(|o| same_kind(o, &w)) {
                    Some(prev) if !grows(prev, &w) => Some(format!(
                        "`{w}` after `{prev}`: sizes count the hosts that run the release after each wave, so they must grow"
                    )),
                    _ => {
                        out.push(w);
                        None
                    }
                },
            };
            if let Some(why) = why {
                self.problem(key, why);
                ok = false;
            }
        }
        ok.then_some(out)
    }
}

fn same_kind(a: &WaveSize, b: &WaveSize) -> bool {
    matches!(
        (a, b),
        (WaveSize::Hosts(_), WaveSize::Hosts(_)) | (WaveSize::Share(_), WaveSize::Share(_))
    )
}

fn grows(prev: &WaveSize, next: &WaveSize) -> bool {
    match (prev, next) {
        (WaveSize::Hosts(a), WaveSize::Hosts(b)) => b > a,
        (WaveSize::Share(a), WaveSize::Share(b)) => b > a,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn wave_sizes_are_counts_or_shares_with_at_most_two_decimals() {
        let got: Vec<String> = [
            "1", "10%", "2.5%", "0.01%", "100%", " 7 ", "0", "0%", "101%", "1.234%", "ten", "-1",
            "%", "1e3", "1.%",
        ]
        .iter()
        .map(|s| match parse_wave_size(s) {
            Ok(w) => format!("{s:?}: {w:?} = {w}"),
            Err(e) => format!("{s:?}: {e}"),
        })
        .collect();
        expect![[r#"
            "1": Hosts(1) = 1
            "10%": Share(1000) = 10%
            "2.5%": Share(250) = 2.5%
            "0.01%": Share(1) = 0.01%
            "100%": Share(10000) = 100%
            " 7 ": Hosts(7) = 7
            "0": `0`: a wave has at least one host
            "0%": `0%`: a wave has at least one host
            "101%": `101%` is more than every host
            "1.234%": `1.234%` is not a wave size: write a host count such as "1" or a share of the hosts such as "10%"
            "ten": `ten` is not a wave size: write a host count such as "1" or a share of the hosts such as "10%"
            "-1": `-1` is not a wave size: write a host count such as "1" or a share of the hosts such as "10%"
            "%": `%` is not a wave size: write a host count such as "1" or a share of the hosts such as "10%"
            "1e3": `1e3` is not a wave size: write a host count such as "1" or a share of the hosts such as "10%"
            "1.%": `1.%` is not a wave size: write a host count such as "1" or a share of the hosts such as "10%""#]]
        .assert_eq(&got.join("\n"));
    }

    const GOOD: &str = include_str!("../../config/pushgate.toml");

    /// The example config with `keys` added to `[clusters.prod]`: the
    /// problems, or what the rollout became.
    fn prod_with(keys: &str) -> String {
        let text = format!("{GOOD}\n{keys}\n");
        match super::super::Config::parse(&text, Path::new("/etc/pushgate")) {
            Ok(c) => format!("{:?}", c.clusters.values().last().unwrap().rollout),
            Err(p) => p
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn bad_waves_are_refused_at_load_naming_the_entry() {
        let got: Vec<String> = [
            "waves = []",
            "waves = \"10%\"",
            r#"waves = ["1", "1", "10%"]"#,
            r#"waves = ["5", "2"]"#,
            r#"waves = ["50%", "10%"]"#,
            r#"waves = ["100%", "5"]"#,
            r#"waves = ["0%", 0, "x", true]"#,
        ]
        .iter()
        .map(|k| format!("{k}\n  {}", prod_with(k).replace('\n', "\n  ")))
        .collect();
        expect![[r#"
            waves = []
              clusters.prod.waves: must list at least one wave; leave `waves` out for one wave of every host
            waves = "10%"
              clusters.prod.waves: expected an array of wave sizes such as ["1", "10%", "100%"], found a string
            waves = ["1", "1", "10%"]
              clusters.prod.waves[1]: `1` appears twice: each wave must add hosts
            waves = ["5", "2"]
              clusters.prod.waves[1]: `2` after `5`: sizes count the hosts that run the release after each wave, so they must grow
            waves = ["50%", "10%"]
              clusters.prod.waves[1]: `10%` after `50%`: sizes count the hosts that run the release after each wave, so they must grow
            waves = ["100%", "5"]
              clusters.prod.waves[1]: nothing can follow `100%`: it is every host
            waves = ["0%", 0, "x", true]
              clusters.prod.waves[0]: `0%`: a wave has at least one host
              clusters.prod.waves[1]: `0`: a wave has at least one host
              clusters.prod.waves[2]: `x` is not a wave size: write a host count such as "1" or a share of the hosts such as "10%"
              clusters.prod.waves[3]: expected a string such as "1" or "10%", found a boolean"#]]
        .assert_eq(&got.join("\n"));
    }

    #[test]
    fn check_keys_are_checked_and_refused_without_their_check() {
        expect![[r#"
            clusters.prod.health_timeout: must be longer than zero
            clusters.prod.health_retries: must be at most 100, found 1000
            clusters.prod.auto_rollback: expected true or false, found a string"#]]
        .assert_eq(&prod_with(
            "health_check = [\"true\"]\nhealth_timeout = \"0s\"\nhealth_retries = 1000\nauto_rollback = \"yes\"",
        ));
        expect![[r#"
            clusters.prod.health_retries: only applies with health_check
            clusters.prod.max_unhealthy_hosts: only applies with health_check
            clusters.prod.wave_soak: only applies with wave_check
            clusters.prod.health_timeout: only applies with health_check or wave_check
            clusters.prod.auto_rollback: only applies with health_check or wave_check"#]]
        .assert_eq(&prod_with(
            "health_retries = 1\nmax_unhealthy_hosts = 1\nwave_soak = \"5m\"\nhealth_timeout = \"5s\"\nauto_rollback = false",
        ));
        expect![[r#"clusters.prod.health_check: expected an array of arguments, e.g. ["make", "release"] (no shell is used)"#]]
            .assert_eq(&prod_with("health_check = \"curl localhost\""));
    }

    #[test]
    fn a_full_rollout_reads_every_key_and_a_relative_wave_check_is_the_configs() {
        expect![[r#"Rollout { waves: [Hosts(1), Share(1000), Share(10000)], health_check: Some(["curl", "-fsS", "http://127.0.0.1:8080/healthz"]), health_timeout: 5s, health_retries: 0, wave_check: Some(["/etc/pushgate/checks/canary.sh", "--max-5xx", "1%"]), wave_soak: 0ns, max_unhealthy: 1, auto_rollback: false }"#]]
            .assert_eq(&prod_with(
                r#"waves = ["1", "10%", "100%"]
health_check = ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
health_timeout = "5s"
health_retries = 0
wave_check = ["checks/canary.sh", "--max-5xx", "1%"]
wave_soak = "0s"
max_unhealthy_hosts = 1
auto_rollback = false"#,
            ));
        expect![[r#"Rollout { waves: [], health_check: None, health_timeout: 30s, health_retries: 2, wave_check: None, wave_soak: 0ns, max_unhealthy: 0, auto_rollback: true }"#]]
            .assert_eq(&prod_with(""));
    }
}
