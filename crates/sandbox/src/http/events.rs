//! GET /events (spec: `paths./events`; API-FACTS §10): a resource's events
//! since a sync token. No token, an empty one or a dead one is a 412 whose
//! body carries a fresh token beside `errors`; a live one gives
//! `{data, sync, has_more}`, at most 100 events a call.
//!
//! Besides `resource`, `sync`, `opt_fields` and `opt_pretty` (declared), it
//! takes `limit` (a cap below 100), which python-asana's event iterator
//! sends although the spec does not declare it there.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::super::events::{EventRec, Named, MAX_PER_CALL};
use super::super::spec;
use super::super::store::Data;
use super::{check_gid, params_with, render, shape, ApiError, Result, St};

fn named(n: &Named) -> Value {
    json!({ "gid": n.gid, "resource_type": n.resource_type, "name": n.name })
}

fn event_full(d: &Data, e: &EventRec) -> Value {
    let mut v = json!({
        "user": d.user_compact(&e.user),
        "resource": named(&e.resource),
        "type": e.resource.resource_type,
        "action": e.action,
        "parent": e.parent.as_ref().map(named),
        "created_at": super::super::store::ts(&e.created_at),
        "change": e.change,
    });
    if e.resource.name.is_none() {
        if let Some(obj) = v["resource"].as_object_mut() {
            obj.remove("name");
        }
    }
    v
}

pub async fn get_events(State(s): St, RawQuery(q): RawQuery) -> Result<Response> {
    let p = params_with(&s, &spec::GET_EVENTS, q, &["limit"])?;
    let resource = p
        .get("resource")
        .ok_or_else(|| ApiError::bad("resource: Missing input"))?
        .to_owned();
    check_gid("resource", &resource)?;
    {
        let d = s.data();
        if !d.tasks.contains_key(&resource) && !d.projects.contains_key(&resource) {
            return Err(ApiError::not_found("resource", &resource));
        }
    }
    let limit = p.limit.unwrap_or(MAX_PER_CALL).min(MAX_PER_CALL);
    let page = s.read_events(&resource, p.get("sync"), limit)?;
    match page {
        Err(fresh) => Err(ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            message: "Sync token invalid or too old. If you are attempting to keep resources in sync, you must fetch the full dataset for this query now and use the new sync token for the next sync.".into(),
            extra: Some(("sync", json!(fresh))),
        }),
        Ok(page) => {
            let d = s.data();
            let items: Vec<Value> = page
                .events
                .iter()
                .map(|e| shape(&d, &s.origin, &event_full(&d, e), &p, None))
                .collect();
            Ok(render(
                Value::Array(items),
                &p,
                StatusCode::OK,
                &[("sync", json!(page.sync)), ("has_more", json!(page.has_more))],
            ))
        }
    }
}
