//! `pushgate push CLUSTER [--commit REV] [--dry-run]`: the run preamble
//! (lock, outbox, reap, recover), then gather → decide → print the plan,
//! then (unless it is a dry run or the verdict is not to push) execute it.

use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::views::{plan_json, report_json};
use super::{Env, Outcome, UsageError};
use crate::domain::decide;
use crate::domain::model::{Host, RunKind};
use crate::domain::plan::{Facts, LockFacts, Overrides, Plan, Verdict};
use crate::domain::report::PushReport;
use crate::domain::text::{plural, printable};
use crate::run::clock::RunClock;
use crate::run::preamble::{self, Preamble};
use crate::run::{crash, execute, gather, recover};

/// Where a push's words go: a person's terminal, a script, or the log (the daemon).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    Log,
}

/// One push, as asked: by a person, a script, the daemon or a test.
#[derive(Clone, Debug)]
pub struct PushRequest<'a> {
    pub cluster: &'a str,
    /// `--commit REV`.
    pub commit: Option<&'a str>,
    pub dry_run: bool,
    pub output: Output,
    /// The run's clock reading, made once by the caller.
    pub now: chrono::DateTime<chrono::Utc>,
    /// Set while the push runs: it stops at the next safe point.
    pub stop: Option<&'a AtomicBool>,
    pub overrides: Overrides,
}

impl<'a> PushRequest<'a> {
    /// A scheduled push of `cluster` at `now`: no revision, no valve.
    pub fn scheduled(cluster: &'a str, now: chrono::DateTime<chrono::Utc>) -> PushRequest<'a> {
        PushRequest {
            cluster,
            commit: None,
            dry_run: false,
            output: Output::Log,
            now,
            stop: None,
            overrides: Overrides::default(),
        }
    }
}

/// What one push decided and, if it pushed, how that went.
#[derive(Debug)]
pub struct Pushed {
    pub plan: Plan,
    pub report: Option<PushReport>,
    /// An interrupted earlier run this one recovered first.
    pub recovered: Option<recover::Recovered>,
    /// Queued Asana writes of earlier runs applied at the start.
    pub replayed: usize,
    /// Asana writes left queued for the next run.
    pub queued: usize,
}

impl Pushed {
    pub fn outcome(&self) -> Outcome {
        match &self.report {
            Some(r) if r.failure.is_some() => Outcome::Failure,
            _ => Outcome::Decided(self.plan.verdict.clone()),
        }
    }
}

/// `pushgate push`: prints the plan and the outcome.
pub async fn run(
    env: &Env,
    cluster: &str,
    commit: Option<&str>,
    dry_run: bool,
    json: bool,
    overrides: Overrides,
) -> anyhow::Result<Outcome> {
    if overrides.ignore_locks || overrides.ignore_freeze || overrides.ignore_approval {
        let reason = overrides.reason.as_deref().unwrap_or("").trim();
        if reason.is_empty() {
            return Err(UsageError(
                "--ignore-locks, --ignore-freeze and --ignore-approval need --reason TEXT saying why"
                    .into(),
            )
            .into());
        }
    }
    let pushed = push_at(
        env,
        PushRequest {
            cluster,
            commit,
            dry_run,
            output: if json { Output::Json } else { Output::Text },
            now: chrono::Utc::now(),
            stop: None,
            overrides,
        },
    )
    .await?;
    if json {
        let mut v = plan_json(&pushed.plan);
        if let Some(r) = &pushed.report {
            v["result"] = report_json(r);
            // Whole-process wall time with at least one child (build, rsync, ssh) running.
            v["result"]["children_ms"] =
                json!(crate::adapters::process::children_wall().as_millis() as u64);
        }
        if let Some(r) = &pushed.recovered {
            v["recovered"] = json!({
                "run_id": r.run_id,
                "stopped_in": r.stopped_in,
                "finished": r.finished,
                "release": r.converged_to.as_ref().map(|x| x.as_str()),
                "host_errors": r.host_errors,
                "message": r.summary(&env.config.label(&env.cluster(cluster)?.name)),
            });
        }
        v["asana_replayed"] = json!(pushed.replayed);
        v["asana_queued"] = json!(pushed.queued);
        super::print_json(&v);
    }
    Ok(pushed.outcome())
}

/// One push as `req` asks: the preamble (unless a dry run: only the
/// exclusion is looked at), gather, decide, and execute unless `dry_run`.
pub async fn push_at(env: &Env, req: PushRequest<'_>) -> anyhow::Result<Pushed> {
    let settings = env.cluster(req.cluster)?;
    // The hosts, read once for the whole run: a broken hosts file is the
    // same usage error (exit 2) for a dry run and a push.
    let hosts = settings.read_hosts().map_err(UsageError)?;
    let result = push_inner(env, &req, &hosts).await;
    // Whatever happened, no ssh connection of this run stays open.
    super::close_connections(env, settings, &hosts).await;
    result
}

async fn push_inner(env: &Env, req: &PushRequest<'_>, hosts: &[Host]) -> anyhow::Result<Pushed> {
    let settings = env.cluster(req.cluster)?;
    let output = req.output;
    let say = |line: String| match output {
        Output::Text => println!("{line}"),
        Output::Json => eprintln!("pushgate: {line}"),
        Output::Log => tracing::info!(app = %env.config.app, cluster = %settings.name, "{line}"),
    };
    let clock = RunClock::starting_at(req.now);
    let run_name = execute::run_id(&settings.name, &clock);
    let state = env.state.cluster(&settings.name);
    let cx = env.ctx();
    let Preamble {
        lock,
        running,
        mut outbox,
        child_env,
        waiting,
        replayed,
        recovered,
    } = preamble::begin(&cx, &state, settings, hosts, &clock, &run_name, req.dry_run).await?;
    if waiting > 0 {
        say(format!(
            "replayed {replayed} of {waiting} queued Asana {} from earlier runs",
            plural(waiting, "write")
        ));
    }
    let recovered = recovered?;
    if let Some(r) = &recovered {
        say(r.summary(&env.config.label(&settings.name)));
    }
    let mut facts = match running {
        Some(holder) => Facts {
            app: env.config.named_app(),
            ..Facts::running(settings.name.clone(), holder, req.now)
        },
        None => {
            gather::facts(
                &cx,
                settings,
                req.commit,
                hosts.to_vec(),
                req.now,
                req.overrides.clone(),
                true,
            )
            .await?
        }
    };
    if let Some(ob) = outbox.as_mut() {
        ask_approval(env, settings, &mut facts, ob, &run_name, &say).await;
    }
    let plan = decide::plan(&facts);
    env.observer.decided(&plan, facts.now, req.dry_run).await;
    match &plan.verdict {
        Verdict::Push { .. } => {
            tracing::info!(app = %env.config.app, cluster = %plan.cluster, "gate open")
        }
        Verdict::NothingNew { .. } => {
            tracing::info!(app = %env.config.app, cluster = %plan.cluster, "{plan}")
        }
        Verdict::Hold(_) => {
            tracing::info!(app = %env.config.app, cluster = %plan.cluster, "{plan}")
        }
        Verdict::Unknown { reason } => {
            tracing::warn!(app = %env.config.app, cluster = %plan.cluster, %reason, "lock state unknown")
        }
    }
    if output == Output::Text {
        println!("{plan}");
    }
    // A verdict that fails the run (exit 1) says so where errors go too.
    if output != Output::Log && super::exit_code(&Outcome::Decided(plan.verdict.clone())) == 1 {
        eprintln!("pushgate: {plan}");
    }
    let lock_tasks = match &facts.locks {
        LockFacts::Read(t) => t.clone(),
        LockFacts::Unreadable(_) => Vec::new(),
    };
    let mut pushed = Pushed {
        plan,
        report: None,
        recovered,
        replayed,
        queued: 0,
    };
    let Some(ob) = outbox.as_mut() else {
        return Ok(pushed);
    };
    let told = crash::report_bad_fixes(&env.config, ob, &env.state, &run_name, &lock_tasks).await;
    report_aftercare(&told, output);
    if let Verdict::NothingNew { commit: Some(c) } = &pushed.plan.verdict {
        // SPEC §2 step 9: a run that found nothing new still closes crash
        // tasks (a fix recorded after it shipped).
        let link = state.deployed()?.and_then(|d| d.push_task_link);
        let care = crash::after_run(
            &env.config,
            &env.client,
            ob,
            &env.state,
            settings,
            &run_name,
            crash::RunEnd {
                deployed: c,
                push_link: link.as_deref(),
                lock_tasks: &lock_tasks,
                pushed: false,
            },
        )
        .await;
        report_aftercare(&care, output);
    }
    let ecx = crate::run::Context {
        run: crate::run::Ctx {
            child_env: &child_env,
            ..cx
        },
        cluster: settings,
        state: &state,
        clock: &clock,
        run_id: &run_name,
        progress: &env.observer.watch_run(&settings.name),
        operator: &gather::operator(),
        verbose: output == Output::Text,
        stop: req.stop,
    };
    let plan = &pushed.plan;
    let ob: &crate::run::outbox::Outbox = ob;
    // The push's Asana writes go out beside its work (`Outbox::background`,
    // joined here, never spawned); the crash project is read while the
    // last of them are sent.
    let tail = async {
        let (report, read) = match &plan.verdict {
            Verdict::Push { to, .. } => {
                tokio::join!(
                    env.observer.push(plan, execute::push(&ecx, plan, ob)),
                    crash::read_ahead(&env.config, &env.client, &env.state, settings, to)
                )
            }
            _ => (None, None),
        };
        let Some(mut report) = report else {
            ob.close_background();
            return None;
        };
        if report.failure.is_none() {
            let link = report.task.as_ref().map(|t| t.link.clone());
            let care = crash::after_run_read(
                &env.config,
                &env.client,
                ob,
                &env.state,
                settings,
                &report.run_id,
                crash::RunEnd {
                    deployed: &report.commit,
                    push_link: link.as_deref(),
                    lock_tasks: &lock_tasks,
                    pushed: true,
                },
                read,
            )
            .await;
            report_aftercare(&care, output);
            report.asana_failures += care.asana_failures;
            if settings.approval.is_some() {
                let ignored = pushed
                    .plan
                    .ignored
                    .as_ref()
                    .filter(|i| {
                        i.holds
                            .iter()
                            .any(|h| matches!(h, crate::domain::plan::HoldReason::Approval(_)))
                    })
                    .map(|i| i.reason.clone());
                crate::run::approval::shipped(
                    &state,
                    ob,
                    &report.run_id,
                    &report.commit,
                    link.as_deref(),
                    ignored.as_deref(),
                )
                .await;
            }
        }
        ob.close_background();
        Some(report)
    };
    let (report, ()) = tokio::join!(tail, ob.background());
    if let Some(report) = report {
        pushed.report = Some(report);
    }
    // One last try for what this run queued: Asana may be back.
    if ob.pending() > 0 {
        ob.flush().await;
    }
    pushed.queued = ob.pending();
    if let Some(r) = pushed.report.as_mut() {
        r.asana_queued = pushed.queued;
    }
    drop(lock);
    let failures = pushed.report.as_ref().map_or(0, |r| r.asana_failures);
    if failures + pushed.queued > 0 {
        let mut parts = Vec::new();
        if pushed.queued > 0 {
            parts.push(format!(
                "{} Asana {} queued in the outbox ({}); the next run replays {}",
                pushed.queued,
                plural(pushed.queued, "write"),
                ob.deferred()
                    .map_or("Asana did not take them".into(), |w| printable(&w, 200)),
                if pushed.queued == 1 { "it" } else { "them" },
            ));
        }
        if failures > 0 {
            parts.push(format!(
                "{failures} other Asana {} failed (see the log)",
                plural(failures, "call")
            ));
        }
        let line = format!(
            "{}; the {} itself {}",
            parts.join("; "),
            RunKind::Push,
            match &pushed.report {
                Some(r) if r.failure.is_some() => "failed",
                Some(_) => "succeeded",
                None => "did not run",
            }
        );
        match output {
            Output::Log => {
                tracing::warn!(app = %env.config.app, cluster = %pushed.plan.cluster, "{line}")
            }
            _ => eprintln!("pushgate: warning: {line}"),
        }
    }
    Ok(pushed)
}

/// A gated cluster's push (holding the lock) asks for its candidate's
/// approval when decide says it would need one, and marks older requests
/// superseded; the approval is then read again, so that the plan names
/// the request just made.
async fn ask_approval(
    env: &Env,
    settings: &crate::config::ClusterSettings,
    facts: &mut Facts,
    ob: &mut crate::run::outbox::Outbox,
    run_name: &str,
    say: &impl Fn(String),
) {
    let (Some(a), Some(candidate)) = (&settings.approval, facts.candidate.clone()) else {
        return;
    };
    if !decide::approval::asks_on(&decide::plan(facts).verdict) {
        return;
    }
    let cx = env.ctx();
    let about = crate::run::approval::About {
        changelog: &facts.changelog,
        now: facts.now,
        run_id: run_name,
    };
    let asked = crate::run::approval::ask(
        &cx,
        settings,
        a,
        &candidate.commit,
        facts.deployed.as_ref(),
        ob,
        about,
    )
    .await;
    match asked {
        Ok(asked) => {
            match &asked.created {
                Some(Some(link)) => say(format!(
                    "asked for the approval of {}: {}",
                    candidate.commit.short(),
                    printable(link, 200)
                )),
                Some(None) => say(format!(
                    "asked for the approval of {} (queued: Asana did not take it yet)",
                    candidate.commit.short()
                )),
                None => {}
            }
            if asked.superseded > 0 {
                say(format!(
                    "marked {} superseded",
                    crate::domain::text::count(asked.superseded, "older approval request")
                ));
            }
            if asked.created.is_some() || asked.superseded > 0 {
                facts.approval = Some(
                    crate::run::approval::facts(
                        &cx,
                        settings,
                        a,
                        &candidate.commit,
                        facts.deployed.as_ref(),
                        Some(ob),
                    )
                    .await,
                );
            }
        }
        Err(e) => {
            tracing::warn!(app = %env.config.app, cluster = %settings.name, error = %format!("{e:#}"), "cannot ask for the approval")
        }
    }
}

fn report_aftercare(care: &crash::Aftercare, output: Output) {
    if output == Output::Text && care.closed + care.released + care.reported > 0 {
        println!(
            "crash tasks: {} completed, {} taken out of the lock project, {} told their fix value is unusable",
            care.closed, care.released, care.reported
        );
    }
}
