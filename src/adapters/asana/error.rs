//! The typed error of every Asana call, and whether a retry may help.

use std::time::Duration;

use reqwest::Method;

#[derive(Debug, thiserror::Error)]
pub enum AsanaError {
    /// Asana answered with a non-success status other than 401.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Status {
        method: Method,
        path: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 401: the token was refused. Names where the token came from, never the token.
    #[error("{method} {path}: Asana refused the token from {token_source} (HTTP 401: {message})")]
    Unauthorized {
        method: Method,
        path: String,
        token_source: String,
        message: String,
    },
    /// No answer: connect failure, timeout, dropped connection.
    #[error("{method} {path}: {detail}")]
    Transport {
        method: Method,
        path: String,
        detail: String,
        /// The request never reached the server (connection refused), so it
        /// cannot have been applied.
        before_send: bool,
    },
    /// A success status whose body is not what Asana documents.
    #[error("{method} {path}: unexpected response: {detail}")]
    Decode {
        method: Method,
        path: String,
        detail: String,
    },
    /// Retries ran out; the last error is the source.
    #[error("gave up after {attempts} attempts")]
    Exhausted {
        attempts: u32,
        #[source]
        last: Box<AsanaError>,
    },
    /// The token could not be read at all.
    #[error("{0}")]
    Token(String),
    /// `GET /events`: no sync token, or a stale one (412); Asana gave a
    /// fresh one: read the resource in full, then follow events from it.
    #[error("GET /events: the sync token is unknown or expired (HTTP 412)")]
    SyncExpired { sync: String },
}

impl AsanaError {
    /// Whether the same request may succeed later: rate limits, server
    /// errors and transport failures.
    pub fn is_transient(&self) -> bool {
        match self {
            AsanaError::Status { status, .. } => *status == 429 || *status >= 500,
            AsanaError::Transport { .. } => true,
            AsanaError::Exhausted { last, .. } => last.is_transient(),
            AsanaError::Unauthorized { .. }
            | AsanaError::Decode { .. }
            | AsanaError::Token(_)
            | AsanaError::SyncExpired { .. } => false,
        }
    }

    /// Whether the request is known not to have been applied, so that even a
    /// non-idempotent POST may be sent again: a 429 is refused before any
    /// work, and a connection that never opened carried nothing.
    pub fn known_not_applied(&self) -> bool {
        match self {
            AsanaError::Status { status, .. } => *status == 429,
            AsanaError::Transport { before_send, .. } => *before_send,
            _ => false,
        }
    }

    /// The HTTP status, if Asana answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AsanaError::Status { status, .. } => Some(*status),
            AsanaError::Unauthorized { .. } => Some(401),
            AsanaError::SyncExpired { .. } => Some(412),
            AsanaError::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            AsanaError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
