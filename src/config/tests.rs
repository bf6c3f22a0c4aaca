use expect_test::{expect, Expect};

use super::*;

const GOOD: &str = include_str!("../../config/pushgate.toml");

fn check(text: &str, expect: Expect) {
    let actual = match Config::parse(text, Path::new("/etc/pushgate")) {
        Ok(c) => format!(
            "ok: {} clusters, state_dir {}",
            c.clusters.len(),
            c.state_dir.display()
        ),
        Err(problems) => problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn the_example_config_is_valid() {
    check(
        GOOD,
        expect!["ok: 2 clusters, state_dir /etc/pushgate/../target/pushgate-state"],
    );
}

#[test]
fn every_problem_is_reported_at_once_naming_its_key() {
    let text = GOOD
        .replace("0 */15 * * * *", "*/15 * * * *")
        .replace(
            "timezone = \"America/Los_Angeles\"\nsource",
            "timezone = \"Mars/Olympus\"\nsource",
        )
        .replace("parallelism = 16", "paralelism = 16")
        .replace("keep_releases = 5", "keep_releases = \"five\"")
        .replace("\"1200000000000004\"", "\"prod-locks\"")
        .replace("timeout = \"20m\"", "timeout = \"twenty minutes\"")
        .replace("duration = \"90m\"", "duration = \"90m\", clutser = \"x\"");
    check(
        &text,
        expect![[r#"
            build.timeout: `twenty minutes` is not a duration (expected number at 0); write e.g. "90m" or "1h 30m"
            sync.paralelism: unknown key; did you mean `parallelism`?
            sync.keep_releases: expected an integer, found a string
            clusters.beta.schedule: `*/15 * * * *` is not a cron expression with seconds first, e.g. "0 */15 * * * *" (Invalid pattern: Pattern must have 6 or 7 fields when seconds are required and years are optional.)
            clusters.beta.freeze_before.clutser: unknown key; did you mean `cluster`?
            clusters.prod.timezone: `Mars/Olympus` is not an IANA time zone, e.g. "America/Los_Angeles"
            clusters.prod.lock_project: `prod-locks` is not an Asana gid (digits only)"#]],
    );
}

#[test]
fn missing_sections_and_keys_are_named() {
    check(
        "state_dir = 5\n[asana]\nbase_url = \"http://asana.example.com/api/1.0\"\n",
        expect![[r#"
            state_dir: expected a string, found an integer
            asana.base_url: `http://asana.example.com/api/1.0`: https is required for a non-loopback Asana host
            asana.token_env: missing: set token_env or token_file
            asana.workspace: missing required key
            repo: missing required section
            build: missing required section
            clusters: missing required section"#]],
    );
}

#[test]
fn toml_syntax_errors_say_where() {
    check(
        "state_dir = \"/x\"\n[asana\n",
        expect![[r#"
            (toml): invalid table header
            expected `.`, `]` (at line 2, column 7)"#]],
    );
}

#[test]
fn a_schedule_that_restricts_both_day_fields_is_refused_naming_both_readings() {
    // A crontab reads `1 * Mon` as "the 1st or any Monday", the daemon as
    // "a Monday that is the 1st": the same line would push on other days.
    let text = GOOD
        .replace("0 */15 * * * *", "0 0 9 1-7 * Mon")
        .replace("0 0 10,17 * * Mon-Fri", "0 0 10,17 L * 5 2027");
    check(
        &text,
        expect![[r#"
            clusters.beta.schedule: `0 0 9 1-7 * Mon` restricts both the day of the month (`1-7`) and the day of the week (`Mon`): pushgate would push only on days that match both, a system crontab on days that match either; set one of the two fields to `*`
            clusters.prod.schedule: `0 0 10,17 L * 5 2027` restricts both the day of the month (`L`) and the day of the week (`5`): pushgate would push only on days that match both, a system crontab on days that match either; set one of the two fields to `*`"#]],
    );
}

#[test]
fn a_schedule_that_restricts_one_day_field_loads() {
    for (beta, prod) in [
        ("0 0 9 1-7 * *", "0 0 10,17 * * Mon-Fri"),
        ("0 0 9 ? * Mon", "0 0 10,17 15 * ?"),
        ("0 0 9 * * *", "@weekly"),
    ] {
        let text = GOOD
            .replace("0 */15 * * * *", beta)
            .replace("0 0 10,17 * * Mon-Fri", prod);
        check(
            &text,
            expect!["ok: 2 clusters, state_dir /etc/pushgate/../target/pushgate-state"],
        );
    }
}

#[test]
fn clusters_refer_to_each_other_correctly() {
    let text = GOOD
        .replace("cluster = \"prod\"", "cluster = \"staging\"")
        .replace("source = \"cluster:beta\"", "source = \"cluster:prod\"")
        .replace("min_soak = \"90m\"", "");
    check(
        &text,
        expect![[r#"
            clusters.beta.freeze_before.cluster: `staging` is not a configured cluster (have: beta, prod)
            clusters.prod.source: `prod` names this cluster itself"#]],
    );
}

#[test]
fn hosts_are_checked_and_option_lookalikes_refused() {
    let text = GOOD.replace(
        "hosts = [\"beta-1.internal\", \"beta-2.internal\"]",
        "hosts = [\"-oProxyCommand=sh\", \"local:rel/path\", 7]",
    );
    check(
        &text,
        expect![[r#"
            clusters.beta.hosts[0]: `-oProxyCommand=sh`: a host may not start with `-` (it would be read as an option)
            clusters.beta.hosts[1]: `local:rel/path`: a local host needs an absolute path
            clusters.beta.hosts[2]: expected a string, found an integer"#]],
    );
}

#[test]
fn build_command_is_an_argv_and_output_stays_inside() {
    let text = GOOD
        .replace(
            "command = [\"make\", \"release\"]",
            "command = \"make release\"",
        )
        .replace("output = \"dist\"", "output = \"../../etc\"");
    check(
        &text,
        expect![[r#"
            build.command: expected an array of arguments, e.g. ["make", "release"] (no shell is used)
            build.output: `../../etc` must be a relative path inside the work tree (no `..`, no control characters)"#]],
    );
}

#[test]
fn token_sources_are_exclusive_and_urls_safe() {
    let text = GOOD.replace(
        "base_url = \"sandbox\"",
        "base_url = \"https://user:pw@asana.example.com/api/1.0\"\ntoken_env = \"T\"\ntoken_file = \"t\"",
    );
    check(
        &text,
        expect![[r#"
            asana.base_url: `asana.example.com`: put no credentials in the URL; use token_env or token_file
            asana.token_file: set either token_env or token_file, not both"#]],
    );
    let loopback = GOOD.replace(
        "base_url = \"sandbox\"",
        "base_url = \"http://127.0.0.1:8080/api/1.0\"\ntoken_env = \"T\"",
    );
    check(
        &loopback,
        expect!["ok: 2 clusters, state_dir /etc/pushgate/../target/pushgate-state"],
    );
}

/// SPEC §4's example, verbatim: valid even though its hosts_file does not
/// exist here (hosts files are read when hosts are needed).
const SPEC_EXAMPLE: &str = r#"
state_dir = "/var/lib/pushgate"          # repo mirror, artifacts, state, journal, lock file

[asana]
base_url = "https://app.asana.com/api/1.0"   # or "sandbox" for the embedded one
token_env = "ASANA_TOKEN"                # or token_file = "/etc/pushgate/token" (mode 0600)
workspace = "1200000000000001"           # tasks pushgate creates (locks, push tasks) are created here

[repo]
url = "git@example.com:org/app.git"     # any URL or path git understands
branch = "main"

[build]
command = ["make", "release"]
output = "dist"                         # directory inside the work tree
timeout = "20m"

[sync]
parallelism = 16
max_failed_hosts = 0
keep_releases = 5
after_switch = ["sudo", "systemctl", "reload", "app"]   # optional, run on each host
ssh_config = "/etc/pushgate/ssh_config"  # optional: passed to ssh as -F (identity, known hosts, jump hosts)
ssh_identity = "/etc/pushgate/id_ed25519"  # optional
host_timeout = "10m"                     # per host, per stage

[notify]                                 # optional
slack_webhook_env = "PUSHGATE_SLACK_WEBHOOK"

[crash]
project = "1200000000000009"
fix_commit_field = "Fix commit"          # text custom field; the notes line "Fixed-in: <sha>" also counts

[clusters.beta]
schedule = "0 */15 * * * *"              # seconds-first cron, as tokio-cron-scheduler reads it
timezone = "America/Los_Angeles"
lock_project = "1200000000000002"
push_project = "1200000000000003"
hosts = ["beta-1.internal", "beta-2.internal"]   # or hosts_file = "..."
target = "/srv/app"
freeze_before = { cluster = "prod", duration = "90m" }

[clusters.prod]
schedule = "0 0 10,17 * * Mon-Fri"
timezone = "America/Los_Angeles"
source = "cluster:beta"                   # ship what beta runs (commit and artifact)
min_soak = "90m"                         # beta must have run it this long (default: beta's freeze duration)
lock_project = "1200000000000004"
push_project = "1200000000000005"
hosts_file = "/etc/pushgate/prod-hosts"
target = "/srv/app"
"#;

#[test]
fn the_spec_example_is_valid() {
    check(
        SPEC_EXAMPLE,
        expect!["ok: 2 clusters, state_dir /var/lib/pushgate"],
    );
    let c = Config::parse(SPEC_EXAMPLE, Path::new("/")).unwrap();
    let prod = c.cluster("prod").unwrap();
    let err = prod.read_hosts().unwrap_err();
    assert!(err.contains("/etc/pushgate/prod-hosts"), "{err}");
}

#[test]
fn hosts_files_skip_blank_and_comment_lines_and_refuse_bad_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts");
    std::fs::write(&path, "# prod\nprod-1.internal\n\n  deploy@prod-2:2222\n").unwrap();
    let hosts = read_hosts_file(&path).unwrap();
    assert_eq!(
        hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        ["prod-1.internal", "deploy@prod-2:2222"]
    );
    std::fs::write(&path, "ok-host\n-oProxyCommand=x\n").unwrap();
    let err = read_hosts_file(&path).unwrap_err();
    assert!(
        err.contains(":2:") && err.contains("may not start with `-`"),
        "{err}"
    );
}

#[test]
fn ssh_paths_that_would_break_the_command_line_are_refused() {
    let text = GOOD
        .replace(
            "# ssh_config = \"/etc/pushgate/ssh_config\"",
            "known_hosts = \"/etc/push gate/known_hosts\"\nhost_key_policy = \"maybe\"",
        )
        .replace(
            "# ssh_identity = \"/etc/pushgate/id_ed25519\"",
            "ssh_identity = \"/keys/it's\"",
        );
    check(
        &text,
        expect![[r#"
            sync.ssh_identity: must not contain `'` (it is passed to rsync's ssh command line)
            sync.known_hosts: must not contain spaces (ssh reads UserKnownHostsFile as a list of files)
            sync.host_key_policy: `maybe`: expected `strict` or `accept-new`"#]],
    );
}

#[test]
fn notify_names_a_variable_and_known_events() {
    let with = |section: &str| format!("{GOOD}\n[notify]\n{section}\n");
    let c = Config::parse(
        &with("slack_webhook_env = \"PUSHGATE_SLACK_WEBHOOK\""),
        Path::new("/etc/pushgate"),
    )
    .unwrap();
    let n = c.notify.unwrap();
    assert_eq!(n.on, NOTIFY_DEFAULT);
    assert_eq!(n.timeout, Duration::from_secs(5));
    assert_eq!(n.started_after, Duration::from_secs(30));
    check(
        &with("slack_webhook_env = \"https://hooks.slack.com/services/T/B/x\"\ntimeout = \"0s\"\non = [\"failed\", \"deployed\", 3]"),
        expect![[r#"
            notify.slack_webhook_env: must name an environment variable that holds the URL, not the URL: it is a secret"#]],
    );
    check(
        &with("slack_webhook_env = \"HOOK\"\ntimeout = \"0s\"\non = [\"failed\", \"deployed\", 3]\nchannel = \"#ops\""),
        expect![[r#"
            notify.channel: unknown key; expected one of: slack_webhook_env, timeout, on, started_after
            notify.timeout: must be longer than zero
            notify.on[1]: `deployed` is not an event; expected some of: started, succeeded, failed, held, frozen, rollback
            notify.on[2]: expected a string, found an integer"#]],
    );
}

#[test]
fn durations_and_attempts_are_bounded() {
    // A duration of millions of years parsed, then overflowed the date
    // arithmetic of the soak and freeze checks (a panic in every push).
    let text = SPEC_EXAMPLE
        .replace("min_soak = \"90m\"", "min_soak = \"5000000000y\"")
        .replace("duration = \"90m\"", "duration = \"100000000 years\"")
        .replace(
            "host_timeout = \"10m\"",
            "host_timeout = \"367d\"\nretries = 1000",
        )
        .replace(
            "workspace = \"1200000000000001\"",
            "workspace = \"1200000000000001\"\nmax_attempts = 4294967296",
        );
    check(
        &text,
        expect![[r#"
            asana.max_attempts: must be at most 100, found 4294967296
            sync.retries: must be at most 100, found 1000
            sync.host_timeout: `367d` is longer than 366 days: surely a typo
            clusters.beta.freeze_before.duration: `100000000 years` is longer than 366 days: surely a typo
            clusters.prod.min_soak: `5000000000y` is longer than 366 days: surely a typo"#]],
    );
    let year = SPEC_EXAMPLE.replace("min_soak = \"90m\"", "min_soak = \"366d\"");
    check(
        &year,
        expect!["ok: 2 clusters, state_dir /var/lib/pushgate"],
    );
}

/// Found by `fuzz/` (config_parse, template mode, input
/// `b"1881281244002m"`): with the bound check off, this min_soak (1.7
/// million years) passed validation and `decide::soaking` panicked with
/// "`DateTime + TimeDelta` overflowed".
#[test]
fn fuzz_a_min_soak_of_a_million_years_is_refused_not_a_panic_later() {
    let text = SPEC_EXAMPLE.replace("min_soak = \"90m\"", "min_soak = \"881281244002m\"");
    check(
        &text,
        expect!["clusters.prod.min_soak: `881281244002m` is longer than 366 days: surely a typo"],
    );
}

#[test]
fn the_complete_example_in_the_docs_is_valid_and_sets_every_key() {
    let doc = include_str!("../../docs/configuration.md");
    let from = doc.find("## A complete example").unwrap();
    let block = &doc[from..];
    let start = block.find("```toml\n").unwrap() + 8;
    let end = block[start..].find("```").unwrap() + start;
    let text = &block[start..end];
    check(text, expect!["ok: 2 clusters, state_dir /var/lib/pushgate"]);
    // Every key the validator knows appears in it.
    for key in TOP_KEYS
        .iter()
        .filter(|k| {
            !matches!(
                **k,
                "state_dir"
                    | "asana"
                    | "repo"
                    | "build"
                    | "sync"
                    | "notify"
                    | "crash"
                    | "clusters"
                    | "requests"
                    | "http"
            )
        })
        .chain(ASANA_KEYS)
        .filter(|k| **k != "token_env")
        .chain(REPO_KEYS)
        .chain(BUILD_KEYS)
        .chain(SYNC_KEYS)
        .chain(NOTIFY_KEYS)
        .chain(CRASH_KEYS)
        .chain(CLUSTER_KEYS)
        .chain(HTTP_KEYS)
    {
        // The bittorrent transport's keys are refused beside "rsync":
        // the example shows them commented out, under the line naming it.
        let shown = if matches!(*key, "tracker" | "run_tracker") {
            format!("\n# {key} = ")
        } else {
            format!("\n{key} = ")
        };
        assert!(text.contains(&shown), "{key} is missing");
    }
}

#[test]
fn control_characters_in_paths_and_targets_are_refused() {
    let text = SPEC_EXAMPLE
        .replace(
            "target = \"/srv/app\"\nfreeze",
            "target = \"/srv/app\\n; reboot\"\nfreeze",
        )
        .replace(
            "state_dir = \"/var/lib/pushgate\"",
            "state_dir = \"/var/lib/\\u0000pushgate\"",
        );
    check(
        &text,
        expect![[r#"
            state_dir: `/var/lib/\0pushgate` must not contain control characters
            clusters.beta.target: `/srv/app\n; reboot` must not contain control characters"#]],
    );
}

#[test]
fn relative_paths_are_the_config_directorys() {
    let text = SPEC_EXAMPLE
        .replace("\"/var/lib/pushgate\"", "\"state\"")
        .replace(
            "token_env = \"ASANA_TOKEN\"",
            "token_file = \"secrets/token\"",
        )
        .replace("\"/etc/pushgate/ssh_config\"", "\"ssh/config\"")
        .replace("\"/etc/pushgate/id_ed25519\"", "\"../keys/id\"")
        .replace("\"/etc/pushgate/prod-hosts\"", "\"prod-hosts\"")
        .replace("\"git@example.com:org/app.git\"", "\"repos/app\"");
    let c = Config::parse(&text, Path::new("/etc/pushgate")).unwrap();
    assert_eq!(c.state_dir, Path::new("/etc/pushgate/state"));
    assert_eq!(
        c.asana.token,
        Some(TokenSource::File("/etc/pushgate/secrets/token".into()))
    );
    assert_eq!(
        c.sync.ssh_config.as_deref(),
        Some(Path::new("/etc/pushgate/ssh/config"))
    );
    assert_eq!(
        c.sync.ssh_identity.as_deref(),
        Some(Path::new("/etc/pushgate/../keys/id"))
    );
    assert_eq!(c.repo.url, "/etc/pushgate/repos/app");
    assert_eq!(
        c.cluster("prod").unwrap().hosts_file.as_deref(),
        Some(Path::new("/etc/pushgate/prod-hosts"))
    );
    // A host's target is on the host: never taken from the bastion's directory.
    check(
        &SPEC_EXAMPLE.replace(
            "target = \"/srv/app\"\nfreeze",
            "target = \"srv/app\"\nfreeze",
        ),
        expect!["clusters.beta.target: `srv/app` must be an absolute path on the hosts (no `..`)"],
    );
}

/// Every leaf of `t`, as a path of keys.
fn leaves(t: &Table, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for (k, v) in t {
        let mut p = prefix.to_vec();
        p.push(k.clone());
        match v {
            Value::Table(sub) => leaves(sub, &p, out),
            _ => out.push(p),
        }
    }
}

fn set(t: &mut Table, path: &[String], v: Value) {
    match path {
        [k] => {
            t.insert(k.clone(), v);
        }
        [k, rest @ ..] => set(t[k].as_table_mut().unwrap(), rest, v),
        [] => {}
    }
}

#[test]
fn every_key_given_a_wrong_type_is_named_and_nothing_panics() {
    let good: Table = toml::from_str(SPEC_EXAMPLE).unwrap();
    let mut paths = Vec::new();
    leaves(&good, &[], &mut paths);
    assert_eq!(paths.len(), 35, "every key of the example");
    let wrong = [
        Value::Boolean(true),
        Value::Integer(-1),
        Value::Float(f64::NAN),
        Value::Array(vec![Value::Table(Table::new())]),
        Value::Table(Table::new()),
        Value::String(String::new()),
        Value::String("\u{0}\n$(reboot)".into()),
    ];
    for path in &paths {
        let key = path.join(".");
        for w in &wrong {
            let mut t = good.clone();
            set(&mut t, path, w.clone());
            let text = toml::to_string(&t).unwrap();
            match Config::parse(&text, Path::new("/etc/pushgate")) {
                Ok(_) => {
                    // Only values that are still valid may pass: the empty
                    // or odd strings of free-text keys.
                    assert!(
                        matches!(w, Value::String(_))
                            && ["fix_commit_field", "slack_webhook_env", "token_env", "url"]
                                .contains(&path.last().unwrap().as_str()),
                        "{key} = {w:?} was accepted"
                    );
                }
                Err(problems) => {
                    // A table in the place of a key also fails its
                    // section's required keys; the key itself is named.
                    assert!(
                        problems.iter().any(|p| p.key.starts_with(&key)),
                        "{key} = {w:?}: {problems:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_min_soak_of_zero_means_no_soak_and_other_durations_stay_above_zero() {
    let text = SPEC_EXAMPLE.replace("min_soak = \"90m\"", "min_soak = \"0s\"");
    let c = Config::parse(&text, Path::new("/etc/pushgate")).unwrap();
    assert_eq!(
        c.cluster("prod").unwrap().min_soak,
        Some(std::time::Duration::ZERO)
    );
    let text = SPEC_EXAMPLE.replace("timeout = \"20m\"", "timeout = \"0s\"");
    check(&text, expect!["build.timeout: must be longer than zero"]);
}

/// Two apps that share `[asana]`, `[sync]` and `[notify]`.
const TWO_APPS: &str = r#"
state_dir = "/var/lib/pushgate"
max_concurrent_pushes = 3

[asana]
base_url = "sandbox"
workspace = "1200000000000001"

[sync]
parallelism = 8
retries = 1

[notify]
slack_webhook_env = "PUSHGATE_SLACK_WEBHOOK"

[apps.web.repo]
url = "git@example.com:org/web.git"
web = { commit = "https://git.example.com/org/web/commit/{sha}" }
[apps.web.build]
command = ["make"]
output = "dist"
[apps.web.clusters.beta]
schedule = "0 */15 * * * *"
lock_project = "1200000000000002"
push_project = "1200000000000003"
hosts = ["local:/srv/web-beta"]

[apps.api.repo]
url = "git@example.com:org/api.git"
[apps.api.build]
command = ["make"]
output = "out"
[apps.api.sync]
parallelism = 2
[apps.api.notify]
slack_webhook_env = "API_WEBHOOK"
[apps.api.clusters.beta]
schedule = "0 5 * * * *"
lock_project = "1200000000000012"
push_project = "1200000000000013"
hosts = ["local:/srv/api-beta"]
"#;

fn check_file(text: &str, expect: Expect) {
    let actual = match ConfigFile::parse(text, Path::new("/etc/pushgate")) {
        Ok(f) => f
            .apps
            .values()
            .map(|a| {
                format!(
                    "{}: {} clusters, state {}, parallelism {}, retries {}, webhook {}",
                    a.app,
                    a.clusters.len(),
                    a.state_dir.display(),
                    a.sync.parallelism,
                    a.sync.retries,
                    a.notify
                        .as_ref()
                        .map_or("-", |n| n.slack_webhook_env.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(problems) => problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn apps_share_the_top_sections_and_override_them_key_by_key() {
    check_file(
        TWO_APPS,
        expect![[r#"
            api: 1 clusters, state /var/lib/pushgate/apps/api, parallelism 2, retries 1, webhook API_WEBHOOK
            web: 1 clusters, state /var/lib/pushgate/apps/web, parallelism 8, retries 1, webhook PUSHGATE_SLACK_WEBHOOK"#]],
    );
    let f = ConfigFile::parse(TWO_APPS, Path::new("/etc")).unwrap();
    assert_eq!(f.max_concurrent_pushes, Some(3));
    let web = f.app(Some("web")).unwrap();
    assert_eq!(
        web.web.as_ref().unwrap().commit_url("abc"),
        "https://git.example.com/org/web/commit/abc"
    );
    assert!(f
        .app(None)
        .unwrap_err()
        .contains("2 apps (api, web): say which with --app NAME"));
    assert!(f.app(Some("db")).unwrap_err().contains("unknown app `db`"));
    // A one-app command on a file of several apps says so.
    assert!(Config::parse(TWO_APPS, Path::new("/etc")).is_err());
}

#[test]
fn a_config_without_apps_is_one_app_named_after_its_repository_in_the_root_state_dir() {
    let f = ConfigFile::parse(GOOD, Path::new("/etc/pushgate")).unwrap();
    assert!(!f.has_apps);
    let app = f.app(None).unwrap();
    assert_eq!(app.app.as_str(), "app");
    assert_eq!(app.state_dir, f.state_dir, "used in place: no migration");
}

#[test]
fn every_problem_of_every_app_names_its_full_key() {
    let text = TWO_APPS
        .replace("schedule = \"0 5 * * * *\"", "schedule = \"5 * * * *\"")
        .replace(
            "[apps.api.sync]\nparallelism = 2",
            "[apps.api.sync]\nparallelism = 0\nparalelism = 3",
        )
        .replace("retries = 1", "retries = \"one\"")
        .replace(
            "[apps.web.build]\ncommand = [\"make\"]\n",
            "[apps.web.build]\n",
        )
        .replace("{sha}", "{commit}");
    check_file(
        &text,
        expect![[r#"
            sync.retries: expected an integer, found a string
            apps.api.sync.paralelism: unknown key; did you mean `parallelism`?
            apps.api.sync.parallelism: must be at least 1, found 0
            apps.api.clusters.beta.schedule: `5 * * * *` is not a cron expression with seconds first, e.g. "0 */15 * * * *" (Invalid pattern: Pattern must have 6 or 7 fields when seconds are required and years are optional.)
            apps.web.repo.web.commit: `https://git.example.com/org/web/commit/{commit}` must hold `{sha}`
            apps.web.build.command: missing required key"#]],
    );
}

#[test]
fn apps_that_share_a_project_or_a_host_target_are_refused_unless_said_on_purpose() {
    let text = TWO_APPS
        .replace(
            "lock_project = \"1200000000000012\"",
            "lock_project = \"1200000000000002\"",
        )
        .replace("local:/srv/api-beta", "local:/srv/web-beta");
    check_file(
        &text,
        expect![[r#"
            apps.web.clusters.beta.lock_project: shares its lock project with apps.api.clusters.beta.lock_project: two apps would hold each other's pushes; if that is meant, add "lock_project" to allow_shared
            apps.web.clusters.beta.hosts: shares its target with apps.api.clusters.beta.hosts: two apps would overwrite each other's releases on that host; if that is meant, add "target" to allow_shared"#]],
    );
    let allowed = text.replace(
        "max_concurrent_pushes = 3",
        "max_concurrent_pushes = 3\nallow_shared = [\"lock_project\", \"target\"]",
    );
    assert!(ConfigFile::parse(&allowed, Path::new("/etc")).is_ok());
}

#[test]
fn a_config_with_apps_keeps_nothing_of_an_app_at_its_top() {
    let text = TWO_APPS.replace(
        "[sync]\nparallelism = 8",
        "[repo]\nurl = \"x\"\n[sync]\nparallelism = 8",
    );
    check_file(
        &text,
        expect!["repo: with [apps], each app has its own: move it to [apps.NAME.repo]"],
    );
    let text = TWO_APPS.replace("[apps.web.repo]", "[apps.Web.repo]");
    assert!(ConfigFile::parse(&text, Path::new("/etc"))
        .unwrap_err()
        .iter()
        .any(|p| p.key == "apps.Web"));
}

#[test]
fn a_tracker_url_without_a_port_is_port_80_and_a_bad_one_is_named() {
    let with = |url: &str| {
        GOOD.replace(
            "[sync]\n",
            &format!("[sync]\ntransport = \"bittorrent\"\ntracker = \"{url}\"\n"),
        )
    };
    let c = Config::parse(
        &with("http://10.0.0.1/announce"),
        Path::new("/etc/pushgate"),
    )
    .unwrap();
    match &c.sync.transport {
        Transport::BitTorrent { tracker, .. } => {
            assert_eq!(tracker.port_or_known_default(), Some(80))
        }
        other => panic!("{other:?}"),
    }
    check(
        &with("https://10.0.0.1:6969/announce"),
        expect!["sync.tracker: `https://10.0.0.1:6969/announce`: expected the tracker's announce URL as the hosts reach it, `http://HOST:PORT/announce`"],
    );
}
