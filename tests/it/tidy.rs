//! Keeps the house's shape: the folders of `src/` are layers, imports flow
//! one way (an allow-list per layer), the module graph has no circle, and
//! the pure core stays pure (no IO crate, no clock read, no async).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first, and what each may import (`crate::X`).
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &["domain"]),
    ("config", &["domain", "config"]),
    ("adapters", &["domain", "config", "adapters"]),
    ("run", &["domain", "config", "adapters", "run"]),
    ("watch", &["domain", "config", "adapters", "run", "watch"]),
    (
        "cmd",
        &[
            "domain", "config", "adapters", "run", "watch", "cmd", "sandbox",
        ],
    ),
];

/// A source file: its module path (`["adapters", "hosts"]`) and its code
/// without comments.
struct Source {
    path: PathBuf,
    module: Vec<String>,
    code: String,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Comments may name paths they do not import.
            let code = text
                .lines()
                .map(|l| match l.find("//") {
                    Some(i) => &l[..i],
                    None => l,
                })
                .collect::<Vec<_>>()
                .join("\n");
            Source { path, module, code }
        })
        .collect()
}

/// Every `crate::a::b::…` path the code names, as segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `pushgate_sandbox::` or `other_crate::` are not this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut segs = Vec::new();
        let mut s = rest;
        loop {
            let end = s
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            if end == 0 {
                break;
            }
            segs.push(s[..end].to_owned());
            s = &s[end..];
            match s.strip_prefix("::") {
                Some(t) if t.starts_with(|c: char| c.is_alphanumeric() || c == '_') => s = t,
                _ => break,
            }
        }
        out.push(segs);
    }
    out
}

#[test]
fn every_layer_imports_only_what_its_allow_list_names() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for s in sources() {
        let layer = s.module[0].as_str();
        if matches!(layer, "main" | "lib") {
            continue;
        }
        let Some(ok) = allowed.get(layer) else {
            problems.push(format!(
                "{}: `src/{layer}` is no layer of ALLOWED: add it there and to docs/ARCHITECTURE.md",
                s.path.display()
            ));
            continue;
        };
        checked.insert(layer.to_owned());
        if s.code.contains("crate::{") {
            problems.push(format!(
                "{}: `use crate::{{…}}` hides what is imported: name each path",
                s.path.display()
            ));
        }
        for p in crate_paths(&s.code) {
            if let Some(first) = p.first() {
                if !ok.contains(&first.as_str()) {
                    problems.push(format!(
                        "{}: the {layer} layer imports crate::{}",
                        s.path.display(),
                        p.join("::")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        checked.len(),
        ALLOWED.len(),
        "found every layer: {checked:?}"
    );
}

#[test]
fn the_module_graph_has_no_circle() {
    let sources = sources();
    // Modules two deep (`adapters::hosts`, `run::gather`, `watch`): the
    // files of a module (its `tests.rs`, `dto.rs`) are the module.
    let key = |m: &[String]| m.iter().take(2).cloned().collect::<Vec<_>>().join("::");
    let modules: BTreeSet<String> = sources.iter().map(|s| key(&s.module)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &sources {
        let from = key(&s.module);
        for p in crate_paths(&s.code) {
            // The longest module the path names (`crate::watch::metrics::X`
            // is `watch::metrics`; `crate::watch::Observer` is `watch`).
            let to = (1..=p.len().min(2))
                .rev()
                .map(|n| p[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(to) = to.filter(|t| *t != from) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => {
                    let i = stack.iter().position(|x| x == m).unwrap();
                    found.push(format!("{} -> {m}", stack[i..].join(" -> ")));
                }
                Some(_) => {}
                None => visit(m, edges, state, stack, found),
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
    }
    let mut state = BTreeMap::new();
    let mut found = Vec::new();
    for n in &modules {
        if !state.contains_key(n) {
            visit(n, &edges, &mut state, &mut Vec::new(), &mut found);
        }
    }
    assert!(found.is_empty(), "circles:\n{}", found.join("\n"));
    assert!(modules.len() > 20, "found the modules: {modules:?}");
}

#[test]
fn the_domain_reads_no_clock_and_does_no_io() {
    let forbidden = [
        "tokio",
        "reqwest",
        "axum",
        "git2",
        "serde",
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "std::io",
        "Utc::now",
        "Local::now",
        "SystemTime",
        "Instant::now",
        "async ",
        ".await",
        "tracing",
    ];
    let mut checked = 0;
    for s in sources().iter().filter(|s| s.module[0] == "domain") {
        for word in forbidden {
            assert!(
                !s.code.contains(word),
                "{} uses `{word}`: the domain must stay pure",
                s.path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "found the domain's sources");
}

#[test]
fn watchers_are_handed_to_the_run_never_found_through_a_task_local() {
    for s in sources() {
        assert!(
            !s.code.contains("task_local!"),
            "{}: a task-local reaches around the layers; hand the value down",
            s.path.display()
        );
    }
}
