//! The sandbox's data: workspaces, users, projects, sections, tasks, stories
//! and text custom fields, persisted as one JSON file written atomically
//! (temp file, fsync, rename, fsync of the directory), so a restart loses
//! nothing.
//!
//! Records are rendered the way Asana renders them: full records with
//! nested objects in compact form; `fields.rs` trims them to `opt_fields`
//! and expands nested objects when a path reaches past their compact form.
//! Events are not kept here (see `events.rs`): changes only queue them in
//! `pending_events`, which the server moves to its event log once the
//! change is saved.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::events::EventRec;

/// Gids (and e-mails) of the seeded records; they match `config/pushgate.toml`.
pub mod seed {
    pub const WORKSPACE: &str = "1200000000000001";
    pub const LOCK_BETA: &str = "1200000000000002";
    pub const PUSH_BETA: &str = "1200000000000003";
    pub const LOCK_PROD: &str = "1200000000000004";
    pub const PUSH_PROD: &str = "1200000000000005";
    pub const CRASH: &str = "1200000000000009";
    pub const FIX_COMMIT_FIELD: &str = "1200000000000010";
    /// The token's user: pushgate's own (bot) account.
    pub const ME: &str = "1200000000000100";
    pub const ME_EMAIL: &str = "sandbox@pushgate.invalid";
    /// A second person, who approves releases.
    pub const APPROVER: &str = "1200000000000101";
    pub const APPROVER_EMAIL: &str = "approver@pushgate.invalid";
    /// A third person, an engineer who writes commits and asks for pushes.
    pub const ENGINEER: &str = "1200000000000102";
    pub const ENGINEER_EMAIL: &str = "engineer@pushgate.invalid";
    /// Gids handed out after the seed start here.
    pub const FIRST_FREE: u64 = 1_200_000_000_001_000;
}

/// The approval statuses of an approval task (spec: `TaskBase.approval_status`).
pub const APPROVAL_STATUSES: &[&str] = &["pending", "approved", "rejected", "changes_requested"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Data {
    /// The bot's bearer token (the user `me`); other people have their own
    /// in `UserRec::token`.
    pub token: String,
    pub next_gid: u64,
    pub me: String,
    pub users: BTreeMap<String, UserRec>,
    pub workspaces: BTreeMap<String, WorkspaceRec>,
    pub projects: BTreeMap<String, ProjectRec>,
    pub fields: BTreeMap<String, FieldRec>,
    pub tasks: BTreeMap<String, TaskRec>,
    /// What a task has beyond `TaskRec` (subtype, approval, parent, who
    /// completed it). Kept beside it so code that builds `TaskRec` values
    /// (tests, benches) keeps compiling; a task without an entry is a plain
    /// `default_task` with no parent.
    #[serde(default)]
    pub task_meta: BTreeMap<String, TaskMeta>,
    /// Events of the change being made, moved to the event log once saved.
    #[serde(skip)]
    pub pending_events: Vec<EventRec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRec {
    pub gid: String,
    pub name: String,
    pub email: String,
    /// This person's bearer token (`None` for the bot, whose token is
    /// `Data::token`, and for people who cannot log in).
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkspaceRec {
    pub gid: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProjectRec {
    pub gid: String,
    pub name: String,
    pub workspace: String,
    pub notes: String,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    /// Task gids in the project's order.
    pub tasks: Vec<String>,
    pub settings: Vec<SettingRec>,
    /// Sections in order. A project starts with none; a task outside every
    /// section has `section: null` in its memberships.
    #[serde(default)]
    pub sections: Vec<SectionRec>,
    /// Task gid → the section of this project it is in.
    #[serde(default)]
    pub task_sections: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SectionRec {
    pub gid: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SettingRec {
    pub gid: String,
    pub field: String,
    pub is_important: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FieldRec {
    pub gid: String,
    pub name: String,
    pub workspace: String,
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRec {
    pub gid: String,
    pub name: String,
    pub notes: String,
    /// Set when the notes were written as rich text; else derived from `notes`.
    pub html_notes: Option<String>,
    pub completed: bool,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub assignee: Option<String>,
    pub workspace: String,
    pub projects: Vec<String>,
    /// Custom field gid → text value.
    pub values: BTreeMap<String, Option<String>>,
    pub stories: Vec<StoryRec>,
}

/// A task's fields beyond `TaskRec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskMeta {
    /// `milestone` or `approval`; `None` is `default_task`.
    pub resource_subtype: Option<String>,
    /// Set exactly when the subtype is `approval` (see `APPROVAL_STATUSES`).
    pub approval_status: Option<String>,
    pub parent: Option<String>,
    /// Subtask gids, oldest first.
    pub subtasks: Vec<String>,
    /// Who completed (or decided, for an approval) the task; `None` while open.
    pub completed_by: Option<String>,
    /// Who created it; `None` means the bot.
    pub created_by: Option<String>,
    /// Followers named on create (the creator follows too).
    pub followers: Vec<String>,
    /// Writable fields the sandbox keeps and echoes without acting on them
    /// (`due_on`, `due_at`, `start_on`, `start_at`, `assignee_status`,
    /// `liked`, `external`).
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoryRec {
    pub gid: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// `comment_added`, `marked_complete`, `added_to_project`, ...
    pub subtype: String,
    pub text: String,
    pub html_text: Option<String>,
    /// On `approval_status_changed` stories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_approval_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_approval_status: Option<String>,
    /// A comment whose text was changed after it was written.
    #[serde(default)]
    pub is_edited: bool,
    #[serde(default)]
    pub is_pinned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticker_name: Option<String>,
}

impl StoryRec {
    pub fn is_comment(&self) -> bool {
        self.subtype == "comment_added"
    }
}

pub fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Data {
    /// A fresh sandbox: one workspace, the four cluster projects, a crash
    /// project carrying a "Fix commit" text field, the token's user and two
    /// more people (see `seed`; `add_seed_people` gives them tokens).
    pub fn seeded(token: String, now: DateTime<Utc>) -> Data {
        let mut d = Data {
            token,
            next_gid: seed::FIRST_FREE,
            me: seed::ME.into(),
            users: BTreeMap::new(),
            workspaces: BTreeMap::new(),
            projects: BTreeMap::new(),
            fields: BTreeMap::new(),
            tasks: BTreeMap::new(),
            task_meta: BTreeMap::new(),
            pending_events: Vec::new(),
        };
        d.users.insert(
            seed::ME.into(),
            UserRec {
                gid: seed::ME.into(),
                name: "Sandbox User".into(),
                email: seed::ME_EMAIL.into(),
                token: None,
            },
        );
        d.workspaces.insert(
            seed::WORKSPACE.into(),
            WorkspaceRec {
                gid: seed::WORKSPACE.into(),
                name: "pushgate sandbox".into(),
            },
        );
        for (gid, name) in [
            (seed::LOCK_BETA, "Lock Beta Release"),
            (seed::PUSH_BETA, "Beta Push Tasks"),
            (seed::LOCK_PROD, "Lock Production Release"),
            (seed::PUSH_PROD, "Prod Push Tasks"),
            (seed::CRASH, "Crash Reports"),
        ] {
            d.projects.insert(
                gid.into(),
                ProjectRec {
                    gid: gid.into(),
                    name: name.into(),
                    workspace: seed::WORKSPACE.into(),
                    notes: String::new(),
                    archived: false,
                    created_at: now,
                    tasks: Vec::new(),
                    settings: Vec::new(),
                    sections: Vec::new(),
                    task_sections: BTreeMap::new(),
                },
            );
        }
        d.fields.insert(
            seed::FIX_COMMIT_FIELD.into(),
            FieldRec {
                gid: seed::FIX_COMMIT_FIELD.into(),
                name: "Fix commit".into(),
                workspace: seed::WORKSPACE.into(),
                description: "The commit that fixes this crash (full sha).".into(),
            },
        );
        let setting = d.new_gid();
        if let Some(p) = d.projects.get_mut(seed::CRASH) {
            p.settings.push(SettingRec {
                gid: setting,
                field: seed::FIX_COMMIT_FIELD.into(),
                is_important: true,
            });
        }
        d
    }

    /// Adds the seeded people a data file lacks (files written before they
    /// existed) and gives every person but the bot a token of their own.
    /// Returns whether anything changed.
    pub fn add_seed_people(
        &mut self,
        mut new_token: impl FnMut() -> anyhow::Result<String>,
    ) -> anyhow::Result<bool> {
        let mut changed = false;
        for (gid, name, email) in [
            (seed::APPROVER, "Avery Approver", seed::APPROVER_EMAIL),
            (seed::ENGINEER, "Eli Engineer", seed::ENGINEER_EMAIL),
        ] {
            if !self.users.contains_key(gid) {
                self.users.insert(
                    gid.into(),
                    UserRec {
                        gid: gid.into(),
                        name: name.into(),
                        email: email.into(),
                        token: None,
                    },
                );
                changed = true;
            }
        }
        let me = self.me.clone();
        for u in self.users.values_mut() {
            if u.gid != me && u.token.is_none() {
                u.token = Some(new_token()?);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The user a bearer token belongs to.
    pub fn user_by_token(&self, token: &str) -> Option<&str> {
        if token == self.token {
            return Some(&self.me);
        }
        self.users
            .values()
            .find(|u| u.token.as_deref() == Some(token))
            .map(|u| u.gid.as_str())
    }

    pub fn new_gid(&mut self) -> String {
        let g = self.next_gid;
        self.next_gid += 1;
        g.to_string()
    }

    /// A task's fields beyond `TaskRec` (defaults when it has none).
    pub fn meta(&self, task: &str) -> TaskMeta {
        self.task_meta.get(task).cloned().unwrap_or_default()
    }

    pub fn meta_mut(&mut self, task: &str) -> &mut TaskMeta {
        self.task_meta.entry(task.to_owned()).or_default()
    }

    /// The project a section belongs to, and the section.
    pub fn section(&self, gid: &str) -> Option<(&ProjectRec, &SectionRec)> {
        self.projects
            .values()
            .find_map(|p| p.sections.iter().find(|s| s.gid == gid).map(|s| (p, s)))
    }

    /// The task a story is on, and the story.
    pub fn story(&self, gid: &str) -> Option<(&TaskRec, &StoryRec)> {
        self.tasks
            .values()
            .find_map(|t| t.stories.iter().find(|s| s.gid == gid).map(|s| (t, s)))
    }

    /// Reads the data file; `None` when it does not exist yet.
    pub fn load(path: &Path) -> anyhow::Result<Option<Data>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("sandbox data file {} is not valid: {e}", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read sandbox data file {}: {e}",
                path.display()
            )),
        }
    }

    /// Writes the data file atomically: a crash leaves the old or the new file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        serde_json::to_writer(&mut tmp, self)?;
        tmp.as_file_mut().flush()?;
        tmp.as_file().sync_all()?;
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        tmp.persist(path).map_err(|e| e.error)?;
        std::fs::File::open(&dir)?.sync_all()
    }

    // ---- rendering ----

    pub fn user_name(&self, gid: &str) -> &str {
        self.users.get(gid).map(|u| u.name.as_str()).unwrap_or("")
    }

    pub fn user_compact(&self, gid: &str) -> Value {
        json!({ "gid": gid, "resource_type": "user", "name": self.user_name(gid) })
    }

    pub fn user_full(&self, u: &UserRec) -> Value {
        let workspaces: Vec<Value> = self
            .workspaces
            .values()
            .map(|w| self.workspace_compact(&w.gid))
            .collect();
        json!({
            "gid": u.gid, "resource_type": "user", "name": u.name, "email": u.email,
            "photo": null, "workspaces": workspaces,
        })
    }

    pub fn workspace_compact(&self, gid: &str) -> Value {
        let name = self
            .workspaces
            .get(gid)
            .map(|w| w.name.as_str())
            .unwrap_or("");
        json!({ "gid": gid, "resource_type": "workspace", "name": name })
    }

    pub fn workspace_full(&self, w: &WorkspaceRec) -> Value {
        json!({
            "gid": w.gid, "resource_type": "workspace", "name": w.name,
            "email_domains": ["pushgate.invalid"], "is_organization": false,
        })
    }

    pub fn project_compact(&self, gid: &str) -> Value {
        let name = self
            .projects
            .get(gid)
            .map(|p| p.name.as_str())
            .unwrap_or("");
        json!({ "gid": gid, "resource_type": "project", "name": name })
    }

    pub fn section_compact(&self, gid: &str) -> Value {
        let name = self
            .section(gid)
            .map(|(_, s)| s.name.as_str())
            .unwrap_or("");
        json!({ "gid": gid, "resource_type": "section", "name": name })
    }

    pub fn section_full(&self, project: &ProjectRec, s: &SectionRec) -> Value {
        json!({
            "gid": s.gid, "resource_type": "section", "name": s.name,
            "created_at": ts(&s.created_at),
            "project": self.project_compact(&project.gid),
            "projects": [self.project_compact(&project.gid)],
        })
    }

    pub fn task_compact(&self, gid: &str) -> Value {
        let name = self.tasks.get(gid).map(|t| t.name.as_str()).unwrap_or("");
        let subtype = self
            .meta(gid)
            .resource_subtype
            .unwrap_or_else(|| "default_task".into());
        json!({ "gid": gid, "resource_type": "task", "name": name, "resource_subtype": subtype })
    }

    pub fn field_full(&self, gid: &str, value: Option<&Option<String>>, enabled: bool) -> Value {
        let name = self.fields.get(gid).map(|f| f.name.as_str()).unwrap_or("");
        let mut v = json!({
            "gid": gid, "resource_type": "custom_field", "name": name,
            "type": "text", "resource_subtype": "text",
        });
        if let Some(value) = value {
            v["text_value"] = json!(value);
            v["display_value"] = json!(value);
            v["enabled"] = json!(enabled);
        }
        v
    }

    /// A custom field's definition.
    pub fn field_definition(&self, f: &FieldRec) -> Value {
        let mut v = self.field_full(&f.gid, None, true);
        v["description"] = json!(f.description);
        v["enabled"] = json!(true);
        v["is_global_to_workspace"] = json!(true);
        v
    }

    pub fn setting_full(&self, project: &ProjectRec, s: &SettingRec) -> Value {
        let mut field = self.field_full(&s.field, None, true);
        if let Some(f) = self.fields.get(&s.field) {
            field["description"] = json!(f.description);
        }
        json!({
            "gid": s.gid, "resource_type": "custom_field_setting",
            "is_important": s.is_important,
            "project": self.project_compact(&project.gid),
            "parent": self.project_compact(&project.gid),
            "custom_field": field,
        })
    }

    pub fn project_full(&self, p: &ProjectRec, origin: &str) -> Value {
        let settings: Vec<Value> = p.settings.iter().map(|s| self.setting_full(p, s)).collect();
        json!({
            "gid": p.gid, "resource_type": "project", "name": p.name,
            "archived": p.archived, "notes": p.notes,
            "created_at": ts(&p.created_at), "modified_at": ts(&p.created_at),
            "workspace": self.workspace_compact(&p.workspace),
            "custom_field_settings": settings,
            "permalink_url": project_permalink(origin, &p.gid),
            "public": false, "color": null, "owner": null, "team": null,
        })
    }

    /// The custom fields a task has: those of its projects' settings.
    pub fn task_fields(&self, t: &TaskRec) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in t.projects.iter().filter_map(|p| self.projects.get(p)) {
            for s in &p.settings {
                if !out.contains(&s.field) {
                    out.push(s.field.clone());
                }
            }
        }
        out
    }

    pub fn task_full(&self, t: &TaskRec, origin: &str) -> Value {
        let meta = self.meta(&t.gid);
        let active = self.task_fields(t);
        let mut custom_fields: Vec<Value> = active
            .iter()
            .map(|f| self.field_full(f, Some(t.values.get(f).unwrap_or(&None)), true))
            .collect();
        // A value whose field no project carries any more stays, disabled.
        for (f, v) in &t.values {
            if !active.contains(f) {
                custom_fields.push(self.field_full(f, Some(v), false));
            }
        }
        let projects: Vec<Value> = t.projects.iter().map(|p| self.project_compact(p)).collect();
        let memberships: Vec<Value> = t
            .projects
            .iter()
            .map(|p| {
                let section = self
                    .projects
                    .get(p)
                    .and_then(|pr| pr.task_sections.get(&t.gid))
                    .map(|s| self.section_compact(s));
                json!({ "project": self.project_compact(p), "section": section })
            })
            .collect();
        let html_notes = t
            .html_notes
            .clone()
            .unwrap_or_else(|| format!("<body>{}</body>", escape_xml(&t.notes)));
        let creator = meta.created_by.clone().unwrap_or_else(|| self.me.clone());
        let mut follower_gids = vec![creator.clone()];
        for f in &meta.followers {
            if !follower_gids.contains(f) {
                follower_gids.push(f.clone());
            }
        }
        let followers: Vec<Value> = follower_gids.iter().map(|f| self.user_compact(f)).collect();
        let mut v = json!({
            "gid": t.gid, "resource_type": "task",
            "resource_subtype": meta.resource_subtype.as_deref().unwrap_or("default_task"),
            "name": t.name, "notes": t.notes, "html_notes": html_notes,
            "completed": t.completed,
            "completed_at": t.completed_at.as_ref().map(ts),
            "completed_by": meta.completed_by.as_ref().map(|u| self.user_compact(u)),
            "created_at": ts(&t.created_at), "modified_at": ts(&t.modified_at),
            "created_by": { "gid": creator, "resource_type": "user" },
            "assignee": t.assignee.as_ref().map(|a| self.user_compact(a)),
            "workspace": self.workspace_compact(&t.workspace),
            "projects": projects, "memberships": memberships,
            "custom_fields": custom_fields,
            "permalink_url": task_permalink(origin, t),
            "due_on": null, "due_at": null, "start_on": null, "start_at": null,
            "parent": meta.parent.as_ref().map(|p| self.task_compact(p)),
            "followers": followers, "tags": [],
            "num_subtasks": meta.subtasks.len(),
        });
        for (k, x) in &meta.extra {
            v[k] = x.clone();
        }
        if let Some(status) = &meta.approval_status {
            v["approval_status"] = json!(status);
        }
        v
    }

    pub fn story_full(&self, task: &TaskRec, s: &StoryRec) -> Value {
        let kind = if s.is_comment() { "comment" } else { "system" };
        let mut v = json!({
            "gid": s.gid, "resource_type": "story", "resource_subtype": s.subtype,
            "type": kind, "created_at": ts(&s.created_at),
            "created_by": self.user_compact(&s.created_by),
            "text": s.text,
            "target": self.task_compact(&task.gid),
            "source": "api",
        });
        if s.is_comment() {
            v["html_text"] = json!(s
                .html_text
                .clone()
                .unwrap_or_else(|| format!("<body>{}</body>", escape_xml(&s.text))));
            v["is_edited"] = json!(s.is_edited);
            v["is_editable"] = json!(true);
            v["is_pinned"] = json!(s.is_pinned);
            v["sticker_name"] = json!(s.sticker_name);
        }
        if s.old_approval_status.is_some() || s.new_approval_status.is_some() {
            v["old_approval_status"] = json!(s.old_approval_status);
            v["new_approval_status"] = json!(s.new_approval_status);
        }
        v
    }

    /// The full record of any object the sandbox has, by resource type and
    /// gid: what a dotted `opt_fields` path reaches through a compact one.
    pub fn full_record(&self, resource_type: &str, gid: &str, origin: &str) -> Option<Value> {
        match resource_type {
            "task" => self.tasks.get(gid).map(|t| self.task_full(t, origin)),
            "project" => self.projects.get(gid).map(|p| self.project_full(p, origin)),
            "user" => self.users.get(gid).map(|u| self.user_full(u)),
            "workspace" => self.workspaces.get(gid).map(|w| self.workspace_full(w)),
            "section" => self.section(gid).map(|(p, s)| self.section_full(p, s)),
            "story" => self.story(gid).map(|(t, s)| self.story_full(t, s)),
            "custom_field" => self.fields.get(gid).map(|f| self.field_definition(f)),
            _ => None,
        }
    }
}

/// A project's link: the sandbox serves a read-only page there.
pub fn project_permalink(origin: &str, project: &str) -> String {
    format!("{origin}/0/{project}/list")
}

/// A task's link (under its first project, or `0` when it has none).
pub fn task_permalink(origin: &str, t: &TaskRec) -> String {
    let home = t.projects.first().map(String::as_str).unwrap_or("0");
    format!("{origin}/0/{home}/{}", t.gid)
}
