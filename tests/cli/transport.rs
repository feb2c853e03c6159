//! Proxies (`--proxy`, the environment as curl reads it, `--no-proxy`),
//! `--http2`, and the `--insecure` warning.

use crate::support::*;

/// The mock serves absolute-form requests too, so a second mock stands in
/// for a plain HTTP proxy: whichever server counts the request carried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_from_options_and_environment() {
    let (target, proxy) = (mock().await, mock().await);
    let input = format!("{}/echo\n", target.url());
    let p = proxy.url();
    let via = |s: Sluice| s.env("NO_PROXY", "").env("no_proxy", "");

    via(Sluice::run(["--proxy", &p]))
        .stdin(input.clone())
        .output()
        .await
        .code(0);
    assert_eq!(
        (target.stats().requests, proxy.stats().requests),
        (0, 1),
        "--proxy"
    );

    via(Sluice::run(Vec::<&str>::new()))
        .env("HTTP_PROXY", &p)
        .stdin(input.clone())
        .output()
        .await
        .code(0);
    assert_eq!(
        (target.stats().requests, proxy.stats().requests),
        (0, 2),
        "HTTP_PROXY"
    );

    via(Sluice::run(["--no-proxy"]))
        .env("HTTP_PROXY", &p)
        .stdin(input.clone())
        .output()
        .await
        .code(0);
    assert_eq!(
        (target.stats().requests, proxy.stats().requests),
        (1, 2),
        "--no-proxy"
    );

    Sluice::run(Vec::<&str>::new())
        .env("HTTP_PROXY", &p)
        .env("NO_PROXY", "localhost,127.0.0.1")
        .env("no_proxy", "localhost,127.0.0.1")
        .stdin(input)
        .output()
        .await
        .code(0);
    assert_eq!(
        (target.stats().requests, proxy.stats().requests),
        (2, 2),
        "NO_PROXY"
    );
    target.shutdown().await;
    proxy.shutdown().await;
}

/// curl reads `NO_PROXY=*` as "no proxy for any host", IP addresses
/// included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_star_bypasses_every_proxy() {
    let (target, proxy) = (mock().await, mock().await);
    for var in ["NO_PROXY", "no_proxy"] {
        Sluice::run(Vec::<&str>::new())
            .env("NO_PROXY", "")
            .env("no_proxy", "")
            .env(var, "*")
            .env("HTTP_PROXY", &proxy.url())
            .stdin(format!("{}/echo\n", target.url()))
            .output()
            .await
            .code(0);
    }
    assert_eq!(proxy.stats().requests, 0, "the proxy was used");
    assert_eq!(target.stats().requests, 2);
    target.shutdown().await;
    proxy.shutdown().await;
}

/// `--http2` is used, and with `--include-headers` the record says which
/// HTTP version carried each response (and no TLS version over plain HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_offered_on_request() {
    let server = mock().await;
    let input = lines(&vec![format!("{}/echo", server.url()); 3]);
    let out = Sluice::run(["--http2", "--include-headers"])
        .stdin(input.clone())
        .output()
        .await;
    out.code(0);
    assert!(
        out.results()
            .iter()
            .all(|r| r.body_json()["version"] == "HTTP/2.0"
                && r.http_version.as_deref() == Some("HTTP/2")
                && r.json["tls_version"].is_null()),
        "{}",
        out.stdout
    );
    let out = Sluice::run(["--include-headers"])
        .stdin(input)
        .output()
        .await;
    out.code(0);
    assert!(
        out.results()
            .iter()
            .all(|r| r.body_json()["version"] == "HTTP/1.1"
                && r.http_version.as_deref() == Some("HTTP/1.1")),
        "{}",
        out.stdout
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_is_warned_on_stderr_and_in_the_summary() {
    let server = mock().await;
    let dir = tempdir();
    let summary = dir.path().join("summary.json");
    let out = Sluice::run([
        "-k".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
    ])
    .stdin(format!("{}/fast\n", server.url()))
    .output()
    .await;
    out.code(0);
    let warned = |text: &str| {
        let text = text.to_ascii_lowercase();
        text.contains("insecure") || text.contains("not verified")
    };
    assert!(warned(&out.stderr), "{}", out.stderr);
    assert!(warned(&std::fs::read_to_string(&summary).unwrap()));
    server.shutdown().await;
}

/// Under `--compressed` the body is decoded, and the record still shows the
/// response's `content-encoding` (the decoder used to remove it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_decoded_and_keep_their_content_encoding() {
    let url = fixed_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 31\r\nConnection: close\r\n\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xab\x56\xca\xcf\x56\xb2\x2a\x29\x2a\x4d\xad\x05\x00\x90\x5f\xd4\xa7\x0b\x00\x00\x00",
    )
    .await;
    let out = Sluice::run(["--compressed", "--include-headers"])
        .stdin(format!("{url}/x\n"))
        .output()
        .await;
    out.code(0);
    let rec = &out.results()[0];
    assert_eq!(*rec.body_json(), serde_json::json!({"ok": true}), "{rec}");
    assert_eq!(rec.header("content-encoding"), Some("gzip"));
}

/// `-v` names the HTTP version of each response, and the summary (text
/// and JSON) counts them per origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_and_the_summary_name_the_http_version() {
    let server = mock().await;
    let dir = tempdir();
    let summary = dir.path().join("summary.json");
    let summary_arg = summary.to_string_lossy().into_owned();
    for (http2, version) in [(true, "HTTP/2"), (false, "HTTP/1.1")] {
        let mut args = vec!["-v", "--overwrite", "--summary-json", summary_arg.as_str()];
        if http2 {
            args.push("--http2");
        }
        let out = Sluice::run(args)
            .stdin(lines(&vec![format!("{}/fast", server.url()); 2]))
            .output()
            .await;
        out.code(0);
        assert!(
            out.stderr
                .contains(&format!("success 200 over {version} in")),
            "{}",
            out.stderr
        );
        let line = format!("protocol {} {version}: 2", server.url());
        assert!(out.stderr.contains(&line), "{line}\n{}", out.stderr);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        assert_eq!(json["protocols"][server.url()][version], 2, "{json}");
    }
    server.shutdown().await;
}

/// `--proxy` with a scheme that cannot proxy (`foo://`, `ftp://`) is a
/// configuration error (exit 2). (Was: silently ignored, so the traffic
/// meant for the proxy went straight to the origin.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_proxy_url_is_a_usage_error() {
    let raw = RawServer::start(|_| Act::Keep(ok("direct"))).await;
    let out = Sluice::run(["--proxy", "foo://127.0.0.1:9"])
        .env("NO_PROXY", "")
        .env("no_proxy", "")
        .stdin(lines(&[format!("{}/x", raw.url)]))
        .output()
        .await;
    out.code(2);
    assert_eq!(raw.total(), 0, "the request bypassed the proxy");
}
