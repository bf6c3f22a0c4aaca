//! Requests from Asana (`docs/requests.md`): the grammar of a request
//! task's name, strict and pure. Task text is untrusted: what is not one
//! of the few sentences below is refused with a message saying what is
//! understood; a revision is only *shaped* here (the repository resolves
//! it), and nothing parsed ever reaches a shell or a path.
//!
//! ```text
//! [APP] push CLUSTER [REV]
//! [APP] rollback CLUSTER [RELEASE_ID]
//! [APP] lock CLUSTER
//! [APP] unlock CLUSTER
//! ```
//!
//! `APP` is required when there are several apps, optional with one.

use std::fmt;

use crate::domain::model::{ClusterName, ReleaseId};
use crate::domain::text::printable;

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    Push {
        cluster: ClusterName,
        rev: Option<String>,
    },
    Rollback {
        cluster: ClusterName,
        to: Option<ReleaseId>,
    },
    Lock {
        cluster: ClusterName,
    },
    Unlock {
        cluster: ClusterName,
    },
}

impl Verb {
    pub fn cluster(&self) -> &ClusterName {
        match self {
            Verb::Push { cluster, .. }
            | Verb::Rollback { cluster, .. }
            | Verb::Lock { cluster }
            | Verb::Unlock { cluster } => cluster,
        }
    }
}

/// A request as understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The app named first, if one was.
    pub app: Option<String>,
    pub verb: Verb,
}

impl fmt::Display for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(a) = &self.app {
            write!(f, "{a} ")?;
        }
        match &self.verb {
            Verb::Push { cluster, rev } => {
                write!(f, "push {cluster}")?;
                if let Some(r) = rev {
                    write!(f, " {r}")?;
                }
                Ok(())
            }
            Verb::Rollback { cluster, to } => {
                write!(f, "rollback {cluster}")?;
                if let Some(r) = to {
                    write!(f, " {r}")?;
                }
                Ok(())
            }
            Verb::Lock { cluster } => write!(f, "lock {cluster}"),
            Verb::Unlock { cluster } => write!(f, "unlock {cluster}"),
        }
    }
}

/// The longest request name looked at.
const MAX_NAME: usize = 200;

/// A revision's shape: a sha, branch or tag name — letters, digits and
/// `._/-`, not starting with `-` or `/`, no `..`, at most 100 characters.
/// Whether it names a commit is the repository's to say.
pub fn rev_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with(['-', '/', '.'])
        && !s.ends_with(['/', '.'])
        && !s.contains("..")
        && !s.contains("//")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

/// What every refusal says is understood.
pub fn grammar(apps: &[&str], clusters: &[&str]) -> String {
    let app = match apps {
        [_, _, ..] => "APP ",
        _ => "[APP] ",
    };
    format!(
        "I understand only: `{app}push CLUSTER [REV]`, `{app}rollback CLUSTER [RELEASE_ID]`, `{app}lock CLUSTER`, `{app}unlock CLUSTER` — CLUSTER one of {}{}; REV a commit, branch or tag of the repository; RELEASE_ID like 20261124T101500Z-3f2a9c1e0b4d.",
        clusters.join(", "),
        if apps.is_empty() {
            String::new()
        } else {
            format!("; APP one of {}", apps.join(", "))
        }
    )
}

/// Parses a request task's name. `apps` are the known app names (empty
/// or one: the app may be left out), `clusters` the known clusters.
pub fn parse(name: &str, apps: &[&str], clusters: &[&str]) -> Result<Parsed, String> {
    words(name, apps, clusters).map_err(|why| format!("{why}. {}", grammar(apps, clusters)))
}

fn words(name: &str, apps: &[&str], clusters: &[&str]) -> Result<Parsed, String> {
    let refuse = Err;
    if name.chars().count() > MAX_NAME {
        return refuse("the request is too long".into());
    }
    if name.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return refuse(format!(
            "`{}` holds characters no request has",
            printable(name, 80)
        ));
    }
    let mut words: Vec<&str> = name.split_ascii_whitespace().collect();
    let app = match words.first() {
        Some(w) if apps.contains(w) => {
            let a = (*w).to_owned();
            words.remove(0);
            Some(a)
        }
        _ if apps.len() > 1 => {
            return refuse(format!(
                "`{}` does not start with an app",
                printable(name, 80)
            ))
        }
        _ => None,
    };
    let (verb, rest) = match words.split_first() {
        Some((v, rest)) => (*v, rest),
        None => return refuse("the request is empty".into()),
    };
    let cluster = |w: Option<&&str>| -> Result<ClusterName, String> {
        match w {
            Some(c) if clusters.contains(c) => {
                ClusterName::parse(c).ok_or_else(|| format!("`{}` is no cluster", printable(c, 40)))
            }
            Some(c) => Err(format!(
                "`{}` is not a configured cluster",
                printable(c, 40)
            )),
            None => Err(format!("`{}` needs a CLUSTER", printable(verb, 20))),
        }
    };
    let verb = match (verb, rest.len()) {
        ("push", 1 | 2) => Verb::Push {
            cluster: cluster(rest.first())?,
            rev: match rest.get(1) {
                None => None,
                Some(r) if rev_shaped(r) => Some((*r).to_owned()),
                Some(r) => {
                    return refuse(format!(
                        "`{}` is not a revision (a sha, branch or tag)",
                        printable(r, 60)
                    ))
                }
            },
        },
        ("rollback", 1 | 2) => Verb::Rollback {
            cluster: cluster(rest.first())?,
            to: match rest.get(1) {
                None => None,
                Some(r) => match ReleaseId::parse(r) {
                    Some(id) => Some(id),
                    None => {
                        return refuse(format!(
                            "`{}` is not a release id (YYYYMMDDTHHMMSSZ-<12 hex>)",
                            printable(r, 60)
                        ))
                    }
                },
            },
        },
        ("lock", 1) => Verb::Lock {
            cluster: cluster(rest.first())?,
        },
        ("unlock", 1) => Verb::Unlock {
            cluster: cluster(rest.first())?,
        },
        ("push" | "rollback" | "lock" | "unlock", 0) => {
            return refuse(format!("`{verb}` needs a CLUSTER"))
        }
        ("push" | "rollback" | "lock" | "unlock", _) => {
            return refuse(format!(
                "`{}` has words I do not understand",
                printable(name, 80)
            ))
        }
        _ => return refuse(format!("`{}` is not a request", printable(name, 80))),
    };
    Ok(Parsed { app, verb })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTERS: &[&str] = &["beta", "prod"];

    fn ok(name: &str) -> String {
        parse(name, &[], CLUSTERS).unwrap().to_string()
    }

    fn why(name: &str) -> String {
        let e = parse(name, &[], CLUSTERS).unwrap_err();
        e.split(". I understand").next().unwrap().to_owned()
    }

    #[test]
    fn each_verb_with_and_without_its_optional_word() {
        assert_eq!(ok("push beta"), "push beta");
        assert_eq!(ok("  push   prod  v1.2 "), "push prod v1.2");
        assert_eq!(ok("push prod 3f2a9c1"), "push prod 3f2a9c1");
        assert_eq!(ok("rollback prod"), "rollback prod");
        assert_eq!(
            ok("rollback prod 20261124T101500Z-3f2a9c1e0b4d"),
            "rollback prod 20261124T101500Z-3f2a9c1e0b4d"
        );
        assert_eq!(ok("lock beta"), "lock beta");
        assert_eq!(ok("unlock beta"), "unlock beta");
    }

    #[test]
    fn anything_else_is_refused_saying_what_is_understood() {
        for (name, because) in [
            ("", "the request is empty"),
            ("deploy prod", "`deploy prod` is not a request"),
            ("Push prod", "`Push prod` is not a request"),
            ("push", "`push` needs a CLUSTER"),
            ("push staging", "`staging` is not a configured cluster"),
            (
                "push prod v1 now",
                "`push prod v1 now` has words I do not understand",
            ),
            (
                "lock prod please",
                "`lock prod please` has words I do not understand",
            ),
            (
                "push prod --force",
                "`--force` is not a revision (a sha, branch or tag)",
            ),
            (
                "push prod $(rm -rf ~)",
                "`push prod $(rm -rf ~)` has words I do not understand",
            ),
            (
                "push prod ;reboot",
                "`;reboot` is not a revision (a sha, branch or tag)",
            ),
            (
                "push prod ../../etc",
                "`../../etc` is not a revision (a sha, branch or tag)",
            ),
            (
                "push prod a..b",
                "`a..b` is not a revision (a sha, branch or tag)",
            ),
            (
                "rollback prod yesterday",
                "`yesterday` is not a release id (YYYYMMDDTHHMMSSZ-<12 hex>)",
            ),
            (
                "push prod\u{1b}[2J",
                "`push prod\\u{1b}[2J` holds characters no request has",
            ),
            (
                "push prod\u{202e}",
                "`push prod\\u{202e}` holds characters no request has",
            ),
        ] {
            assert_eq!(why(name), because, "{name:?}");
        }
        let e = parse("hello", &[], CLUSTERS).unwrap_err();
        assert!(
            e.ends_with("RELEASE_ID like 20261124T101500Z-3f2a9c1e0b4d."),
            "{e}"
        );
        assert!(e.contains("CLUSTER one of beta, prod"), "{e}");
        assert!(parse(&"push prod ".repeat(40), &[], CLUSTERS).is_err());
    }

    #[test]
    fn an_app_comes_first_required_only_when_there_are_several() {
        let one = &["shop"];
        assert_eq!(parse("push beta", one, CLUSTERS).unwrap().app, None);
        assert_eq!(
            parse("shop push beta", one, CLUSTERS)
                .unwrap()
                .app
                .as_deref(),
            Some("shop")
        );
        let two = &["shop", "blog"];
        assert_eq!(
            parse("blog rollback prod", two, CLUSTERS)
                .unwrap()
                .to_string(),
            "blog rollback prod"
        );
        let e = parse("push beta", two, CLUSTERS).unwrap_err();
        assert!(
            e.starts_with("`push beta` does not start with an app"),
            "{e}"
        );
        assert!(e.contains("APP one of shop, blog"), "{e}");
    }
}
