//! Stories: a task's comments and system stories, read as a list or one by
//! one; comments are written, edited and deleted by their author only
//! (spec: `paths./tasks/{task_gid}/stories`, `paths./stories/{story_gid}`;
//! API-FACTS §8). Not here: likes, attachments, stories of projects.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::super::events::Named;
use super::super::richtext::{self, Kind};
use super::super::spec;
use super::super::store::{escape_xml, Data};
use super::{
    add_story, audience, body, bool_field, check_gid, empty, event, list, named_task, one, params,
    story, str_field, task_mut, task_of, Actor, ApiError, Me, Result, St,
};

const STORY_COMPACT: &[&str] = &[
    "gid",
    "resource_type",
    "created_at",
    "created_by",
    "resource_subtype",
    "text",
];

const STICKERS: &[&str] = &[
    "green_checkmark",
    "people_dancing",
    "dancing_unicorn",
    "heart",
    "party_popper",
    "people_waving_flags",
    "splashing_narwhal",
    "trophy",
    "yeti_riding_unicorn",
    "celebrating_people",
    "determined_climbers",
    "phoenix_spreading_love",
];

pub async fn get_stories(
    State(s): St,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_STORIES, q)?;
    let d = s.data();
    let t = task_of(&d, &task)?;
    Ok(list(
        &d,
        &s.origin,
        &t.stories,
        |st| d.story_full(t, st),
        &p,
        STORY_COMPACT,
        &format!("/tasks/{task}/stories"),
    ))
}

/// `text` / `html_text` of a write → (plain, rich); `None` when neither.
fn text_of(data: &Map<String, Value>) -> Result<Option<(String, Option<String>)>> {
    match (str_field(data, "text")?, str_field(data, "html_text")?) {
        (Some(_), Some(_)) => Err(ApiError::bad(
            "You may only provide one of text or html_text",
        )),
        (Some(t), None) => Ok(Some((t.to_owned(), None))),
        (None, Some(h)) => {
            let plain = richtext::to_plain(h, Kind::Comment)
                .map_err(|e| ApiError::bad(format!("html_text: {e}")))?;
            Ok(Some((plain, Some(h.to_owned()))))
        }
        (None, None) => Ok(None),
    }
}

fn sticker_of(data: &Map<String, Value>) -> Result<Option<Option<String>>> {
    match data.get("sticker_name") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if STICKERS.contains(&s.as_str()) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(ApiError::bad(format!(
            "sticker_name: not one of Asana's stickers: {}",
            other.to_string().escape_debug()
        ))),
    }
}

pub async fn create_story(
    State(s): St,
    me: Me,
    Path(task): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::CREATE_STORY, q)?;
    let data = body(&spec::CREATE_STORY, &bytes)?;
    let now = s.now();
    let v = s.mutate(|d| {
        task_of(d, &task)?;
        let (text, html) = text_of(&data)?
            .ok_or_else(|| ApiError::bad("text: Missing input; give text or html_text"))?;
        let mut st = story(d, now, &me, "comment_added", text);
        st.html_text = html.or_else(|| Some(format!("<body>{}</body>", escape_xml(&st.text))));
        st.is_pinned = bool_field(&data, "is_pinned")?.unwrap_or(false);
        st.sticker_name = sticker_of(&data)?.flatten();
        add_story(d, now, &me, &task, st.clone())?;
        task_mut(d, &task)?.modified_at = now;
        Ok(d.story_full(task_of(d, &task)?, &st))
    })?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::CREATED))
}

fn story_task(d: &Data, story: &str) -> Result<String> {
    check_gid("story", story)?;
    d.story(story)
        .map(|(t, _)| t.gid.clone())
        .ok_or_else(|| ApiError::not_found("story", story))
}

pub async fn get_story(
    State(s): St,
    Path(story): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_STORY, q)?;
    let d = s.data();
    story_task(&d, &story)?;
    let (t, st) = d
        .story(&story)
        .ok_or_else(|| ApiError::not_found("story", &story))?;
    Ok(one(&d, &s.origin, d.story_full(t, st), &p, StatusCode::OK))
}

/// Only the author may touch a comment, and only comments may be touched.
fn own_comment(d: &Data, me: &Actor, story: &str, verb: &str) -> Result<String> {
    let task = story_task(d, story)?;
    let (_, st) = d
        .story(story)
        .ok_or_else(|| ApiError::not_found("story", story))?;
    if !st.is_comment() {
        return Err(ApiError::forbidden(format!(
            "story {story} is a system story ({}); only comments can be {verb}",
            st.subtype
        )));
    }
    if st.created_by != me.0 {
        return Err(ApiError::forbidden(format!(
            "story {story} was written by someone else; a user can only {verb} their own comments"
        )));
    }
    Ok(task)
}

pub async fn update_story(
    State(s): St,
    me: Me,
    Path(story): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    let p = params(&s, &spec::UPDATE_STORY, q)?;
    let data = body(&spec::UPDATE_STORY, &bytes)?;
    let now = s.now();
    let v = s.mutate(|d| {
        let task = own_comment(d, &me, &story, "edited")?;
        let text = text_of(&data)?;
        let pinned = bool_field(&data, "is_pinned")?;
        let sticker = sticker_of(&data)?;
        let t = task_mut(d, &task)?;
        let st = t
            .stories
            .iter_mut()
            .find(|x| x.gid == story)
            .ok_or_else(|| ApiError::not_found("story", &story))?;
        let edited = text.is_some();
        if let Some((plain, rich)) = text {
            st.html_text = rich.or_else(|| Some(format!("<body>{}</body>", escape_xml(&plain))));
            st.text = plain;
            st.is_edited = true;
        }
        if let Some(pin) = pinned {
            st.is_pinned = pin;
        }
        if let Some(sticker) = sticker {
            st.sticker_name = sticker;
        }
        let t = task_of(d, &task)?;
        let (parent, who) = (named_task(t), audience(d, t));
        if edited {
            event(
                d,
                now,
                &me,
                Named::new("story", &story, None),
                "changed",
                Some(parent),
                Some(json!({"field": "text", "action": "changed"})),
                who,
            );
        }
        let t = task_of(d, &task)?;
        let st = t
            .stories
            .iter()
            .find(|x| x.gid == story)
            .ok_or_else(|| ApiError::not_found("story", &story))?;
        Ok(d.story_full(t, st))
    })?;
    Ok(one(&s.data(), &s.origin, v, &p, StatusCode::OK))
}

pub async fn delete_story(
    State(s): St,
    me: Me,
    Path(story): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::DELETE_STORY, q)?;
    let now = s.now();
    s.mutate(|d| {
        let task = own_comment(d, &me, &story, "deleted")?;
        task_mut(d, &task)?.stories.retain(|x| x.gid != story);
        let t = task_of(d, &task)?;
        let (parent, who) = (named_task(t), audience(d, t));
        event(
            d,
            now,
            &me,
            Named::new("story", &story, None),
            "deleted",
            Some(parent),
            None,
            who,
        );
        Ok(())
    })?;
    Ok(empty(&p))
}
