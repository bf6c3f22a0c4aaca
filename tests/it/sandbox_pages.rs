//! The links the sandbox hands out open in a browser: read-only HTML pages
//! with every untrusted string escaped, no script, and a restrictive
//! Content-Security-Policy; the API itself still needs the token.

use serde_json::json;

use crate::support::{self, seed, Raw};

const HOSTILE: &str = "<script>alert('pwned')</script> & \"quotes\" <img src=x onerror=alert(1)>";

async fn open(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    // A browser: no Authorization header.
    let resp = reqwest::get(url).await.expect("the sandbox answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test]
async fn a_task_link_shows_the_task_its_status_and_its_stories_in_order() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let (_, t) = raw
        .post(
            "/tasks",
            json!({"data": {"name": format!("Approve {HOSTILE}"), "notes": format!("why: {HOSTILE}"),
                             "resource_subtype": "approval", "projects": [seed::LOCK_PROD],
                             "assignee": seed::APPROVER_EMAIL}}),
        )
        .await;
    let gid = t["data"]["gid"].as_str().unwrap().to_owned();
    let link = t["data"]["permalink_url"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(sb.base_url().trim_end_matches("/api/1.0")),
        "{link}"
    );
    raw.post(
        &format!("/tasks/{gid}/stories"),
        json!({"data": {"text": format!("first comment {HOSTILE}")}}),
    )
    .await;
    let mut approver = Raw::new(&sb);
    approver.token = sb.token_of(seed::APPROVER_EMAIL).unwrap();
    approver
        .put(
            &format!("/tasks/{gid}"),
            json!({"data": {"approval_status": "approved"}}),
        )
        .await;
    raw.post(
        &format!("/tasks/{gid}/stories"),
        json!({"data": {"text": "second comment"}}),
    )
    .await;

    let (status, headers, page) = open(&link).await;
    assert_eq!(status, 200, "{page}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script allowed: {csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    assert!(
        !page.contains("<script>alert") && !page.contains("<img src=x"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert('pwned')&lt;/script&gt; &amp; &quot;quotes&quot;"),
        "{page}"
    );
    for shown in [
        "approval: approved",
        "Avery Approver &lt;approver@pushgate.invalid&gt;",
        "Lock Production Release",
        "why: &lt;script&gt;",
    ] {
        assert!(page.contains(shown), "{shown} missing in {page}");
    }
    let order: Vec<usize> = [
        "created this task",
        "first comment",
        "pending → approved",
        "approved this task",
        "second comment",
    ]
    .iter()
    .map(|s| {
        page.find(s)
            .unwrap_or_else(|| panic!("{s} missing in {page}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "stories in order: {order:?}"
    );
}

#[tokio::test]
async fn a_project_link_lists_its_tasks_with_links() {
    let sb = support::sandbox().await;
    let raw = Raw::new(&sb);
    let mut links = Vec::new();
    for name in ["lock one", "lock <two>"] {
        let (_, t) = raw
            .post(
                "/tasks",
                json!({"data": {"name": name, "projects": [seed::LOCK_BETA]}}),
            )
            .await;
        links.push(t["data"]["permalink_url"].as_str().unwrap().to_owned());
    }
    let (_, p) = raw.get(&format!("/projects/{}", seed::LOCK_BETA)).await;
    let (status, _, page) = open(p["data"]["permalink_url"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Lock Beta Release") && page.contains("lock &lt;two&gt;"),
        "{page}"
    );
    let origin = sb.base_url().trim_end_matches("/api/1.0").to_owned();
    for link in &links {
        let path = link.strip_prefix(&origin).unwrap();
        assert!(
            page.contains(&format!("href=\"{path}\"")),
            "{path} in {page}"
        );
        assert_eq!(open(link).await.0, 200);
    }
}

#[tokio::test]
async fn unknown_links_are_404_pages_and_the_api_keeps_its_token() {
    let sb = support::sandbox().await;
    let origin = sb.base_url().trim_end_matches("/api/1.0").to_owned();
    let (status, headers, _) = open(&format!("{origin}/0/0/999")).await;
    assert_eq!(status, 404);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(open(&format!("{origin}/0/999/list")).await.0, 404);
    assert_eq!(open(&format!("{origin}/")).await.0, 200);
    let (status, _, body) = open(&format!("{}/tasks/1", sb.base_url())).await;
    assert_eq!(status, 401, "{body}");
}
