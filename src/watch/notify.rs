//! Notifications to a Slack-compatible incoming webhook: a push started
//! (only one still running after `notify.started_after`, so a quick push is
//! one message), succeeded or failed; the first hold of a streak; a rollback.
//!
//! The webhook URL is a credential. It is read from the environment
//! variable named by `[notify] slack_webhook_env`, kept in a
//! `SecretString`, never logged, never in an error (reqwest's errors are
//! stripped of it), and removed from children's environments like the
//! Asana token. It must be `https`, or `http` to a loopback host (tests).
//!
//! A notification never fails a push and never delays it by more than
//! `notify.timeout`: each message is one bounded POST, awaited where it is
//! sent (no background task), and a failure is a warning in the log.
//!
//! Hold streaks: a cluster held on tick after tick (cron runs one process
//! per tick) gets one message per cause, not one per tick. The streak lives
//! in `clusters/<name>/notify.json` (written atomically) and ends at the
//! first run that is not held. Deciding what the streak does is pure
//! ([`streak_step`]); messages are built by pure functions too. Untrusted
//! text (task names, commit subjects) is escaped for Slack's mrkdwn, so it
//! can neither mention `@channel` nor forge links.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::adapters::state::StateDir;
use crate::config::{NotifySettings, WebLinks};
use crate::domain::model::{ClusterName, CommitId, Fix, ReleaseId};
use crate::domain::plan::{HoldReason, Plan, Verdict};
use crate::domain::report::PushReport;
use crate::domain::text::{count, plural, printable};

/// A validated webhook.
pub struct Webhook {
    url: SecretString,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a message was not delivered. Never holds the URL.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("the webhook did not answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the webhook answered {status}{body}")]
    Status { status: u16, body: String },
    #[error("cannot reach the webhook: {0}")]
    Transport(String),
}

/// Checks a webhook URL: `https`, or `http` to a loopback host. The error
/// describes the problem without repeating the URL.
pub fn check_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("it is not a URL ({e})"))?;
    let loopback = crate::config::is_loopback(&url);
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("https is required for a webhook that is not on loopback".into()),
        other => Err(format!("unsupported scheme `{}`", printable(other, 20))),
    }
}

impl Webhook {
    /// The webhook named by the settings: `Ok(None)` when the variable is
    /// unset or empty (notifications off), `Err` when its value is not a
    /// usable URL.
    pub fn from_env(settings: &NotifySettings) -> Result<Option<Webhook>, String> {
        let var = &settings.slack_webhook_env;
        let value = match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => return Ok(None),
        };
        let url = check_url(&value).map_err(|why| format!("the URL in ${var}: {why}"))?;
        Webhook::new(url.as_str(), settings.timeout)
            .map(Some)
            .map_err(|why| format!("the URL in ${var}: {why}"))
    }

    pub fn new(url: &str, timeout: Duration) -> Result<Webhook, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pushgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", e.without_url()))?;
        Ok(Webhook {
            url: SecretString::from(url.to_owned()),
            http,
            timeout,
        })
    }

    /// Posts one message, `{"text": ...}`, within the timeout.
    pub async fn send(&self, text: &str) -> Result<(), NotifyError> {
        let body = serde_json::json!({ "text": text });
        let post = async {
            let resp = self
                .http
                .post(self.url.expose_secret())
                .json(&body)
                .send()
                .await
                .map_err(|e| self.transport(e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let text = resp.text().await.unwrap_or_default();
            let text = text.replace(self.url.expose_secret(), "[webhook URL]");
            let body = printable(text.trim(), 100);
            Err(NotifyError::Status {
                status: status.as_u16(),
                body: if body.is_empty() {
                    String::new()
                } else {
                    format!(": {body}")
                },
            })
        };
        // reqwest's own timeout bounds each phase; this bounds the whole.
        match tokio::time::timeout(self.timeout, post).await {
            Ok(r) => r,
            Err(_) => Err(NotifyError::Timeout(self.timeout)),
        }
    }

    fn transport(&self, e: reqwest::Error) -> NotifyError {
        if e.is_timeout() {
            return NotifyError::Timeout(self.timeout);
        }
        let e = e.without_url();
        // The causes name the failure (refused, DNS, TLS); the URL was
        // stripped above, and is replaced below should a cause repeat it.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            why.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        let why = why.replace(self.url.expose_secret(), "[webhook URL]");
        NotifyError::Transport(printable(&why, 300))
    }
}

// ---- messages ----

/// Text made inert for Slack's mrkdwn: `&`, `<` and `>` escaped (so no
/// `<!channel>` and no forged links), control characters escaped, cut.
pub fn escape(s: &str, max: usize) -> String {
    printable(s, max)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `<url|text>` when the URL is safe to put in a link, else the escaped text.
fn link(url: &str, text: &str) -> String {
    let safe = url.starts_with("https://") || url.starts_with("http://");
    if safe && !url.contains(['|', '>', '<', ' ', '\n']) && url.len() < 500 {
        format!("<{url}|{}>", escape(text, 120))
    } else {
        escape(text, 120)
    }
}

fn short(c: &CommitId) -> String {
    format!("`{}`", c.short())
}

/// A commit as a message shows it: `` `3f2a9c1` ``, a link to the code
/// with `repo.web`.
fn commit(c: &CommitId, web: Option<&WebLinks>) -> String {
    match web {
        Some(w) => link(&w.commit_url(c.as_str()), c.short()),
        None => short(c),
    }
}

/// "beta: pushing 3f2a9c1 over 0123abc", with the first changelog lines
/// (and, with `repo.web`, links to the commits and the compare).
pub fn started(plan: &Plan, web: Option<&WebLinks>) -> Option<String> {
    let Verdict::Push { from, to } = &plan.verdict else {
        return None;
    };
    let over = from
        .as_ref()
        .map_or("(nothing deployed)".to_owned(), |f| commit(f, web));
    let n = plan.changelog.len();
    let mut text = format!(
        ":rocket: *{}*: pushing {} over {over} ({n} new {})",
        plan.label(),
        commit(to, web),
        plural(n, "commit")
    );
    if let Some(url) = web
        .zip(from.as_ref())
        .and_then(|(w, f)| w.compare_url(f.as_str(), to.as_str()))
    {
        text.push_str(&format!(" · {}", link(&url, "compare")));
    }
    for e in plan.changelog.entries.iter().take(5) {
        text.push_str(&format!(
            "\n• {} {} ({})",
            commit(&e.commit, web),
            escape(&e.subject, 100),
            escape(&e.author, 40)
        ));
    }
    if n > 5 {
        text.push_str(&format!("\n• and {} more", n - 5));
    }
    Some(text)
}

/// The end of a push: succeeded, or failed at which step and why.
pub fn finished(cluster: &str, r: &PushReport) -> String {
    let task = r
        .task
        .as_ref()
        .map(|t| format!(" · {}", link(&t.link, "push task")))
        .unwrap_or_default();
    let hosts = r.hosts.len();
    if let Some(s) = &r.stopped {
        let lock = s
            .lock_task
            .as_deref()
            .map(|l| format!(" ({})", link(l, "lock task")))
            .unwrap_or_default();
        return if s.rolled_back {
            format!(
                ":rewind: *{cluster}*: push of {} rolled back automatically at wave {}/{}: {}. Every switched host went back to {}; {cluster} is locked{lock} and {} will not be pushed again by the schedule{task}",
                short(&r.commit),
                s.wave,
                s.of,
                escape(&s.what, 300),
                s.back_to.as_ref().map_or("no release".to_owned(), ToString::to_string),
                short(&r.commit),
            )
        } else {
            format!(
                ":octagonal_sign: *{cluster}*: push of {} stopped at wave {}/{}: {}. auto_rollback is off: the switched hosts keep release {}; {cluster} is locked{lock} until a person decides{task}",
                short(&r.commit),
                s.wave,
                s.of,
                escape(&s.what, 300),
                r.release,
            )
        };
    }
    match &r.failure {
        None => format!(
            ":white_check_mark: *{cluster}*: pushed {} to {} in {:.1} s (release {}){task}",
            short(&r.commit),
            count(hosts, "host"),
            r.duration.as_secs_f64(),
            r.release,
        ),
        Some((step, why)) => format!(
            ":x: *{cluster}*: push of {} failed at step {} after {:.1} s: {}{task}",
            short(&r.commit),
            escape(step, 40),
            r.duration.as_secs_f64(),
            escape(why, 300),
        ),
    }
}

/// Why a cluster is held, naming each lock's task, assignee and link.
pub fn held(plan: &Plan) -> Option<String> {
    let c = &plan.label();
    Some(match &plan.verdict {
        Verdict::Hold(HoldReason::Locked { tasks }) => {
            let n = tasks.len();
            let mut text = format!(
                ":lock: *{c}* is held by {}; pushes wait until {}:",
                count(n, "lock"),
                if n == 1 {
                    "it is completed"
                } else {
                    "they are completed"
                }
            );
            for t in tasks {
                let name = if t.name.trim().is_empty() {
                    "(unnamed task)"
                } else {
                    t.name.as_str()
                };
                let who = t.assignee.as_deref().map_or("unassigned".to_owned(), |a| {
                    format!("assignee: {}", escape(a, 60))
                });
                let fix = match &t.fix {
                    Fix::Valid { commit, .. } => format!(" — waiting for fix {}", short(commit)),
                    Fix::Invalid { .. } => " — its fix value is not usable".to_owned(),
                    _ => String::new(),
                };
                text.push_str(&format!("\n• {} ({who}){fix}", link(&t.link, name)));
            }
            text
        }
        Verdict::Hold(reason @ (HoldReason::Frozen { .. } | HoldReason::OtherRunning { .. })) => {
            format!(":snowflake: *{c}* is {}", escape(&reason.to_string(), 300))
        }
        Verdict::Hold(reason @ HoldReason::Soaking { .. }) => {
            format!(
                ":hourglass: *{c}* is held: {}",
                escape(&reason.to_string(), 300)
            )
        }
        Verdict::Hold(
            reason @ (HoldReason::BuildFailed { .. }
            | HoldReason::RolledBack { .. }
            | HoldReason::ArtifactMissing { .. }
            | HoldReason::Approval(_)),
        ) => {
            format!(":x: *{c}* is held: {}", escape(&reason.to_string(), 300))
        }
        Verdict::Unknown { reason } => format!(
            ":warning: *{c}*: lock state unknown, not pushing (fail closed): {}",
            escape(reason, 300)
        ),
        Verdict::Hold(HoldReason::Running { .. })
        | Verdict::Push { .. }
        | Verdict::NothingNew { .. } => return None,
    })
}

/// A rollback: where to, on how many hosts, what failed.
pub fn rolled_back(
    cluster: &str,
    release: &ReleaseId,
    commit: &CommitId,
    hosts: usize,
    failed: &[String],
    task_link: Option<&str>,
) -> String {
    let task = task_link
        .map(|l| format!(" · {}", link(l, "rollback task")))
        .unwrap_or_default();
    let ok = hosts.saturating_sub(failed.len());
    let mut text = if failed.is_empty() {
        format!(
            ":rewind: *{cluster}*: rolled back to {} (release {release}) on {ok}/{hosts} hosts{task}",
            short(commit)
        )
    } else {
        format!(
            ":rewind: :x: *{cluster}*: rollback to {} (release {release}) reached {ok}/{hosts} hosts{task}",
            short(commit)
        )
    };
    for f in failed.iter().take(10) {
        text.push_str(&format!("\n• FAILED {}", escape(f, 200)));
    }
    text
}

// ---- hold streaks ----

/// The streak of held runs a cluster is in, as kept in `notify.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyState {
    #[serde(default)]
    pub streak: Option<Streak>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// The first held run of the streak.
    pub since: DateTime<Utc>,
    /// The cause of the latest held run (see [`hold_key`]).
    pub key: String,
    /// The causes already announced in this streak.
    #[serde(default)]
    pub notified: Vec<String>,
}

/// What holds the cluster, as a streak tells causes apart: the reason,
/// and for locks which tasks. `None`: not held, or held only because
/// another push of the cluster runs (that push was announced itself).
pub fn hold_key(verdict: &Verdict) -> Option<String> {
    let reason = verdict.hold_reason()?;
    match verdict {
        Verdict::Hold(HoldReason::Running { .. }) => None,
        Verdict::Hold(HoldReason::Locked { tasks }) => {
            let mut gids: Vec<&str> = tasks.iter().map(|t| t.gid.as_str()).collect();
            gids.sort_unstable();
            Some(format!("{reason}:{}", gids.join(",")))
        }
        _ => Some(reason.to_owned()),
    }
}

/// What one run does to the streak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreakStep {
    /// The streak after this run (`None`: the run was not held).
    pub next: Option<Streak>,
    /// Send a hold message now: this cause was not announced in the streak.
    pub announce: bool,
}

/// Pure: a run with `verdict` at `now`, after `prev`. A streak starts at
/// the first held run and ends at the first run that is not held; each
/// distinct cause is announced once per streak (a lock, then a second
/// lock, then a freeze: three messages; the same lock for a day: one). A
/// run held because another push of the cluster runs leaves it as it is.
pub fn streak_step(prev: Option<&Streak>, verdict: &Verdict, now: DateTime<Utc>) -> StreakStep {
    if matches!(verdict, Verdict::Hold(HoldReason::Running { .. })) {
        return StreakStep {
            next: prev.cloned(),
            announce: false,
        };
    }
    let Some(key) = hold_key(verdict) else {
        return StreakStep {
            next: None,
            announce: false,
        };
    };
    let mut next = prev.cloned().unwrap_or(Streak {
        since: now,
        key: key.clone(),
        notified: Vec::new(),
    });
    next.key = key.clone();
    StreakStep {
        announce: !next.notified.contains(&key),
        next: Some(next),
    }
}

fn state_path(state: &StateDir, cluster: &ClusterName) -> std::path::PathBuf {
    state.cluster(cluster).notify_path()
}

/// The cluster's streak state; a missing or unreadable file is no streak.
pub fn load(state: &StateDir, cluster: &ClusterName) -> NotifyState {
    std::fs::read(state_path(state, cluster))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(state: &StateDir, cluster: &ClusterName, s: &NotifyState) -> anyhow::Result<()> {
    let p = state_path(state, cluster);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::adapters::state::write_json(&p, s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{LockTask, TaskGid};

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::minutes(min)
    }

    fn lock(gid: &str, name: &str) -> LockTask {
        LockTask {
            gid: TaskGid::parse(gid).unwrap(),
            name: name.into(),
            assignee: Some("Ada".into()),
            link: format!("https://app.asana.com/0/1/{gid}"),
            completed: false,
            fix: Fix::None,
        }
    }

    fn locked(tasks: Vec<LockTask>) -> Verdict {
        Verdict::Hold(HoldReason::Locked { tasks })
    }

    fn pushed() -> Verdict {
        Verdict::NothingNew { commit: None }
    }

    /// Runs verdicts through the streak; which runs announce.
    fn announced(verdicts: &[Verdict]) -> Vec<bool> {
        let mut streak: Option<Streak> = None;
        let mut out = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            let step = streak_step(streak.as_ref(), v, at(15 * i as i64));
            out.push(step.announce);
            streak = step.next.map(|mut s| {
                if step.announce {
                    s.notified.push(s.key.clone());
                }
                s
            });
        }
        out
    }

    #[test]
    fn a_lock_held_for_many_ticks_is_announced_once_and_again_after_a_push() {
        let a = || locked(vec![lock("1001", "DB migration")]);
        let ab = locked(vec![lock("1002", "incident"), lock("1001", "DB migration")]);
        let unknown = Verdict::Unknown {
            reason: "401".into(),
        };
        let running = Verdict::Hold(HoldReason::Running {
            holder: "pid 1".into(),
        });
        assert_eq!(
            announced(&[a(), a(), running, a(), ab, a(), unknown, pushed(), a()]),
            [true, false, false, false, true, false, true, false, true]
        );
    }

    #[test]
    fn a_failed_announcement_is_tried_again_on_the_next_held_run() {
        let v = locked(vec![lock("1001", "x")]);
        let first = streak_step(None, &v, at(0));
        assert!(first.announce);
        // The send failed: nothing was added to `notified`.
        let second = streak_step(first.next.as_ref(), &v, at(15));
        assert!(second.announce);
        assert_eq!(second.next.unwrap().since, at(0));
    }

    #[test]
    fn untrusted_text_cannot_mention_channel_or_forge_links() {
        let plan = Plan {
            app: None,
            cluster: ClusterName::parse("beta").unwrap(),
            verdict: locked(vec![lock(
                "1001",
                "<!channel> pay <https://evil.example|here> & \u{7}",
            )]),
            steps: Vec::new(),
            release: None,
            before: None,
            hosts: Vec::new(),
            policy: Default::default(),
            rollout: Default::default(),
            waves: Vec::new(),
            changelog: Default::default(),
            via: None,
            source: None,
            ignored: None,
            standing_locks: Vec::new(),
        };
        expect_test::expect![[r#"
            :lock: *beta* is held by 1 lock; pushes wait until it is completed:
            • <https://app.asana.com/0/1/1001|&lt;!channel&gt; pay &lt;https://evil.example|here&gt; &amp; \u{7}> (assignee: Ada)"#]]
        .assert_eq(&held(&plan).unwrap());
    }

    #[test]
    fn webhook_urls_must_be_https_unless_on_loopback() {
        assert!(check_url("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("http://localhost:9/hook").is_ok());
        let e = check_url("http://hooks.example.com/services/secret").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(check_url("ftp://x/y").is_err());
        assert!(check_url("not a url").is_err());
    }
}
