//! Projects, their sections and their custom field settings, and the
//! workspace's custom fields. Not here: project updates, duplication,
//! templates, memberships, statuses; custom fields other than text.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::super::events::Named;
use super::super::spec;
use super::super::store::{FieldRec, ProjectRec, SectionRec, SettingRec};
use super::tasks::{anchor, place_task, Place};
use super::{
    body, bool_field, check_gid, empty, event, list, named_project, one, params, project_mut,
    project_of, str_field, task_of, workspace_of, ApiError, Me, Params, Result, St, COMPACT,
};

/// `archived=true|false` of a project listing.
fn archived(p: &Params) -> Result<Option<bool>> {
    match p.get("archived") {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad(format!(
            "archived: Not a boolean: {}",
            other.escape_debug()
        ))),
    }
}

fn project_list(
    s: &super::Shared,
    p: &Params,
    workspace: Option<&str>,
    path: &str,
) -> Result<Response> {
    if p.get("team").is_some() {
        return Err(ApiError::not_found(
            "team",
            p.get("team").unwrap_or_default(),
        ));
    }
    let archived = archived(p)?;
    let d = s.data();
    if let Some(w) = workspace {
        workspace_of(&d, w)?;
    }
    let items: Vec<&ProjectRec> = d
        .projects
        .values()
        .filter(|pr| workspace.is_none_or(|w| pr.workspace == w))
        .filter(|pr| archived.is_none_or(|a| pr.archived == a))
        .collect();
    Ok(list(
        &d,
        &s.origin,
        &items,
        |pr| d.project_full(pr, &s.origin),
        p,
        COMPACT,
        path,
    ))
}

pub async fn get_projects(State(s): St, RawQuery(q): RawQuery) -> Result<Response> {
    let p = params(&s, &spec::GET_PROJECTS, q)?;
    let workspace = p.get("workspace").map(str::to_owned);
    project_list(&s, &p, workspace.as_deref(), "/projects")
}

pub async fn get_workspace_projects(
    State(s): St,
    Path(workspace): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_WORKSPACE_PROJECTS, q)?;
    project_list(
        &s,
        &p,
        Some(&workspace),
        &format!("/workspaces/{workspace}/projects"),
    )
}

pub async fn create_project(State(s): St, RawQuery(q): RawQuery, bytes: Bytes) -> Result<Response> {
    let p = params(&s, &spec::CREATE_PROJECT, q)?;
    let data = body(&spec::CREATE_PROJECT, &bytes)?;
    let workspace = str_field(&data, "workspace")?
        .ok_or_else(|| ApiError::bad("workspace: Missing input"))?
        .to_owned();
    new_project(&s, p, data, workspace)
}

pub async fn create_project_in_workspace(
    State(s): St,
    Path(workspace): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::CREATE_PROJECT_FOR_WORKSPACE, q)?;
    let data = body(&spec::CREATE_PROJECT_FOR_WORKSPACE, &bytes)?;
    new_project(&s, p, data, workspace)
}

fn new_project(
    s: &super::Shared,
    p: Params,
    data: Map<String, Value>,
    workspace: String,
) -> Result<Response> {
    let now = s.now();
    let v = s.mutate(|d| {
        workspace_of(d, &workspace)?;
        let name = str_field(&data, "name")?.unwrap_or("").to_owned();
        let notes = str_field(&data, "notes")?.unwrap_or("").to_owned();
        let gid = d.new_gid();
        let rec = ProjectRec {
            gid: gid.clone(),
            name,
            workspace,
            notes,
            archived: bool_field(&data, "archived")?.unwrap_or(false),
            created_at: now,
            tasks: Vec::new(),
            settings: Vec::new(),
            sections: Vec::new(),
            task_sections: Default::default(),
        };
        let v = d.project_full(&rec, &s.origin);
        d.projects.insert(gid, rec);
        Ok(v)
    })?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::CREATED))
}

pub async fn get_project(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_PROJECT, q)?;
    let d = s.data();
    let pr = project_of(&d, &project)?;
    Ok(one(
        &d,
        &s.origin,
        d.project_full(pr, &s.origin),
        &p,
        StatusCode::OK,
    ))
}

// ---- sections ----

pub async fn get_sections(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_SECTIONS, q)?;
    let d = s.data();
    let pr = project_of(&d, &project)?;
    Ok(list(
        &d,
        &s.origin,
        &pr.sections,
        |sec| d.section_full(pr, sec),
        &p,
        COMPACT,
        &format!("/projects/{project}/sections"),
    ))
}

pub async fn create_section(
    State(s): St,
    me: Me,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::CREATE_SECTION, q)?;
    let data = body(&spec::CREATE_SECTION, &bytes)?;
    let now = s.now();
    let v = s.mutate(|d| {
        let pr = project_of(d, &project)?.clone();
        let name = str_field(&data, "name")?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::bad("name: Missing input"))?
            .to_owned();
        let at = match anchor(&data)? {
            Some(Place::Before(a)) | Some(Place::After(a))
                if !pr.sections.iter().any(|x| x.gid == a) =>
            {
                return Err(ApiError::bad(format!(
                    "insert_before/insert_after: section {a} is not in the project"
                )))
            }
            Some(Place::Before(a)) => pr.sections.iter().position(|x| x.gid == a),
            Some(Place::After(a)) => pr.sections.iter().position(|x| x.gid == a).map(|i| i + 1),
            _ => None,
        };
        let sec = SectionRec {
            gid: d.new_gid(),
            name,
            created_at: now,
        };
        let prm = project_mut(d, &project)?;
        let at = at.unwrap_or(prm.sections.len());
        prm.sections.insert(at, sec.clone());
        event(
            d,
            now,
            &me,
            Named::new("section", &sec.gid, Some(&sec.name)),
            "added",
            Some(named_project(&pr)),
            None,
            vec![project.clone()],
        );
        let pr = project_of(d, &project)?;
        Ok(d.section_full(pr, &sec))
    })?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::CREATED))
}

pub async fn get_section(
    State(s): St,
    Path(section): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_SECTION, q)?;
    check_gid("section", &section)?;
    let d = s.data();
    let (pr, sec) = d
        .section(&section)
        .ok_or_else(|| ApiError::not_found("section", &section))?;
    Ok(one(
        &d,
        &s.origin,
        d.section_full(pr, sec),
        &p,
        StatusCode::OK,
    ))
}

/// POST /sections/{gid}/addTask: into the section (and its project), at
/// its top unless `insert_before` / `insert_after` name a task of it
/// (spec: `paths./sections/{section_gid}/addTask.post.description`).
pub async fn add_task_to_section(
    State(s): St,
    me: Me,
    Path(section): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::ADD_TASK_FOR_SECTION, q)?;
    let data = body(&spec::ADD_TASK_FOR_SECTION, &bytes)?;
    let now = s.now();
    s.mutate(|d| {
        check_gid("section", &section)?;
        let project = d
            .section(&section)
            .map(|(pr, _)| pr.gid.clone())
            .ok_or_else(|| ApiError::not_found("section", &section))?;
        let task = str_field(&data, "task")?
            .ok_or_else(|| ApiError::bad("task: Missing input"))?
            .to_owned();
        task_of(d, &task)?;
        let place = match anchor(&data)? {
            Some(Place::Before(a)) | Some(Place::After(a))
                if project_of(d, &project)?.task_sections.get(&a) != Some(&section) =>
            {
                return Err(ApiError::bad(format!(
                    "insert_before/insert_after: task {a} is not in section {section}"
                )))
            }
            Some(a) => a,
            None => Place::SectionTop,
        };
        place_task(d, now, &me, &task, &project, Some(&section), place)?;
        Ok(())
    })?;
    Ok(empty(&p))
}

// ---- custom fields ----

pub async fn get_settings(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_CUSTOM_FIELD_SETTINGS, q)?;
    let d = s.data();
    let pr = project_of(&d, &project)?;
    let all = [
        "gid",
        "resource_type",
        "is_important",
        "project",
        "parent",
        "custom_field",
    ];
    Ok(list(
        &d,
        &s.origin,
        &pr.settings,
        |st| d.setting_full(pr, st),
        &p,
        &all,
        &format!("/projects/{project}/custom_field_settings"),
    ))
}

pub async fn add_setting(
    State(s): St,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::ADD_CUSTOM_FIELD_SETTING, q)?;
    let data = body(&spec::ADD_CUSTOM_FIELD_SETTING, &bytes)?;
    let v = s.mutate(|d| {
        let workspace = project_of(d, &project)?.workspace.clone();
        let field = match data.get("custom_field") {
            Some(Value::String(g)) => g.clone(),
            Some(Value::Object(_)) => {
                return Err(ApiError::bad(
                    "custom_field: the sandbox takes the gid of an existing field",
                ))
            }
            _ => return Err(ApiError::bad("custom_field: Missing input")),
        };
        check_gid("custom_field", &field)?;
        let f = d
            .fields
            .get(&field)
            .ok_or_else(|| ApiError::not_found("custom_field", &field))?;
        if f.workspace != workspace {
            return Err(ApiError::bad("custom_field: belongs to another workspace"));
        }
        if project_of(d, &project)?
            .settings
            .iter()
            .any(|st| st.field == field)
        {
            return Err(ApiError::bad(
                "custom_field: This custom field is already on the project",
            ));
        }
        let setting = SettingRec {
            gid: d.new_gid(),
            field,
            is_important: bool_field(&data, "is_important")?.unwrap_or(false),
        };
        project_mut(d, &project)?.settings.push(setting.clone());
        let pr = project_of(d, &project)?;
        Ok(d.setting_full(pr, &setting))
    })?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::OK))
}

pub async fn create_field(State(s): St, RawQuery(q): RawQuery, bytes: Bytes) -> Result<Response> {
    let p = params(&s, &spec::CREATE_CUSTOM_FIELD, q)?;
    let data = body(&spec::CREATE_CUSTOM_FIELD, &bytes)?;
    let v = s.mutate(|d| {
        let workspace = str_field(&data, "workspace")?
            .ok_or_else(|| ApiError::bad("workspace: Missing input"))?
            .to_owned();
        workspace_of(d, &workspace)?;
        match str_field(&data, "resource_subtype")? {
            Some("text") => {}
            Some(other) => {
                return Err(ApiError::bad(format!(
                    "resource_subtype: the sandbox has text fields only, not `{}`",
                    other.escape_debug()
                )))
            }
            None => return Err(ApiError::bad("resource_subtype: Missing input")),
        }
        let name = str_field(&data, "name")?.unwrap_or("").to_owned();
        if d.fields
            .values()
            .any(|f| f.workspace == workspace && f.name == name)
        {
            return Err(ApiError::bad(format!(
                "name: A custom field named `{}` already exists in this workspace",
                name.escape_debug()
            )));
        }
        let gid = d.new_gid();
        let description = str_field(&data, "description")?.unwrap_or("").to_owned();
        d.fields.insert(
            gid.clone(),
            FieldRec {
                gid: gid.clone(),
                name,
                workspace,
                description,
            },
        );
        Ok(d.field_full(&gid, None, true))
    })?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::CREATED))
}

pub async fn get_workspace_fields(
    State(s): St,
    Path(workspace): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_WORKSPACE_CUSTOM_FIELDS, q)?;
    let d = s.data();
    workspace_of(&d, &workspace)?;
    let items: Vec<&FieldRec> = d
        .fields
        .values()
        .filter(|f| f.workspace == workspace)
        .collect();
    Ok(list(
        &d,
        &s.origin,
        &items,
        |f| d.field_definition(f),
        &p,
        &["gid", "resource_type", "name", "resource_subtype", "type"],
        &format!("/workspaces/{workspace}/custom_fields"),
    ))
}
