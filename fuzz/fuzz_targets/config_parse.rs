//! Config text → `Config::parse`, then what the commands do first with a
//! config that validated: each cluster's next fire time (the daemon, the
//! freeze), the freeze and soak arithmetic on its durations, and every
//! problem's message. None of it may panic or hang, whatever the text.
//!
//! Two modes, by the first byte of the input:
//! - even: the rest is the config text itself (TOML syntax, unknown keys,
//!   wrong types);
//! - odd: the rest is values, separated by 0x1e, put into the slots of a
//!   valid config (as TOML strings, or bare for the integer slots), so that
//!   value validation is explored behind a well-formed file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pushgate::config::Config;
use pushgate::domain::decide;
use pushgate::domain::plan::{FreezeFacts, SoakFacts};

/// The slots of the template, with the example config's values.
const SLOTS: &[(&str, &str)] = &[
    ("MIN_SOAK", "90m"),
    ("FREEZE_DURATION", "90m"),
    ("HOST_TIMEOUT", "10m"),
    ("BUILD_TIMEOUT", "20m"),
    ("BETA_SCHEDULE", "0 */15 * * * *"),
    ("PROD_SCHEDULE", "0 0 10,17 * * Mon-Fri"),
    ("BETA_TZ", "America/Los_Angeles"),
    ("PROD_TZ", "America/Los_Angeles"),
    ("HOST1", "beta-1.internal"),
    ("HOST2", "deploy@beta-2.internal:2222"),
    ("TARGET", "/srv/app"),
    ("SOURCE", "cluster:beta"),
    ("FREEZE_CLUSTER", "prod"),
    ("STATE_DIR", "state"),
    ("BASE_URL", "https://app.asana.com/api/1.0"),
    ("TOKEN_ENV", "ASANA_TOKEN"),
    ("WORKSPACE", "1200000000000001"),
    ("REPO_URL", "git@example.com:org/app.git"),
    ("BRANCH", "main"),
    ("COMMAND", "make"),
    ("OUTPUT", "dist"),
    ("AFTER_SWITCH", "sudo"),
    ("SSH_CONFIG", "ssh_config"),
    ("SSH_IDENTITY", "id_ed25519"),
    ("KNOWN_HOSTS", "known_hosts"),
    ("HOST_KEY_POLICY", "strict"),
    ("CRASH_PROJECT", "1200000000000009"),
    ("FIX_FIELD", "Fix commit"),
    ("CLOSE_ON", "beta"),
    ("LOCK_PROJECT", "1200000000000002"),
    ("PARALLELISM", "16"),
    ("MAX_FAILED", "0"),
    ("KEEP", "5"),
    ("RETRIES", "2"),
    ("MAX_ATTEMPTS", "5"),
];

/// Slots written bare (TOML integers) rather than as strings.
const BARE: &[&str] = &[
    "PARALLELISM",
    "MAX_FAILED",
    "KEEP",
    "RETRIES",
    "MAX_ATTEMPTS",
];

const TEMPLATE: &str = r#"state_dir = STATE_DIR
[asana]
base_url = BASE_URL
token_env = TOKEN_ENV
workspace = WORKSPACE
max_attempts = MAX_ATTEMPTS
[repo]
url = REPO_URL
branch = BRANCH
[build]
command = [COMMAND, "release"]
output = OUTPUT
timeout = BUILD_TIMEOUT
[sync]
parallelism = PARALLELISM
max_failed_hosts = MAX_FAILED
keep_releases = KEEP
retries = RETRIES
after_switch = [AFTER_SWITCH, "reload"]
ssh_config = SSH_CONFIG
ssh_identity = SSH_IDENTITY
known_hosts = KNOWN_HOSTS
host_key_policy = HOST_KEY_POLICY
host_timeout = HOST_TIMEOUT
[crash]
project = CRASH_PROJECT
fix_commit_field = FIX_FIELD
close_on = CLOSE_ON
[clusters.beta]
schedule = BETA_SCHEDULE
timezone = BETA_TZ
lock_project = LOCK_PROJECT
push_project = "1200000000000003"
hosts = [HOST1, HOST2]
target = TARGET
freeze_before = { cluster = FREEZE_CLUSTER, duration = FREEZE_DURATION }
[clusters.prod]
schedule = PROD_SCHEDULE
timezone = PROD_TZ
source = SOURCE
min_soak = MIN_SOAK
lock_project = "1200000000000004"
push_project = "1200000000000005"
hosts = ["prod-1.internal"]
target = "/srv/app"
"#;

/// The template with `values` in its first slots, the example's in the rest.
fn templated(values: &str) -> String {
    let mut given = values.split('\u{1e}');
    let mut text = TEMPLATE.to_owned();
    // Longest names first, so that no name replaces part of another.
    let mut slots: Vec<(&str, String)> = SLOTS
        .iter()
        .map(|(name, default)| {
            let v = given.next().unwrap_or(default);
            let written = if BARE.contains(name) {
                if v.parse::<i64>().is_ok() {
                    v.to_owned()
                } else {
                    default.to_string()
                }
            } else {
                // A JSON string is a valid TOML basic string.
                serde_json::to_string(v).unwrap()
            };
            (*name, written)
        })
        .collect();
    slots.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, v) in slots {
        text = text.replace(name, &v);
    }
    text
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let text = if mode % 2 == 0 {
        rest.to_owned()
    } else {
        templated(rest)
    };
    let config = match Config::parse(&text, Path::new("/etc/pushgate")) {
        Ok(c) => c,
        Err(problems) => {
            assert!(!problems.is_empty(), "an error lists at least one problem");
            for p in problems {
                let _ = p.to_string();
            }
            return;
        }
    };
    let now = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
    for c in config.clusters.values() {
        let next = decide::next_fire(&c.schedule.cron, c.timezone, now);
        if let Some(fb) = &c.freeze_before {
            if let Some(other) = config.clusters.get(&fb.cluster) {
                let f = FreezeFacts {
                    other: other.name.clone(),
                    other_schedule: other.schedule.cron.clone(),
                    other_tz: other.timezone,
                    // As gather does.
                    duration: chrono::Duration::from_std(fb.duration)
                        .unwrap_or(chrono::Duration::MAX),
                    other_running: false,
                };
                let _ = decide::frozen(&f, now);
            }
        }
        if let Some(min) = c.min_soak {
            let s = SoakFacts {
                from: c.name.clone(),
                since: next.unwrap_or(now),
                min: chrono::Duration::from_std(min).unwrap_or(chrono::Duration::MAX),
            };
            let _ = decide::soaking(&s, now);
        }
        for h in &c.hosts {
            let _ = h.to_string();
        }
    }
});
