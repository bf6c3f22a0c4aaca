//! The endpoints the official clients' everyday calls use, with the spec's
//! parameters, pagination and errors; a spec operation the sandbox does not
//! implement is 501, a path unknown to the spec 404.

use serde_json::{json, Value};

use crate::support::{self, error_message, seed, Raw};

fn gids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|t| t["gid"].as_str().unwrap().to_owned())
        .collect()
}

async fn task(raw: &Raw, data: Value) -> String {
    let (s, t) = raw.post("/tasks", json!({ "data": data })).await;
    assert_eq!(s, 201, "{t}");
    t["data"]["gid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn get_tasks_filters_as_the_spec_says_and_pages() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let p = seed::LOCK_BETA;
    let a = task(
        &raw,
        json!({"name": "a", "projects": [p], "assignee": seed::ENGINEER}),
    )
    .await;
    let b = task(&raw, json!({"name": "b", "projects": [p]})).await;
    let c = task(
        &raw,
        json!({"name": "c", "projects": [p], "assignee": seed::ENGINEER_EMAIL}),
    )
    .await;
    let elsewhere = task(
        &raw,
        json!({"name": "d", "projects": [seed::CRASH], "assignee": seed::ENGINEER}),
    )
    .await;
    raw.put(&format!("/tasks/{b}"), json!({"data": {"completed": true}}))
        .await;

    let (s, all) = raw.get(&format!("/tasks?project={p}")).await;
    assert_eq!(
        (s, gids(&all)),
        (200, vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(
        all["data"][0],
        json!({"gid": a, "resource_type": "task", "name": "a", "resource_subtype": "default_task"}),
        "compact records"
    );
    let (_, open) = raw
        .get(&format!("/tasks?project={p}&completed_since=now"))
        .await;
    assert_eq!(gids(&open), vec![a.clone(), c.clone()]);

    // Page through with limit, following next_page.
    let (_, p1) = raw.get(&format!("/tasks?project={p}&limit=2")).await;
    assert_eq!(gids(&p1), vec![a.clone(), b.clone()]);
    let next = p1["next_page"]["path"].as_str().unwrap();
    assert!(next.starts_with("/tasks?"), "{next}");
    let (_, p2) = raw.get(next).await;
    assert_eq!(gids(&p2), vec![c.clone()]);
    assert!(p2["next_page"].is_null());

    let (s, mine) = raw
        .get(&format!(
            "/tasks?assignee={}&workspace={}",
            seed::ENGINEER_EMAIL,
            seed::WORKSPACE
        ))
        .await;
    assert_eq!(
        (s, gids(&mine)),
        (200, vec![a.clone(), c.clone(), elsewhere])
    );

    sb.set_now(Some(chrono::Utc::now() + chrono::Duration::hours(1)));
    let later = chrono::Utc::now() + chrono::Duration::minutes(30);
    raw.put(&format!("/tasks/{c}"), json!({"data": {"name": "c2"}}))
        .await;
    let (_, modified) = raw
        .get(&format!(
            "/tasks?project={p}&modified_since={}",
            later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .await;
    assert_eq!(gids(&modified), vec![c]);

    for bad in [
        "".to_owned(),
        format!("assignee={}", seed::ENGINEER),
        format!("workspace={}", seed::WORKSPACE),
        format!("project={p}&modified_since=yesterday"),
        format!("project={p}&limit=101"),
        format!("project={p}&tag=1"),
    ] {
        let (s, body) = raw.get(&format!("/tasks?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(!error_message(&body).is_empty(), "{bad}");
    }
    assert_eq!(raw.get("/tasks?project=999").await.0, 404);
}

#[tokio::test]
async fn workspaces_users_and_custom_fields_are_discoverable() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let (s, w) = raw.get(&format!("/workspaces/{}", seed::WORKSPACE)).await;
    assert_eq!(s, 200);
    assert_eq!(w["data"]["name"], "pushgate sandbox");
    assert_eq!(w["data"]["is_organization"], false);
    assert_eq!(raw.get("/workspaces/999").await.0, 404);

    let (s, projects) = raw
        .get(&format!(
            "/workspaces/{}/projects?limit=2&archived=false",
            seed::WORKSPACE
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(projects["data"].as_array().unwrap().len(), 2);
    assert!(projects["next_page"]["offset"].is_string());

    let (_, users) = raw
        .get(&format!("/users?workspace={}", seed::WORKSPACE))
        .await;
    assert_eq!(
        gids(&users),
        vec![seed::ME, seed::APPROVER, seed::ENGINEER],
        "sorted by gid"
    );
    let (s, u) = raw
        .get(&format!("/users/{}?opt_fields=email,name", seed::APPROVER))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        u["data"],
        json!({"gid": seed::APPROVER, "email": seed::APPROVER_EMAIL, "name": "Avery Approver"})
    );
    let (_, by_mail) = raw.get(&format!("/users/{}", seed::ENGINEER_EMAIL)).await;
    assert_eq!(by_mail["data"]["gid"], seed::ENGINEER);
    assert_eq!(raw.get("/users/nobody@example.com").await.0, 404);

    let (s, fields) = raw
        .get(&format!("/workspaces/{}/custom_fields", seed::WORKSPACE))
        .await;
    assert_eq!(s, 200);
    assert_eq!(fields["data"][0]["gid"], seed::FIX_COMMIT_FIELD);
    assert_eq!(fields["data"][0]["name"], "Fix commit");
}

#[tokio::test]
async fn sections_hold_tasks_in_order() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let p = seed::PUSH_BETA;
    let (s, done) = raw
        .post(
            &format!("/projects/{p}/sections"),
            json!({"data": {"name": "Done"}}),
        )
        .await;
    assert_eq!(s, 201, "{done}");
    let done = done["data"]["gid"].as_str().unwrap().to_owned();
    let (_, doing) = raw
        .post(
            &format!("/projects/{p}/sections"),
            json!({"data": {"name": "Doing", "insert_before": done}}),
        )
        .await;
    let doing = doing["data"]["gid"].as_str().unwrap().to_owned();
    let (_, sections) = raw.get(&format!("/projects/{p}/sections")).await;
    assert_eq!(gids(&sections), vec![doing.clone(), done.clone()]);

    let t1 = task(&raw, json!({"name": "t1", "projects": [p]})).await;
    let t2 = task(&raw, json!({"name": "t2", "projects": [p]})).await;
    let (s, r) = raw
        .post(
            &format!("/sections/{done}/addTask"),
            json!({"data": {"task": t1}}),
        )
        .await;
    assert_eq!((s, r), (200, json!({"data": {}})));
    raw.post(
        &format!("/sections/{done}/addTask"),
        json!({"data": {"task": t2}}),
    )
    .await;
    let (_, in_done) = raw.get(&format!("/tasks?section={done}")).await;
    assert_eq!(
        gids(&in_done),
        vec![t2.clone(), t1.clone()],
        "addTask puts it on top"
    );
    raw.post(
        &format!("/tasks/{t1}/addProject"),
        json!({"data": {"project": p, "section": doing}}),
    )
    .await;
    let (_, t) = raw
        .get(&format!("/tasks/{t1}?opt_fields=memberships.section.name"))
        .await;
    assert_eq!(t["data"]["memberships"][0]["section"]["name"], "Doing");
    let (_, in_done) = raw.get(&format!("/tasks?section={done}")).await;
    assert_eq!(gids(&in_done), vec![t2]);

    let (s, body) = raw
        .post(&format!("/sections/{done}/addTask"), json!({"data": {}}))
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = raw
        .post(
            &format!("/tasks/{t1}/addProject"),
            json!({"data": {"project": seed::LOCK_BETA, "section": doing}}),
        )
        .await;
    assert_eq!(s, 400, "a section of another project");
    assert_eq!(raw.get("/sections/999").await.0, 404);
}

#[tokio::test]
async fn subtasks_belong_to_their_parent() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let parent = task(
        &raw,
        json!({"name": "release", "projects": [seed::PUSH_PROD]}),
    )
    .await;
    let (s, sub) = raw
        .post(
            &format!("/tasks/{parent}/subtasks"),
            json!({"data": {"name": "check dashboards"}}),
        )
        .await;
    assert_eq!(s, 201, "{sub}");
    assert_eq!(sub["data"]["parent"]["gid"], parent.as_str());
    assert_eq!(sub["data"]["workspace"]["gid"], seed::WORKSPACE);
    let sub = sub["data"]["gid"].as_str().unwrap().to_owned();
    let (_, list) = raw.get(&format!("/tasks/{parent}/subtasks")).await;
    assert_eq!(gids(&list), vec![sub.clone()]);
    let (_, p) = raw
        .get(&format!("/tasks/{parent}?opt_fields=num_subtasks"))
        .await;
    assert_eq!(p["data"]["num_subtasks"], 1);
    assert_eq!(raw.get(&format!("/tasks/{parent}/subtasks")).await.0, 200);
    raw.send("DELETE", &format!("/tasks/{parent}"), None).await;
    assert_eq!(
        raw.get(&format!("/tasks/{sub}")).await.0,
        404,
        "deleted with its parent"
    );
    assert_eq!(raw.get("/tasks/999/subtasks").await.0, 404);
}

#[tokio::test]
async fn comments_are_edited_and_deleted_by_their_author_only() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let t = task(&raw, json!({"name": "t", "projects": [seed::LOCK_BETA]})).await;
    let (_, c) = raw
        .post(
            &format!("/tasks/{t}/stories"),
            json!({"data": {"text": "frist"}}),
        )
        .await;
    let c = c["data"]["gid"].as_str().unwrap().to_owned();
    let (s, edited) = raw
        .put(&format!("/stories/{c}"), json!({"data": {"text": "first"}}))
        .await;
    assert_eq!(s, 200, "{edited}");
    assert_eq!(edited["data"]["text"], "first");
    assert_eq!(edited["data"]["is_edited"], true);
    let (_, got) = raw.get(&format!("/stories/{c}")).await;
    assert_eq!(got["data"]["html_text"], "<body>first</body>");

    let mut other = Raw::new(&sb);
    other.token = sb.token_of(seed::ENGINEER_EMAIL).unwrap();
    let (s, body) = other
        .put(
            &format!("/stories/{c}"),
            json!({"data": {"text": "mine now"}}),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(
        other.send("DELETE", &format!("/stories/{c}"), None).await.0,
        403
    );

    let created = raw.get(&format!("/tasks/{t}/stories")).await.1["data"][0]["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        raw.put(
            &format!("/stories/{created}"),
            json!({"data": {"text": "x"}})
        )
        .await
        .0,
        403,
        "system stories cannot be edited"
    );
    let (s, body) = raw
        .put(
            &format!("/stories/{c}"),
            json!({"data": {"text": "a", "html_text": "<body>a</body>"}}),
        )
        .await;
    assert_eq!(s, 400, "{body}");

    let (s, body) = raw.send("DELETE", &format!("/stories/{c}"), None).await;
    assert_eq!((s, body), (200, json!({"data": {}})));
    assert_eq!(raw.get(&format!("/stories/{c}")).await.0, 404);
}

#[tokio::test]
async fn a_spec_operation_not_implemented_is_501_and_an_unknown_path_404() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    for (method, path) in [
        ("GET", "/tags"),
        ("POST", "/tasks/123/duplicate"),
        ("PUT", "/workspaces/1200000000000001"),
        ("POST", "/batch"),
        ("GET", "/workspaces/1200000000000001/events"),
    ] {
        let (s, body) = raw.send(method, path, None).await;
        assert_eq!(s, 501, "{method} {path}: {body}");
        assert!(
            error_message(&body).contains("does not implement"),
            "{method} {path}: {body}"
        );
    }
    for (method, path) in [
        ("GET", "/no/such/route"),
        ("PATCH", "/tasks/1"),
        ("GET", "/tasks/1/nope"),
    ] {
        let (s, body) = raw.send(method, path, None).await;
        assert_eq!(s, 404, "{method} {path}: {body}");
    }
    let mut anon = Raw::new(&sb);
    anon.token = "nope".into();
    assert_eq!(anon.get("/tags").await.0, 401, "authentication comes first");
}

#[tokio::test]
async fn an_optional_body_the_clients_also_send_as_a_query_parameter_is_ignored() {
    // node-asana v3 and python-asana v5 send `opts` as the query, and an
    // optional request body is one of the opts: `?body=[object Object]`.
    let sb = pushgate::sandbox::Sandbox::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let raw = Raw::new(&sb);
    let path = format!(
        "/projects/{}/sections?body=%5Bobject%20Object%5D",
        seed::LOCK_BETA
    );
    let (s, body) = raw.post(&path, json!({"data": {"name": "Later"}})).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = raw
        .post(
            "/tasks?body=x",
            json!({"data": {"name": "x", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    assert_eq!(s, 400, "only where the body is optional: {body}");
    sb.set_strict(true);
    let (s, body) = raw.post(&path, json!({"data": {"name": "Later"}})).await;
    assert_eq!(s, 400, "strict mode takes declared parameters only: {body}");
}
