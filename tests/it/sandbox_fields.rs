//! `opt_fields` over HTTP as Asana resolves them (issue #15): dotted paths
//! through the schema are answered with exactly those fields; a path that
//! names no field is a 400 naming it; strict mode (what pushgate's own
//! tests run) accepts only the declared enum.

use pushgate::sandbox::Sandbox;
use serde_json::json;

use crate::support::{self, error_message, seed, Raw};

async fn lenient() -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_python_clients_first_call_creates_a_task_asking_projects_gid() {
    let sb = lenient().await;
    let raw = Raw::new(&sb);
    let (s, t) = raw
        .post(
            "/tasks?opt_fields=name,completed,projects.gid",
            json!({"data": {"name": "first", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(
        t["data"],
        json!({"gid": t["data"]["gid"], "name": "first", "completed": false,
               "projects": [{"gid": seed::LOCK_BETA}]})
    );
}

#[tokio::test]
async fn nested_paths_reach_into_the_full_record_of_what_they_name() {
    let sb = lenient().await;
    let raw = Raw::new(&sb);
    let (_, t) = raw
        .post(
            "/tasks",
            json!({"data": {"name": "n", "projects": [seed::CRASH], "assignee": seed::APPROVER_EMAIL,
                             "custom_fields": {seed::FIX_COMMIT_FIELD: "abc123"}}}),
        )
        .await;
    let gid = t["data"]["gid"].as_str().unwrap();
    let (s, got) = raw
        .get(&format!(
            "/tasks/{gid}?opt_fields=assignee.email,memberships.project.name,memberships.section,\
             projects.workspace.name,custom_fields.text_value,custom_fields.enum_value.name,due_on,tags"
        ))
        .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        got["data"],
        json!({
            "gid": gid,
            "assignee": {"gid": seed::APPROVER, "email": seed::APPROVER_EMAIL},
            "memberships": [{"project": {"gid": seed::CRASH, "name": "Crash Reports"}, "section": null}],
            "projects": [{"gid": seed::CRASH, "workspace": {"gid": seed::WORKSPACE, "name": "pushgate sandbox"}}],
            "custom_fields": [{"gid": seed::FIX_COMMIT_FIELD, "text_value": "abc123", "enum_value": null}],
            "due_on": null,
            "tags": [],
        })
    );
    let (s, list) = raw
        .get(&format!(
            "/tasks?project={}&limit=1&opt_fields=projects.name,memberships.project.gid",
            seed::CRASH
        ))
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(
        list["data"][0],
        json!({"gid": gid, "projects": [{"gid": seed::CRASH, "name": "Crash Reports"}],
               "memberships": [{"project": {"gid": seed::CRASH}}]})
    );
}

#[tokio::test]
async fn a_path_that_names_no_field_is_a_400_naming_it() {
    let sb = lenient().await;
    let raw = Raw::new(&sb);
    for (path, bad) in [
        (
            format!("/projects/{}/tasks", seed::LOCK_BETA),
            "projects.colour",
        ),
        (format!("/projects/{}/tasks", seed::LOCK_BETA), "name.first"),
        ("/users/me".to_owned(), "assignee.email"),
        (
            format!("/tasks?project={}", seed::LOCK_BETA),
            "memberships.project.nope",
        ),
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (s, body) = raw.get(&format!("{path}{sep}opt_fields=name,{bad}")).await;
        assert_eq!(s, 400, "{path} {bad}: {body}");
        assert!(error_message(&body).contains(bad), "{bad}: {body}");
    }
}

#[tokio::test]
async fn strict_mode_accepts_only_each_operations_declared_enum() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let (s, body) = raw
        .post(
            "/tasks?opt_fields=name,projects.gid",
            json!({"data": {"name": "x", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        error_message(&body).contains("projects.gid") && error_message(&body).contains("strict"),
        "{body}"
    );
    let (s, _) = raw
        .post(
            "/tasks?opt_fields=name,projects.name",
            json!({"data": {"name": "x", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    assert_eq!(s, 201, "what the enum lists passes strict mode");

    // The control endpoint switches it, with the bot's token only.
    let control = format!(
        "{}/_sandbox/strict",
        sb.base_url().trim_end_matches("/api/1.0")
    );
    let resp = raw
        .http
        .put(&control)
        .bearer_auth(sb.token_of(seed::APPROVER_EMAIL).unwrap())
        .json(&json!({"strict": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = raw
        .http
        .put(&control)
        .bearer_auth(&raw.token)
        .json(&json!({"strict": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (s, _) = raw
        .get("/users/me?opt_fields=workspaces.is_organization")
        .await;
    assert_eq!(s, 200, "lenient again");
}

#[tokio::test]
async fn asanas_path_syntax_this_and_groups() {
    let sb = lenient().await;
    let raw = Raw::new(&sb);
    let (_, t) = raw
        .post(
            "/tasks",
            json!({"data": {"name": "g", "projects": [seed::LOCK_BETA], "assignee": "me"}}),
        )
        .await;
    let gid = t["data"]["gid"].as_str().unwrap();
    let (s, got) = raw
        .get(&format!(
            "/tasks/{gid}?opt_fields=this.name,this.(assignee|followers).email"
        ))
        .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        got["data"],
        json!({"gid": gid, "name": "g",
               "assignee": {"gid": seed::ME, "email": seed::ME_EMAIL},
               "followers": [{"gid": seed::ME, "email": seed::ME_EMAIL}]})
    );
}
