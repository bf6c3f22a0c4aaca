//! The on-call page in a real browser: Debian's Chromium, headless, driven
//! by playwright-core (`tests/browser/page.js`, pinned in its
//! `package-lock.json`) against the real daemon and the sandbox, after real
//! pushes. One scheduled push is held by FIFOs — in its build, then with
//! beta-3's rsync waiting — so the overview is seen updating in place
//! (hosts staged of total, bytes sent) and reloading itself once the push
//! is done; then the run, cluster and feed pages, the charts' axes and
//! legends, the hostile corpus (nothing of it runs), and off loopback the
//! token. Screenshots go to `target/page-screenshots/` for people to look
//! at. Skipped where node, playwright-core or Chromium is missing, but
//! never under `CI=true`: `.ci/run` installs them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::page::{Daemon, World, NEVER};
use crate::support::{self, Bin, Setup};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Whether the browser tests can run here; under `CI=true` they must.
fn ready() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let driver = Path::new(DIR)
        .join("node_modules/playwright-core/package.json")
        .exists();
    if node && driver && chromium().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must install node, Chromium (apt-get install chromium) and playwright-core (cd tests/browser && npm ci)"
    );
    eprintln!(
        "skipped: node, chromium or playwright-core (tests/browser: npm ci) is not installed"
    );
    false
}

fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/page-screenshots")
}

/// Runs one scenario of `page.js`; its output, asserting it passed.
async fn browse(args: serde_json::Value) -> String {
    let out = tokio::process::Command::new("node")
        .arg(format!("{DIR}/page.js"))
        .arg(args.to_string())
        .current_dir(DIR)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("checks passed"), "{stdout}");
    stdout
}

fn mkfifo(p: &Path) {
    assert!(std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap()
        .success());
}

/// Lets whatever still waits on a FIFO go (a failed test must not leave a
/// build or an rsync waiting): a writer that does not wait for a reader.
fn release(fifos: &[PathBuf]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for f in fifos {
        if let Ok(mut w) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(f)
        {
            let _ = w.write_all(b"go\n");
        }
    }
}

#[tokio::test]
async fn a_push_updates_the_page_live_and_every_page_renders_in_chromium() {
    if !ready() {
        return;
    }
    let w = World::new(Setup::default()).await;
    let d = w.bin.dir.path().to_owned();
    let (started, go, stage_go) = (d.join("started"), d.join("go"), d.join("stage-go"));
    for f in [&started, &go, &stage_go] {
        mkfifo(f);
    }
    // rsync, as the daemon finds it: beta-3's waits for the test once.
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v rsync"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrappers = d.join("bin");
    std::fs::create_dir_all(&wrappers).unwrap();
    let dd = d.display();
    std::fs::write(
        wrappers.join("rsync"),
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  */hosts/beta-3/*) if [ -f '{dd}/block-stage' ]; then rm -f '{dd}/block-stage'; read go < '{dd}/stage-go'; fi ;;\nesac\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        wrappers.join("rsync"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        wrappers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A new commit; beta's schedule fires every second; its build and
    // beta-3's stage wait for the browser.
    let live = w.bin.repo.commit(
        &[("app/index.html", b"v4\n")],
        "Live <script>window.__pwned=6</script>",
    );
    std::fs::write(d.join("block"), "").unwrap();
    std::fs::write(d.join("block-stage"), "").unwrap();
    let text = std::fs::read_to_string(&w.bin.config).unwrap();
    let beta_schedule = format!("schedule = \"{NEVER}\"");
    let text = text.replacen(&beta_schedule, "schedule = \"* * * * * *\"", 1);
    std::fs::write(&w.bin.config, text).unwrap();
    let daemon = Daemon::start(&w.bin, "127.0.0.1:0", &[("PATH", &path)]).await;
    let s = started.clone();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::task::spawn_blocking(move || std::fs::read_to_string(s).unwrap()),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the scheduled push did not start its build:\n{}",
            daemon.log()
        )
    })
    .unwrap();
    let out = tokio::process::Command::new("node")
        .arg(format!("{DIR}/page.js"))
        .arg(
            serde_json::json!({
                "scenario": "tour",
                "url": daemon.url,
                "shots": shots(),
                "go": go,
                "stageGo": stage_go,
                "pushed": live,
            })
            .to_string(),
        )
        .current_dir(DIR)
        .output()
        .await
        .unwrap();
    release(&[go, stage_go]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n--- the daemon's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    assert!(
        stdout.contains("tour: ") && stdout.contains("checks passed"),
        "{stdout}"
    );
    daemon.wait_log("\"pushed\"").await;
    assert_eq!(daemon.stop().await, 0);
    for h in 1..=3 {
        assert!(
            w.bin.current(h).unwrap().contains(&live[..12]),
            "beta-{h} runs the live push"
        );
    }
    for shot in [
        "overview-live.png",
        "overview.png",
        "run.png",
        "cluster.png",
    ] {
        assert!(shots().join(shot).exists(), "{shot}");
    }
}

#[tokio::test]
async fn off_loopback_the_browser_gets_nothing_without_the_token() {
    if !ready() {
        return;
    }
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    bin.set_config_line("schedule", &format!("schedule = \"{NEVER}\""));
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let token = format!("{:032x}", fastrand::u128(..));
    let file = bin.path("page-token");
    std::fs::write(&file, &token).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    bin.append_config(&format!("[http]\ntoken_file = \"{}\"\n", file.display()));
    let daemon = Daemon::start(&bin, "0.0.0.0:0", &[]).await;
    browse(serde_json::json!({
        "scenario": "token",
        "url": daemon.url,
        "shots": shots(),
        "token": token,
    }))
    .await;
    assert_eq!(daemon.stop().await, 0);
}
