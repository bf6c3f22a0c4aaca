//! Asana's JSON records as the client reads them, and what the client does
//! with a response body ([`envelope`], [`error_message`]). Every field but
//! `gid` is optional: a record holds only what `opt_fields` asked for.
//!
//! Bodies are untrusted bytes: these functions return errors, never panic
//! (`fuzz/` runs them on arbitrary input). They do not judge the values:
//! gids, names and fix commits are checked by their callers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Named {
    pub gid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct User {
    pub gid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CustomFieldValue {
    pub gid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub text_value: Option<String>,
}

/// `null` where a string is expected reads as the empty string.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Task {
    pub gid: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permalink_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<Named>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields: Option<Vec<CustomFieldValue>>,
    /// `default_task`, `milestone`, `approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_subtype: Option<String>,
    /// Approval tasks: `pending`, `approved`, `rejected`, `changes_requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_status: Option<String>,
    /// Who completed it (for an approval task: who decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Named>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Story {
    pub gid: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html_text: Option<String>,
    #[serde(default)]
    pub resource_subtype: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Named>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CustomFieldSetting {
    pub gid: String,
    pub custom_field: CustomFieldDef,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CustomFieldDef {
    pub gid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub resource_subtype: Option<String>,
}

/// A success response as the client reads it: the `data` member, and for a
/// list the offset of the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub data: Value,
    pub next_offset: Option<String>,
    /// `GET /events`: the sync token to ask with next, and whether more
    /// events wait.
    pub sync: Option<String>,
    pub has_more: bool,
}

/// One event of `GET /events`, as asked (`action,resource,parent,type,created_at,user`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Event {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub resource: Option<EventResource>,
    #[serde(default)]
    pub parent: Option<EventResource>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// What an event is about: a task, a story, a project.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct EventResource {
    pub gid: String,
    #[serde(default)]
    pub resource_type: Option<String>,
}

/// Reads a success response's body: `{"data": ..., "next_page": ...}`.
///
/// A `next_page` that is neither `null` nor an object with a string
/// `offset` is an error, not the last page: a list cut short could hide a
/// lock task, and the gate must fail closed rather than see fewer locks.
pub fn envelope(bytes: &[u8]) -> Result<Envelope, String> {
    let mut body: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Some(obj) = body.as_object_mut() else {
        return Err("the body is not a JSON object".into());
    };
    let data = obj
        .remove("data")
        .ok_or_else(|| "no `data` in the response".to_owned())?;
    let next_offset = match obj.get("next_page") {
        None | Some(Value::Null) => None,
        Some(next) => match next.get("offset") {
            Some(Value::String(o)) if !o.is_empty() => Some(o.clone()),
            _ => {
                let shown: String = next.to_string().chars().take(100).collect();
                return Err(format!(
                    "`next_page` has no usable `offset`: {}",
                    shown.escape_debug()
                ));
            }
        },
    };
    let sync = obj.get("sync").and_then(Value::as_str).map(str::to_owned);
    let has_more = obj
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Envelope {
        data,
        next_offset,
        sync,
        has_more,
    })
}

/// The fresh sync token of a `412` answer to `GET /events`, if it has one.
pub fn fresh_sync(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("sync")?.as_str().map(str::to_owned)
}

/// `{"errors":[{"message":...}]}` → the messages (control characters
/// escaped, at most 500 characters), else a short excerpt of the body,
/// escaped so that it prints on one line.
pub fn error_message(bytes: &[u8]) -> String {
    let parsed: Option<ErrorBody> = serde_json::from_slice(bytes).ok();
    let messages: Vec<String> = parsed
        .map(|b| b.errors.into_iter().filter_map(|e| e.message).collect())
        .unwrap_or_default();
    if !messages.is_empty() {
        return crate::domain::text::printable(&messages.join("; "), 500);
    }
    let text = String::from_utf8_lossy(bytes);
    let excerpt: String = text.chars().take(200).collect();
    if excerpt.trim().is_empty() {
        "(no message)".into()
    } else {
        excerpt.escape_debug().to_string()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_gives_its_data_and_next_offset_or_says_what_is_wrong() {
        let e = envelope(br#"{"data":[{"gid":"1"}],"next_page":{"offset":"abc","path":"/x"}}"#)
            .unwrap();
        assert_eq!(e.next_offset.as_deref(), Some("abc"));
        assert_eq!(
            envelope(br#"{"data":[],"next_page":null}"#)
                .unwrap()
                .next_offset,
            None
        );
        for (body, why) in [
            (&b"<html>"[..], "not JSON"),
            (b"[1]", "not a JSON object"),
            (b"{}", "no `data`"),
            // A list whose next page cannot be asked for is not a short
            // list: the gate must not see fewer locks than there are.
            (
                br#"{"data":[],"next_page":{"offset":7}}"#,
                "no usable `offset`",
            ),
            (
                br#"{"data":[],"next_page":{"offset":""}}"#,
                "no usable `offset`",
            ),
            (br#"{"data":[],"next_page":"x"}"#, "no usable `offset`"),
        ] {
            let err = envelope(body).unwrap_err();
            assert!(err.contains(why), "{body:?}: {err}");
        }
    }

    #[test]
    fn error_messages_print_on_one_line() {
        assert_eq!(
            error_message(br#"{"errors":[{"message":"a\u001b[2J\nb"},{"message":"c"}]}"#),
            "a\\u{1b}[2J\\nb; c"
        );
        let long = format!(r#"{{"errors":[{{"message":"{}"}}]}}"#, "x".repeat(10_000));
        assert!(error_message(long.as_bytes()).chars().count() <= 501);
    }
}
