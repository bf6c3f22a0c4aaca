//! Many apps in one config, for real: each app its own git repository,
//! its own lock and push projects (made in the sandbox), its own `local:`
//! hosts, one `pushgate.toml` with `[apps.NAME]` tables, and the real
//! binary.

use std::path::{Path, PathBuf};

use super::{seed, Raw, Repo, Run, TOKEN_ENV};
use pushgate::sandbox::Sandbox;

/// One app of the world.
pub struct App {
    pub name: String,
    pub repo: Repo,
    /// Its first commit.
    pub first: String,
    pub lock_beta: String,
    pub push_beta: String,
}

pub struct Apps {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub token: String,
    pub apps: Vec<App>,
}

/// A new project in the sandbox's workspace; its gid.
pub async fn project(sb: &Sandbox, name: &str) -> String {
    let (s, p) = Raw::new(sb)
        .post(
            "/projects",
            serde_json::json!({"data": {"name": name, "workspace": seed::WORKSPACE}}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    p["data"]["gid"].as_str().unwrap().to_owned()
}

impl Apps {
    /// Apps named `names`, each with a beta cluster of two `local:` hosts
    /// (`NAME/hosts/beta-N`) on `schedule`, whose build copies `app/` into
    /// `dist/` and appends to `NAME/builds.log`. `top` goes at the top of
    /// the file, `per_app(name)` into each app's beta cluster.
    pub async fn new(
        sb: &Sandbox,
        names: &[&str],
        schedule: &str,
        top: &str,
        per_app: impl Fn(&str) -> String,
    ) -> Apps {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mut apps = Vec::new();
        let mut text = format!(
            r#"state_dir = "state"
{top}
[asana]
base_url = "{url}"
token_env = "{TOKEN_ENV}"
workspace = "{ws}"
retry_delay = "1ms"

[sync]
host_timeout = "60s"
retries = 0
"#,
            url = sb.base_url(),
            ws = seed::WORKSPACE,
        );
        for name in names {
            let repo = Repo::init(&dir.path().join(name).join("repo"));
            let first = repo.commit(
                &[("app/index.html", format!("{name} v1\n").as_bytes())],
                "Initial app",
            );
            let lock_beta = project(sb, &format!("Lock {name} beta")).await;
            let push_beta = project(sb, &format!("{name} beta pushes")).await;
            text.push_str(&format!(
                r#"
[apps.{name}.repo]
url = "{d}/{name}/repo"
[apps.{name}.build]
command = ["sh", "-c", "mkdir -p dist && cp -R app/. dist/ && echo built >> '{d}/{name}/builds.log'"]
output = "dist"
timeout = "60s"
[apps.{name}.clusters.beta]
schedule = "{schedule}"
lock_project = "{lock_beta}"
push_project = "{push_beta}"
hosts = ["local:{d}/{name}/hosts/beta-1", "local:{d}/{name}/hosts/beta-2"]
{extra}
"#,
                extra = per_app(name),
            ));
            apps.push(App {
                name: (*name).to_owned(),
                repo,
                first,
                lock_beta,
                push_beta,
            });
        }
        let config = dir.path().join("pushgate.toml");
        std::fs::write(&config, text).unwrap();
        Apps {
            dir,
            config,
            token: sb.token(),
            apps,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn app(&self, name: &str) -> &App {
        self.apps.iter().find(|a| a.name == name).unwrap()
    }

    /// What an app's beta host N's `current` points at (`releases/<id>`).
    pub fn current(&self, app: &str, n: usize) -> Option<String> {
        std::fs::read_link(self.path(&format!("{app}/hosts/beta-{n}/current")))
            .ok()
            .map(|p| p.display().to_string())
    }

    /// The file host N of `app` serves.
    pub fn served(&self, app: &str, n: usize) -> Option<String> {
        std::fs::read_to_string(self.path(&format!("{app}/hosts/beta-{n}/current/index.html"))).ok()
    }

    /// How many times `app`'s build ran.
    pub fn builds(&self, app: &str) -> usize {
        std::fs::read_to_string(self.path(&format!("{app}/builds.log")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Rewrites the build command of `app` (a TOML array).
    pub fn set_build(&self, app: &str, argv: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let marker = format!("[apps.{app}.build]\ncommand = ");
        let start = text.find(&marker).unwrap() + marker.len();
        let end = start + text[start..].find('\n').unwrap();
        let fixed = format!("{}{argv}{}", &text[..start], &text[end..]);
        std::fs::write(&self.config, fixed).unwrap();
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[]).await
    }

    pub async fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        super::run_pushgate(&self.config, &self.token, args, vars).await
    }

    /// The state directory's root.
    pub fn state(&self) -> &Path {
        self.dir.path()
    }
}
