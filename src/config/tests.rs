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
            build.output: `../../etc` must be a relative path inside the work tree (no `..`)"#]],
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
