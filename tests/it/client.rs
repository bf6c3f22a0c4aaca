//! The Asana client against the sandbox over real HTTP: pagination, retries
//! with recorded waits, and creates that are never duplicated.

use std::time::Duration;

use pushgate::adapters::asana::{fields, AsanaError, Comment, CompletedSince, NewTask, TaskUpdate};
use pushgate::domain::model::{ProjectGid, TaskGid};

use crate::support::{self, seed};

fn project(gid: &str) -> ProjectGid {
    ProjectGid::parse(gid).unwrap()
}

#[tokio::test]
async fn lists_every_page_of_a_project_with_limit_100() {
    let sb = support::sandbox().await;
    support::seed_tasks(&sb, seed::LOCK_BETA, 257, false, "open");
    support::seed_tasks(&sb, seed::LOCK_BETA, 40, true, "done");
    let (client, _) = support::client(&sb);

    let open = client
        .project_tasks(
            &project(seed::LOCK_BETA),
            CompletedSince::Now,
            fields::LOCK_TASK,
        )
        .await
        .unwrap();
    assert_eq!(open.len(), 257);
    assert!(open.iter().all(|t| t.completed == Some(false)));
    let mut gids: Vec<&str> = open.iter().map(|t| t.gid.as_str()).collect();
    gids.dedup();
    assert_eq!(gids.len(), 257, "no task twice");

    let reqs = sb.requests();
    assert_eq!(reqs.len(), 3, "three pages of at most 100: {reqs:?}");
    assert!(reqs
        .iter()
        .all(|r| r.query.contains("limit=100") && r.query.contains("completed_since=now")));
    assert!(
        !reqs[0].query.contains("offset=")
            && reqs[1].query.contains("offset=")
            && reqs[2].query.contains("offset=")
    );

    let all = client
        .project_tasks(
            &project(seed::LOCK_BETA),
            CompletedSince::All,
            fields::LOCK_TASK,
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 297);
}

#[tokio::test]
async fn waits_out_429_as_retry_after_says_without_sleeping() {
    let sb = support::sandbox().await;
    support::seed_tasks(&sb, seed::LOCK_BETA, 250, false, "open");
    support::faults(&sb, |f| {
        f.rate_limit_every = Some(2);
        f.retry_after_secs = 30;
    });
    let (client, waits) = support::client(&sb);
    let started = std::time::Instant::now();
    let tasks = client
        .project_tasks(
            &project(seed::LOCK_BETA),
            CompletedSince::Now,
            fields::LOCK_TASK,
        )
        .await
        .unwrap();
    assert_eq!(tasks.len(), 250);
    let waits = waits.lock().unwrap().clone();
    assert!(!waits.is_empty());
    assert!(
        waits.iter().all(|w| *w == Duration::from_secs(30)),
        "{waits:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the waits were recorded, not slept"
    );
    assert!(
        client
            .stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn retries_server_errors_with_growing_bounded_backoff() {
    let sb = support::sandbox().await;
    support::faults(&sb, |f| f.fail_next = 3);
    let (client, waits) = support::client(&sb);
    let me = client.me().await.unwrap();
    assert_eq!(me.name.as_deref(), Some("Sandbox User"));
    let waits = waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 3);
    // Equal jitter: attempt n waits between half and all of 500ms * 2^(n-1).
    for (i, w) in waits.iter().enumerate() {
        let step = Duration::from_millis(500) * (1 << i);
        assert!(*w >= step / 2 && *w <= step, "wait {i}: {w:?}");
    }
}

#[tokio::test]
async fn gives_up_after_the_bound_with_a_transient_error() {
    let sb = support::sandbox().await;
    support::faults(&sb, |f| f.fail_next = 1000);
    let (client, waits) = support::client(&sb);
    let err = client.me().await.unwrap_err();
    assert!(
        matches!(err, AsanaError::Exhausted { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(sb.requests().len(), 5);
    assert_eq!(waits.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_a_retried_transport_error() {
    let sb = support::sandbox().await;
    support::faults(&sb, |f| f.latency_ms = 400);
    let policy = pushgate::config::RetryPolicy {
        max_attempts: 2,
        request_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let (client, waits) = support::client_with(&sb, &sb.token(), policy);
    let err = client.me().await.unwrap_err();
    let AsanaError::Exhausted { attempts: 2, last } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            **last,
            AsanaError::Transport {
                before_send: false,
                ..
            }
        ),
        "{last:?}"
    );
    assert!(last.to_string().contains("timed out"), "{last}");
    assert_eq!(waits.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_token_names_its_source_never_the_token_and_is_not_retried() {
    let sb = support::sandbox().await;
    let (client, _) = support::client_with_token(&sb, "wrong-secret-0123456789");
    let err = client.me().await.unwrap_err();
    let msg = format!("{:#}", anyhow::Error::new(err));
    assert!(
        msg.contains("the environment variable ASANA_TOKEN"),
        "{msg}"
    );
    assert!(msg.contains("401"), "{msg}");
    assert!(!msg.contains("wrong-secret"), "{msg}");
    assert_eq!(sb.requests().len(), 1);
}

fn new_task(name: &str) -> NewTask {
    NewTask {
        name: name.into(),
        notes: Some(format!("{name}: run 42 on bastion-1")),
        projects: vec![project(seed::PUSH_BETA)],
        ..NewTask::default()
    }
}

async fn tasks_named(client: &pushgate::adapters::asana::Client, name: &str) -> usize {
    client
        .project_tasks(&project(seed::PUSH_BETA), CompletedSince::All, "name")
        .await
        .unwrap()
        .iter()
        .filter(|t| t.name == name)
        .count()
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_after_it_applied_is_not_sent_twice() {
    let sb = support::sandbox().await;
    support::faults(&sb, |f| {
        f.drop_next = 1;
        f.drop_after_apply = true;
    });
    let (client, _) = support::client(&sb);
    let task = client
        .create_task(&new_task("beta push 3f2a9c1"))
        .await
        .unwrap();
    assert_eq!(task.name, "beta push 3f2a9c1");
    assert_eq!(tasks_named(&client, "beta push 3f2a9c1").await, 1);
    let posts = sb.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "found by the probe, not re-posted");
}

#[tokio::test]
async fn a_create_lost_before_it_applied_is_sent_again_once() {
    let sb = support::sandbox().await;
    support::faults(&sb, |f| {
        f.drop_next = 1;
        f.drop_after_apply = false;
    });
    let (client, _) = support::client(&sb);
    client
        .create_task(&new_task("beta push 0a0a0a0"))
        .await
        .unwrap();
    assert_eq!(tasks_named(&client, "beta push 0a0a0a0").await, 1);
    let posts = sb.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 2);
}

#[tokio::test]
async fn a_rate_limited_create_is_resent_without_a_probe() {
    let sb = support::sandbox().await;
    support::faults(&sb, |f| {
        f.rate_limit_every = Some(1);
        f.retry_after_secs = 2;
    });
    let (client, waits) = support::client(&sb);
    let err = client.create_task(&new_task("never")).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert!(
        sb.requests().iter().all(|r| r.method == "POST"),
        "a 429 proves nothing was applied: no probe reads"
    );
    assert_eq!(waits.lock().unwrap().len(), 4);
    sb.set_faults(Default::default());
    assert_eq!(tasks_named(&client, "never").await, 0);
}

#[tokio::test]
async fn a_comment_whose_answer_was_lost_is_not_posted_twice() {
    let sb = support::sandbox().await;
    let (client, _) = support::client(&sb);
    let task = client.create_task(&new_task("with comment")).await.unwrap();
    let gid = TaskGid::parse(&task.gid).unwrap();
    support::faults(&sb, |f| {
        f.drop_next = 1;
        f.drop_after_apply = true;
    });
    let comment = Comment::Text("stage: 3/3 hosts in 1.2s".into());
    client.add_comment(&gid, &comment).await.unwrap();
    let stories = client.stories(&gid).await.unwrap();
    let same = stories
        .iter()
        .filter(|s| s.text.as_deref() == Some("stage: 3/3 hosts in 1.2s"))
        .count();
    assert_eq!(same, 1);
}

#[tokio::test]
async fn writes_round_trip_complete_fields_projects_and_rich_comments() {
    let sb = support::sandbox().await;
    let (client, _) = support::client(&sb);
    let task = client
        .create_task(&NewTask {
            name: "crash 17".into(),
            projects: vec![project(seed::CRASH)],
            custom_fields: vec![(seed::FIX_COMMIT_FIELD.into(), "3f2a9c1".into())],
            assignee: Some("me".into()),
            ..NewTask::default()
        })
        .await
        .unwrap();
    let gid = TaskGid::parse(&task.gid).unwrap();
    assert_eq!(task.assignee.unwrap().name.as_deref(), Some("Sandbox User"));
    let fix = task
        .custom_fields
        .unwrap()
        .into_iter()
        .find(|f| f.gid == seed::FIX_COMMIT_FIELD)
        .unwrap();
    assert_eq!(fix.text_value.as_deref(), Some("3f2a9c1"));

    let update = TaskUpdate {
        completed: Some(true),
        notes: Some("Fixed-in: 3f2a9c1".into()),
        custom_fields: vec![(seed::FIX_COMMIT_FIELD.into(), None)],
        ..TaskUpdate::default()
    };
    let task = client.update_task(&gid, &update).await.unwrap();
    assert_eq!(task.completed, Some(true));
    assert!(task.completed_at.is_some());

    client
        .add_project(&gid, &project(seed::LOCK_PROD))
        .await
        .unwrap();
    client
        .add_project(&gid, &project(seed::LOCK_PROD))
        .await
        .unwrap();
    client
        .remove_project(&gid, &project(seed::CRASH))
        .await
        .unwrap();
    let task = client.get_task(&gid, fields::TASK).await.unwrap();
    let projects: Vec<String> = task.projects.unwrap().into_iter().map(|p| p.gid).collect();
    assert_eq!(projects, vec![seed::LOCK_PROD.to_owned()]);

    client
        .add_comment(
            &gid,
            &Comment::Html("<body>Shipped in <strong>beta</strong> &amp; prod</body>".into()),
        )
        .await
        .unwrap();
    let bad = client
        .add_comment(&gid, &Comment::Html("<body><p>no</p></body>".into()))
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
    assert!(!bad.is_transient());
    let texts: Vec<String> = client
        .stories(&gid)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| s.text)
        .collect();
    assert!(
        texts.contains(&"Shipped in beta & prod".to_owned()),
        "{texts:?}"
    );

    let settings = client
        .custom_field_settings(&project(seed::CRASH))
        .await
        .unwrap();
    assert_eq!(settings[0].custom_field.name.as_deref(), Some("Fix commit"));
}
