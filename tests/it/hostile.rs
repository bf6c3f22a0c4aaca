//! Hostile input, end to end through the real binary: task names and notes
//! with shell metacharacters, newlines, control characters and 100 KB of
//! text; commit messages that are not UTF-8; fix values and `--commit`
//! values shaped like options, command substitutions or ambiguous short
//! shas; hosts named like ssh options; configs with wrong types, unknown
//! keys and bad paths.
//!
//! Each is refused with a clear error (exit 2 naming the key or value) or
//! handled safely: no panic, output escaped and bounded, and nothing
//! reaches a shell — every payload would create a marker file, which must
//! never exist.

use std::path::{Path, PathBuf};

use pushgate::sandbox::store::TaskRec;
use pushgate::sandbox::Sandbox;
use serde_json::{json, Value};

use crate::support::{self, seed, Bin, Raw, Run};

/// Text that runs `touch MARKER` if any shell ever sees it, in every way a
/// shell could: substitution, backticks, a separator, a pipe, a newline.
fn payload(marker: &Path) -> String {
    let m = marker.display();
    format!("$(touch {m})`touch {m}`; touch {m} | touch {m}\ntouch {m}\n")
}

/// Control characters a terminal acts on: clear screen, bell, carriage
/// return, backspace, NUL.
const CONTROLS: &str = "\u{1b}[2J\u{7}\r\u{8}\u{0}";

/// A marker file that must never appear.
struct Marker(PathBuf);

impl Marker {
    fn new(bin: &Bin) -> Marker {
        Marker(bin.path("pwned"))
    }
    fn assert_absent(&self, after: &str) {
        assert!(
            !self.0.exists(),
            "a shell ran a payload ({after}): {} exists",
            self.0.display()
        );
    }
}

/// A run that did not panic and printed no raw control character.
fn inert(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for c in ['\u{1b}', '\u{7}', '\r', '\u{8}', '\u{0}'] {
        assert!(
            !run.stdout.contains(c) && !run.stderr.contains(c),
            "raw {c:?} in the output: {run:?}"
        );
    }
}

fn task(sb: &Sandbox, gid: &str) -> TaskRec {
    sb.with_data(|d| d.tasks[gid].clone()).unwrap()
}

use crate::support::comments;

async fn create(sb: &Sandbox, data: Value) -> String {
    let (s, t) = Raw::new(sb).post("/tasks", json!({ "data": data })).await;
    assert_eq!(s, 201, "{t}");
    t["data"]["gid"].as_str().unwrap().to_owned()
}

fn push_tasks(sb: &Sandbox) -> usize {
    sb.with_data(|d| d.projects[seed::PUSH_BETA].tasks.len())
        .unwrap()
}

/// Writes a commit object with these raw bytes as author name and message
/// (git2's `commit` only takes UTF-8) on top of main, and moves main to it.
fn raw_commit(repo: &Path, author: &[u8], message: &[u8]) -> String {
    let repo = git2::Repository::open(repo).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let mut raw = format!("tree {}\nparent {}\nauthor ", head.tree_id(), head.id()).into_bytes();
    raw.extend_from_slice(author);
    raw.extend_from_slice(b" <x@example.com> 1700000000 +0000\n");
    raw.extend_from_slice(b"committer C <c@example.com> 1700000000 +0000\n\n");
    raw.extend_from_slice(message);
    let id = repo
        .odb()
        .unwrap()
        .write(git2::ObjectType::Commit, &raw)
        .unwrap();
    repo.reference("refs/heads/main", id, true, "a raw commit")
        .unwrap();
    id.to_string()
}

/// Two files whose blob ids share their first 7 hex digits, committed:
/// that prefix is then ambiguous in the repository.
fn ambiguous_prefix(bin: &Bin) -> String {
    let mut seen = std::collections::HashMap::new();
    let (prefix, a, b) = (0u32..)
        .find_map(|i| {
            let body = format!("collide {i}\n");
            let id = git2::Oid::hash_object(git2::ObjectType::Blob, body.as_bytes()).unwrap();
            let prefix = id.to_string()[..7].to_owned();
            seen.insert(prefix.clone(), body.clone())
                .map(|other| (prefix, other, body))
        })
        .unwrap();
    bin.repo.commit(
        &[("app/a.txt", a.as_bytes()), ("app/b.txt", b.as_bytes())],
        "two blobs that share a prefix",
    );
    prefix
}

#[tokio::test]
async fn hostile_lock_task_text_is_printed_escaped_and_bounded_and_never_run() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let marker = Marker::new(&bin);
    let huge = "A".repeat(100 * 1024);
    let name = format!("{CONTROLS}second line {}{huge}", payload(&marker.0));
    let notes = format!(
        "{huge}\n{}\nFixed-in: {}",
        payload(&marker.0),
        payload(&marker.0).lines().next().unwrap()
    );
    let gid = create(
        &sb,
        json!({ "name": name, "notes": notes, "assignee": "me", "projects": [seed::LOCK_BETA] }),
    )
    .await;
    assert_eq!(
        task(&sb, &gid).name,
        name,
        "the sandbox keeps the text as sent"
    );

    for args in [
        &["push", "beta", "--dry-run"][..],
        &["push", "beta"],
        &["status", "beta"],
    ] {
        let run = bin.run(args).await;
        inert(&run, if args[0] == "status" { 0 } else { 3 });
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(&gid))
            .unwrap_or_else(|| panic!("{args:?}: the lock is named: {}", run.stdout));
        // One line per task, its control characters shown as escapes, the
        // name cut short.
        assert!(
            line.contains(r"\u{1b}[2J\u{7}\r\u{8}\u{0}second line $(touch "),
            "{line}"
        );
        assert!(line.chars().count() < 600, "{}", line.chars().count());
        assert!(run.stdout.len() < 4000, "{args:?}: {}", run.stdout.len());
        assert!(
            line.contains("is not usable: not a commit id"),
            "the Fixed-in value is refused: {line}"
        );
        marker.assert_absent(&format!("{args:?}"));
    }
    assert_eq!(push_tasks(&sb), 0, "a held push creates no push task");

    // Scripts get the exact text, as JSON.
    let run = bin.run(&["status", "beta", "--json"]).await;
    inert(&run, 0);
    let v = run.json();
    let locks = v["clusters"][0]["locks"]
        .as_array()
        .or_else(|| v[0]["locks"].as_array())
        .or_else(|| v["locks"].as_array())
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(locks[0]["name"], name.as_str());

    // The task was told once that its fix value is unusable: escaped, short.
    let told: Vec<String> = comments(&task(&sb, &gid))
        .into_iter()
        .filter(|c| c.contains("cannot use the fix commit value"))
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].len() < 1000 && told[0].contains("`$(touch "),
        "{}",
        told[0]
    );
    marker.assert_absent("the end");
}

#[tokio::test]
async fn hostile_crash_tasks_and_fix_values_are_refused_and_never_run() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let marker = Marker::new(&bin);
    let p = payload(&marker.0);
    let huge = "B".repeat(100 * 1024);
    let ambiguous = ambiguous_prefix(&bin);
    // A branch named like a sha, pointing at a commit beta will run.
    let fake = if bin.first.starts_with("deadbee") {
        "beefdea"
    } else {
        "deadbee"
    };
    {
        let repo = git2::Repository::open(&bin.repo.path).unwrap();
        let first = repo
            .find_commit(git2::Oid::from_str(&bin.first).unwrap())
            .unwrap();
        repo.branch(fake, &first, false).unwrap();
    }

    // Crash tasks whose fix values are each hostile in one way.
    let mut crash = Vec::new();
    for (i, value) in [
        format!("$(touch {})", marker.0.display()),
        "--upload-pack=touch /tmp/x".to_owned(),
        ambiguous.clone(),
        fake.to_owned(),
        format!("{}{huge}", &bin.first[..7]),
    ]
    .iter()
    .enumerate()
    {
        let field = json!({ seed::FIX_COMMIT_FIELD: value.chars().take(1024).collect::<String>() });
        let gid = create(
            &sb,
            json!({
                "name": format!("crash {i}: {p}{CONTROLS}{huge}"),
                "notes": format!("{huge}\n{p}\nFixed-in: {value}"),
                "projects": [seed::CRASH],
                "custom_fields": field,
            }),
        )
        .await;
        crash.push(gid);
    }
    // A hostile name around a good fix: closed like any other.
    let good = create(
        &sb,
        json!({
            "name": format!("{CONTROLS}{p}{huge}"),
            "notes": format!("{p}\nFixed-in: {}", bin.first),
            "projects": [seed::CRASH],
        }),
    )
    .await;
    // The same values hold beta from its lock project.
    let mut locks = Vec::new();
    for value in [&ambiguous, &fake.to_owned()] {
        locks.push(
            create(
                &sb,
                json!({ "name": format!("lock {value}"), "notes": format!("Fixed-in: {value}"), "projects": [seed::LOCK_BETA] }),
            )
            .await,
        );
    }
    let run = bin.run(&["push", "beta"]).await;
    inert(&run, 3);
    assert!(
        run.stdout.contains(&format!(
            "fix value `{ambiguous}` is not usable: ambiguous: more than one object starts with it"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "fix value `{fake}` is not usable: not a commit of the repository"
        )),
        "a branch named like a sha is no fix commit: {}",
        run.stdout
    );
    marker.assert_absent("the held push");

    // Without the locks beta pushes; no crash task with a hostile value closes.
    for l in &locks {
        let (s, _) = Raw::new(&sb)
            .put(&format!("/tasks/{l}"), json!({"data": {"completed": true}}))
            .await;
        assert_eq!(s, 200);
    }
    let run = bin.run(&["push", "beta"]).await;
    inert(&run, 0);
    for (i, gid) in crash.iter().enumerate() {
        assert!(!task(&sb, gid).completed, "crash {i} stays open");
    }
    assert!(
        task(&sb, &good).completed,
        "{:?}",
        comments(&task(&sb, &good))
    );
    assert!(
        run.stdout.contains("crash tasks: 1 completed"),
        "{}",
        run.stdout
    );
    marker.assert_absent("the push");

    // `crash fixed` refuses every such value, writing nothing.
    let target = &crash[0];
    let before = task(&sb, target);
    for value in [
        format!("$(touch {})", marker.0.display()),
        "--upload-pack=touch /tmp/x".to_owned(),
        ambiguous.clone(),
        fake.to_owned(),
        format!("{}\n{}", &bin.first[..7], &bin.first[..7]),
        huge.clone(),
    ] {
        let run = bin.run(&["crash", "fixed", target, "--", &value]).await;
        inert(&run, 2);
        assert!(
            run.stderr.contains("nothing was written"),
            "{value:.40}: {}",
            run.stderr
        );
        assert!(run.stderr.len() < 1000, "{}", run.stderr.len());
    }
    let run = bin
        .run(&["crash", "fixed", target, "--upload-pack=x"])
        .await;
    inert(&run, 2);
    let run = bin
        .run(&[
            "crash",
            "fixed",
            &format!("$(touch {})", marker.0.display()),
            &bin.first,
        ])
        .await;
    inert(&run, 2);
    assert!(run.stderr.contains("is not a task gid"), "{}", run.stderr);
    let after = task(&sb, target);
    assert_eq!(
        (after.notes, after.values, after.stories.len()),
        (before.notes, before.values, before.stories.len())
    );
    marker.assert_absent("crash fixed");
}

#[tokio::test]
async fn commit_messages_that_are_not_utf8_or_hostile_push_and_print_inert() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let marker = Marker::new(&bin);
    assert_eq!(bin.run(&["push", "beta"]).await.code, 0);
    let mut message = b"caf\xe9 \xc3\x28 ".to_vec();
    // git ends a message at NUL: every other control character.
    message.extend_from_slice(CONTROLS.trim_end_matches('\u{0}').as_bytes());
    message.extend_from_slice(payload(&marker.0).lines().next().unwrap().as_bytes());
    message.extend_from_slice(&[b'C'; 100 * 1024]);
    message.extend_from_slice(b"\n\nbody \xff\xfe\n");
    let raw = raw_commit(&bin.repo.path, b"Bad \xff Name \x1b[31m", &message);

    let run = bin.run(&["push", "beta", "--dry-run"]).await;
    inert(&run, 0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("    {} ", &raw[..7])))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.contains("caf\u{fffd} \u{fffd}( \\u{1b}[2J\\u{7}\\r\\u{8}$(touch "),
        "{line}"
    );
    assert!(line.contains("(Bad \u{fffd} Name \\u{1b}[31m)"), "{line}");
    assert!(line.chars().count() < 300, "{line}");
    let run = bin.run(&["push", "beta", "--dry-run", "--json"]).await;
    inert(&run, 0);
    assert_eq!(run.json()["commit"], raw.as_str());

    let run = bin.run(&["push", "beta"]).await;
    inert(&run, 0);
    assert!(
        bin.current(1).unwrap().ends_with(&raw[..12]),
        "{:?}",
        bin.current(1)
    );
    let notes = sb
        .with_data(|d| {
            let g = d.projects[seed::PUSH_BETA].tasks.last().unwrap().clone();
            d.tasks[&g].notes.clone()
        })
        .unwrap();
    assert!(notes.contains("caf\u{fffd}"), "{notes}");
    assert!(
        notes.len() < 2000,
        "the changelog line is bounded: {}",
        notes.len()
    );
    marker.assert_absent("the push");
}

#[tokio::test]
async fn commit_values_shaped_like_options_shell_or_ambiguous_shas_are_usage_errors() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let marker = Marker::new(&bin);
    let ambiguous = ambiguous_prefix(&bin);
    for (value, why) in [
        ("--upload-pack=touch /tmp/x".to_owned(), "not a revision"),
        (format!("$(touch {})", marker.0.display()), "not a revision"),
        ("$(reboot)".to_owned(), "not found"),
        (ambiguous.clone(), "ambiguous"),
        ("main\ntouch /tmp/x".to_owned(), "not a revision"),
        ("0000000".to_owned(), "not found"),
    ] {
        for dry in [true, false] {
            let flag = format!("--commit={value}");
            let mut args = vec!["push", "beta", flag.as_str()];
            if dry {
                args.push("--dry-run");
            }
            let run = bin.run(&args).await;
            inert(&run, 2);
            assert!(
                run.stderr.contains("--commit: `") && run.stderr.contains(why),
                "{value}: {}",
                run.stderr
            );
        }
    }
    // As a separate word, an option-like value is clap's usage error.
    let run = bin
        .run(&["push", "beta", "--commit", "--upload-pack=x"])
        .await;
    inert(&run, 2);
    for value in ["--upload-pack=x", "$(reboot)", &ambiguous] {
        let run = bin
            .run(&["shipped", "--cluster", "beta", "--", value])
            .await;
        inert(&run, 2);
    }
    assert_eq!(push_tasks(&sb), 0);
    assert!(bin.current(1).is_none(), "nothing was pushed");
    marker.assert_absent("--commit");
}

/// The config with beta's `hosts = [...]` line replaced by `line`.
fn with_hosts_line(bin: &Bin, line: &str) {
    let text = std::fs::read_to_string(&bin.config).unwrap();
    let start = text.find("\nhosts = [").unwrap() + 1;
    let end = start + text[start..].find('\n').unwrap();
    std::fs::write(
        &bin.config,
        format!("{}{line}{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

#[tokio::test]
async fn hosts_named_like_options_are_refused_in_the_config_and_in_a_hosts_file() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let marker = Marker::new(&bin);
    let m = marker.0.display().to_string();
    for host in [
        format!("-oProxyCommand=touch {m}"),
        format!("root@-oProxyCommand=touch {m}"),
        format!("host;touch {m}"),
        format!("$(touch {m})"),
        "a@b@c".to_owned(),
        "web-1:22:22".to_owned(),
        "local:../etc".to_owned(),
        "local:/srv/a/../../etc".to_owned(),
    ] {
        with_hosts_line(&bin, &format!("hosts = [{host:?}]"));
        for args in [&["push", "beta"][..], &["status"], &["check"]] {
            let run = bin.run(args).await;
            inert(&run, 2);
            assert!(
                run.stderr.contains("clusters.beta.hosts[0]: `"),
                "{host} {args:?}: {}",
                run.stderr
            );
        }
    }
    marker.assert_absent("hosts");

    // The same in a hosts_file: push and check name the file and line.
    let file = bin.path("beta-hosts");
    std::fs::write(
        &file,
        format!(
            "# beta\n\nlocal:{}/hosts/beta-1\n-oProxyCommand=touch {m}\n",
            bin.dir.path().display()
        ),
    )
    .unwrap();
    with_hosts_line(&bin, "hosts_file = \"beta-hosts\"");
    let run = bin.run(&["push", "beta"]).await;
    inert(&run, 2);
    assert!(
        run.stderr.contains(&format!(
            "{}:4: `-oProxyCommand=touch {m}`: a host may not start with `-`",
            file.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(push_tasks(&sb), 0);
    assert!(bin.current(1).is_none());
    // A dry run says the same: it does not plan a push to no host.
    let run = bin.run(&["push", "beta", "--dry-run"]).await;
    inert(&run, 2);
    assert!(run.stderr.contains(":4: "), "{}", run.stderr);
    let run = bin.run(&["check"]).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(":4: ") || run.stderr.contains(":4: "),
        "{run:?}"
    );
    marker.assert_absent("hosts_file");
}

#[tokio::test]
async fn bad_configs_exit_2_naming_every_key_and_never_panic() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let good = std::fs::read_to_string(&bin.config).unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[sync]\n",
            "[sync]\nparallelism = \"many\"\nmax_failed_hosts = -1\nkeep_releases = 1.5\nafter_switch = \"sudo systemctl reload app\"\nssh_identity = 5\n",
            &[
                "sync.parallelism: expected an integer, found a string",
                "sync.max_failed_hosts: must be at least 0, found -1",
                "sync.keep_releases: expected an integer, found a float",
                "sync.after_switch: expected an array of arguments",
                "sync.ssh_identity: expected a string, found an integer",
            ],
        ),
        (
            "[build]\n",
            "[build]\nouptut = \"x\"\nshell = \"sh -c 'rm -rf /'\"\n",
            &[
                "build.ouptut: unknown key; did you mean `output`?",
                "build.shell: unknown key",
            ],
        ),
        (
            "[clusters.beta]\n",
            "[clusters.beta]\ntarget = \"srv/app\"\nhost_file = \"x\"\n",
            &[
                "clusters.beta.target: `srv/app` must be an absolute path on the hosts",
                "clusters.beta.host_file: unknown key; did you mean `hosts_file`?",
            ],
        ),
        (
            "state_dir = \"state\"",
            "state_dir = [\"state\"]",
            &["state_dir: expected a string, found an array"],
        ),
        (
            "[clusters.beta]\n",
            "[clusters.beta]\nfreeze_before = { cluster = \"prod\", duration = \"100000000 years\" }\n",
            &["clusters.beta.freeze_before.duration: "],
        ),
        (
            "[clusters.prod]\n",
            "[clusters.prod]\nsource = \"cluster:beta\"\nmin_soak = \"5000000000y\"\n",
            &["clusters.prod.min_soak: "],
        ),
        (
            "[clusters.beta]\n",
            "[clusters.beta]\ntarget = \"/srv/app\\n; touch /tmp/x\"\n",
            &["clusters.beta.target: "],
        ),
        ("[asana]\n", "[asana\n", &["(toml): "]),
    ];
    for (from, to, expect) in cases {
        assert!(good.contains(from), "{from}");
        std::fs::write(&bin.config, good.replacen(from, to, 1)).unwrap();
        for args in [
            &["status"][..],
            &["push", "beta", "--dry-run"],
            &["history", "beta"],
        ] {
            let run = bin.run(args).await;
            inert(&run, 2);
            assert!(
                run.stderr.starts_with("pushgate: invalid config "),
                "{to}: {}",
                run.stderr
            );
            for e in *expect {
                assert!(
                    run.stderr.contains(e),
                    "{to}: expected {e:?} in:\n{}",
                    run.stderr
                );
            }
        }
    }
    // Relative paths are the config file's directory's, wherever pushgate runs.
    std::fs::write(&bin.config, &good).unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .arg("--config")
        .arg(&bin.config)
        .args(["push", "beta"])
        .current_dir("/")
        .env(support::TOKEN_ENV, &bin.token)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let run = Run::from(run);
    inert(&run, 0);
    assert!(bin.path("state/clusters/beta/deployed.json").exists());
    assert!(bin.current(1).is_some(), "{run:?}");
}
