//! The token leaks nowhere (SPEC §7): every place it could reach is read
//! after real runs — stdout and stderr at every verbosity and both log
//! formats, failed runs' errors, a refused token's error, `Debug` of the
//! config, the token and the client, the environments of the build, of
//! rsync and of `after_switch`, every file of the state directory (journal,
//! outbox, history), and every task's notes and comments in the sandbox.

use std::path::Path;

use pushgate::sandbox::Faults;

use crate::support::{self, comments, Bin, Run, Setup};

fn holds(bytes: &[u8], token: &str) -> bool {
    bytes.windows(token.len()).any(|w| w == token.as_bytes())
}

fn assert_clean(run: &Run, token: &str, what: &str) {
    assert!(
        !run.stdout.contains(token),
        "{what}: the token is on stdout"
    );
    assert!(
        !run.stderr.contains(token),
        "{what}: the token is on stderr"
    );
}

fn assert_no_file_holds(dir: &Path, token: &str) -> usize {
    let mut stack = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                files += 1;
                let bytes = std::fs::read(e.path()).unwrap();
                assert!(
                    !holds(&bytes, token),
                    "{} holds the token",
                    e.path().display()
                );
            }
        }
    }
    files
}

#[tokio::test]
async fn the_token_is_nowhere_a_push_rollback_or_failure_could_put_it() {
    let sb = support::sandbox().await;
    let token = sb.token();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // rsync is a wrapper that records its environment, then runs rsync.
    let real = ["/usr/bin/rsync", "/bin/rsync", "/usr/local/bin/rsync"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(real) = real else {
        assert!(
            std::env::var_os("CI").is_none(),
            "rsync is missing under CI"
        );
        eprintln!("skipping: rsync is not installed");
        return;
    };
    let wrappers = dir.path().join("bin");
    std::fs::create_dir_all(&wrappers).unwrap();
    let wrapper = wrappers.join("rsync");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nenv >> '{d}/rsync-env.txt'\nexec {real} \"$@\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = Bin::with(
        &sb,
        Setup {
            sync: format!(r#"after_switch = ["sh", "-c", "env >> '{d}/after-switch-env.txt'"]"#),
            ..Setup::default()
        },
    );
    let path = format!(
        "{}:{}",
        wrappers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The token also sits in a second variable: children lose that one too.
    let vars = [("PATH", path.as_str()), ("SOME_COPY", token.as_str())];
    let run = |args: Vec<&'static str>| {
        let bin = &bin;
        let vars = &vars;
        let token = token.clone();
        async move { bin.run_env(&args, &token, vars).await }
    };
    let mut runs = Vec::new();
    for v in ["-qq", "-q", "-v", "-vv", "-vvv"] {
        runs.push((
            format!("dry run {v}"),
            run(vec!["push", "beta", "--dry-run", v]).await,
        ));
        runs.push((
            format!("status {v} json logs"),
            run(vec!["status", v, "--log-format", "json"]).await,
        ));
    }
    let first = run(vec!["push", "beta", "-vvv"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    runs.push(("push -vvv".into(), first));
    // A push whose writes Asana refuses: they sit in the outbox.
    bin.repo.commit(&[("app/index.html", b"v2\n")], "v2");
    sb.set_faults(Faults {
        only: Some("POST /tasks/*/stories".into()),
        fail_next: u32::MAX,
        fail_status: 503,
        ..Faults::default()
    });
    let queued = run(vec!["push", "beta", "-vvv", "--log-format", "json"]).await;
    assert_eq!(queued.code, 0, "{queued:?}");
    assert!(queued.stderr.contains("queued"), "{}", queued.stderr);
    let state_files = assert_no_file_holds(&bin.path("state"), &token);
    assert!(
        state_files > 5,
        "the state dir was read ({state_files} files)"
    );
    runs.push(("queued push".into(), queued));
    sb.set_faults(Faults::default());
    // A push killed mid-stage, recovered by a rollback.
    bin.repo.commit(&[("app/index.html", b"v3\n")], "v3");
    let mut killed_vars = vars.to_vec();
    killed_vars.push((pushgate::adapters::failpoint::ENV, "stage:host"));
    let killed = bin
        .run_env(&["push", "beta", "-vvv"], &token, &killed_vars)
        .await;
    assert_eq!(killed.signal, Some(9), "{killed:?}");
    runs.push(("killed push".into(), killed));
    runs.push((
        "rollback -vvv".into(),
        run(vec!["rollback", "beta", "-vvv"]).await,
    ));
    // A failing build, and a refused token.
    bin.set_config_line(
        "command",
        r#"command = ["sh", "-c", "env; echo boom >&2; exit 3"]"#,
    );
    bin.repo.commit(&[("app/index.html", b"v4\n")], "v4");
    let failed = run(vec!["push", "beta", "-vvv"]).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    runs.push(("failed build".into(), failed));
    let refused = bin
        .run_env(
            &["push", "beta", "--commit", "main", "-vvv"],
            "not-the-token-but-secret-too",
            &vars,
        )
        .await;
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(!refused.stderr.contains("not-the-token-but-secret-too"));
    assert!(!refused.stdout.contains("not-the-token-but-secret-too"));
    runs.push(("refused token".into(), refused));

    for (what, r) in &runs {
        assert_clean(r, &token, what);
    }
    for file in [
        bin.path("build-env.txt"),
        dir.path().join("rsync-env.txt"),
        dir.path().join("after-switch-env.txt"),
    ] {
        let file = file.display();
        let text = std::fs::read_to_string(file.to_string())
            .unwrap_or_else(|e| panic!("{file}: the child ran and wrote its environment ({e})"));
        assert!(text.contains("PATH="), "{file}: an environment was written");
        assert!(!text.contains(&token), "{file} holds the token");
        assert!(
            !text.contains(support::TOKEN_ENV),
            "{file} names the token's variable"
        );
        assert!(!text.contains("SOME_COPY"), "{file} has the token's copy");
    }
    assert_no_file_holds(&bin.path("state"), &token);
    let (notes, stories) = sb
        .with_data(|d| {
            let notes: Vec<String> = d
                .tasks
                .values()
                .map(|t| format!("{}\n{}", t.name, t.notes))
                .collect();
            let stories: Vec<String> = d.tasks.values().flat_map(comments).collect();
            (notes, stories)
        })
        .unwrap();
    assert!(notes.len() >= 3 && !stories.is_empty());
    for t in notes.iter().chain(&stories) {
        assert!(
            !t.contains(&token),
            "an Asana task or comment holds the token: {t}"
        );
    }
}

#[tokio::test]
async fn debug_of_the_config_the_token_and_the_client_never_shows_it() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let token = sb.token();
    // The token from a file (no process-wide environment to change).
    let file = bin.path("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&bin.config).unwrap().replace(
        &format!("token_env = \"{}\"", support::TOKEN_ENV),
        &format!("token_file = {:?}", file.display().to_string()),
    );
    let config = pushgate::config::Config::parse(&text, bin.dir.path()).unwrap();
    let source = config.asana.token.clone().unwrap();
    let t = pushgate::adapters::asana::Token::read(&source).unwrap();
    let (client, _) = support::client(&sb);
    let env = pushgate::cmd::Env::from_parts(config.clone(), client.clone());
    for (what, dbg) in [
        ("config", format!("{config:?} {config:#?}")),
        ("token", format!("{t:?} {t:#?}")),
        ("client", format!("{client:?} {client:#?}")),
        ("child env", format!("{:?}", env.child_env)),
    ] {
        assert!(!dbg.contains(&token), "Debug of the {what} shows the token");
    }
    // An error about the token names its source, not its value.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = pushgate::adapters::asana::Token::read(&source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("token file") && !err.contains(&token), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&file, format!("{token} extra\n")).unwrap();
    let err = pushgate::adapters::asana::Token::read(&source)
        .unwrap_err()
        .to_string();
    assert!(!err.contains(&token), "{err}");
}
