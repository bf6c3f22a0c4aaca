//! The sandbox over raw HTTP: Asana's documented behaviour, spec strictness,
//! faults, and persistence across restarts.

use serde_json::json;

use crate::support::{self, error_message, seed, Raw};

#[tokio::test]
async fn lists_are_compact_unless_opt_fields_asks_with_dotted_paths() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let (s, created) = raw
        .post("/tasks", json!({"data": {"name": "lock", "notes": "n", "assignee": "me", "projects": [seed::LOCK_BETA]}}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(created["data"]["name"], "lock");
    assert_eq!(
        created["data"]["notes"], "n",
        "a create answers with the full record"
    );

    let (s, list) = raw
        .get(&format!("/projects/{}/tasks", seed::LOCK_BETA))
        .await;
    assert_eq!(s, 200);
    let t = &list["data"][0];
    let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["gid", "name", "resource_subtype", "resource_type"]);
    assert!(
        list.get("next_page").is_none(),
        "no next_page without limit: {list}"
    );

    let (_, list) = raw
        .get(&format!(
            "/projects/{}/tasks?opt_fields=assignee.name,completed,custom_fields.text_value",
            seed::LOCK_BETA
        ))
        .await;
    assert_eq!(
        list["data"][0],
        json!({"gid": created["data"]["gid"], "assignee": {"gid": seed::ME, "name": "Sandbox User"}, "completed": false, "custom_fields": []})
    );
}

#[tokio::test]
async fn pages_carry_opaque_offsets_and_next_page_is_null_on_the_last() {
    let sb = support::sandbox().await;
    support::seed_tasks(&sb, seed::LOCK_BETA, 5, false, "t");
    let raw = Raw::new(&sb);
    let (_, p1) = raw
        .get(&format!(
            "/projects/{}/tasks?limit=2&opt_fields=name",
            seed::LOCK_BETA
        ))
        .await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 2);
    let next = &p1["next_page"];
    let path = next["path"].as_str().unwrap();
    assert!(
        path.starts_with(&format!("/projects/{}/tasks?", seed::LOCK_BETA))
            && path.contains("opt_fields=name"),
        "{path}"
    );
    assert_eq!(
        next["uri"].as_str().unwrap(),
        format!("{}{}", sb.base_url(), path)
    );
    let (_, p2) = raw.get(path).await;
    let (_, p3) = raw.get(p2["next_page"]["path"].as_str().unwrap()).await;
    assert_eq!(p3["data"].as_array().unwrap().len(), 1);
    assert!(p3["next_page"].is_null(), "{p3}");

    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "limit=2&offset=12345",
        "offset=abc&limit=2",
    ] {
        let (s, body) = raw
            .get(&format!("/projects/{}/tasks?{bad}", seed::LOCK_BETA))
            .await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(
            !error_message(&body).is_empty(),
            "{bad}: errors[0].message is set"
        );
    }
}

#[tokio::test]
async fn completed_since_now_and_date_time() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let open = support::seed_tasks(&sb, seed::LOCK_BETA, 1, false, "open");
    sb.set_now(Some("2026-11-20T10:00:00Z".parse().unwrap()));
    let old = support::seed_tasks(&sb, seed::LOCK_BETA, 1, false, "old");
    raw.put(
        &format!("/tasks/{}", old[0]),
        json!({"data": {"completed": true}}),
    )
    .await;
    sb.set_now(Some("2026-11-22T10:00:00Z".parse().unwrap()));
    let new = support::seed_tasks(&sb, seed::LOCK_BETA, 1, false, "new");
    raw.put(
        &format!("/tasks/{}", new[0]),
        json!({"data": {"completed": true}}),
    )
    .await;

    let gids = |v: serde_json::Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["gid"].as_str().unwrap().to_owned())
            .collect()
    };
    let p = seed::LOCK_BETA;
    assert_eq!(
        gids(
            raw.get(&format!("/projects/{p}/tasks?completed_since=now"))
                .await
                .1
        ),
        open
    );
    assert_eq!(
        gids(
            raw.get(&format!(
                "/projects/{p}/tasks?completed_since=2026-11-21T00:00:00Z"
            ))
            .await
            .1
        ),
        vec![open[0].clone(), new[0].clone()]
    );
    assert_eq!(
        gids(raw.get(&format!("/projects/{p}/tasks")).await.1).len(),
        3
    );
    let (s, _) = raw
        .get(&format!("/projects/{p}/tasks?completed_since=yesterday"))
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn refuses_what_the_spec_does_not_declare() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let p = seed::LOCK_BETA;
    let cases = [
        raw.get(&format!("/projects/{p}/tasks?workspace={}", seed::WORKSPACE)).await,
        raw.get(&format!("/projects/{p}/tasks?opt_fields=name,colour")).await,
        raw.get("/users/me?limit=10").await,
        raw.post("/tasks", json!({"data": {"name": "x", "projects": [p], "priority": "high"}})).await,
        raw.post("/tasks", json!({"name": "no envelope"})).await,
        raw.post("/tasks", json!({"data": {"name": "x", "projects": [p], "notes": "a", "html_notes": "<body>a</body>"}})).await,
        raw.post("/tasks", json!({"data": {"name": "x", "projects": [p], "html_notes": "<body><script>x</script></body>"}})).await,
        raw.post("/tasks", json!({"data": {"name": "x", "projects": [p], "html_notes": "not xml <"}})).await,
        raw.post("/tasks", json!({"data": {"name": "no project or workspace"}})).await,
        raw.post(&format!("/tasks/{}/addProject", "1"), json!({"data": {}})).await,
    ];
    for (i, (status, body)) in cases.iter().enumerate() {
        assert!(
            *status == 400 || *status == 404,
            "case {i}: {status} {body}"
        );
        assert!(!error_message(body).is_empty(), "case {i}: {body}");
    }
    let (s, body) = raw.send("POST", "/tasks", None).await;
    assert_eq!(s, 400, "{body}");
}

#[tokio::test]
async fn statuses_follow_asana_401_403_404_429_500() {
    let sb = support::sandbox().await;
    let mut raw = Raw::new(&sb);
    assert_eq!(raw.get("/tasks/999999").await.0, 404);
    assert_eq!(raw.get("/tasks/not-a-gid").await.0, 400);
    assert_eq!(raw.get("/no/such/route").await.0, 404);

    support::faults(&sb, |f| f.forbidden_projects = vec![seed::LOCK_PROD.into()]);
    assert_eq!(
        raw.get(&format!("/projects/{}/tasks", seed::LOCK_PROD))
            .await
            .0,
        403
    );
    assert_eq!(
        raw.get(&format!("/projects/{}/tasks", seed::LOCK_BETA))
            .await
            .0,
        200
    );

    support::faults(&sb, |f| {
        f.fail_next = 1;
        f.fail_status = 503;
    });
    let (s, body) = raw.get("/users/me").await;
    assert_eq!(s, 503);
    assert!(
        body["errors"][0]["phrase"].is_string(),
        "5xx carry a phrase: {body}"
    );
    assert_eq!(raw.get("/users/me").await.0, 200, "the count is used up");

    support::faults(&sb, |f| {
        f.rate_limit_every = Some(1);
        f.retry_after_secs = 17;
    });
    let resp = raw
        .http
        .get(format!("{}/users/me", sb.base_url()))
        .bearer_auth(&raw.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "17");
    sb.set_faults(Default::default());

    raw.token = "nope".into();
    let (s, body) = raw.get("/users/me").await;
    assert_eq!(s, 401);
    assert_eq!(error_message(&body), "Not Authorized");
}

#[tokio::test]
async fn faults_can_be_set_through_the_control_endpoint() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let control = format!(
        "{}/_sandbox/faults",
        sb.base_url().trim_end_matches("/api/1.0")
    );
    let resp = raw
        .http
        .put(&control)
        .json(&json!({"fail_next": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        401,
        "the control surface needs the token too"
    );
    let resp = raw
        .http
        .put(&control)
        .bearer_auth(&raw.token)
        .json(&json!({"fail_next": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(raw.get("/users/me").await.0, 500);
    assert_eq!(raw.get("/users/me").await.0, 500);
    assert_eq!(raw.get("/users/me").await.0, 200);
    let resp = raw
        .http
        .put(&control)
        .bearer_auth(&raw.token)
        .json(&json!({"fail_nxt": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        400,
        "unknown fault names are refused"
    );
}

#[tokio::test]
async fn writes_answer_as_asana_does() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let (_, t) = raw.post("/tasks", json!({"data": {"name": "t", "projects": [seed::CRASH], "html_notes": "<body>a <em>b</em> &amp; c</body>"}})).await;
    let gid = t["data"]["gid"].as_str().unwrap().to_owned();
    assert_eq!(t["data"]["notes"], "a b & c");
    let (s, body) = raw
        .post(
            &format!("/tasks/{gid}/addProject"),
            json!({"data": {"project": seed::LOCK_PROD}}),
        )
        .await;
    assert_eq!((s, body), (200, json!({"data": {}})));
    let (s, body) = raw
        .post(
            &format!("/tasks/{gid}/removeProject"),
            json!({"data": {"project": seed::CRASH}}),
        )
        .await;
    assert_eq!((s, body), (200, json!({"data": {}})));
    let (s, story) = raw
        .post(
            &format!("/tasks/{gid}/stories"),
            json!({"data": {"text": "hello"}}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(story["data"]["resource_subtype"], "comment_added");
    let (s, _) = raw
        .post(
            &format!("/tasks/{gid}/stories"),
            json!({"data": {"text": "a", "html_text": "<body>a</body>"}}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, t) = raw
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"completed": true}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(t["data"]["completed"], true);
    // The fix field came from the crash project; the task left it, so the value is disabled.
    let cf = &t["data"]["custom_fields"][0];
    assert_eq!(
        (cf["gid"].as_str(), cf["enabled"].as_bool()),
        (Some(seed::FIX_COMMIT_FIELD), Some(false))
    );
    let (s, _) = raw
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"custom_fields": {seed::FIX_COMMIT_FIELD: "abc"}}}),
        )
        .await;
    assert_eq!(s, 400, "a disabled value can only be cleared");
}

#[tokio::test]
async fn discovers_and_creates_projects_and_fields() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let (_, ws) = raw.get("/workspaces").await;
    assert_eq!(ws["data"][0]["gid"], seed::WORKSPACE);
    let (s, p) = raw
        .post(
            "/projects",
            json!({"data": {"name": "Lock Staging Release", "workspace": seed::WORKSPACE}}),
        )
        .await;
    assert_eq!(s, 201);
    let pgid = p["data"]["gid"].as_str().unwrap().to_owned();
    let (_, list) = raw
        .get(&format!(
            "/projects?workspace={}&limit=100",
            seed::WORKSPACE
        ))
        .await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Lock Staging Release") && names.contains(&"Crash Reports"),
        "{names:?}"
    );
    let (s, f) = raw.post("/custom_fields", json!({"data": {"workspace": seed::WORKSPACE, "name": "Owner", "resource_subtype": "text"}})).await;
    assert_eq!(s, 201);
    let fgid = f["data"]["gid"].as_str().unwrap();
    let (s, _) = raw
        .post(
            &format!("/projects/{pgid}/addCustomFieldSetting"),
            json!({"data": {"custom_field": fgid}}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, settings) = raw
        .get(&format!("/projects/{pgid}/custom_field_settings?limit=10"))
        .await;
    assert_eq!(settings["data"][0]["custom_field"]["name"], "Owner");
}

#[tokio::test]
async fn a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sandbox.json");
    let sb = pushgate::sandbox::Sandbox::start("127.0.0.1:0".parse().unwrap(), Some(&data))
        .await
        .unwrap();
    let token = sb.token();
    let (_, t) = Raw::new(&sb)
        .post(
            "/tasks",
            json!({"data": {"name": "survives", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    sb.stop().await;
    let sb = pushgate::sandbox::Sandbox::start("127.0.0.1:0".parse().unwrap(), Some(&data))
        .await
        .unwrap();
    assert_eq!(sb.token(), token, "the token is part of the data");
    let (s, again) = Raw::new(&sb)
        .get(&format!("/tasks/{}", t["data"]["gid"].as_str().unwrap()))
        .await;
    assert_eq!((s, again["data"]["name"].as_str()), (200, Some("survives")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o600,
        "it holds the token"
    );
}

#[tokio::test]
async fn binds_loopback_only() {
    let err = pushgate::sandbox::Sandbox::start("0.0.0.0:0".parse().unwrap(), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("loopback"), "{err}");
}
