//! GET /events as Asana documents it (API-FACTS §10): 412 with a fresh sync
//! token first, then the resource's events since the token, at most 100 a
//! call; tokens die (24 h of sandbox time, or when a test expires them).

use serde_json::{json, Value};

use crate::support::{self, error_message, seed, Raw};

/// A fresh token for `resource`: the 412 a first call gets.
async fn subscribe(raw: &Raw, resource: &str) -> String {
    let (s, body) = raw.get(&format!("/events?resource={resource}")).await;
    assert_eq!(s, 412, "{body}");
    assert!(!error_message(&body).is_empty(), "{body}");
    body["sync"]
        .as_str()
        .expect("a fresh sync token")
        .to_owned()
}

async fn read(raw: &Raw, resource: &str, sync: &str) -> Value {
    let (s, body) = raw
        .get(&format!("/events?resource={resource}&sync={sync}"))
        .await;
    assert_eq!(s, 200, "{body}");
    body
}

/// `(resource_type, action, parent gid)` of each event.
fn summary(page: &Value) -> Vec<(String, String, String)> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource"]["resource_type"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["parent"]["gid"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_project_subscription_sees_its_tasks_come_change_go_and_get_comments() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let p = seed::LOCK_BETA;
    let sync = subscribe(&raw, p).await;
    let (_, t) = raw
        .post(
            "/tasks",
            json!({"data": {"name": "push beta", "projects": [p]}}),
        )
        .await;
    let gid = t["data"]["gid"].as_str().unwrap().to_owned();
    raw.post(
        &format!("/tasks/{gid}/stories"),
        json!({"data": {"text": "please"}}),
    )
    .await;
    raw.put(
        &format!("/tasks/{gid}"),
        json!({"data": {"completed": true}}),
    )
    .await;
    raw.post(
        &format!("/tasks/{gid}/removeProject"),
        json!({"data": {"project": p}}),
    )
    .await;
    // Not this project's business:
    raw.post(
        "/tasks",
        json!({"data": {"name": "other", "projects": [seed::CRASH]}}),
    )
    .await;

    let page = read(&raw, p, &sync).await;
    assert_eq!(page["has_more"], false);
    let s = |t: &str, a: &str, parent: &str| (t.to_owned(), a.to_owned(), parent.to_owned());
    assert_eq!(
        summary(&page),
        [
            s("task", "added", p),
            s("story", "added", &gid),
            s("story", "added", &gid),
            s("story", "added", &gid),
            s("task", "changed", "-"),
            s("story", "added", &gid),
            s("task", "removed", p),
        ],
        "{page}"
    );
    let changed = &page["data"][4];
    assert_eq!(changed["change"]["field"], "completed");
    assert_eq!(changed["change"]["new_value"], true);
    assert_eq!(changed["user"]["gid"], seed::ME);
    assert_eq!(changed["resource"]["name"], "push beta");
    assert!(changed["created_at"].is_string());

    let again = read(&raw, p, page["sync"].as_str().unwrap()).await;
    assert!(summary(&again).is_empty(), "nothing new since: {again}");
}

#[tokio::test]
async fn at_most_a_hundred_a_call_with_has_more() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let (_, t) = raw
        .post(
            "/tasks",
            json!({"data": {"name": "chatty", "projects": [seed::PUSH_BETA]}}),
        )
        .await;
    let gid = t["data"]["gid"].as_str().unwrap().to_owned();
    let mut sync = subscribe(&raw, &gid).await;
    for i in 0..130 {
        raw.post(
            &format!("/tasks/{gid}/stories"),
            json!({"data": {"text": format!("comment {i}")}}),
        )
        .await;
    }
    let mut sizes = Vec::new();
    loop {
        let page = read(&raw, &gid, &sync).await;
        sizes.push(page["data"].as_array().unwrap().len());
        sync = page["sync"].as_str().unwrap().to_owned();
        if page["has_more"] == false {
            break;
        }
        assert!(sizes.len() < 5, "{sizes:?}");
    }
    assert_eq!(sizes, [100, 30]);
    // `limit` caps a call (python-asana's iterator sends it).
    for i in 0..3 {
        raw.post(
            &format!("/tasks/{gid}/stories"),
            json!({"data": {"text": format!("more {i}")}}),
        )
        .await;
    }
    let (s, page) = raw
        .get(&format!("/events?resource={gid}&sync={sync}&limit=2"))
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        (
            page["data"].as_array().unwrap().len(),
            page["has_more"].as_bool()
        ),
        (2, Some(true))
    );
}

#[tokio::test]
async fn dead_tokens_get_412_with_a_fresh_one() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let p = seed::LOCK_PROD;
    let sync = subscribe(&raw, p).await;
    read(&raw, p, &sync).await;

    sb.expire_sync_tokens();
    let (s, body) = raw.get(&format!("/events?resource={p}&sync={sync}")).await;
    assert_eq!(s, 412, "{body}");
    let fresh = body["sync"].as_str().unwrap().to_owned();
    assert_ne!(fresh, sync);
    read(&raw, p, &fresh).await;

    // Over HTTP too, with the bot's token.
    let control = format!(
        "{}/_sandbox/events/expire",
        sb.base_url().trim_end_matches("/api/1.0")
    );
    let resp = raw
        .http
        .post(&control)
        .bearer_auth(&raw.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        raw.get(&format!("/events?resource={p}&sync={fresh}"))
            .await
            .0,
        412
    );

    // A day later a token is too old.
    let fresh = subscribe(&raw, p).await;
    sb.set_now(Some(chrono::Utc::now() + chrono::Duration::hours(25)));
    assert_eq!(
        raw.get(&format!("/events?resource={p}&sync={fresh}"))
            .await
            .0,
        412
    );
    // A token of another resource, or an empty one, is no token.
    let other = subscribe(&raw, seed::LOCK_BETA).await;
    assert_eq!(
        raw.get(&format!("/events?resource={p}&sync={other}"))
            .await
            .0,
        412
    );
    assert_eq!(raw.get(&format!("/events?resource={p}&sync=")).await.0, 412);
}

#[tokio::test]
async fn bad_requests_say_what_is_wrong() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    for (query, status) in [
        ("", 400),
        ("resource=abc", 400),
        ("resource=999", 404),
        ("resource=1200000000000002&limit=0", 400),
        ("resource=1200000000000002&since=x", 400),
    ] {
        let (s, body) = raw.get(&format!("/events?{query}")).await;
        assert_eq!(s, status, "{query}: {body}");
        assert!(!error_message(&body).is_empty(), "{query}");
    }
}
