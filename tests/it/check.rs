//! `pushgate check`, the real binary: the whole path from config to every
//! host, one line per check, exit 1 on any failure, each failure saying
//! what and why. (The same over ssh, with a host whose sshd is down, is in
//! `ssh.rs`.)

use crate::support::{self, Bin};

fn line<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?}:\n{stdout}"))
}

#[tokio::test]
async fn check_passes_on_a_good_setup_and_names_each_part() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let run = bin.run(&["check"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.stdout;
    assert!(line(out, "ok    token: ").contains("Sandbox User"), "{out}");
    assert!(
        line(out, "ok    state dir: ").contains("is writable"),
        "{out}"
    );
    assert!(
        line(out, "ok    repository: ").contains(&format!("branch main at {}", &bin.first[..7])),
        "{out}"
    );
    line(out, "ok    bastion rsync: rsync 3.");
    for i in 1..=3 {
        assert!(
            line(
                out,
                &format!(
                    "ok    beta host local:{}",
                    bin.path(&format!("hosts/beta-{i}")).display()
                )
            )
            .ends_with("is writable"),
            "{out}"
        );
    }
    assert!(out.trim_end().ends_with("checks passed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[tokio::test]
async fn check_fails_clearly_on_an_unwritable_host_a_missing_repository_and_a_wrong_token() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    // beta-2's target lies under a regular file: no one, root included, can create it.
    std::fs::write(bin.path("blocker"), b"not a directory").unwrap();
    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace("hosts/beta-2", "blocker/beta-2")
        .replace("url = \"repo\"", "url = \"no-such-repo\"");
    std::fs::write(&bin.config, text).unwrap();
    bin.append_config("[notify]\nslack_webhook_env = \"PUSHGATE_IT_UNSET_WEBHOOK\"\n");

    let run = bin.run_with_token(&["check"], "bogus-token-4242").await;
    assert_eq!(run.code, 1, "{run:?}");
    let out = &run.stdout;
    let token = line(out, "FAIL  token: ");
    assert!(
        token.contains("401") && token.contains(support::TOKEN_ENV),
        "{token}"
    );
    assert!(
        line(out, "FAIL  beta lock project: ").contains("401"),
        "{out}"
    );
    let host = line(out, "FAIL  beta host local:");
    assert!(
        host.contains("blocker/beta-2") && host.contains("cannot create"),
        "{host}"
    );
    assert!(
        line(out, "ok    beta host local:").contains("beta-1"),
        "{out}"
    );
    assert!(
        line(out, "FAIL  repository: ").contains("no-such-repo"),
        "{out}"
    );
    assert!(
        line(out, "FAIL  notify webhook: ").contains("$PUSHGATE_IT_UNSET_WEBHOOK is not set"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("checks failed"), "{out}");
    assert!(!out.contains("bogus-token-4242") && !run.stderr.contains("bogus-token-4242"));

    let v = bin
        .run_with_token(&["check", "--json"], "bogus-token-4242")
        .await
        .json();
    assert_eq!(v["ok"], false);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"token") && failed.contains(&"repository"),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|c| c.starts_with("beta host local:")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn check_names_a_missing_branch_and_redacts_a_password_in_the_url() {
    let sb = support::sandbox().await;
    let bin = Bin::new(&sb);
    let text = std::fs::read_to_string(&bin.config)
        .unwrap()
        .replace("url = \"repo\"", "url = \"repo\"\nbranch = \"release\"");
    std::fs::write(&bin.config, text).unwrap();
    let run = bin.run(&["check"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        line(&run.stdout, "FAIL  repository: ").contains("no branch `release`"),
        "{}",
        run.stdout
    );
    // An https URL with a token in it: never printed.
    let text = std::fs::read_to_string(&bin.config).unwrap().replace(
        "url = \"repo\"",
        "url = \"https://ci:s3cr3t-pat@127.0.0.1:9/org/app.git\"",
    );
    std::fs::write(&bin.config, text).unwrap();
    let run = bin.run(&["check"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        line(&run.stdout, "FAIL  repository: ").contains("ci:***@127.0.0.1"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"),
        "{run:?}"
    );
}
