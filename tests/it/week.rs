//! A simulated week: every scheduled tick of beta (every 15 minutes) and
//! prod (10:00 and 17:00 on weekdays, Los Angeles time) over 7 days of
//! injected time, with commits landing and locks coming and going, pushed
//! for real against the sandbox and `local:` hosts. No wall-clock waits: the
//! clock is the tick's time, handed to each push.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use pushgate::cmd::push::{push_at, PushRequest};
use pushgate::cmd::Env;
use pushgate::config::{ClusterSettings, Config};
use pushgate::domain::plan::{HoldReason, Verdict};
use serde_json::json;

use crate::support::{self, seed, Bin, Raw, Setup};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

enum Event {
    Commit(usize),
    Lock(&'static str, &'static str),
    Unlock(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_schedules_freezes_locks_and_prod_shipping_what_beta_soaked() {
    let sb = support::sandbox().await;
    let bin = Bin::with(
        &sb,
        Setup {
            beta: "timezone = \"America/Los_Angeles\"\nfreeze_before = { cluster = \"prod\", duration = \"90m\" }".into(),
            ..Setup::default()
        },
    );
    let text = std::fs::read_to_string(&bin.config).unwrap();
    std::fs::write(
        &bin.config,
        text.replace(
            "[clusters.prod]\n",
            "[clusters.prod]\nsource = \"cluster:beta\"\n",
        ),
    )
    .unwrap();
    let config = Config::load(&bin.config).unwrap();
    let (client, _) = support::client(&sb);
    let env = Env::from_parts(config.clone(), client);
    let clusters: Vec<&ClusterSettings> = config.clusters.values().collect();

    // Monday 2026-11-23 00:00 PST to the next Monday.
    let start = at("2026-11-23T08:00:00Z");
    let ticks = pushgate::cmd::daemon::ticks(&clusters, start, start + Duration::days(7));
    assert_eq!(
        ticks.iter().filter(|(_, c)| c.as_str() == "beta").count(),
        672
    );
    assert_eq!(
        ticks.iter().filter(|(_, c)| c.as_str() == "prod").count(),
        10
    );
    let prod_ticks: Vec<DateTime<Utc>> = ticks
        .iter()
        .filter(|(_, c)| c.as_str() == "prod")
        .map(|(t, _)| *t)
        .collect();

    // A commit every 2h10m; beta locked Tuesday 09:00–14:00 PST; prod
    // locked Wednesday 16:00 to Thursday 09:00 PST.
    let mut events: Vec<(DateTime<Utc>, Event)> = (0..77)
        .map(|i| {
            (
                start + Duration::minutes(5 + 130 * i as i64),
                Event::Commit(i),
            )
        })
        .collect();
    events.push((
        at("2026-11-24T17:00:00Z"),
        Event::Lock("beta", "incident: payments"),
    ));
    events.push((at("2026-11-24T22:00:00Z"), Event::Unlock("beta")));
    events.push((
        at("2026-11-26T00:00:00Z"),
        Event::Lock("prod", "holiday freeze"),
    ));
    events.push((at("2026-11-26T17:00:00Z"), Event::Unlock("prod")));
    events.sort_by_key(|(t, _)| *t);
    let mut events = events.into_iter().peekable();
    let mut lock_gids: BTreeMap<&str, String> = BTreeMap::new();

    let mut beta_pushes = Vec::new();
    let mut prod_pushes = Vec::new();
    let mut beta_commit_at: BTreeMap<DateTime<Utc>, String> = BTreeMap::new();
    for (tick, cluster) in &ticks {
        while let Some((_, e)) = events.next_if(|(t, _)| t <= tick) {
            match e {
                Event::Commit(i) => {
                    bin.repo.commit(
                        &[("app/index.html", format!("build {i}\n").as_bytes())],
                        &format!("change {i}"),
                    );
                }
                Event::Lock(c, name) => {
                    let project = if c == "beta" {
                        seed::LOCK_BETA
                    } else {
                        seed::LOCK_PROD
                    };
                    let (s, t) = Raw::new(&sb)
                        .post(
                            "/tasks",
                            json!({"data": {"name": name, "projects": [project]}}),
                        )
                        .await;
                    assert_eq!(s, 201);
                    lock_gids.insert(c, t["data"]["gid"].as_str().unwrap().to_owned());
                }
                Event::Unlock(c) => {
                    let gid = lock_gids.remove(c).unwrap();
                    let (s, _) = Raw::new(&sb)
                        .put(
                            &format!("/tasks/{gid}"),
                            json!({"data": {"completed": true}}),
                        )
                        .await;
                    assert_eq!(s, 200);
                }
            }
        }
        let beta_before = env
            .state
            .cluster(&"beta".parse_cluster())
            .deployed()
            .unwrap()
            .map(|d| d.commit);
        let pushed = push_at(&env, PushRequest::scheduled(cluster.as_str(), *tick))
            .await
            .unwrap_or_else(|e| panic!("{tick} {cluster}: {e:#}"));
        let verdict = &pushed.plan.verdict;
        if let Some(r) = &pushed.report {
            assert!(r.failure.is_none(), "{tick} {cluster}: {:?}", r.failure);
        }
        match (cluster.as_str(), verdict) {
            (_, Verdict::Unknown { reason }) => {
                panic!("{tick} {cluster}: lock state unknown: {reason}")
            }
            ("beta", Verdict::Push { to, .. }) => {
                beta_pushes.push(*tick);
                beta_commit_at.insert(*tick, to.to_string());
            }
            ("prod", Verdict::Push { to, .. }) => {
                assert_eq!(
                    Some(to.to_string()),
                    beta_before,
                    "{tick}: prod ships what beta runs"
                );
                prod_pushes.push((*tick, to.to_string()));
            }
            ("beta", Verdict::Hold(HoldReason::Frozen { .. } | HoldReason::Locked { .. })) => {}
            ("prod", Verdict::Hold(HoldReason::Locked { .. })) => {}
            (_, Verdict::NothingNew { .. }) => {}
            (c, v) => panic!("{tick} {c}: unexpected verdict {v:?}"),
        }
        // While beta is locked, no beta push.
        if cluster.as_str() == "beta"
            && *tick >= at("2026-11-24T17:00:00Z")
            && *tick < at("2026-11-24T22:00:00Z")
        {
            assert!(
                !matches!(verdict, Verdict::Push { .. }),
                "{tick}: beta pushed while locked"
            );
        }
    }

    // No beta push started inside a freeze: 90 minutes before a prod tick.
    for b in &beta_pushes {
        for p in &prod_ticks {
            assert!(
                !(*b <= *p && *p - *b <= Duration::minutes(90)),
                "beta pushed at {b}, within 90 min of prod at {p}"
            );
        }
    }
    // Every prod push shipped the commit beta ran through the whole freeze,
    // and prod's hosts hold beta's artifact byte for byte.
    for (t, commit) in &prod_pushes {
        let freeze_start = *t - Duration::minutes(90);
        let last_beta = beta_commit_at
            .range(..=freeze_start)
            .next_back()
            .map(|(_, c)| c.clone());
        assert_eq!(
            last_beta.as_ref(),
            Some(commit),
            "{t}: prod shipped what beta ran since {freeze_start}"
        );
    }
    let (_, last) = prod_pushes.last().unwrap();
    let artifact = std::fs::read(bin.path(&format!("state/artifacts/{last}/index.html"))).unwrap();
    assert_eq!(
        std::fs::read(bin.path("hosts/prod-1/current/index.html")).unwrap(),
        artifact
    );
    // Prod was locked Wednesday 17:00 and open again Thursday 10:00.
    assert!(!prod_pushes
        .iter()
        .any(|(t, _)| *t == at("2026-11-26T01:00:00Z")));
    assert!(prod_pushes.len() >= 8, "{prod_pushes:?}");
    assert!(beta_pushes.len() >= 50, "{}", beta_pushes.len());

    // One push task per push, no more.
    let tasks = |p: &str| sb.with_data(|d| d.projects[p].tasks.len()).unwrap();
    assert_eq!(tasks(seed::PUSH_BETA), beta_pushes.len());
    assert_eq!(tasks(seed::PUSH_PROD), prod_pushes.len());
    assert_eq!(
        bin.builds(),
        beta_pushes.len(),
        "every beta push built once; prod never built"
    );
}

trait ParseCluster {
    fn parse_cluster(&self) -> pushgate::domain::model::ClusterName;
}

impl ParseCluster for str {
    fn parse_cluster(&self) -> pushgate::domain::model::ClusterName {
        pushgate::domain::model::ClusterName::parse(self).unwrap()
    }
}
