//! Tasks: create (also as a subtask), read one or a filtered list, update
//! (including approvals), delete, and move between projects and sections.
//!
//! Approval tasks follow `TaskBase.approval_status` (API-FACTS §7a): an
//! approval task is `pending` until someone sets `approved`, `rejected` or
//! `changes_requested` (or completes it, which approves it); `completed`
//! follows the status, `completed_by` names who decided, and every change
//! writes an `approval_status_changed` story with the old and new status.
//! Not here: tags, dependencies, followers after create, `setParent`,
//! duplication, search.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Map, Value};

use super::super::events::Named;
use super::super::richtext::{self, Kind};
use super::super::spec::{self, OpSpec};
use super::super::store::{Data, TaskMeta, TaskRec, APPROVAL_STATUSES};
use super::{
    add_story, audience, body, bool_field, check_gid, completed_since, date_time, empty, event,
    keeps, list, named_project, named_task, one, params, project_mut, project_of, said, story,
    str_field, task_changed, task_mut, task_of, user_of, workspace_of, Actor, ApiError, Me, Result,
    St, TASK_COMPACT,
};

// ---- reading ----

pub async fn get_project_tasks(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_PROJECT_TASKS, q)?;
    let since = completed_since(&p)?;
    let d = s.data();
    let pr = project_of(&d, &project)?;
    let items: Vec<&TaskRec> = pr
        .tasks
        .iter()
        .filter_map(|t| d.tasks.get(t))
        .filter(|t| keeps(t, since))
        .collect();
    Ok(list(
        &d,
        &s.origin,
        &items,
        |t| d.task_full(t, &s.origin),
        &p,
        TASK_COMPACT,
        &format!("/projects/{project}/tasks"),
    ))
}

/// GET /tasks: by project, section, or assignee in a workspace (spec:
/// `paths./tasks.get`; API-FACTS §6).
pub async fn get_tasks(State(s): St, me: Me, RawQuery(q): RawQuery) -> Result<Response> {
    let p = params(&s, &spec::GET_TASKS, q)?;
    let since = completed_since(&p)?;
    let modified_since = p
        .get("modified_since")
        .map(|v| date_time("modified_since", v))
        .transpose()?;
    let d = s.data();
    let (assignee, workspace) = (p.get("assignee"), p.get("workspace"));
    match (assignee, workspace) {
        (Some(_), None) => return Err(ApiError::bad(
            "assignee: If you specify assignee, you must also specify the workspace to filter on",
        )),
        (None, Some(_)) => return Err(ApiError::bad(
            "workspace: If you specify workspace, you must also specify the assignee to filter on",
        )),
        (None, None) if p.get("project").is_none() && p.get("section").is_none() => {
            return Err(ApiError::bad(
                "You must specify a project or tag if you do not specify assignee and workspace",
            ))
        }
        _ => {}
    }
    let assignee = assignee
        .map(|a| user_of(&d, &me, a, "assignee"))
        .transpose()?;
    if let Some(w) = workspace {
        workspace_of(&d, w)?;
    }
    // The candidates, in the order Asana gives them: a project's or a
    // section's order, else by gid.
    let mut order: Vec<&TaskRec> = match (p.get("project"), p.get("section")) {
        (_, Some(section)) => {
            check_gid("section", section)?;
            let (pr, _) = d
                .section(section)
                .ok_or_else(|| ApiError::not_found("section", section))?;
            if let Some(project) = p.get("project") {
                if project != pr.gid {
                    project_of(&d, project)?;
                    return Err(ApiError::bad(format!(
                        "section: section {section} is not in project {project}"
                    )));
                }
            }
            pr.tasks
                .iter()
                .filter(|t| pr.task_sections.get(*t).map(String::as_str) == Some(section))
                .filter_map(|t| d.tasks.get(t))
                .collect()
        }
        (Some(project), None) => {
            let pr = project_of(&d, project)?;
            pr.tasks.iter().filter_map(|t| d.tasks.get(t)).collect()
        }
        (None, None) => d.tasks.values().collect(),
    };
    order.retain(|t| {
        keeps(t, since)
            && modified_since.is_none_or(|m| t.modified_at >= m)
            && assignee
                .as_ref()
                .is_none_or(|a| t.assignee.as_ref() == Some(a))
            && workspace.is_none_or(|w| t.workspace == w)
    });
    Ok(list(
        &d,
        &s.origin,
        &order,
        |t| d.task_full(t, &s.origin),
        &p,
        TASK_COMPACT,
        "/tasks",
    ))
}

pub async fn get_task(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_TASK, q)?;
    let d = s.data();
    let t = task_of(&d, &task)?;
    Ok(one(
        &d,
        &s.origin,
        d.task_full(t, &s.origin),
        &p,
        StatusCode::OK,
    ))
}

pub async fn get_subtasks(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_SUBTASKS, q)?;
    let d = s.data();
    task_of(&d, &task)?;
    let items: Vec<&TaskRec> = d
        .meta(&task)
        .subtasks
        .iter()
        .filter_map(|g| d.tasks.get(g))
        .collect();
    Ok(list(
        &d,
        &s.origin,
        &items,
        |t| d.task_full(t, &s.origin),
        &p,
        TASK_COMPACT,
        &format!("/tasks/{task}/subtasks"),
    ))
}

// ---- writing: the pieces ----

/// Text custom field values from a write: gid → value (null clears).
fn field_values(
    d: &Data,
    data: &Map<String, Value>,
    allowed: &[String],
    current: Option<&TaskRec>,
) -> Result<Vec<(String, Option<String>)>> {
    let Some(v) = data.get("custom_fields") else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = v else {
        return Err(ApiError::bad(
            "custom_fields: must be an object of field gid to value",
        ));
    };
    let mut out = Vec::new();
    for (gid, value) in map {
        check_gid("custom_fields", gid)?;
        let disabled_value = current.is_some_and(|t| t.values.contains_key(gid));
        let clearing = value.is_null();
        let settable = allowed.contains(gid) || (disabled_value && clearing);
        if !settable {
            if !d.fields.contains_key(gid) {
                return Err(ApiError::not_found("custom_field", gid));
            }
            return Err(ApiError::bad(format!(
                "custom_fields: Custom field with ID {gid} is not on given object"
            )));
        }
        let value = match value {
            Value::Null => None,
            Value::String(s) if s.chars().count() <= 1024 => Some(s.clone()),
            Value::String(_) => {
                return Err(ApiError::bad(format!(
                    "custom_fields: the value for {gid} is longer than 1024 characters"
                )))
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "custom_fields: the value for text field {gid} must be a string or null"
                )))
            }
        };
        out.push((gid.clone(), value));
    }
    Ok(out)
}

/// `notes` / `html_notes` from a write → (plain, rich).
fn notes_of(data: &Map<String, Value>) -> Result<Option<(String, Option<String>)>> {
    match (str_field(data, "notes")?, str_field(data, "html_notes")?) {
        (Some(_), Some(_)) => Err(ApiError::bad(
            "You may only provide one of notes or html_notes",
        )),
        (Some(n), None) => Ok(Some((n.to_owned(), None))),
        (None, Some(h)) => {
            let plain = richtext::to_plain(h, Kind::TaskNotes)
                .map_err(|e| ApiError::bad(format!("html_notes: {e}")))?;
            Ok(Some((plain, Some(h.to_owned()))))
        }
        (None, None) => Ok(None),
    }
}

/// `resource_subtype` from a write: `None` = not given; `Some(None)` =
/// `default_task`.
fn subtype_of(data: &Map<String, Value>) -> Result<Option<Option<String>>> {
    match str_field(data, "resource_subtype")? {
        None => Ok(None),
        Some("default_task") => Ok(Some(None)),
        Some(s @ ("milestone" | "approval")) => Ok(Some(Some(s.to_owned()))),
        Some(other) => Err(ApiError::bad(format!(
            "resource_subtype: `{}` is not one the sandbox emulates (default_task, milestone, approval)",
            other.escape_debug()
        ))),
    }
}

fn approval_of(data: &Map<String, Value>) -> Result<Option<String>> {
    match str_field(data, "approval_status")? {
        None => Ok(None),
        Some(s) if APPROVAL_STATUSES.contains(&s) => Ok(Some(s.to_owned())),
        Some(other) => Err(ApiError::bad(format!(
            "approval_status: `{}` is not one of {}",
            other.escape_debug(),
            APPROVAL_STATUSES.join(", ")
        ))),
    }
}

/// Writable fields kept as given (see `TaskMeta::extra`), checked for shape.
fn extra_of(data: &Map<String, Value>) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for (key, v) in data {
        let ok = match key.as_str() {
            "due_on" | "start_on" => {
                v.is_null()
                    || v.as_str()
                        .is_some_and(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
            }
            "due_at" | "start_at" => {
                v.is_null() || v.as_str().is_some_and(|s| date_time(key, s).is_ok())
            }
            "assignee_status" => v
                .as_str()
                .is_some_and(|s| ["today", "upcoming", "later", "new", "inbox"].contains(&s)),
            "liked" => v.is_boolean(),
            "external" => v.is_null() || v.is_object(),
            "assignee_section" | "custom_type" | "custom_type_status_option" => {
                return Err(ApiError::bad(format!(
                    "{key}: the pushgate sandbox does not emulate it"
                )))
            }
            _ => continue,
        };
        if !ok {
            return Err(ApiError::bad(format!(
                "{key}: not a valid value: {}",
                v.to_string().escape_debug()
            )));
        }
        out.insert(key.clone(), v.clone());
    }
    Ok(out)
}

fn gid_list(data: &Map<String, Value>, key: &str) -> Result<Vec<String>> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::bad(format!("{key}: must be an array of strings")))
            })
            .collect(),
        Some(_) => Err(ApiError::bad(format!("{key}: must be an array of strings"))),
    }
}

/// How Asana words an approval decision in its story.
fn decision_words(status: &str) -> &'static str {
    match status {
        "approved" => "approved this task",
        "rejected" => "rejected this task",
        "changes_requested" => "requested changes to this task",
        _ => "marked this task as pending approval",
    }
}

// ---- writing: create ----

/// POST /tasks, and POST /tasks/{parent}/subtasks with `parent` set.
fn new_task(
    d: &mut Data,
    now: DateTime<Utc>,
    me: &Actor,
    origin: &str,
    data: &Map<String, Value>,
    parent: Option<String>,
) -> Result<Value> {
    let projects = gid_list(data, "projects")?;
    if projects.len() > 20 {
        return Err(ApiError::bad(
            "projects: a task can be in at most 20 projects",
        ));
    }
    let parent = match (parent, str_field(data, "parent")?) {
        (Some(p), _) => Some(p),
        (None, Some(p)) => Some(p.to_owned()),
        (None, None) => None,
    };
    let mut workspace = str_field(data, "workspace")?.map(str::to_owned);
    let mut homes: Vec<(String, String)> = projects
        .iter()
        .map(|pg| project_of(d, pg).map(|p| (pg.clone(), p.workspace.clone())))
        .collect::<Result<_>>()?;
    if let Some(pt) = &parent {
        homes.push((
            format!("parent task {pt}"),
            task_of(d, pt)?.workspace.clone(),
        ));
    }
    for (what, w) in homes {
        match &workspace {
            Some(ws) if *ws != w => {
                return Err(ApiError::bad(format!(
                    "workspace: {what} is not in workspace {ws}"
                )))
            }
            _ => workspace = Some(w),
        }
    }
    let workspace = workspace.ok_or_else(|| {
        ApiError::bad("workspace: Missing input; give projects, a parent or a workspace")
    })?;
    workspace_of(d, &workspace)?;
    let name = str_field(data, "name")?.unwrap_or("").to_owned();
    let (notes, html_notes) = notes_of(data)?.unwrap_or_default();
    let assignee = str_field(data, "assignee")?
        .map(|a| user_of(d, me, a, "assignee"))
        .transpose()?;
    let followers = gid_list(data, "followers")?
        .iter()
        .map(|f| user_of(d, me, f, "followers"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(tag) = gid_list(data, "tags")?.first() {
        return Err(ApiError::not_found("tag", tag));
    }
    let subtype = subtype_of(data)?.flatten();
    let status = approval_of(data)?;
    let completed = bool_field(data, "completed")?;
    let approval_status = match (subtype.as_deref(), status, completed) {
        (Some("approval"), Some(s), Some(c)) if c != (s != "pending") => {
            return Err(ApiError::bad(format!(
                "completed: {c} contradicts approval_status `{s}` (only pending is incomplete)"
            )))
        }
        (Some("approval"), Some(s), _) => Some(s),
        (Some("approval"), None, Some(true)) => Some("approved".to_owned()),
        (Some("approval"), None, _) => Some("pending".to_owned()),
        (_, Some(_), _) => {
            return Err(ApiError::bad(
                "approval_status: only approval tasks (resource_subtype approval) have an approval status",
            ))
        }
        (_, None, _) => None,
    };
    let completed = match &approval_status {
        Some(s) => s != "pending",
        None => completed.unwrap_or(false),
    };
    let extra = extra_of(data)?;
    let gid = d.new_gid();
    let mut task = TaskRec {
        gid: gid.clone(),
        name,
        notes,
        html_notes,
        completed,
        completed_at: completed.then_some(now),
        created_at: now,
        modified_at: now,
        assignee,
        workspace,
        projects: projects.clone(),
        values: BTreeMap::new(),
        stories: Vec::new(),
    };
    let allowed = d.task_fields(&task);
    for f in &allowed {
        task.values.insert(f.clone(), None);
    }
    for (f, v) in field_values(d, data, &allowed, None)? {
        task.values.insert(f, v);
    }
    for pg in &projects {
        project_mut(d, pg)?.tasks.push(gid.clone());
    }
    if let Some(pt) = &parent {
        d.meta_mut(pt).subtasks.push(gid.clone());
    }
    *d.meta_mut(&gid) = TaskMeta {
        resource_subtype: subtype,
        approval_status,
        parent: parent.clone(),
        subtasks: Vec::new(),
        completed_by: completed.then(|| me.0.clone()),
        created_by: Some(me.0.clone()),
        followers,
        extra,
    };
    d.tasks.insert(gid.clone(), task);
    let t = task_of(d, &gid)?.clone();
    for pg in &projects {
        let pr = named_project(project_of(d, pg)?);
        event(
            d,
            now,
            me,
            named_task(&t),
            "added",
            Some(pr),
            None,
            vec![pg.clone(), gid.clone()],
        );
    }
    if let Some(pt) = &parent {
        let parent_task = task_of(d, pt)?.clone();
        let who = audience(d, &parent_task);
        event(
            d,
            now,
            me,
            named_task(&t),
            "added",
            Some(named_task(&parent_task)),
            None,
            who,
        );
    }
    let created = story(
        d,
        now,
        me,
        "added_to_task",
        said(d, me, "created this task"),
    );
    add_story(d, now, me, &gid, created)?;
    let t = task_of(d, &gid)?;
    Ok(d.task_full(t, origin))
}

pub async fn create_task(
    State(s): St,
    me: Me,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    create(&s, &me, &spec::CREATE_TASK, q, &bytes, None)
}

pub async fn create_subtask(
    State(s): St,
    me: Me,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    check_gid("task", &task)?;
    create(&s, &me, &spec::CREATE_SUBTASK, q, &bytes, Some(task))
}

fn create(
    s: &super::Shared,
    me: &Actor,
    op: &OpSpec,
    q: Option<String>,
    bytes: &Bytes,
    parent: Option<String>,
) -> Result<Response> {
    let p = params(s, op, q)?;
    let data = body(op, bytes)?;
    if parent.is_some() && data.contains_key("parent") {
        return Err(ApiError::bad(
            "parent: the subtask's parent is the task in the path",
        ));
    }
    let now = s.now();
    let v = s.mutate(|d| new_task(d, now, me, &s.origin, &data, parent))?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::CREATED))
}

// ---- writing: update ----

pub async fn update_task(
    State(s): St,
    me: Me,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::UPDATE_TASK, q)?;
    let data = body(&spec::UPDATE_TASK, &bytes)?;
    if data.contains_key("parent") {
        return Err(ApiError::bad(
            "parent: Asana changes a task's parent with POST /tasks/{task_gid}/setParent, which the pushgate sandbox does not implement",
        ));
    }
    let now = s.now();
    let v = s.mutate(|d| {
        let current = task_of(d, &task)?.clone();
        let meta = d.meta(&task);
        let allowed = d.task_fields(&current);
        let values = field_values(d, &data, &allowed, Some(&current))?;
        let notes = notes_of(&data)?;
        let name = str_field(&data, "name")?.map(str::to_owned);
        let completed = bool_field(&data, "completed")?;
        let assignee = match data.get("assignee") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(a)) => Some(Some(user_of(d, &me, a, "assignee")?)),
            Some(_) => return Err(ApiError::bad("assignee: Not a string")),
        };
        let extra = extra_of(&data)?;
        let subtype = subtype_of(&data)?.unwrap_or(meta.resource_subtype.clone());
        let approval = subtype.as_deref() == Some("approval");
        let asked = approval_of(&data)?;
        if asked.is_some() && !approval {
            return Err(ApiError::bad(
                "approval_status: only approval tasks (resource_subtype approval) have an approval status",
            ));
        }
        if let (Some(c), Some(st)) = (completed, &asked) {
            if c != (st != "pending") {
                return Err(ApiError::bad(format!(
                    "completed: {c} contradicts approval_status `{st}` (only pending is incomplete)"
                )));
            }
        }
        // The approval status after this write, and whether it is complete.
        let status = if approval {
            let was = meta.approval_status.clone().unwrap_or_else(|| {
                if current.completed { "approved" } else { "pending" }.to_owned()
            });
            Some(match (asked, completed) {
                (Some(st), _) => st,
                (None, Some(true)) if was == "pending" => "approved".to_owned(),
                (None, Some(false)) => "pending".to_owned(),
                (None, _) => was,
            })
        } else {
            None
        };
        let now_complete = match &status {
            Some(st) => st != "pending",
            None => completed.unwrap_or(current.completed),
        };
        let decided_again = approval && status != meta.approval_status && now_complete;

        let mut stories = Vec::new();
        let mut changes: Vec<(&str, Value)> = Vec::new();
        if approval && meta.approval_status.is_some() && status != meta.approval_status {
            let new = status.clone().unwrap_or_default();
            let mut st = story(
                d,
                now,
                &me,
                "approval_status_changed",
                said(d, &me, decision_words(&new)),
            );
            st.old_approval_status = meta.approval_status.clone();
            st.new_approval_status = status.clone();
            stories.push(st);
        } else if !approval && now_complete != current.completed {
            let (sub, words) = if now_complete {
                ("marked_complete", "completed this task")
            } else {
                ("marked_incomplete", "marked this task incomplete")
            };
            stories.push(story(d, now, &me, sub, said(d, &me, words)));
        }
        if status != meta.approval_status {
            changes.push(("approval_status", json!(status)));
        }
        if subtype != meta.resource_subtype {
            changes.push((
                "resource_subtype",
                json!(subtype.as_deref().unwrap_or("default_task")),
            ));
        }
        if now_complete != current.completed {
            changes.push(("completed", json!(now_complete)));
        }
        if let Some(n) = &name {
            if *n != current.name {
                changes.push(("name", json!(n)));
            }
        }
        if let Some((plain, _)) = &notes {
            if *plain != current.notes {
                changes.push(("notes", json!(plain)));
            }
        }
        if let Some(a) = &assignee {
            if *a != current.assignee {
                changes.push(("assignee", json!(a.as_ref().map(|u| d.user_compact(u)))));
            }
        }
        if !values.is_empty() {
            changes.push(("custom_fields", json!(values.iter().map(|(f, _)| json!({"gid": f, "resource_type": "custom_field"})).collect::<Vec<_>>())));
        }
        for (k, v) in &extra {
            changes.push((k.as_str(), v.clone()));
        }

        let t = task_mut(d, &task)?;
        if let Some(n) = name {
            t.name = n;
        }
        if let Some((plain, rich)) = notes {
            t.notes = plain;
            t.html_notes = rich;
        }
        if now_complete != t.completed || decided_again {
            t.completed = now_complete;
            t.completed_at = now_complete.then_some(now);
        }
        if let Some(a) = assignee {
            t.assignee = a;
        }
        for (f, v) in values {
            t.values.insert(f, v);
        }
        t.modified_at = now;
        let was_complete = current.completed;
        let m = d.meta_mut(&task);
        m.resource_subtype = subtype;
        m.approval_status = status;
        if !now_complete {
            m.completed_by = None;
        } else if !was_complete || decided_again {
            m.completed_by = Some(me.0 .0.clone());
        }
        m.extra.extend(extra.clone());
        for st in stories {
            add_story(d, now, &me, &task, st)?;
        }
        for (field, new) in changes {
            task_changed(d, now, &me, &task, field, new);
        }
        let t = task_of(d, &task)?;
        Ok(d.task_full(t, &s.origin))
    })?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::OK))
}

// ---- writing: delete, projects, sections ----

/// Removes a task and its subtasks, everywhere.
fn remove_task(d: &mut Data, now: DateTime<Utc>, me: &Actor, gid: &str) -> Result<()> {
    let t = task_of(d, gid)?.clone();
    let meta = d.meta(gid);
    for sub in &meta.subtasks {
        if d.tasks.contains_key(sub) {
            remove_task(d, now, me, sub)?;
        }
    }
    let who = audience(d, &t);
    event(d, now, me, named_task(&t), "deleted", None, None, who);
    if let Some(parent) = &meta.parent {
        d.meta_mut(parent).subtasks.retain(|s| s != gid);
    }
    for pr in d.projects.values_mut() {
        pr.tasks.retain(|x| x != gid);
        pr.task_sections.remove(gid);
    }
    d.tasks.remove(gid);
    d.task_meta.remove(gid);
    Ok(())
}

pub async fn delete_task(
    State(s): St,
    me: Me,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::DELETE_TASK, q)?;
    let now = s.now();
    s.mutate(|d| remove_task(d, now, &me, &task))?;
    Ok(empty(&p))
}

/// Where a task goes in a project's order.
pub(super) enum Place {
    /// Right before or after another task of the project.
    Before(String),
    After(String),
    /// At the top or the bottom of the section the task goes into.
    SectionTop,
    SectionBottom,
    End,
}

/// Puts `task` into `project` at `place` (in `section`, if any); adds the
/// project to the task with its story and event when it was not there.
/// Returns whether the task was new to the project.
pub(super) fn place_task(
    d: &mut Data,
    now: DateTime<Utc>,
    me: &Actor,
    task: &str,
    project: &str,
    section: Option<&str>,
    place: Place,
) -> Result<bool> {
    let t = task_of(d, task)?.clone();
    let pr = project_of(d, project)?.clone();
    if pr.workspace != t.workspace {
        return Err(ApiError::bad(
            "project: is in another workspace than the task",
        ));
    }
    let already = t.projects.iter().any(|p| p == project);
    if !already && t.projects.len() >= 20 {
        return Err(ApiError::bad(
            "project: a task can be in at most 20 projects",
        ));
    }
    let in_section = |gid: &String| {
        section.is_some_and(|s| pr.task_sections.get(gid).map(String::as_str) == Some(s))
    };
    let mut order: Vec<String> = pr.tasks.iter().filter(|x| *x != task).cloned().collect();
    let at = match &place {
        Place::Before(a) | Place::After(a) => {
            let i = order.iter().position(|x| x == a).ok_or_else(|| {
                ApiError::bad(format!(
                    "insert_before/insert_after: task {a} is not in the project"
                ))
            })?;
            if matches!(place, Place::After(_)) {
                i + 1
            } else {
                i
            }
        }
        Place::SectionTop => order.iter().position(in_section).unwrap_or(order.len()),
        Place::SectionBottom => order
            .iter()
            .rposition(in_section)
            .map_or(order.len(), |i| i + 1),
        Place::End => order.len(),
    };
    order.insert(at, task.to_owned());
    let new_fields: Vec<String> = pr.settings.iter().map(|st| st.field.clone()).collect();
    let prm = project_mut(d, project)?;
    prm.tasks = order;
    if let Some(sec) = section {
        prm.task_sections.insert(task.to_owned(), sec.to_owned());
    }
    if !already {
        let st = story(
            d,
            now,
            me,
            "added_to_project",
            said(d, me, &format!("added this task to {}", pr.name)),
        );
        let tm = task_mut(d, task)?;
        tm.projects.push(project.to_owned());
        for f in new_fields {
            tm.values.entry(f).or_insert(None);
        }
        add_story(d, now, me, task, st)?;
        let named = named_task(task_of(d, task)?);
        event(
            d,
            now,
            me,
            named,
            "added",
            Some(named_project(&pr)),
            None,
            vec![project.to_owned(), task.to_owned()],
        );
    }
    if let Some(sec) = section {
        let named = named_task(task_of(d, task)?);
        let name = d.section(sec).map(|(_, s)| s.name.clone());
        event(
            d,
            now,
            me,
            named,
            "added",
            Some(Named::new("section", sec, name.as_deref())),
            None,
            vec![project.to_owned(), task.to_owned()],
        );
    }
    Ok(!already)
}

/// `insert_before` / `insert_after` of a write (at most one).
pub(super) fn anchor(data: &Map<String, Value>) -> Result<Option<Place>> {
    match (
        str_field(data, "insert_before")?,
        str_field(data, "insert_after")?,
    ) {
        (Some(_), Some(_)) => Err(ApiError::bad(
            "You may only provide one of insert_before or insert_after",
        )),
        (Some(b), None) => Ok(Some(Place::Before(b.to_owned()))),
        (None, Some(a)) => Ok(Some(Place::After(a.to_owned()))),
        (None, None) => Ok(None),
    }
}

pub async fn add_project(
    State(s): St,
    me: Me,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::ADD_PROJECT, q)?;
    let data = body(&spec::ADD_PROJECT, &bytes)?;
    let now = s.now();
    s.mutate(|d| {
        let project = str_field(&data, "project")?
            .ok_or_else(|| ApiError::bad("project: Missing input"))?
            .to_owned();
        task_of(d, &task)?;
        project_of(d, &project)?;
        let section = str_field(&data, "section")?.map(str::to_owned);
        if let Some(sec) = &section {
            check_gid("section", sec)?;
            let (pr, _) = d
                .section(sec)
                .ok_or_else(|| ApiError::not_found("section", sec))?;
            if pr.gid != project {
                return Err(ApiError::bad(format!(
                    "section: section {sec} is not in project {project}"
                )));
            }
        }
        let place = match (anchor(&data)?, &section) {
            (Some(a), _) => a,
            (None, Some(_)) => Place::SectionBottom,
            (None, None) => Place::End,
        };
        place_task(d, now, &me, &task, &project, section.as_deref(), place)?;
        Ok(())
    })?;
    Ok(empty(&p))
}

pub async fn remove_project(
    State(s): St,
    me: Me,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::REMOVE_PROJECT, q)?;
    let data = body(&spec::REMOVE_PROJECT, &bytes)?;
    let now = s.now();
    s.mutate(|d| {
        let project = str_field(&data, "project")?
            .ok_or_else(|| ApiError::bad("project: Missing input"))?
            .to_owned();
        let present = task_of(d, &task)?.projects.contains(&project);
        let pr = project_of(d, &project)?.clone();
        if !present {
            return Ok(());
        }
        let st = story(
            d,
            now,
            &me,
            "removed_from_project",
            said(d, &me, &format!("removed this task from {}", pr.name)),
        );
        // The story first, while the project still sees the task's events.
        add_story(d, now, &me, &task, st)?;
        let prm = project_mut(d, &project)?;
        prm.tasks.retain(|x| *x != task);
        prm.task_sections.remove(&task);
        task_mut(d, &task)?.projects.retain(|x| *x != project);
        let named = named_task(task_of(d, &task)?);
        event(
            d,
            now,
            &me,
            named,
            "removed",
            Some(named_project(&pr)),
            None,
            vec![project.clone(), task.clone()],
        );
        Ok(())
    })?;
    Ok(empty(&p))
}
