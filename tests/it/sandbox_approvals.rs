//! Approval tasks as Asana models them (spec `TaskBase.approval_status`;
//! API-FACTS §7a), decided by people other than the bot: each seeded person
//! has a token, and a request acts as whoever's token it carries.

use pushgate::sandbox::Sandbox;
use serde_json::{json, Value};

use crate::support::{self, error_message, seed, Raw};

/// A lenient sandbox: these tests read nested paths (`completed_by.email`)
/// that Asana resolves but the operations' enums do not list.
async fn lenient() -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

fn as_user(sb: &Sandbox, email: &str) -> Raw {
    let mut raw = Raw::new(sb);
    raw.token = sb
        .token_of(email)
        .unwrap_or_else(|| panic!("{email} has a token"));
    raw
}

async fn approval(raw: &Raw) -> String {
    let (s, t) = raw
        .post(
            "/tasks",
            json!({"data": {"name": "Approve prod push 3f2a9c1", "resource_subtype": "approval",
                             "projects": [seed::LOCK_PROD], "assignee": seed::APPROVER_EMAIL}}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["data"]["resource_subtype"], "approval");
    assert_eq!(t["data"]["approval_status"], "pending");
    assert_eq!(t["data"]["completed"], false);
    t["data"]["gid"].as_str().unwrap().to_owned()
}

const STATE: &str = "opt_fields=approval_status,completed,completed_by.email,completed_at";

async fn state(raw: &Raw, gid: &str) -> Value {
    let (s, t) = raw.get(&format!("/tasks/{gid}?{STATE}")).await;
    assert_eq!(s, 200, "{t}");
    let mut d = t["data"].clone();
    d["completed_at"] = json!(!d["completed_at"].is_null());
    d
}

/// The approval stories of a task: (who, old, new).
async fn decisions(raw: &Raw, gid: &str) -> Vec<(String, String, String)> {
    let (_, stories) = raw
        .get(&format!(
            "/tasks/{gid}/stories?opt_fields=resource_subtype,created_by.email,old_approval_status,new_approval_status"
        ))
        .await;
    stories["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["resource_subtype"] == "approval_status_changed")
        .map(|s| {
            (
                s["created_by"]["email"].as_str().unwrap().to_owned(),
                s["old_approval_status"].as_str().unwrap().to_owned(),
                s["new_approval_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_person_has_a_token_and_acts_as_themself() {
    let sb = support::sandbox().await;
    let people = sb.users();
    let emails: Vec<&str> = people.iter().map(|p| p.email.as_str()).collect();
    assert_eq!(
        emails,
        [seed::ME_EMAIL, seed::APPROVER_EMAIL, seed::ENGINEER_EMAIL]
    );
    assert_eq!(
        people[0].token,
        sb.token(),
        "the bot's token is the sandbox token"
    );
    let approver = as_user(&sb, seed::APPROVER_EMAIL);
    let (s, me) = approver.get("/users/me?opt_fields=email").await;
    assert_eq!((s, me["data"]["gid"].as_str()), (200, Some(seed::APPROVER)));
    let (_, t) = approver
        .post(
            "/tasks",
            json!({"data": {"name": "mine", "projects": [seed::LOCK_BETA], "assignee": "me"}}),
        )
        .await;
    assert_eq!(t["data"]["assignee"]["gid"], seed::APPROVER);
    let (_, c) = approver
        .post(
            &format!("/tasks/{}/stories", t["data"]["gid"].as_str().unwrap()),
            json!({"data": {"text": "hi"}}),
        )
        .await;
    assert_eq!(c["data"]["created_by"]["name"], "Avery Approver");

    let newcomer = sb.add_user("Nia Newcomer", "nia@pushgate.invalid").unwrap();
    let (_, me) = as_user(&sb, "NIA@pushgate.invalid").get("/users/me").await;
    assert_eq!(me["data"]["gid"], newcomer.gid.as_str());
    assert!(sb.add_user("Again", "nia@pushgate.invalid").is_err());
    assert_eq!(sb.token_of("nobody@example.com"), None);
}

#[tokio::test]
async fn approving_rejecting_and_requesting_changes_follow_the_spec() {
    let sb = lenient().await;
    let bot = Raw::new(&sb);
    let approver = as_user(&sb, seed::APPROVER_EMAIL);
    let engineer = as_user(&sb, seed::ENGINEER_EMAIL);
    let gid = approval(&bot).await;
    assert_eq!(
        state(&bot, &gid).await,
        json!({"gid": gid, "approval_status": "pending", "completed": false, "completed_by": null, "completed_at": false})
    );

    // changes requested: complete, decided by the approver.
    let (s, t) = approver
        .put(
            &format!("/tasks/{gid}?{STATE}"),
            json!({"data": {"approval_status": "changes_requested"}}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        state(&bot, &gid).await,
        json!({"gid": gid, "approval_status": "changes_requested", "completed": true,
               "completed_by": {"gid": seed::APPROVER, "email": seed::APPROVER_EMAIL}, "completed_at": true})
    );
    // back to pending (incomplete), then rejected by the engineer.
    approver
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": "pending"}}),
        )
        .await;
    assert_eq!(
        state(&bot, &gid).await,
        json!({"gid": gid, "approval_status": "pending", "completed": false, "completed_by": null, "completed_at": false})
    );
    engineer
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": "rejected"}}),
        )
        .await;
    assert_eq!(
        state(&bot, &gid).await["completed"],
        true,
        "a rejected approval is complete"
    );
    // The approver approves over the rejection: the decider changes.
    approver
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": "approved"}}),
        )
        .await;
    assert_eq!(
        state(&bot, &gid).await["completed_by"]["email"],
        seed::APPROVER_EMAIL
    );
    assert_eq!(
        decisions(&bot, &gid).await,
        [
            (
                seed::APPROVER_EMAIL.into(),
                "pending".into(),
                "changes_requested".into()
            ),
            (
                seed::APPROVER_EMAIL.into(),
                "changes_requested".into(),
                "pending".into()
            ),
            (
                seed::ENGINEER_EMAIL.into(),
                "pending".into(),
                "rejected".into()
            ),
            (
                seed::APPROVER_EMAIL.into(),
                "rejected".into(),
                "approved".into()
            ),
        ]
    );
    let (_, stories) = bot.get(&format!("/tasks/{gid}/stories")).await;
    assert!(
        !stories["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["resource_subtype"] == "marked_complete"),
        "an approval writes approval stories, not completion ones: {stories}"
    );
}

#[tokio::test]
async fn completing_an_approval_task_approves_it_and_reopening_makes_it_pending() {
    let sb = lenient().await;
    let bot = Raw::new(&sb);
    let approver = as_user(&sb, seed::APPROVER_EMAIL);
    let gid = approval(&bot).await;
    let (_, t) = approver
        .put(
            &format!("/tasks/{gid}?{STATE}"),
            json!({"data": {"completed": true}}),
        )
        .await;
    assert_eq!(t["data"]["approval_status"], "approved");
    assert_eq!(t["data"]["completed_by"]["email"], seed::APPROVER_EMAIL);
    // Completing a decided task again changes nothing.
    bot.put(
        &format!("/tasks/{gid}"),
        json!({"data": {"completed": true}}),
    )
    .await;
    assert_eq!(
        state(&bot, &gid).await["completed_by"]["email"],
        seed::APPROVER_EMAIL
    );
    bot.put(
        &format!("/tasks/{gid}"),
        json!({"data": {"completed": false}}),
    )
    .await;
    assert_eq!(state(&bot, &gid).await["approval_status"], "pending");
    assert_eq!(decisions(&bot, &gid).await.len(), 2);
}

#[tokio::test]
async fn contradictions_and_approval_status_on_other_tasks_are_refused() {
    let sb = support::sandbox().await;
    let bot = Raw::new(&sb);
    let gid = approval(&bot).await;
    let (s, body) = bot
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": "approved", "completed": false}}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(error_message(&body).contains("completed"), "{body}");
    let (s, body) = bot
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": "maybe"}}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = bot
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"completed_by": seed::APPROVER}}),
        )
        .await;
    assert_eq!(s, 400, "completed_by is read-only: {body}");
    let (_, plain) = bot
        .post(
            "/tasks",
            json!({"data": {"name": "plain", "projects": [seed::LOCK_BETA]}}),
        )
        .await;
    let plain = plain["data"]["gid"].as_str().unwrap();
    let (s, body) = bot
        .put(
            &format!("/tasks/{plain}"),
            json!({"data": {"approval_status": "approved"}}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(error_message(&body).contains("approval"), "{body}");
    let (_, t) = bot
        .get(&format!("/tasks/{plain}?opt_fields=approval_status"))
        .await;
    assert_eq!(t["data"]["approval_status"], Value::Null);
    // A plain task records who completed it too.
    let engineer = as_user(&sb, seed::ENGINEER_EMAIL);
    engineer
        .put(
            &format!("/tasks/{plain}"),
            json!({"data": {"completed": true}}),
        )
        .await;
    let (_, t) = bot
        .get(&format!("/tasks/{plain}?opt_fields=completed_by.name"))
        .await;
    assert_eq!(t["data"]["completed_by"]["name"], "Eli Engineer");
}

#[tokio::test]
async fn in_strict_mode_a_gate_reads_who_decided_through_declared_fields() {
    // What pushgate's approval gate can send under support::sandbox():
    // completed_by (a gid), then the user's e-mail (API-FACTS §7a).
    let sb = support::sandbox().await;
    let bot = Raw::new(&sb);
    let gid = approval(&bot).await;
    as_user(&sb, seed::APPROVER_EMAIL)
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": "approved"}}),
        )
        .await;
    let (s, t) = bot
        .get(&format!(
            "/tasks/{gid}?opt_fields=resource_subtype,approval_status,completed,completed_by"
        ))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["data"]["approval_status"], "approved");
    let who = t["data"]["completed_by"]["gid"].as_str().unwrap();
    let (s, u) = bot.get(&format!("/users/{who}?opt_fields=email")).await;
    assert_eq!(
        (s, u["data"]["email"].as_str()),
        (200, Some(seed::APPROVER_EMAIL))
    );
    let (s, _) = bot
        .get(&format!("/tasks/{gid}?opt_fields=completed_by.email"))
        .await;
    assert_eq!(
        s, 400,
        "not in GET /tasks/{{gid}}'s enum: strict refuses it"
    );
}

#[tokio::test]
async fn the_sandbox_command_lists_every_person_and_token() {
    let sb = support::sandbox().await;
    let info = sb.info();
    for key in [
        "base_url",
        "token",
        "workspace",
        "projects",
        "custom_fields",
    ] {
        assert!(info.get(key).is_some(), "{key} is kept: {info}");
    }
    let approver = &info["users"][seed::APPROVER_EMAIL];
    assert_eq!(approver["gid"], seed::APPROVER);
    assert_eq!(
        approver["token"].as_str(),
        sb.token_of(seed::APPROVER_EMAIL).as_deref()
    );
    assert_eq!(info["users"][seed::ME_EMAIL]["token"], info["token"]);
}
