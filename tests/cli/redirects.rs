//! Redirects: followed for GET, recorded for a 30x to POST, at most 10
//! hops, sensitive headers dropped when leaving the origin.

use crate::support::*;

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `/redirect/302` chained `hops` times in front of `target`.
fn chain(base: &str, hops: usize, target: &str) -> String {
    (0..hops).fold(target.to_string(), |to, _| {
        format!("{base}/redirect/302?to={}", encode(&to))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_redirects_are_followed_and_post_30x_recorded() {
    let server = mock().await;
    let m = server.url();
    let fast = format!("{m}/fast");
    let echo = format!("{m}/echo");
    let input = lines(&[
        chain(&m, 1, &fast),
        format!(
            r#"{{"method":"POST","url":"{}","body":{{"a":1}}}}"#,
            chain(&m, 1, &fast)
        ),
        format!(
            r#"{{"method":"POST","url":"{m}/redirect/307?to={}","body":{{"a":1}}}}"#,
            encode(&echo)
        ),
        format!("{m}/redirect/303?to={}", encode(&echo)),
    ]);
    let out = Sluice::run(["--retries", "0"]).stdin(input).output().await;
    out.code(1);
    let recs = by_line(&out.results());

    let followed = &recs[&1];
    assert!(followed.ok, "{followed}");
    assert_eq!(followed.status, Some(200));
    assert_eq!(
        followed.url.as_deref(),
        Some(&*chain(&m, 1, &fast)),
        "url is the requested one"
    );
    assert_eq!(followed.final_url.as_deref(), Some(&*fast));
    assert_eq!(followed.attempts, 1, "redirect hops are not attempts");

    let post = &recs[&2];
    assert_eq!(post.status, Some(302), "{post}");
    assert!(!post.ok);
    assert_eq!(kind(post), "http_status");
    assert!(post.final_url.is_none(), "{post}");

    let resent = &recs[&3];
    assert_eq!(resent.status, Some(200), "{resent}");
    assert_eq!(resent.final_url.as_deref(), Some(&*echo));
    assert_eq!(resent.body_json()["method"], "POST", "307 keeps the method");
    assert_eq!(resent.body_json()["body"], r#"{"a":1}"#, "and the body");

    let see_other = &recs[&4];
    assert_eq!(see_other.status, Some(200), "{see_other}");
    assert_eq!(see_other.body_json()["method"], "GET");

    assert_eq!(
        path_requests(&server, "/fast"),
        1,
        "the POST was not followed"
    );
    assert_eq!(path_requests(&server, "/redirect/302"), 2);
    assert_eq!(path_requests(&server, "/echo"), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_ten_redirects_are_followed() {
    let server = mock().await;
    let m = server.url();
    let fast = format!("{m}/fast");
    let out = Sluice::run(["--retries", "0"])
        .stdin(lines(&[chain(&m, 10, &fast)]))
        .output()
        .await;
    out.code(0);
    let rec = &out.results()[0];
    assert_eq!(rec.status, Some(200), "{rec}");
    assert_eq!(rec.final_url.as_deref(), Some(&*fast));
    assert_eq!(path_requests(&server, "/redirect/302"), 10);
    assert_eq!(path_requests(&server, "/fast"), 1);

    server.reset_stats();
    let out = Sluice::run(["--retries", "0"])
        .stdin(lines(&[chain(&m, 11, &fast)]))
        .output()
        .await;
    out.code(1);
    let rec = &out.results()[0];
    assert_eq!(
        rec.status,
        Some(302),
        "the 11th redirect is the final response: {rec}"
    );
    assert!(!rec.ok);
    assert_eq!(rec.attempts, 1);
    assert_eq!(path_requests(&server, "/redirect/302"), 11);
    assert_eq!(path_requests(&server, "/fast"), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_origin_drops_sensitive_headers() {
    let (a, b) = (mock().await, mock().await);
    let input = lines(&[
        format!(
            "{}/redirect/302?to={}",
            a.url(),
            encode(&format!("{}/echo", b.url()))
        ),
        format!(
            r#"{{"url":"{}/redirect/307?to={}","headers":{{"Api-Key":"k","Cookie":"c=1"}}}}"#,
            a.url(),
            encode(&format!("{}/echo", b.url()))
        ),
    ]);
    let out = Sluice::run([
        "-H",
        "Authorization: Bearer SECRET_X",
        "-H",
        "X-Api-Key: SECRET_K",
        "-H",
        "Proxy-Authorization: Basic SECRET_P",
        "-H",
        "X-Goog-Api-Key: SECRET_G",
        "-H",
        "X-Custom-Secret: SECRET_C",
        "--redact",
        "X-Custom-Secret",
        "-H",
        "X-Keep: kept",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(0);
    let recs = by_line(&out.results());
    for rec in recs.values() {
        assert_eq!(rec.status, Some(200), "{rec}");
        let headers = &rec.body_json()["headers"];
        assert!(headers.is_object(), "{rec}");
        for secret in [
            "authorization",
            "proxy-authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "cookie",
            "x-custom-secret",
        ] {
            assert_eq!(
                header(headers, secret),
                None,
                "{secret} crossed origins: {rec}"
            );
        }
        assert_eq!(header(headers, "x-keep"), Some("kept"), "{rec}");
    }
    assert!(!out.stdout.contains("SECRET_"), "{}", out.stdout);
    assert_eq!(b.stats().requests, 2);
    assert_eq!(a.stats().requests, 2);
    a.shutdown().await;
    b.shutdown().await;
}
