//! What a person at a terminal sees: `status` as a table, coloured only on
//! a terminal and never with NO_COLOR; progress bars only on a terminal;
//! `history` statistics; shell completions and the man page. A terminal is
//! a real pseudo-terminal from util-linux's `script`.

use crate::support::{self, seed, Bin, Run};

fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must have util-linux's `script`: {why}"
    );
    eprintln!("skipped: {why}");
}

fn have_script() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the binary on a pseudo-terminal (stdout and stderr both), with
/// extra variables; returns what the terminal showed.
async fn on_terminal(bin: &Bin, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut line = format!(
        "'{}' --config '{}'",
        env!("CARGO_BIN_EXE_pushgate"),
        bin.config.display()
    );
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let out = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env(support::TOKEN_ENV, &bin.token)
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Run::from(out)
}

#[tokio::test]
async fn status_is_a_table_coloured_only_on_a_terminal_without_no_color() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    support::add_lock(&sb, seed::LOCK_PROD, "prod freeze for the sale").await;

    let run = bin.run(&["status"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stdout.contains('\u{1b}'),
        "no colour into a pipe: {}",
        run.stdout
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("CLUSTER  STATE  DEPLOYED  SINCE") && lines[0].ends_with("NEXT PUSH"),
        "{}",
        run.stdout
    );
    let short = &bin.first[..7];
    assert!(
        lines[1].starts_with(&format!("beta     open   {short}"))
            && lines[1].contains("push ")
            && lines[1].contains(" ok  "),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("prod     held   -") && lines[2].contains("1 open"),
        "{}",
        run.stdout
    );
    // Every column starts where its header does.
    let col = |l: &str, h: &str| lines[0].find(h).map(|i| l[i..i + 1].to_owned());
    assert_eq!(col(lines[1], "LOCKS"), Some("n".into()), "{}", run.stdout);
    assert_eq!(col(lines[2], "LOCKS"), Some("1".into()), "{}", run.stdout);
    // Then the details, with the links.
    assert!(
        run.stdout.contains("locks: 1 open — pushes are held")
            && run
                .stdout
                .contains("\"prod freeze for the sale\" (assignee: Sandbox User)"),
        "{}",
        run.stdout
    );

    if !have_script() {
        return skip("util-linux's `script` is not installed");
    }
    let tty = on_terminal(&bin, &["status"], &[]).await;
    assert_eq!(tty.code, 0, "{tty:?}");
    assert!(
        tty.stdout.contains("\u{1b}[31m"),
        "red on a terminal: {:?}",
        tty.stdout
    );
    let plain = on_terminal(&bin, &["status"], &[("NO_COLOR", "1")]).await;
    assert!(plain.stdout.contains("CLUSTER"), "{plain:?}");
    assert!(
        !plain.stdout.contains("\u{1b}["),
        "NO_COLOR is respected: {:?}",
        plain.stdout
    );
}

#[tokio::test]
async fn progress_bars_only_on_a_terminal() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin.run(&["push", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains("staging [") && !text.contains('\u{1b}'),
            "{text}"
        );
    }
    assert!(
        run.stdout.contains("stage: 3/3 hosts staged"),
        "{}",
        run.stdout
    );

    if !have_script() {
        return skip("util-linux's `script` is not installed");
    }
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    let tty = on_terminal(&bin, &["push", "beta"], &[]).await;
    assert_eq!(tty.code, 0, "{tty:?}");
    // The bar (its first frame at least: later ones are rate-limited).
    assert!(
        tty.stdout.contains("staging [") && tty.stdout.contains("/3 hosts · "),
        "{:?}",
        tty.stdout
    );
    assert!(
        tty.stdout.contains("stage: 3/3 hosts staged"),
        "the plain line follows the bar: {:?}",
        tty.stdout
    );
    // --json is for scripts: no bar even on a terminal.
    bin.repo.commit(&[("app/index.html", b"v3\n")], "Third");
    let tty = on_terminal(&bin, &["push", "beta", "--json"], &[]).await;
    assert_eq!(tty.code, 0, "{tty:?}");
    assert!(!tty.stdout.contains("staging ["), "{:?}", tty.stdout);
}

#[tokio::test]
async fn history_gives_success_rate_percentiles_pushes_a_day_and_holds_by_reason() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    bin.repo.commit(&[("app/index.html", b"v2\n")], "Second");
    let lock = support::add_lock(&sb, seed::LOCK_BETA, "hold").await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 3);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 3);
    support::complete(&sb, &lock).await;
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);

    let v = bin
        .run(&["history", "beta", "--json", "--since", "7d"])
        .await
        .json();
    let st = &v["stats"];
    assert_eq!(st["pushes"], 2, "{v:#}");
    assert_eq!(st["succeeded"], 2);
    assert_eq!(st["success_rate"], 1.0);
    assert_eq!(st["holds"]["locked"], 2, "{v:#}");
    assert_eq!(st["days"], 7.0);
    assert!(st["p90_duration_ms"].as_u64().unwrap() >= st["median_duration_ms"].as_u64().unwrap());
    assert!((st["pushes_per_day"].as_f64().unwrap() - 2.0 / 7.0).abs() < 1e-9);

    let run = bin.run(&["history", "beta"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("2 pushes, 2 succeeded (100%), 0 failed; 0 rollbacks")
            && run.stdout.contains("successful push duration: median ")
            && run.stdout.contains(", p90 ")
            && run
                .stdout
                .contains("2.0 pushes a day; 2 held runs: locked 2"),
        "{}",
        run.stdout
    );
    let run = bin.run(&["history", "beta", "--since", "2999-01-01"]).await;
    assert!(
        run.stdout
            .contains("no pushes or holds recorded since 2999-01-01"),
        "{run:?}"
    );
    let run = bin
        .run(&["history", "beta", "--since", "last tuesday"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
}

#[tokio::test]
async fn completions_and_the_man_page_are_generated_from_the_command_line() {
    let out = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .args(args)
            .env_remove("PUSHGATE_CONFIG")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let bash = out(&["completions", "bash"]);
    assert!(
        bash.contains("_pushgate()") && bash.contains("rollback") && bash.contains("--dry-run")
    );
    assert!(out(&["completions", "zsh"]).starts_with("#compdef pushgate"));
    assert!(out(&["completions", "fish"]).contains("complete -c pushgate"));
    let man = out(&["man"]);
    assert!(
        man.contains(".TH pushgate 1") && man.contains("rollback"),
        "{man}"
    );

    let dir = tempfile::tempdir().unwrap();
    out(&["man", "--dir", dir.path().to_str().unwrap()]);
    for page in [
        "pushgate.1",
        "pushgate-push.1",
        "pushgate-history.1",
        "pushgate-check.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let push = std::fs::read_to_string(dir.path().join("pushgate-push.1")).unwrap();
    assert!(push.contains("dry\\-run"), "{push}");
}
