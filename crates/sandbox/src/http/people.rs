//! Users and workspaces: who is there (`GET /users`, `GET /users/{gid}`
//! with `me`, an e-mail or a gid) and the one workspace. Not here: teams,
//! memberships, favourites, user task lists, updating either.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::super::spec;
use super::super::store::{UserRec, WorkspaceRec};
use super::{list, one, params, user_of, workspace_of, ApiError, Me, Result, St, COMPACT};

pub async fn get_users(State(s): St, RawQuery(q): RawQuery) -> Result<Response> {
    let p = params(&s, &spec::GET_USERS, q)?;
    if let Some(team) = p.get("team") {
        return Err(ApiError::not_found("team", team));
    }
    let d = s.data();
    if let Some(w) = p.get("workspace") {
        workspace_of(&d, w)?;
    }
    // Every person is in the one workspace; sorted by gid, as Asana sorts.
    let items: Vec<&UserRec> = d.users.values().collect();
    Ok(list(
        &d,
        &s.origin,
        &items,
        |u| d.user_full(u),
        &p,
        COMPACT,
        "/users",
    ))
}

pub async fn get_user(
    State(s): St,
    me: Me,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_USER, q)?;
    let d = s.data();
    if let Some(w) = p.get("workspace") {
        workspace_of(&d, w)?;
    }
    let gid = user_of(&d, &me, &user, "user").map_err(|_| ApiError::not_found("user", &user))?;
    let u = d
        .users
        .get(&gid)
        .ok_or_else(|| ApiError::not_found("user", &user))?;
    Ok(one(&d, &s.origin, d.user_full(u), &p, StatusCode::OK))
}

pub async fn get_workspaces(State(s): St, RawQuery(q): RawQuery) -> Result<Response> {
    let p = params(&s, &spec::GET_WORKSPACES, q)?;
    let d = s.data();
    let items: Vec<&WorkspaceRec> = d.workspaces.values().collect();
    Ok(list(
        &d,
        &s.origin,
        &items,
        |w| d.workspace_full(w),
        &p,
        COMPACT,
        "/workspaces",
    ))
}

pub async fn get_workspace(
    State(s): St,
    Path(workspace): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let p = params(&s, &spec::GET_WORKSPACE, q)?;
    let d = s.data();
    workspace_of(&d, &workspace)?;
    let w = d
        .workspaces
        .get(&workspace)
        .ok_or_else(|| ApiError::not_found("workspace", &workspace))?;
    Ok(one(&d, &s.origin, d.workspace_full(w), &p, StatusCode::OK))
}
