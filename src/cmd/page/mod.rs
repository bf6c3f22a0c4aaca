//! The on-call page: what `pushgate run --http ADDR` serves, on the one
//! listener that also serves `/metrics`. Read-only (every route is a GET;
//! nothing here writes to Asana, the hosts or the state directory), server-
//! rendered HTML (maud: every string escaped) with one small script for
//! the live view, SVG charts drawn here (plotters), and feeds.
//!
//! | route | what |
//! |---|---|
//! | `/` | every app × cluster: the state and verdict decide gives, deployed, next push, last run, locks |
//! | `/cluster/APP/CLUSTER` | its history with filters (`?outcome=`, `?since=`) and charts |
//! | `/run/APP/CLUSTER/RUN_ID` | one push or rollback: timeline, hosts, changelog, output, Asana writes |
//! | `/api/status.json` | `status --json` (`?app=`, `?cluster=`) |
//! | `/api/history.json` | `history CLUSTER --json` (`?cluster=`, `?app=`, `?limit=`, `?since=`) |
//! | `/api/live.json` | where each running push stands (the script polls it) |
//! | `/cc.xml` | CCTray |
//! | `/badge/APP/CLUSTER.svg` | an SVG status badge |
//! | `/metrics` | Prometheus (`watch::metrics`) |
//!
//! What it shows comes from where the commands get it: the overview and
//! the badges are `status::ClusterView`s — gathered and decided exactly as
//! `status` does, so the page, `status` and `push --dry-run` agree — kept
//! for [`FRESH_FOR`] unless the state directory changed (a run started,
//! ended or was held), so that a page left open does not poll Asana; the
//! history is `history`'s records and statistics; a run is its kept
//! journal and report (`runs/`, `docs/state.md`); the live view is the
//! daemon's live board (`watch::live`) and the journals. Links to Asana are
//! built from gids (`ASANA/0/PROJECT/TASK`), never taken from text.
//!
//! Not here: any decision (views print what `decide` returned), the
//! listener's lifetime (`daemon`), who may read it (`auth`).

pub mod auth;
mod charts;
mod cluster;
mod feeds;
mod html;
mod overview;
mod run;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};

use crate::cmd::status::{self, ClusterView};
use crate::cmd::{Env, Envs, UsageError};
use crate::config::{ClusterSettings, ConfigFile};
use crate::domain::model::{ProjectGid, TaskGid};
use crate::watch::live::Board;

pub use auth::PageToken;

/// How long a gathered overview is shown again while the state directory
/// has not changed.
pub const FRESH_FOR: Duration = Duration::from_secs(15);

/// What the daemon needs to serve the page, checked before it starts:
/// the address, the token (read from `http.token_file`), where Asana's
/// pages are, and the apps' config.
pub struct Site {
    pub addr: SocketAddr,
    pub token: Option<PageToken>,
    /// Where links to Asana tasks go: `https://app.asana.com`, or the
    /// sandbox's origin.
    pub asana_web: String,
    /// The served apps' config (for `history --json`'s shape).
    pub file: ConfigFile,
}

impl Site {
    /// For `pushgate run --http ADDR`: a non-loopback address needs
    /// `[http] token_file` (bad usage otherwise: exit 2), which must be a
    /// file only its owner can read.
    pub fn open(envs: &Envs, apps: &[&Env], addr: SocketAddr) -> Result<Site, UsageError> {
        let token = match &envs.file.http.token_file {
            Some(path) => Some(PageToken::read(path).map_err(UsageError)?),
            None => None,
        };
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(UsageError(format!(
                "--http {addr}: the page would be reachable from the network without a token; \
                 set [http] token_file (a file of mode 0600 holding the token), or listen on 127.0.0.1 \
                 behind a reverse proxy (docs/operations.md)"
            )));
        }
        let mut file = envs.file.clone();
        file.apps
            .retain(|name, _| apps.iter().any(|e| &e.config.app == name));
        Ok(Site {
            addr,
            token,
            asana_web: envs.asana_web(),
            file,
        })
    }
}

/// Links to Asana's pages, built from gids.
#[derive(Clone, Debug)]
pub struct Links {
    origin: String,
}

impl Links {
    pub fn new(origin: &str) -> Links {
        Links {
            origin: origin.trim_end_matches('/').to_owned(),
        }
    }

    /// A task's page in `project`.
    pub fn task(&self, project: &ProjectGid, task: &TaskGid) -> String {
        format!("{}/0/{}/{}", self.origin, project.as_str(), task.as_str())
    }

    /// The task a stored link (a `permalink_url`) is about: the link is
    /// never shown, only the gid read from its path is, rebuilt.
    pub fn task_of_link(&self, project: &ProjectGid, link: &str) -> Option<String> {
        gid_of_link(link).map(|g| self.task(project, &g))
    }
}

/// The task gid at the end of a permalink's path (`/0/P/T`, `/0/P/T/f`,
/// `/1/W/project/P/task/T`).
pub fn gid_of_link(link: &str) -> Option<TaskGid> {
    let path = link.split(['?', '#']).next()?;
    path.rsplit('/')
        .find(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
        .and_then(TaskGid::parse)
}

/// A gathered overview and what it was gathered on.
struct Gathered {
    at: Instant,
    now: DateTime<Utc>,
    seen: Vec<Seen>,
    views: Arc<Vec<ClusterView>>,
    /// Why nothing could be gathered (a hosts file that cannot be read:
    /// `status` exits 2 with the same words).
    problem: Option<String>,
}

/// The overview as gathered: the views, when, and why there are none.
pub struct Overview {
    pub views: Arc<Vec<ClusterView>>,
    pub now: DateTime<Utc>,
    pub problem: Option<String>,
}

/// What the state directory looked like: whether each cluster runs, and
/// the sizes and times of the files a run or a hold changes.
type Seen = (bool, Vec<Option<(u64, std::time::SystemTime)>>);

/// The page's state: the apps (their own handles on the config, the
/// client and the state directory), the links, the live board, the token,
/// and the last overview gathered.
pub struct Page {
    apps: Vec<Env>,
    file: ConfigFile,
    many: bool,
    links: Links,
    board: Arc<Board>,
    token: Option<PageToken>,
    overview: tokio::sync::Mutex<Option<Gathered>>,
}

impl Page {
    pub fn new(apps: &[&Env], site: Site, board: Arc<Board>) -> Page {
        Page {
            apps: apps
                .iter()
                .map(|e| Env {
                    config: e.config.clone(),
                    client: e.client.clone(),
                    state: e.state.clone(),
                    child_env: e.child_env.clone(),
                    observer: e.observer.clone(),
                })
                .collect(),
            many: site.file.has_apps,
            file: site.file,
            links: Links::new(&site.asana_web),
            board,
            token: site.token,
            overview: tokio::sync::Mutex::new(None),
        }
    }

    /// An app and its cluster, by name.
    fn cluster(&self, app: &str, cluster: &str) -> Option<(&Env, &ClusterSettings)> {
        let env = self.apps.iter().find(|e| e.config.app.as_str() == app)?;
        Some((env, env.config.cluster(cluster)?))
    }

    /// Every app's clusters, in order.
    fn clusters(&self) -> Vec<(&Env, &ClusterSettings)> {
        self.apps
            .iter()
            .flat_map(|e| e.config.clusters.values().map(move |c| (e, c)))
            .collect()
    }

    fn seen(&self) -> Vec<Seen> {
        self.clusters()
            .iter()
            .map(|(env, c)| {
                let s = env.state.cluster(&c.name);
                let stat = |p: std::path::PathBuf| {
                    std::fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.len(), m.modified().ok()?)))
                };
                (
                    s.running().is_some(),
                    vec![
                        stat(s.history_path()),
                        stat(s.holds_path()),
                        stat(s.outbox_path()),
                        stat(s.dir().join("deployed.json")),
                        stat(s.dir().join("journal.jsonl")),
                        stat(s.dir().join("bad.json")),
                    ],
                )
            })
            .collect()
    }

    /// Every cluster's view, as `status` gathers and decides it: the one
    /// kept, if it is younger than [`FRESH_FOR`] and the state directory
    /// has not changed since, else a new one (one at a time).
    async fn views(&self) -> (Arc<Vec<ClusterView>>, DateTime<Utc>) {
        let o = self.overview().await;
        (o.views, o.now)
    }

    /// [`Page::views`], and why there are none if there are none.
    async fn overview(&self) -> Overview {
        let mut kept = self.overview.lock().await;
        let seen = self.seen();
        if let Some(g) = kept.as_ref() {
            if g.at.elapsed() < FRESH_FOR && g.seen == seen {
                return Overview {
                    views: g.views.clone(),
                    now: g.now,
                    problem: g.problem.clone(),
                };
            }
        }
        let now = Utc::now();
        let wanted = self.clusters();
        let (views, problem) = match status::gather(&wanted, now, self.many).await {
            Ok((views, warnings)) => {
                for w in warnings {
                    tracing::warn!("on-call page: {w}");
                }
                (views, None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "on-call page: cannot gather the clusters' state");
                (Vec::new(), Some(e.0))
            }
        };
        let views = Arc::new(views);
        *kept = Some(Gathered {
            at: Instant::now(),
            now,
            seen,
            views: views.clone(),
            problem: problem.clone(),
        });
        Overview {
            views,
            now,
            problem,
        }
    }
}

/// The page's routes (`/metrics` is merged in by the daemon), behind the
/// token when there is one.
pub fn router(page: Arc<Page>, metrics: Router) -> Router {
    let routes = Router::new()
        .route("/", get(overview::show))
        .route("/cluster/{app}/{cluster}", get(cluster::show))
        .route("/run/{app}/{cluster}/{run}", get(run::show))
        .route("/api/status.json", get(feeds::status))
        .route("/api/history.json", get(feeds::history))
        .route("/api/live.json", get(feeds::live))
        .route("/cc.xml", get(feeds::cctray))
        .route("/badge/{app}/{file}", get(feeds::badge))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .with_state(page.clone());
    routes
        .merge(metrics)
        .fallback(|| async { html::not_found("There is no such page.") })
        .layer(axum::middleware::map_response(guarded))
        .layer(axum::middleware::from_fn_with_state(page, auth::guard))
}

/// Every answer without a policy of its own (the metrics, a 405) gets the
/// feeds' policy: nothing it holds can run as script.
async fn guarded(mut resp: axum::response::Response) -> axum::response::Response {
    if !resp
        .headers()
        .contains_key(axum::http::header::CONTENT_SECURITY_POLICY)
    {
        html::secure_with(&mut resp, html::FEED_CSP);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_rebuilt_from_the_gid_at_the_end_of_its_path() {
        let links = Links::new("https://app.asana.com/");
        let p = ProjectGid::parse("1200000000000003").unwrap();
        for link in [
            "https://app.asana.com/0/1200000000000003/1209999/f",
            "https://app.asana.com/1/1/project/1200000000000003/task/1209999?focus=true",
            "http://127.0.0.1:4/0/9/1209999",
        ] {
            assert_eq!(
                links.task_of_link(&p, link).as_deref(),
                Some("https://app.asana.com/0/1200000000000003/1209999"),
                "{link}"
            );
        }
        assert_eq!(links.task_of_link(&p, "javascript:alert(1)"), None);
        assert_eq!(links.task_of_link(&p, ""), None);
    }
}
