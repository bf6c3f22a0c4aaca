//! Keeps the pure core pure: no IO crate, no clock read, no async in `src/decide/`.

#[test]
fn decide_reads_no_clock_and_does_no_io() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain/decide");
    let forbidden = [
        "tokio",
        "reqwest",
        "axum",
        "git2",
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
        "crate::adapters::asana",
        "crate::sandbox",
        "crate::run::gather",
        "tracing",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} uses `{word}`: decide must stay pure",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "found the decide sources");
}
