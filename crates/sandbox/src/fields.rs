//! `opt_fields` as Asana resolves them (API-FACTS §5; docs: input/output
//! options): which dotted paths an operation accepts, and how a record is
//! trimmed to them.
//!
//! Asana-lenient (the default): a path is valid when each term is a field of
//! the schema it lands in (following `$ref`s, `allOf` and arrays; a compact
//! resource stands for the whole resource, so `assignee.email` and
//! `followers.email` resolve), plus `gid` and `resource_type` at every level,
//! plus whatever the operation's enum lists (it has `offset`, `path`, `uri`
//! on lists). `this.` may open a path and a term may be a group `(a|b)`.
//! Strict (pushgate's own tests): the path must be in the operation's
//! declared enum, literally.
//!
//! The reply holds exactly the asked fields and `gid` at every level. A
//! nested object asked for whole comes in its compact form; a path that
//! reaches past a compact nested object is answered from that object's full
//! record; a field of the schema the sandbox does not model comes back
//! `null` (`[]` for an array). It does not evaluate Asana's other options
//! (`opt_expand`, the options object of a JSON body).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::spec::{Kind, OpSpec, SCHEMAS};

/// Most paths a group expansion may produce, so `(a|b).(c|d)...` cannot
/// blow up.
const MAX_PATHS: usize = 500;

/// What one request's `opt_fields` selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Each path's terms.
    paths: Vec<Vec<String>>,
    /// The schema of the record answered (index into `SCHEMAS`).
    schema: Option<usize>,
}

fn lookup(schema: usize, term: &str) -> Option<Kind> {
    let fields = SCHEMAS.get(schema)?.fields;
    fields
        .binary_search_by(|(name, _)| (*name).cmp(term))
        .ok()
        .map(|i| fields[i].1)
}

/// The schema a term leads into, if it names an object or array of objects.
fn inner(kind: Kind) -> Option<usize> {
    match kind {
        Kind::Object(i) | Kind::Array(i) => Some(i),
        Kind::Value | Kind::Values => None,
    }
}

/// Whether `terms` names fields of `schema`, term by term; the error says
/// which term is not a field of which schema.
fn resolve(schema: Option<usize>, terms: &[String]) -> Result<(), String> {
    let mut at = schema;
    for (i, term) in terms.iter().enumerate() {
        let last = i + 1 == terms.len();
        let here = at
            .and_then(|s| SCHEMAS.get(s))
            .map_or("a value", |s| s.name);
        let kind = match term.as_str() {
            "gid" | "resource_type" if at.is_some() => Kind::Value,
            _ => at
                .and_then(|s| lookup(s, term))
                .ok_or_else(|| format!("`{term}` is not a field of {here}"))?,
        };
        at = inner(kind);
        if at.is_none() && !last {
            return Err(format!("`{term}` of {here} has no fields"));
        }
    }
    Ok(())
}

/// `this.a.(b|c)` → `a.b`, `a.c`.
fn expand(path: &str) -> Result<Vec<Vec<String>>, String> {
    let path = path.strip_prefix("this.").unwrap_or(path);
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    for term in path.split('.') {
        let alternatives: Vec<&str> = match term.strip_prefix('(').and_then(|t| t.strip_suffix(')'))
        {
            Some(group) => group.split('|').collect(),
            None => vec![term],
        };
        if alternatives
            .iter()
            .any(|a| a.is_empty() || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err("its terms must be field names".into());
        }
        out = out
            .into_iter()
            .flat_map(|prefix| {
                alternatives.iter().map(move |a| {
                    let mut p = prefix.clone();
                    p.push((*a).to_owned());
                    p
                })
            })
            .collect();
        if out.len() > MAX_PATHS {
            return Err("it expands to too many paths".into());
        }
    }
    Ok(out)
}

impl Selection {
    /// Parses one `opt_fields` value (comma-separated) for an operation.
    /// The error names the first path that is not a field of the endpoint.
    pub fn parse(raw: &str, op: &OpSpec, strict: bool) -> Result<Selection, String> {
        let mut paths: Vec<Vec<String>> = Vec::new();
        for path in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let not_a_field = || format!("`{path}` is not a field of this endpoint");
            if op.opt_fields.contains(&path) {
                paths.push(path.split('.').map(str::to_owned).collect());
                continue;
            }
            if strict {
                return Err(format!(
                    "{} (strict mode: only the operation's declared opt_fields enum is accepted)",
                    not_a_field()
                ));
            }
            let expanded = expand(path).map_err(|e| format!("{}: {e}", not_a_field()))?;
            for terms in &expanded {
                resolve(op.response, terms).map_err(|e| format!("{}: {e}", not_a_field()))?;
            }
            paths.extend(expanded);
        }
        if paths.len() > MAX_PATHS {
            return Err("too many opt_fields paths".into());
        }
        Ok(Selection {
            paths,
            schema: op.response,
        })
    }

    /// `record` (a full record) trimmed to the selection. `full` gives the
    /// full record of a nested object by resource type and gid.
    pub fn apply(&self, record: &Value, full: &dyn Fn(&str, &str) -> Option<Value>) -> Value {
        let paths: Vec<Vec<&str>> = self
            .paths
            .iter()
            .map(|p| p.iter().map(String::as_str).collect())
            .collect();
        select(record, &paths, self.schema, false, full)
    }
}

/// The compact form of a nested record.
pub fn compact(v: &Value) -> Value {
    match v.get("resource_type").and_then(Value::as_str) {
        Some("custom_field") => keep(
            v,
            &[
                "gid",
                "resource_type",
                "name",
                "type",
                "resource_subtype",
                "text_value",
                "display_value",
                "enabled",
            ],
        ),
        Some(_) => keep(v, &["gid", "resource_type", "name", "resource_subtype"]),
        None => v.clone(),
    }
}

/// The object with only these keys.
pub fn keep(v: &Value, keys: &[&str]) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Trims an object to `paths`. `nested` objects may be compact: a field
/// they lack is looked up in their full record.
fn select(
    v: &Value,
    paths: &[Vec<&str>],
    schema: Option<usize>,
    nested: bool,
    full: &dyn Fn(&str, &str) -> Option<Value>,
) -> Value {
    let Value::Object(obj) = v else {
        return v.clone();
    };
    let mut groups: BTreeMap<&str, Vec<&[&str]>> = BTreeMap::new();
    for p in paths {
        if let Some((head, rest)) = p.split_first() {
            groups.entry(head).or_default().push(rest);
        }
    }
    let mut expanded: Option<Option<Value>> = None;
    let mut out = Map::new();
    if let Some(g) = obj.get("gid") {
        out.insert("gid".into(), g.clone());
    }
    for (head, rests) in groups {
        let kind = match head {
            "gid" | "resource_type" => Some(Kind::Value),
            _ => schema.and_then(|s| lookup(s, head)),
        };
        let found = match obj.get(head) {
            Some(val) => Some(val.clone()),
            None if nested => expanded
                .get_or_insert_with(|| {
                    let rt = obj.get("resource_type")?.as_str()?;
                    let gid = obj.get("gid")?.as_str()?;
                    full(rt, gid)
                })
                .as_ref()
                .and_then(|f| f.get(head).cloned()),
            None => None,
        };
        let val = found.unwrap_or(match kind {
            Some(Kind::Array(_)) | Some(Kind::Values) => json!([]),
            _ => Value::Null,
        });
        let whole = rests.iter().any(|r| r.is_empty());
        let subs: Vec<Vec<&str>> = rests
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(<[&str]>::to_vec)
            .collect();
        let inner_schema = kind.and_then(inner);
        out.insert(
            head.to_owned(),
            pick(&val, &subs, whole, inner_schema, full),
        );
    }
    Value::Object(out)
}

fn pick(
    val: &Value,
    subs: &[Vec<&str>],
    whole: bool,
    schema: Option<usize>,
    full: &dyn Fn(&str, &str) -> Option<Value>,
) -> Value {
    match val {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| pick(i, subs, whole, schema, full))
                .collect(),
        ),
        Value::Object(_) => {
            let mut base = if whole { compact(val) } else { json!({}) };
            if !subs.is_empty() {
                if let (Value::Object(b), Value::Object(extra)) =
                    (&mut base, select(val, subs, schema, true, full))
                {
                    b.extend(extra);
                }
            }
            if let (Value::Object(b), Some(g)) = (&mut base, val.get("gid")) {
                b.entry("gid").or_insert_with(|| g.clone());
            }
            base
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn ok(op: &OpSpec, raw: &str) -> bool {
        Selection::parse(raw, op, false).is_ok()
    }

    #[test]
    fn paths_resolve_through_the_schema_as_asana_resolves_them() {
        let valid = [
            (&spec::CREATE_TASK, "name,completed,projects.gid"),
            (&spec::CREATE_TASK, "projects.resource_type,workspace.gid"),
            (&spec::GET_TASKS, "projects.name,memberships.project.gid"),
            (
                &spec::GET_TASKS,
                "memberships.project.name,memberships.section.name",
            ),
            (&spec::GET_TASK, "assignee.email"),
            (&spec::GET_TASK, "followers.email,completed_by.email"),
            (&spec::GET_TASK, "custom_fields.enum_value.name"),
            (&spec::GET_TASK, "custom_fields.enum_value.gid"),
            (&spec::GET_TASK, "parent.projects.workspace.name"),
            (
                &spec::GET_TASK,
                "approval_status,resource_subtype,num_subtasks",
            ),
            (&spec::GET_TASK, "this.name,this.(assignee|followers).email"),
            (&spec::GET_PROJECT_TASKS, "notes,offset,path,uri"),
            (&spec::GET_PROJECTS, "workspace.email_domains"),
            (
                &spec::GET_STORIES,
                "old_approval_status,new_approval_status,created_by.email",
            ),
            (
                &spec::GET_EVENTS,
                "user.email,resource.name,parent.gid,change.field",
            ),
            (&spec::GET_USER, "email,workspaces.is_organization"),
            (&spec::GET_SECTIONS, "project.name,created_at"),
        ];
        for (op, raw) in valid {
            assert!(
                ok(op, raw),
                "{} {}: {raw} should be valid",
                op.method,
                op.path
            );
        }
        let invalid = [
            (&spec::CREATE_TASK, "projects.colour", "projects.colour"),
            (&spec::CREATE_TASK, "colour", "colour"),
            (&spec::GET_TASK, "name.first", "name.first"),
            (&spec::GET_TASK, "gid.x", "gid.x"),
            (
                &spec::GET_TASK,
                "assignee.email.domain",
                "assignee.email.domain",
            ),
            (
                &spec::GET_TASK,
                "memberships.project.nope",
                "memberships.project.nope",
            ),
            (&spec::GET_TASK, "projects..name", "projects..name"),
            (
                &spec::GET_TASK,
                "(assignee|nobody).name",
                "(assignee|nobody).name",
            ),
            (&spec::GET_EVENTS, "resource.notes", "resource.notes"),
            (&spec::GET_USER, "assignee", "assignee"),
        ];
        for (op, raw, named) in invalid {
            let err = Selection::parse(raw, op, false).unwrap_err();
            assert!(err.contains(named), "{raw}: {err}");
        }
    }

    #[test]
    fn strict_mode_accepts_only_the_declared_enum() {
        assert!(Selection::parse("name,assignee.name", &spec::GET_TASK, true).is_ok());
        for raw in ["projects.gid", "assignee.email", "this.name"] {
            let err = Selection::parse(raw, &spec::GET_TASK, true).unwrap_err();
            assert!(err.contains(raw) && err.contains("strict"), "{err}");
            assert!(
                Selection::parse(raw, &spec::GET_TASK, false).is_ok(),
                "{raw}"
            );
        }
    }

    fn no_records(_: &str, _: &str) -> Option<Value> {
        None
    }

    #[test]
    fn the_reply_holds_exactly_the_asked_fields_and_gid_at_every_level() {
        let task = json!({
            "gid": "1", "resource_type": "task", "name": "n", "notes": "x",
            "assignee": {"gid": "2", "resource_type": "user", "name": "Ada"},
            "projects": [{"gid": "5", "resource_type": "project", "name": "P"}],
            "custom_fields": [{"gid": "3", "resource_type": "custom_field", "name": "Fix commit", "text_value": "abc", "type": "text"}],
        });
        let sel = |raw| Selection::parse(raw, &spec::GET_TASK, false).unwrap();
        assert_eq!(
            sel("name,assignee.name,custom_fields.text_value,projects.gid")
                .apply(&task, &no_records),
            json!({"gid": "1", "name": "n", "assignee": {"gid": "2", "name": "Ada"},
                   "custom_fields": [{"gid": "3", "text_value": "abc"}], "projects": [{"gid": "5"}]})
        );
        assert_eq!(
            sel("assignee").apply(&task, &no_records),
            json!({"gid": "1", "assignee": {"gid": "2", "resource_type": "user", "name": "Ada"}}),
            "a nested object asked whole is compact"
        );
        assert_eq!(
            sel("resource_type,due_on,tags,hearts.user.name").apply(&task, &no_records),
            json!({"gid": "1", "resource_type": "task", "due_on": null, "tags": [], "hearts": []}),
            "fields the record lacks come back empty"
        );
    }

    #[test]
    fn a_path_past_a_compact_object_reads_its_full_record() {
        let task = json!({
            "gid": "1", "resource_type": "task",
            "assignee": {"gid": "2", "resource_type": "user", "name": "Ada"},
            "followers": [{"gid": "2", "resource_type": "user", "name": "Ada"}],
        });
        let users = |rt: &str, gid: &str| {
            (rt == "user" && gid == "2").then(
                || json!({"gid": "2", "resource_type": "user", "name": "Ada", "email": "ada@x"}),
            )
        };
        let sel = Selection::parse(
            "assignee.email,followers.(name|email)",
            &spec::GET_TASK,
            false,
        )
        .unwrap();
        assert_eq!(
            sel.apply(&task, &users),
            json!({"gid": "1", "assignee": {"gid": "2", "email": "ada@x"},
                   "followers": [{"gid": "2", "email": "ada@x", "name": "Ada"}]})
        );
    }
}
