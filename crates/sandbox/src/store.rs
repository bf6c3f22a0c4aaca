//! The sandbox's data: workspaces, users, projects, tasks, stories and text
//! custom fields, persisted as one JSON file written atomically (temp file,
//! fsync, rename, fsync of the directory), so a restart loses nothing.
//!
//! Records are rendered the way Asana renders them: full records with
//! nested objects in compact form; `http.rs` trims them to `opt_fields`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Gids of the seeded records; they match `config/pushgate.toml`.
pub mod seed {
    pub const WORKSPACE: &str = "1200000000000001";
    pub const LOCK_BETA: &str = "1200000000000002";
    pub const PUSH_BETA: &str = "1200000000000003";
    pub const LOCK_PROD: &str = "1200000000000004";
    pub const PUSH_PROD: &str = "1200000000000005";
    pub const CRASH: &str = "1200000000000009";
    pub const FIX_COMMIT_FIELD: &str = "1200000000000010";
    pub const ME: &str = "1200000000000100";
    /// Gids handed out after the seed start here.
    pub const FIRST_FREE: u64 = 1_200_000_000_001_000;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Data {
    /// The bearer token every request must carry.
    pub token: String,
    pub next_gid: u64,
    pub me: String,
    pub users: BTreeMap<String, UserRec>,
    pub workspaces: BTreeMap<String, WorkspaceRec>,
    pub projects: BTreeMap<String, ProjectRec>,
    pub fields: BTreeMap<String, FieldRec>,
    pub tasks: BTreeMap<String, TaskRec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRec {
    pub gid: String,
    pub name: String,
    pub email: String,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoryRec {
    pub gid: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// `comment_added`, `marked_complete`, `added_to_project`, ...
    pub subtype: String,
    pub text: String,
    pub html_text: Option<String>,
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
    /// project carrying a "Fix commit" text field, and the token's user.
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
        };
        d.users.insert(
            seed::ME.into(),
            UserRec {
                gid: seed::ME.into(),
                name: "Sandbox User".into(),
                email: "sandbox@pushgate.invalid".into(),
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

    pub fn new_gid(&mut self) -> String {
        let g = self.next_gid;
        self.next_gid += 1;
        g.to_string()
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

    pub fn user_compact(&self, gid: &str) -> Value {
        let name = self.users.get(gid).map(|u| u.name.as_str()).unwrap_or("");
        json!({ "gid": gid, "resource_type": "user", "name": name })
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

    pub fn project_compact(&self, gid: &str) -> Value {
        let name = self
            .projects
            .get(gid)
            .map(|p| p.name.as_str())
            .unwrap_or("");
        json!({ "gid": gid, "resource_type": "project", "name": name })
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
            "permalink_url": format!("{origin}/0/{}/list", p.gid),
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
            .map(|p| json!({ "project": self.project_compact(p), "section": null }))
            .collect();
        let html_notes = t
            .html_notes
            .clone()
            .unwrap_or_else(|| format!("<body>{}</body>", escape_xml(&t.notes)));
        let home = t.projects.first().map(String::as_str).unwrap_or("0");
        json!({
            "gid": t.gid, "resource_type": "task", "resource_subtype": "default_task",
            "name": t.name, "notes": t.notes, "html_notes": html_notes,
            "completed": t.completed,
            "completed_at": t.completed_at.as_ref().map(ts),
            "created_at": ts(&t.created_at), "modified_at": ts(&t.modified_at),
            "assignee": t.assignee.as_ref().map(|a| self.user_compact(a)),
            "workspace": self.workspace_compact(&t.workspace),
            "projects": projects, "memberships": memberships,
            "custom_fields": custom_fields,
            "permalink_url": format!("{origin}/0/{home}/{}", t.gid),
            "due_on": null, "due_at": null, "parent": null,
            "followers": [self.user_compact(&self.me)], "tags": [],
            "num_subtasks": 0,
        })
    }

    pub fn story_full(&self, task: &TaskRec, s: &StoryRec) -> Value {
        let kind = if s.subtype == "comment_added" {
            "comment"
        } else {
            "system"
        };
        let mut v = json!({
            "gid": s.gid, "resource_type": "story", "resource_subtype": s.subtype,
            "type": kind, "created_at": ts(&s.created_at),
            "created_by": self.user_compact(&s.created_by),
            "text": s.text,
            "target": { "gid": task.gid, "resource_type": "task", "name": task.name },
        });
        if kind == "comment" {
            v["html_text"] = json!(s
                .html_text
                .clone()
                .unwrap_or_else(|| format!("<body>{}</body>", escape_xml(&s.text))));
        }
        v
    }
}
