//! How response bodies are stored: `--body auto|text|base64|none`.

use serde_json::{Value, json};

use crate::support::*;

/// Standard base64 with padding, for expected values.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What `/bytes/{n}` serves: byte `i` is `(i*7 + 0x80) % 256`.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 0x80) % 256) as u8).collect()
}

/// The records of a run of `lines` under `--body MODE`, by line.
async fn run_with(mode: &str, input: &str) -> std::collections::BTreeMap<u64, Value> {
    let out = Sluice::run(["--body", mode])
        .stdin(input.to_string())
        .output()
        .await;
    out.code(0);
    by_line(&out.records())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_modes_store_json_text_and_base64() {
    assert_eq!(base64(b"hi"), "aGk=");
    assert_eq!(base64(b"{\"ok\":true}"), "eyJvayI6dHJ1ZX0=");
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/fast"),
        format!("{m}/bytes/16"),
        format!("{m}/drip/5/0"),
        format!(r#"{{"method":"POST","url":"{m}/echo","body":{{"n":1.50}}}}"#),
    ]);
    let bytes16 = base64(&pattern(16));

    let auto = run_with("auto", &input).await;
    assert_eq!(auto[&1]["body"], json!({"ok": true}));
    assert_eq!(auto[&1]["body_encoding"], "json");
    assert_eq!(auto[&2]["body"], bytes16);
    assert_eq!(auto[&2]["body_encoding"], "base64");
    assert_eq!(auto[&3]["body"], "xxxxx");
    assert_eq!(auto[&3]["body_encoding"], "text");
    assert_eq!(auto[&4]["body_encoding"], "json");
    assert_eq!(
        auto[&4]["body"]["body"], r#"{"n":1.50}"#,
        "the request body kept its digits"
    );

    let text = run_with("text", &input).await;
    assert_eq!(text[&1]["body"], r#"{"ok":true}"#);
    assert_eq!(text[&1]["body_encoding"], "text");
    assert_eq!(
        text[&2]["body"], bytes16,
        "not UTF-8: base64 even under text"
    );
    assert_eq!(text[&2]["body_encoding"], "base64");
    assert_eq!(text[&3]["body"], "xxxxx");
    assert_eq!(text[&3]["body_encoding"], "text");

    let b64 = run_with("base64", &input).await;
    assert_eq!(b64[&1]["body"], "eyJvayI6dHJ1ZX0=");
    assert_eq!(b64[&2]["body"], bytes16);
    assert_eq!(b64[&3]["body"], "eHh4eHg=");
    assert!(b64.values().all(|r| r["body_encoding"] == "base64"));

    let none = run_with("none", &input).await;
    for rec in none.values() {
        assert!(rec.get("body").is_none(), "{rec}");
        assert!(rec.get("body_encoding").is_none(), "{rec}");
    }
    assert_eq!(server.stats().requests, 16);
    server.shutdown().await;
}

/// A JSON response is embedded without changing its values: numbers keep
/// their digits (checked on the raw line, not after re-parsing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_keep_their_digits() {
    let url = fixed_server(
        b"HTTP/1.1 200 OK\r\n\
          Content-Type: application/json\r\n\
          Content-Length: 65\r\n\
          Connection: close\r\n\r\n\
          {\"n\": 1.50, \"big\": 123456789012345678901234567890, \"e\": 1E+2}    ",
    )
    .await;
    let out = Sluice::run(Vec::<&str>::new())
        .stdin(format!("{url}/x\n"))
        .output()
        .await;
    out.code(0);
    let rec = &out.records()[0];
    assert_eq!(rec["body_encoding"], "json", "{rec}");
    let raw = out.stdout.replace([' ', '\n'], "");
    assert!(
        raw.contains(r#""body":{"n":1.50,"big":123456789012345678901234567890,"e":1E+2}"#),
        "{}",
        out.stdout
    );
}
