//! The on-call page (`pushgate run --http ADDR`), the real daemon over
//! HTTP against the sandbox, after real pushes by the shell: the overview
//! says what `status` says and its JSON is `status --json`'s, the history
//! JSON is `history --json`'s, the run and cluster pages show what the
//! runs left, hostile task, commit, assignee and output text is escaped
//! everywhere and links to Asana are built from gids, nothing is served
//! without the token off loopback, and no page changes anything. What a
//! browser makes of it is `page_browser.rs`.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{self, seed, Bin, Setup};

/// Midnight on 1 January: no scheduled push during a test.
pub const NEVER: &str = "0 0 0 1 1 *";
const BETA_SCHEDULE: &str = "0 */15 * * * *";
const PROD_SCHEDULE: &str = "0 0 10,17 * * Mon-Fri";

/// Text that would run script if any page let it through as markup: each
/// payload sets `window.__pwned`.
pub const HOSTILE: &str =
    "<script>window.__pwned=1</script> <img src=x onerror=\"window.__pwned=2\"> \
javascript:window.__pwned=3 \"><svg onload=window.__pwned=4> \u{202E}desrever\u{202C} bell\u{7}";

/// The daemon, its log gathered as it comes.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
    said: Arc<tokio::sync::Notify>,
    reader: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// `pushgate run --http ADDR` with these extra variables; waits until
    /// it serves the page.
    pub async fn start(bin: &Bin, addr: &str, vars: &[(&str, &str)]) -> Daemon {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .arg("--config")
            .arg(&bin.config)
            .args([
                "--log-format",
                "json",
                "run",
                "--grace",
                "60s",
                "--http",
                addr,
            ])
            .env(support::TOKEN_ENV, &bin.token)
            .env_remove("RUST_LOG")
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let said = Arc::new(tokio::sync::Notify::new());
        let (l, s) = (log.clone(), said.clone());
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                l.lock().unwrap().push(line);
                s.notify_waiters();
            }
            s.notify_waiters();
        });
        let mut d = Daemon {
            child,
            url: String::new(),
            log,
            said,
            reader,
        };
        let line = d.wait_log("serving the on-call page").await;
        let v: Value = serde_json::from_str(&line).unwrap();
        d.url = v["fields"]["url"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .replace("0.0.0.0", "127.0.0.1");
        d
    }

    /// Waits for a log line that contains `needle` (any, from the start).
    pub async fn wait_log(&self, needle: &str) -> String {
        loop {
            let said = self.said.notified();
            tokio::pin!(said);
            said.as_mut().enable();
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if self.reader.is_finished() {
                panic!(
                    "the daemon's log ended without {needle:?}:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            said.await;
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM; the exit code.
    pub async fn stop(mut self) -> i32 {
        let pid = rustix::process::Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.child.wait().await.unwrap().code().unwrap_or(-1)
    }
}

/// An answer: status, headers, body.
pub struct Got {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The status a plain GET of `url` gets.
async fn status_of(url: &str) -> u16 {
    get(url, &[]).await.status
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("the page answers");
    Got {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// A repository, beta's three `local:` hosts and prod's one, after real
/// pushes by the shell: beta pushed, then failed to build a hostile
/// commit (its output hostile too), then pushed a fix; prod held by a
/// hostile lock task assigned to a person with a hostile name.
pub struct World {
    pub sb: pushgate::sandbox::Sandbox,
    pub bin: Bin,
    /// The commits beta pushed, and the one whose build failed.
    pub pushed: Vec<String>,
    pub broken: String,
    pub lock: String,
}

impl World {
    /// The build fails while `fail` exists (hostile output), and waits for
    /// the test (`started`, then `go`, FIFOs) while `block` exists.
    pub fn build_command(d: &str) -> String {
        format!(
            r#"["sh", "-c", "if [ -f '{d}/fail' ]; then echo '<script>window.__pwned=5</script> the build broke' >&2; exit 3; fi; if [ -f '{d}/block' ]; then echo started > '{d}/started'; read go < '{d}/go'; fi; mkdir -p dist && cp -R app/. dist/"]"#
        )
    }

    pub async fn new(setup: Setup) -> World {
        let sb = support::sandbox().await;
        let bin = Bin::with(
            &sb,
            Setup {
                build_command: Some("BUILD".into()),
                ..setup
            },
        );
        let d = bin.dir.path().display().to_string();
        let text = std::fs::read_to_string(&bin.config)
            .unwrap()
            .replace(
                "command = BUILD",
                &format!("command = {}", World::build_command(&d)),
            )
            .replace(BETA_SCHEDULE, NEVER)
            .replace(PROD_SCHEDULE, NEVER);
        std::fs::write(&bin.config, text).unwrap();
        // The sandbox's user, whom lock tasks are assigned to, has a
        // hostile name.
        sb.with_data(|data| {
            let me = data.me.clone();
            data.users.get_mut(&me).unwrap().name = format!("Mallory {HOSTILE}");
        })
        .unwrap();
        let first = bin.first.clone();
        assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
        std::fs::write(bin.path("fail"), "").unwrap();
        let broken = bin.repo.commit(
            &[("app/index.html", b"v2\n")],
            &format!("Break it {HOSTILE}"),
        );
        let failed = bin.run(&["push", "beta"]).await;
        assert_eq!(failed.code, 1, "{failed:?}");
        // The schedule does not retry a failed build: held, and logged.
        let held = bin.run(&["push", "beta"]).await;
        assert!(held.stdout.contains("not retrying"), "{held:?}");
        std::fs::remove_file(bin.path("fail")).unwrap();
        let fixed = bin
            .repo
            .commit(&[("app/index.html", b"v3\n")], &format!("Fix it {HOSTILE}"));
        assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
        let lock = support::add_lock(&sb, seed::LOCK_PROD, &format!("Hold prod {HOSTILE}")).await;
        assert_eq!(bin.run(&["push", "prod"]).await.code, 3, "held by the lock");
        World {
            sb,
            bin,
            pushed: vec![first, fixed],
            broken,
            lock,
        }
    }
}

/// Every answer of the page carries the policy that allows no script but
/// its own.
fn secured(g: &Got) {
    let csp = g.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(g.headers["x-content-type-options"], "nosniff");
}

/// Every feed (JSON, XML, SVG, the metrics) carries one that allows no
/// script at all.
fn secured_feed(g: &Got) {
    let csp = g.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(g.headers["x-content-type-options"], "nosniff");
}

/// The markup of a page shows no hostile payload as markup.
fn inert(html: &str, page: &str) {
    for raw in [
        "<script>window.__pwned",
        "<img src=x",
        "<svg onload",
        "href=\"javascript:",
        "\u{202E}",
        "\u{7}",
    ] {
        assert!(!html.contains(raw), "{page} holds {raw:?} raw:\n{html}");
    }
    assert!(
        html.contains("&lt;script&gt;window.__pwned"),
        "{page} shows the text, escaped"
    );
}

#[tokio::test]
async fn the_overview_says_what_status_says_and_its_json_is_status_and_history_json() {
    let w = World::new(Setup::default()).await;
    let daemon = Daemon::start(&w.bin, "127.0.0.1:0", &[]).await;
    let status = w.bin.run(&["status", "--json"]).await;
    let api = get(&format!("{}/api/status.json", daemon.url), &[]).await;
    assert_eq!(api.status, 200);
    secured_feed(&api);
    assert_eq!(
        api.json(),
        status.json(),
        "/api/status.json is status --json"
    );
    let only = get(&format!("{}/api/status.json?cluster=prod", daemon.url), &[]).await;
    assert_eq!(
        only.json(),
        w.bin.run(&["status", "prod", "--json"]).await.json()
    );
    for cluster in ["beta", "prod"] {
        let h = get(
            &format!("{}/api/history.json?cluster={cluster}", daemon.url),
            &[],
        )
        .await;
        assert_eq!(h.status, 200, "{}", h.body);
        let cli = w.bin.run(&["history", cluster, "--json"]).await;
        assert_eq!(
            h.json(),
            cli.json(),
            "/api/history.json is history {cluster} --json"
        );
    }
    let h = get(
        &format!(
            "{}/api/history.json?cluster=beta&limit=1&since=2020-01-01",
            daemon.url
        ),
        &[],
    )
    .await;
    let cli = w
        .bin
        .run(&[
            "history",
            "beta",
            "--limit",
            "1",
            "--since",
            "2020-01-01",
            "--json",
        ])
        .await
        .json();
    let h = h.json();
    for key in [
        "runs",
        "total",
        "since",
        "success_rate",
        "median_duration_ms",
    ] {
        assert_eq!(h[key], cli[key], "{key}");
    }
    assert_eq!(h["runs"].as_array().unwrap().len(), 1);
    let h = get(&format!("{}/api/history.json", daemon.url), &[]).await;
    assert_eq!(h.status, 400);
    assert!(
        h.json()["error"]
            .as_str()
            .unwrap()
            .contains("?cluster=NAME"),
        "{}",
        h.body
    );

    // The overview: the state word and the verdict line status prints.
    let page = get(&format!("{}/", daemon.url), &[]).await;
    assert_eq!(page.status, 200);
    secured(&page);
    let s = status.json();
    for c in s["clusters"].as_array().unwrap() {
        let name = c["cluster"].as_str().unwrap();
        let row = page
            .body
            .split(&format!("<tr data-live=\"repo/{name}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("a row for {name}: {}", page.body));
        let row = row.split("</tr>").next().unwrap();
        let state = c["state"].as_str().unwrap();
        assert!(
            row.contains(&format!("data-state=\"{state}\"")),
            "{name} is {state}: {row}"
        );
    }
    let text = w.bin.run(&["status"]).await.stdout;
    let line = text
        .lines()
        .find(|l| l.contains("next push:") && l.contains("held by 1 lock"))
        .expect("status names prod's hold");
    assert!(
        page.body.contains("held by 1 lock"),
        "{line} / {}",
        page.body
    );
    // The lock links to its task, built from its gid.
    let link = format!(
        "{}/0/{}/{}",
        w.sb.base_url().trim_end_matches("/api/1.0"),
        seed::LOCK_PROD,
        w.lock
    );
    assert!(
        page.body.contains(&format!("href=\"{link}\"")),
        "{link}: {}",
        page.body
    );
    // beta's last run, linked to its run page; deployed is the fix.
    let fixed_short: String = w.pushed[1].chars().take(7).collect();
    assert!(page.body.contains(&fixed_short), "{}", page.body);

    // CCTray: one project per cluster, beta's last push a success.
    let cc = get(&format!("{}/cc.xml", daemon.url), &[]).await;
    assert_eq!(cc.status, 200);
    secured_feed(&cc);
    assert!(cc.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/xml"));
    let beta = cc
        .body
        .lines()
        .find(|l| l.contains("name=\"beta\""))
        .expect(&cc.body);
    for attr in [
        "activity=\"Sleeping\"",
        "lastBuildStatus=\"Success\"",
        &format!("lastBuildLabel=\"{}\"", &w.pushed[1][..12]),
        "webUrl=\"http://127.0.0.1:",
    ] {
        assert!(beta.contains(attr), "{attr}: {beta}");
    }
    assert!(
        cc.body
            .contains("<Project name=\"prod\" activity=\"Sleeping\" lastBuildStatus=\"Unknown\""),
        "{}",
        cc.body
    );

    // Badges: the state word status gives.
    let badge = get(&format!("{}/badge/repo/prod.svg", daemon.url), &[]).await;
    assert_eq!(badge.status, 200);
    assert_eq!(badge.headers["content-type"], "image/svg+xml");
    secured_feed(&badge);
    assert!(
        badge.body.contains(">prod</text>") && badge.body.contains(">held</text>"),
        "{}",
        badge.body
    );
    assert_eq!(
        status_of(&format!("{}/badge/repo/nope.svg", daemon.url)).await,
        404
    );
    assert_eq!(
        status_of(&format!("{}/cluster/repo/nope", daemon.url)).await,
        404
    );
    // The metrics moved under the same listener.
    let m = get(&format!("{}/metrics", daemon.url), &[]).await;
    assert_eq!(m.status, 200);
    secured_feed(&m);
    assert!(
        m.body
            .contains("pushgate_pushes_total{app=\"repo\",cluster=\"beta\",outcome=\"success\"} 2"),
        "{}",
        m.body
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn every_page_escapes_hostile_text_and_shows_the_runs_as_they_went() {
    let w = World::new(Setup::default()).await;
    let daemon = Daemon::start(&w.bin, "127.0.0.1:0", &[]).await;
    let overview = get(&format!("{}/", daemon.url), &[]).await;
    inert(&overview.body, "the overview");
    assert!(
        overview.body.contains("Mallory &lt;script&gt;"),
        "the assignee, escaped"
    );

    let history = w.bin.run(&["history", "beta", "--json"]).await.json();
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let cluster = get(&format!("{}/cluster/repo/beta?since=", daemon.url), &[]).await;
    assert_eq!(cluster.status, 200);
    for r in runs {
        let id = r["run_id"].as_str().unwrap();
        assert!(
            cluster.body.contains(&format!("/run/repo/beta/{id}")),
            "{id}"
        );
    }
    for chart in ["success", "duration", "holds"] {
        assert!(
            cluster.body.contains(&format!("data-chart=\"{chart}\"")),
            "{chart}"
        );
    }
    assert!(
        cluster.body.contains("successful pushes (%)") && cluster.body.contains("duration (s)")
    );
    let failed_only = get(
        &format!("{}/cluster/repo/beta?since=&outcome=failed", daemon.url),
        &[],
    )
    .await;
    assert_eq!(
        failed_only.body.matches("<tr data-outcome=").count(),
        1,
        "{}",
        failed_only.body
    );
    assert!(failed_only.body.contains("<tr data-outcome=\"failed\""));
    assert_eq!(
        get(
            &format!("{}/cluster/repo/beta?since=someday", daemon.url),
            &[]
        )
        .await
        .status,
        400
    );

    // The failed run: its step, its output's tail (escaped), its task.
    // A push told to go past prod's lock, and why: who and what, on prod's page.
    let by_hand = w
        .bin
        .run(&[
            "push",
            "prod",
            "--ignore-locks",
            "--reason",
            "hotfix <b>now</b>",
        ])
        .await;
    assert_eq!(by_hand.code, 0, "{by_hand:?}");
    let prod = get(&format!("{}/cluster/repo/prod", daemon.url), &[]).await;
    assert!(
        prod.body
            .contains("ignored, because: hotfix &lt;b&gt;now&lt;/b&gt;"),
        "{}",
        prod.body
    );
    assert!(
        prod.body.contains("lock &quot;Hold prod &lt;script&gt;"),
        "the lock it went past: {}",
        prod.body
    );
    inert(&prod.body, "prod's history");

    let failed = runs.iter().find(|r| r["outcome"] == "failed").unwrap();
    assert_eq!(failed["commit"], w.broken.as_str());
    let id = failed["run_id"].as_str().unwrap();
    let run = get(&format!("{}/run/repo/beta/{id}", daemon.url), &[]).await;
    assert_eq!(run.status, 200);
    secured(&run);
    inert(&run.body, "the failed run");
    assert!(
        run.body.contains("the build broke"),
        "the output tail: {}",
        run.body
    );
    assert!(
        run.body.contains("data-step=\"build\"") && run.body.contains("build (failed)"),
        "{}",
        run.body
    );
    let task =
        w.sb.with_data(|d| d.projects[seed::PUSH_BETA].tasks.clone())
            .unwrap();
    let origin = w.sb.base_url().trim_end_matches("/api/1.0").to_owned();
    assert!(
        run.body.contains(&format!(
            "href=\"{origin}/0/{}/{}\"",
            seed::PUSH_BETA,
            task[1]
        )),
        "the push task, by its gid: {}",
        run.body
    );
    assert!(run.body.contains("None queued."), "{}", run.body);

    // The last push: every step on the timeline, every host with its
    // bytes, the changelog (escaped), every Asana write applied.
    let last = runs.last().unwrap();
    let id = last["run_id"].as_str().unwrap();
    let run = get(&format!("{}/run/repo/beta/{id}", daemon.url), &[]).await;
    inert(&run.body, "the last run");
    for step in ["gate", "record", "build", "stage", "switch", "close"] {
        assert!(
            run.body.contains(&format!("data-step=\"{step}\"")),
            "{step}: {}",
            run.body
        );
    }
    assert!(
        run.body.contains("seconds since the run started (s)"),
        "the time axis"
    );
    for h in 1..=3 {
        assert!(run.body.contains(&format!("/hosts/beta-{h}")), "host {h}");
    }
    let release = last["release"].as_str().unwrap();
    let hosts = run
        .body
        .split("<table id=\"hosts\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(
        hosts.matches(&format!("runs {release}")).count(),
        3,
        "{hosts}"
    );
    assert!(
        hosts.contains(" B</td>") || hosts.contains(" KiB</td>"),
        "bytes sent: {hosts}"
    );
    assert!(
        run.body.contains("Fix it &lt;script&gt;"),
        "the changelog: {}",
        run.body
    );
    assert!(
        run.body.contains("Break it &lt;script&gt;"),
        "both commits since the last push"
    );
    let writes = run.body.matches("<tr data-state=\"applied\"").count();
    assert!(writes >= 4, "create, comments, complete: {}", run.body);
    assert!(!run.body.contains("data-state=\"queued\""));

    // A run id that is not one, or not this cluster's.
    assert_eq!(
        status_of(&format!("{}/run/repo/beta/..%2F..%2Fetc", daemon.url)).await,
        404
    );
    assert_eq!(
        status_of(&format!("{}/run/repo/prod/{id}", daemon.url)).await,
        404
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn no_page_changes_anything() {
    let w = World::new(Setup::default()).await;
    let daemon = Daemon::start(&w.bin, "127.0.0.1:0", &[]).await;
    let clusters = support::tree(&w.bin.path("state/clusters"));
    let hosts = support::tree(&w.bin.path("hosts"));
    let asana =
        w.sb.with_data(|d| serde_json::to_string(&d.tasks).unwrap())
            .unwrap();
    let history = w.bin.run(&["history", "beta", "--json"]).await.json();
    let mut paths = vec![
        "/".to_owned(),
        "/cluster/repo/beta".into(),
        "/cluster/repo/prod?since=&outcome=failed".into(),
        "/api/status.json".into(),
        "/api/history.json?cluster=beta".into(),
        "/api/live.json".into(),
        "/cc.xml".into(),
        "/badge/repo/beta.svg".into(),
        "/metrics".into(),
    ];
    for r in history["runs"].as_array().unwrap() {
        paths.push(format!("/run/repo/beta/{}", r["run_id"].as_str().unwrap()));
    }
    let http = reqwest::Client::new();
    for p in &paths {
        let g = get(&format!("{}{p}", daemon.url), &[]).await;
        assert_eq!(g.status, 200, "{p}: {}", g.body);
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let r = http
                .request(method.parse().unwrap(), format!("{}{p}", daemon.url))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 405, "{method} {p}");
        }
    }
    assert_eq!(
        support::tree(&w.bin.path("state/clusters")),
        clusters,
        "the state directory"
    );
    assert_eq!(support::tree(&w.bin.path("hosts")), hosts, "the hosts");
    let after =
        w.sb.with_data(|d| serde_json::to_string(&d.tasks).unwrap())
            .unwrap();
    assert_eq!(after, asana, "Asana's tasks");
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn off_loopback_nothing_is_served_without_the_token() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    bin.set_config_line("schedule", &format!("schedule = \"{NEVER}\""));
    // No token file: refused, exit 2, before anything starts (a daemon
    // that started would not exit: the timeout fails the test).
    let refused = |args: &'static [&'static str]| {
        let bin = &bin;
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(60), bin.run(args))
                .await
                .expect("refused at once, not run")
        }
    };
    let run = refused(&["run", "--http", "0.0.0.0:0"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--http 0.0.0.0:0") && run.stderr.contains("[http] token_file"),
        "{}",
        run.stderr
    );
    let run = refused(&["run", "--metrics", "0.0.0.0:0"]).await;
    assert_eq!(run.code, 2, "--metrics is --http: {run:?}");
    // A token file others can read: refused, naming it and its mode.
    let token = "page-token-0123456789abcdef";
    let file = bin.path("page-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    bin.append_config(&format!("[http]\ntoken_file = \"{}\"\n", file.display()));
    let run = refused(&["run", "--http", "127.0.0.1:0"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "http.token_file: {} is accessible by group or others (mode 0644)",
            file.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(token));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);

    let daemon = Daemon::start(&bin, "0.0.0.0:0", &[]).await;
    assert!(!daemon.log().contains(token), "the token is never logged");
    let history = bin.run(&["history", "beta", "--json"]).await.json();
    let run_id = history["runs"][0]["run_id"].as_str().unwrap().to_owned();
    let paths = [
        "/".to_owned(),
        "/cluster/repo/beta".into(),
        format!("/run/repo/beta/{run_id}"),
        "/api/status.json".into(),
        "/api/history.json?cluster=beta".into(),
        "/api/live.json".into(),
        "/cc.xml".into(),
        "/badge/repo/beta.svg".into(),
        "/metrics".into(),
        "/no-such-page".into(),
    ];
    let bearer = format!("Bearer {token}");
    for p in &paths {
        let url = format!("{}{p}", daemon.url);
        for (what, headers) in [
            ("nothing", vec![]),
            (
                "a wrong bearer",
                vec![("authorization", "Bearer page-token-0123456789abcdeF")],
            ),
            ("a wrong cookie", vec![("cookie", "pushgate_page=00")]),
            (
                "the token as a cookie",
                vec![("cookie", format!("pushgate_page={token}").leak() as &str)],
            ),
            (
                "basic auth",
                vec![("authorization", "Basic cGFnZTp0b2tlbg==")],
            ),
        ] {
            let g = get(&url, &headers).await;
            assert_eq!(g.status, 401, "{p} with {what}");
            assert!(
                !g.body.contains("repo") || p == "/no-such-page",
                "{p}: nothing of the clusters"
            );
            assert_eq!(g.headers["www-authenticate"], "Bearer realm=\"pushgate\"");
        }
        let wrong = get(
            &format!("{url}{}token=nope", if p.contains('?') { "&" } else { "?" }),
            &[],
        )
        .await;
        assert_eq!(wrong.status, 401, "{p} with a wrong ?token=");
        let g = get(&url, &[("authorization", &bearer)]).await;
        let expected = if p == "/no-such-page" { 404 } else { 200 };
        assert_eq!(g.status, expected, "{p} with the bearer token: {}", g.body);
    }
    // A ?token= link: back to the same page and query without the token,
    // with a cookie that holds no token, which then lets the browser in.
    let link = get(
        &format!(
            "{}/cluster/repo/beta?since=7d&token={token}&outcome=success",
            daemon.url
        ),
        &[],
    )
    .await;
    assert_eq!(link.status, 303);
    assert_eq!(
        link.headers["location"],
        "/cluster/repo/beta?since=7d&outcome=success"
    );
    let cookie = link.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("pushgate_page=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(token),
        "the cookie holds a hash, not the token"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let g = get(
        &format!("{}/cluster/repo/beta?since=7d", daemon.url),
        &[("cookie", &pair)],
    )
    .await;
    assert_eq!(g.status, 200);
    // A stale link does not lock out a browser that has the cookie.
    let g = get(
        &format!("{}/?token=an-old-token-0123456789", daemon.url),
        &[("cookie", &pair)],
    )
    .await;
    assert_eq!(g.status, 200);
    // Never a redirect to another site.
    let g = get(&format!("{}//evil.example/?token={token}", daemon.url), &[]).await;
    assert_eq!(g.headers["location"], "/");
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn with_several_apps_every_page_names_the_app_and_the_json_is_still_the_clis() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let d = bin.dir.path().display().to_string();
    let api = support::Repo::init(&bin.path("api-repo"));
    api.commit(&[("app/index.html", b"api v1\n")], "Initial api");
    let app = |name: &str, repo: &str, lock: &str, push: &str| {
        format!(
            r#"
[apps.{name}.repo]
url = "{repo}"
[apps.{name}.build]
command = ["sh", "-c", "mkdir -p dist && cp -R app/. dist/"]
output = "dist"
timeout = "60s"
[apps.{name}.clusters.beta]
schedule = "{NEVER}"
lock_project = "{lock}"
push_project = "{push}"
hosts = ["local:{d}/hosts/{name}-beta-1"]
"#
        )
    };
    let text = format!(
        r#"state_dir = "state"
[asana]
base_url = "{url}"
token_env = "{env}"
workspace = "{ws}"
retry_delay = "1ms"
[sync]
retries = 0
host_timeout = "60s"
{web}{api}"#,
        url = sb.base_url(),
        env = support::TOKEN_ENV,
        ws = seed::WORKSPACE,
        web = app("web", "repo", seed::LOCK_BETA, seed::PUSH_BETA),
        api = app("api", "api-repo", seed::LOCK_PROD, seed::PUSH_PROD),
    );
    std::fs::write(&bin.config, text).unwrap();
    for a in ["web", "api"] {
        let r = bin.run(&["--app", a, "push", "beta"]).await;
        assert_eq!(r.code, 0, "{r:?}");
    }
    support::add_lock(&sb, seed::LOCK_PROD, "api is on hold").await;
    api.commit(&[("app/index.html", b"api v2\n")], "Second api");
    let daemon = Daemon::start(&bin, "127.0.0.1:0", &[]).await;
    let api_status = get(&format!("{}/api/status.json", daemon.url), &[]).await;
    assert_eq!(
        api_status.json(),
        bin.run(&["status", "--json"]).await.json()
    );
    let only = get(&format!("{}/api/status.json?app=api", daemon.url), &[]).await;
    assert_eq!(
        only.json(),
        bin.run(&["--app", "api", "status", "--json"]).await.json()
    );
    let h = get(
        &format!("{}/api/history.json?cluster=beta", daemon.url),
        &[],
    )
    .await;
    let cli = bin.run(&["history", "beta", "--json"]).await.json();
    assert_eq!(h.json(), cli, "an array, one per app");
    assert_eq!(cli.as_array().unwrap().len(), 2);
    let h = get(
        &format!("{}/api/history.json?cluster=beta&app=api", daemon.url),
        &[],
    )
    .await;
    assert_eq!(
        h.json(),
        bin.run(&["--app", "api", "history", "beta", "--json"])
            .await
            .json()
    );

    let overview = get(&format!("{}/", daemon.url), &[]).await;
    for (key, label, state) in [
        ("web/beta", "web/beta", "open"),
        ("api/beta", "api/beta", "held"),
    ] {
        let row = overview
            .body
            .split(&format!("<tr data-live=\"{key}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("{key}: {}", overview.body));
        let row = row.split("</tr>").next().unwrap();
        assert!(row.contains(&format!("<strong>{label}</strong>")), "{row}");
        assert!(row.contains(&format!("data-state=\"{state}\"")), "{row}");
        assert!(row.contains(&format!("href=\"/cluster/{key}\"")), "{row}");
    }
    let page = get(&format!("{}/cluster/api/beta", daemon.url), &[]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<h1>api/beta — history</h1>"),
        "{}",
        page.body
    );
    let badge = get(&format!("{}/badge/api/beta.svg", daemon.url), &[]).await;
    assert!(
        badge.body.contains(">api/beta</text>") && badge.body.contains(">held</text>"),
        "{}",
        badge.body
    );
    let cc = get(&format!("{}/cc.xml", daemon.url), &[]).await;
    assert!(
        cc.body.contains("name=\"web/beta\"") && cc.body.contains("name=\"api/beta\""),
        "{}",
        cc.body
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_runs_page_says_which_asana_writes_wait_until_a_later_run_sends_them() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    bin.set_config_line("schedule", &format!("schedule = \"{NEVER}\""));
    // Asana takes the push task, then no comment: the rest is queued.
    support::faults(&sb, |f| {
        f.only = Some("POST /tasks/*/stories".into());
        f.fail_next = 1_000;
        f.fail_status = 503;
    });
    let pushed = bin.run(&["push", "beta"]).await;
    assert_eq!(pushed.code, 0, "{pushed:?}");
    assert!(
        pushed.stderr.contains("queued in the outbox"),
        "{}",
        pushed.stderr
    );
    let history = bin.run(&["history", "beta", "--json"]).await.json();
    let id = history["runs"][0]["run_id"].as_str().unwrap().to_owned();
    let daemon = Daemon::start(&bin, "127.0.0.1:0", &[]).await;
    let url = format!("{}/run/repo/beta/{id}", daemon.url);
    let run = get(&url, &[]).await;
    let queued = run.body.matches("<tr data-state=\"queued\"").count();
    assert!(
        queued >= 2,
        "comments and the completion wait: {}",
        run.body
    );
    assert!(
        run.body
            .contains(&format!("{queued} still queued in the outbox")),
        "{}",
        run.body
    );
    assert!(
        run.body.contains("<tr data-state=\"applied\""),
        "the push task was created"
    );
    let overview = get(&format!("{}/", daemon.url), &[]).await;
    assert!(
        overview.body.contains("queued; the next run replays them"),
        "{}",
        overview.body
    );
    // Asana is back: the next run sends them, and the page says so.
    sb.set_faults(Default::default());
    assert_eq!(
        bin.run(&["push", "beta"]).await.code,
        0,
        "nothing new, and the queue replayed"
    );
    let run = get(&url, &[]).await;
    assert_eq!(
        run.body.matches("<tr data-state=\"queued\"").count(),
        0,
        "{}",
        run.body
    );
    assert!(run.body.contains("None queued."), "{}", run.body);
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_rollback_has_its_page_with_its_hosts_and_the_lock_it_left() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    bin.set_config_line("schedule", &format!("schedule = \"{NEVER}\""));
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let back = bin.run(&["rollback", "beta"]).await;
    assert_eq!(back.code, 0, "{back:?}");
    let history = bin.run(&["history", "beta", "--json"]).await.json();
    let last = history["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "rollback");
    let daemon = Daemon::start(&bin, "127.0.0.1:0", &[]).await;
    let id = last["run_id"].as_str().unwrap();
    let run = get(&format!("{}/run/repo/beta/{id}", daemon.url), &[]).await;
    assert_eq!(run.status, 200);
    assert!(run.body.contains("<h1>beta rollback "), "{}", run.body);
    assert!(
        run.body.contains("class=\"state good\">success</span>"),
        "{}",
        run.body
    );
    for step in ["prepare", "record", "switch"] {
        assert!(
            run.body.contains(&format!("data-step=\"{step}\"")),
            "{step}: {}",
            run.body
        );
    }
    let release = last["release"].as_str().unwrap();
    assert_eq!(
        run.body
            .matches(&format!("<td>runs {release}</td>"))
            .count(),
        3,
        "{}",
        run.body
    );
    let lock = sb
        .with_data(|d| d.projects[seed::LOCK_BETA].tasks.clone())
        .unwrap();
    assert_eq!(lock.len(), 1, "the rollback's lock task");
    let origin = sb.base_url().trim_end_matches("/api/1.0").to_owned();
    assert!(
        run.body.contains(&format!(
            "href=\"{origin}/0/{}/{}\"",
            seed::LOCK_BETA,
            lock[0]
        )),
        "{}",
        run.body
    );
    // The overview: beta is held by that lock now, as status says.
    let status = bin.run(&["status", "beta", "--json"]).await.json();
    assert_eq!(status["clusters"][0]["state"], "held");
    let overview = get(&format!("{}/", daemon.url), &[]).await;
    assert!(
        overview
            .body
            .contains("data-live=\"repo/beta\" data-state=\"held\""),
        "{}",
        overview.body
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test]
async fn a_hosts_file_that_cannot_be_read_is_said_on_the_page_as_status_says_it() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    bin.set_config_line("schedule", &format!("schedule = \"{NEVER}\""));
    let hosts = bin.path("beta-hosts");
    std::fs::write(
        &hosts,
        format!("local:{}\n", bin.path("hosts/beta-1").display()),
    )
    .unwrap();
    let text = std::fs::read_to_string(&bin.config).unwrap();
    let inline = text
        .lines()
        .find(|l| l.starts_with("hosts = [\"local:") && l.contains("beta-1"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &bin.config,
        text.replace(&inline, &format!("hosts_file = \"{}\"", hosts.display())),
    )
    .unwrap();
    let daemon = Daemon::start(&bin, "127.0.0.1:0", &[]).await;
    std::fs::remove_file(&hosts).unwrap();
    let status = bin.run(&["status"]).await;
    assert_eq!(status.code, 2, "{status:?}");
    let page = get(&format!("{}/", daemon.url), &[]).await;
    assert_eq!(page.status, 200);
    let said = status
        .stderr
        .trim()
        .trim_start_matches("pushgate: ")
        .to_owned();
    assert!(
        page.body
            .contains("The clusters' state could not be gathered: "),
        "{}",
        page.body
    );
    let shown = said
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    assert!(page.body.contains(&shown), "{said}: {}", page.body);
    assert_eq!(daemon.stop().await, 0);
}

/// An approval that holds prod is said once on the overview — the verdict
/// `status` prints, and one link to the approval task, built from its
/// gids — and the page's JSON says the request is pending, as the CLI's.
#[tokio::test]
async fn an_approval_holding_prod_is_said_once_with_a_link_to_its_task() {
    let sb = support::sandbox().await;
    let (bin, project) = crate::approvals::gated(&sb, "").await;
    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace(BETA_SCHEDULE, NEVER)
        .replace(PROD_SCHEDULE, NEVER);
    std::fs::write(&bin.config, text).unwrap();
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let held = bin.run(&["push", "prod"]).await;
    assert_eq!(held.code, 3, "held by its approval: {held:?}");
    let gid = support::tasks(&sb, &project)[0].gid.clone();

    let daemon = Daemon::start(&bin, "127.0.0.1:0", &[]).await;
    let page = get(&format!("{}/", daemon.url), &[]).await;
    assert_eq!(page.status, 200);
    let at = page.body.find("data-live=\"repo/prod\"").unwrap();
    let row = &page.body[at..at + page.body[at..].find("</tr>").unwrap()];
    assert!(row.contains("data-state=\"held\""), "{row}");
    assert_eq!(
        row.matches("awaiting approval").count(),
        1,
        "said once: {row}"
    );
    let link = format!(
        "href=\"{}/0/{project}/{gid}\"",
        sb.base_url().trim_end_matches("/api/1.0")
    );
    assert_eq!(row.matches(&link).count(), 1, "one link to {link}: {row}");
    assert_eq!(row.matches(">approval task</a>").count(), 1, "{row}");

    let status = get(&format!("{}/api/status.json?cluster=prod", daemon.url), &[]).await;
    let cli = bin.run(&["status", "prod", "--json"]).await;
    let (page_json, cli_json) = (status.json(), cli.json());
    assert_eq!(
        page_json["clusters"][0]["approval"], cli_json["clusters"][0]["approval"],
        "the page's JSON is the CLI's"
    );
    assert_eq!(
        page_json["clusters"][0]["approval"]["state"], "pending",
        "{page_json:#}"
    );
    assert_eq!(daemon.stop().await, 0);
}

/// Requests written in Asana are listed on the overview where they stand,
/// as `pushgate requests` says, each linked to its task by gids; a hostile
/// name is text.
#[tokio::test]
async fn the_overview_lists_the_requests_where_they_stand() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let project = crate::approvals::approval_project(&sb, "Release requests").await;
    bin.append_config(&format!(
        "[requests]\nproject = \"{project}\"\nallowed = [\"{}\"]\n",
        seed::APPROVER_EMAIL
    ));
    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace(BETA_SCHEDULE, NEVER)
        .replace(PROD_SCHEDULE, NEVER);
    std::fs::write(&bin.config, text).unwrap();
    let ask = |name: String| {
        let sb = &sb;
        let project = project.clone();
        async move {
            let mut raw = crate::support::Raw::new(sb);
            raw.token = sb.token_of(seed::APPROVER_EMAIL).unwrap();
            let (s, v) = raw
                .post(
                    "/tasks",
                    serde_json::json!({"data": {"name": name, "projects": [project]}}),
                )
                .await;
            assert_eq!(s, 201, "{v}");
            v["data"]["gid"].as_str().unwrap().to_owned()
        }
    };
    let lock = ask("lock beta".into()).await;
    let hostile = ask(format!("push {HOSTILE}")).await;
    let config = pushgate::config::Config::load(&bin.config).unwrap();
    let (client, _) = support::client(&sb);
    let env = pushgate::cmd::Env::from_parts(config, client);
    pushgate::cmd::requests::poll(&[&env], chrono::Utc::now(), false)
        .await
        .unwrap();
    let cli = bin.run(&["requests", "--json"]).await;
    assert_eq!(cli.code, 0, "{cli:?}");
    let standing = |gid: &str| {
        cli.json()["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["gid"] == gid)
            .map(|r| r["standing"].as_str().unwrap().to_owned())
            .unwrap()
    };

    let daemon = Daemon::start(&bin, "127.0.0.1:0", &[]).await;
    let page = get(&format!("{}/", daemon.url), &[]).await;
    assert_eq!(page.status, 200);
    let at = page
        .body
        .find("<table id=\"requests\"")
        .expect("a requests table");
    let table = &page.body[at..at + page.body[at..].find("</table>").unwrap()];
    let origin = sb.base_url().trim_end_matches("/api/1.0").to_owned();
    for (gid, name) in [
        (&lock, "lock beta".to_owned()),
        (&hostile, "push ".to_owned()),
    ] {
        let link = format!("<a class=\"request\" href=\"{origin}/0/{project}/{gid}\">{name}");
        assert!(table.contains(&link), "{link}\n{table}");
        let row_at = table.find(&link).unwrap();
        let row = &table[row_at..row_at + table[row_at..].find("</tr>").unwrap()];
        assert!(
            row.contains(&format!("<td>{}", standing(gid))),
            "{gid} stands as the CLI says ({}): {row}",
            standing(gid)
        );
    }
    assert!(
        !table.contains("<script>"),
        "the hostile name is text: {table}"
    );
    assert!(table.contains("&lt;script&gt;"), "{table}");
    assert_eq!(daemon.stop().await, 0);
}
