//! `pushgate run --metrics`: the real daemon, scraped over HTTP during a
//! push (held in its build by a FIFO) and after it, then while a lock
//! holds it. Progress is read from the daemon's log and the FIFOs, never
//! from the clock.

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{self, seed, Bin, Setup};

const PROD_SCHEDULE: &str = "0 0 10,17 * * Mon-Fri";
/// Midnight on 1 January: not during a test run, in practice.
const NEVER: &str = "0 0 0 1 1 *";

use crate::support::sigterm;

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStderr>>;

/// Reads log lines until one contains `needle`; returns that line.
async fn read_until(lines: &mut Lines, needle: &str) -> String {
    let mut seen = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        if l.contains(needle) {
            return l;
        }
        seen.push(l);
    }
    panic!("the log ended without {needle:?}: {seen:#?}");
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(url: &str) -> String {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.unwrap()
}

#[tokio::test]
async fn the_metrics_endpoint_counts_pushes_stages_holds_and_asana_requests() {
    let sb = support::sandbox().await;
    let probe = tempfile::tempdir().unwrap();
    let p = probe.path().display().to_string();
    for f in ["started", "go"] {
        assert!(std::process::Command::new("mkfifo")
            .arg(probe.path().join(f))
            .status()
            .unwrap()
            .success());
    }
    let bin = Bin::with(
        &sb,
        Setup {
            build_command: Some(format!(
                r#"["sh", "-c", "echo started > '{p}/started'; read go < '{p}/go'; mkdir -p dist && cp -R app/. dist/"]"#
            )),
            ..Setup::default()
        },
    );
    // beta every second; prod never during the test.
    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace("0 */15 * * * *", "* * * * * *")
        .replace(PROD_SCHEDULE, NEVER);
    std::fs::write(&bin.config, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(&bin.config)
        .args(["--log-format", "json", "run", "--metrics", "127.0.0.1:0"])
        .env(support::TOKEN_ENV, &bin.token)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let serving: serde_json::Value =
        serde_json::from_str(&read_until(&mut lines, "serving metrics").await).unwrap();
    let url = serving["fields"]["url"].as_str().unwrap().to_owned();

    // Before any push: every family is there, at zero (what is deployed
    // and when it last succeeded appear with the first push).
    let m = scrape(&url).await;
    for family in [
        "pushgate_pushes_total",
        "pushgate_push_duration_seconds",
        "pushgate_rollbacks_total",
        "pushgate_holds_total",
        "pushgate_stage_duration_seconds",
        "pushgate_stage_bytes_sent_total",
        "pushgate_push_in_progress",
        "pushgate_asana_requests_total",
        "pushgate_asana_errors_total",
        "pushgate_asana_rate_limited_total",
    ] {
        assert!(m.contains(&format!("# TYPE {family} ")), "{family}:\n{m}");
    }
    assert_eq!(
        sample(
            &m,
            r#"pushgate_pushes_total{app="repo",cluster="beta",outcome="success"}"#
        ),
        Some(0.0),
        "{m}"
    );

    // During the push: the build waits for the test.
    let started = probe.path().join("started");
    tokio::task::spawn_blocking(move || std::fs::read_to_string(started).unwrap())
        .await
        .unwrap();
    let m = scrape(&url).await;
    assert_eq!(
        sample(
            &m,
            r#"pushgate_push_in_progress{app="repo",cluster="beta"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(&m, "pushgate_asana_requests_total").unwrap() > 0.0,
        "{m}"
    );

    let go = probe.path().join("go");
    tokio::task::spawn_blocking(move || std::fs::write(go, "go\n").unwrap())
        .await
        .unwrap();
    read_until(&mut lines, "\"pushed\"").await;
    let m = scrape(&url).await;
    let s = |series: &str| sample(&m, series);
    assert_eq!(
        s(r#"pushgate_pushes_total{app="repo",cluster="beta",outcome="success"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        s(r#"pushgate_pushes_total{app="repo",cluster="beta",outcome="failed"}"#),
        Some(0.0)
    );
    assert_eq!(
        s(r#"pushgate_push_duration_seconds_count{app="repo",cluster="beta",outcome="success"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        s(r#"pushgate_stage_duration_seconds_count{app="repo",cluster="beta"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(
        s(r#"pushgate_stage_bytes_sent_total{app="repo",cluster="beta"}"#).unwrap() > 0.0,
        "{m}"
    );
    assert_eq!(
        s(r#"pushgate_push_in_progress{app="repo",cluster="beta"}"#),
        Some(0.0)
    );
    let deployed = std::fs::read_to_string(bin.path("state/clusters/beta/deployed.json")).unwrap();
    let deployed: serde_json::Value = serde_json::from_str(&deployed).unwrap();
    assert_eq!(
        s(&format!(
            r#"pushgate_deployed_info{{app="repo",cluster="beta",commit="{}",release="{}"}}"#,
            bin.first,
            deployed["release"].as_str().unwrap()
        )),
        Some(1.0),
        "{m}"
    );
    let since = chrono::DateTime::parse_from_rfc3339(deployed["since"].as_str().unwrap())
        .unwrap()
        .timestamp() as f64;
    let last = s(r#"pushgate_last_success_timestamp_seconds{app="repo",cluster="beta"}"#).unwrap();
    assert!((last - since).abs() < 60.0, "{last} vs {since}");

    // Every series the Grafana dashboard queries is exposed.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("pushgate_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    // An app selector, and every query filtered by it (but Asana's: one
    // client serves every app).
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["app", "cluster"]);
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains(r#"app=~"$app""#) || expr.contains("pushgate_asana_"),
                "not filtered by app: {expr}"
            );
        }
    }
    for name in &queried {
        assert!(
            m.contains(&format!("\n{name}")),
            "the dashboard queries {name}, which is not exposed:\n{m}"
        );
    }

    // A lock and a new commit: the next ticks are held, and counted.
    support::add_lock(&sb, seed::LOCK_BETA, "hold for metrics").await;
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    read_until(&mut lines, "held by 1 lock").await;
    let m = scrape(&url).await;
    let held = sample(
        &m,
        r#"pushgate_holds_total{app="repo",cluster="beta",reason="locked"}"#,
    )
    .unwrap();
    let logged = std::fs::read_to_string(bin.path("state/clusters/beta/holds.jsonl"))
        .unwrap()
        .lines()
        .count() as f64;
    assert!(
        held >= 1.0 && held <= logged,
        "{held} counted, {logged} logged"
    );
    assert_eq!(
        sample(
            &m,
            r#"pushgate_pushes_total{app="repo",cluster="beta",outcome="success"}"#
        ),
        Some(1.0),
        "a held run is not a push"
    );

    sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn a_push_by_another_process_is_counted_too() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    // No scheduled push during the test: only the other process pushes.
    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace("0 */15 * * * *", NEVER)
        .replace(PROD_SCHEDULE, NEVER);
    std::fs::write(&bin.config, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(&bin.config)
        .args(["--log-format", "json", "run", "--metrics", "127.0.0.1:0"])
        .env(support::TOKEN_ENV, &bin.token)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let serving: serde_json::Value =
        serde_json::from_str(&read_until(&mut lines, "serving metrics").await).unwrap();
    let url = serving["fields"]["url"].as_str().unwrap().to_owned();
    // cron's `pushgate push`, while the daemon serves metrics.
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let m = scrape(&url).await;
    assert_eq!(
        sample(
            &m,
            r#"pushgate_pushes_total{app="repo",cluster="beta",outcome="success"}"#
        ),
        Some(1.0),
        "{m}"
    );
    support::add_lock(&sb, seed::LOCK_BETA, "x").await;
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 3);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 3);
    let m = scrape(&url).await;
    assert_eq!(
        sample(
            &m,
            r#"pushgate_holds_total{app="repo",cluster="beta",reason="locked"}"#
        ),
        Some(2.0),
        "{m}"
    );
    sigterm(&child);
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
}
