//! How response bodies are stored: `--body auto|text|base64|none`.

use serde_json::json;

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
async fn run_with(mode: &str, input: &str) -> std::collections::BTreeMap<u64, Record> {
    let out = Sluice::run(["--body", mode])
        .stdin(input.to_string())
        .output()
        .await;
    out.code(0);
    by_line(&out.results())
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
    assert_eq!(*auto[&1].body_json(), json!({"ok": true}));
    assert_eq!(auto[&1].body_encoding.as_deref(), Some("json"));
    assert_eq!(*auto[&2].body_json(), bytes16);
    assert_eq!(auto[&2].body_encoding.as_deref(), Some("base64"));
    assert_eq!(*auto[&3].body_json(), "xxxxx");
    assert_eq!(auto[&3].body_encoding.as_deref(), Some("text"));
    assert_eq!(auto[&4].body_encoding.as_deref(), Some("json"));
    assert_eq!(
        auto[&4].body_json()["body"],
        r#"{"n":1.50}"#,
        "the request body kept its digits"
    );

    let text = run_with("text", &input).await;
    assert_eq!(*text[&1].body_json(), r#"{"ok":true}"#);
    assert_eq!(text[&1].body_encoding.as_deref(), Some("text"));
    assert_eq!(
        *text[&2].body_json(),
        bytes16,
        "not UTF-8: base64 even under text"
    );
    assert_eq!(text[&2].body_encoding.as_deref(), Some("base64"));
    assert_eq!(*text[&3].body_json(), "xxxxx");
    assert_eq!(text[&3].body_encoding.as_deref(), Some("text"));

    let b64 = run_with("base64", &input).await;
    assert_eq!(*b64[&1].body_json(), "eyJvayI6dHJ1ZX0=");
    assert_eq!(*b64[&2].body_json(), bytes16);
    assert_eq!(*b64[&3].body_json(), "eHh4eHg=");
    assert!(
        b64.values()
            .all(|r| r.body_encoding.as_deref() == Some("base64"))
    );

    let none = run_with("none", &input).await;
    for rec in none.values() {
        assert!(rec.body.is_none(), "{rec}");
        assert!(rec.body_encoding.is_none(), "{rec}");
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
    let rec = &out.results()[0];
    assert_eq!(rec.body_encoding.as_deref(), Some("json"), "{rec}");
    let raw = out.stdout.replace([' ', '\n'], "");
    assert!(
        raw.contains(r#""body":{"n":1.50,"big":123456789012345678901234567890,"e":1E+2}"#),
        "{}",
        out.stdout
    );
}

/// A gzip member that inflates to `zeros` zero bytes, written by hand in
/// fixed-Huffman deflate (a literal 0, then matches of 258 at distance 1):
/// about 1 KiB of gzip per 160 KiB of output. Its CRC is not filled in: a
/// client that honours its size limit never reads that far.
fn gzip_zeros(zeros: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u8,
        n: u32,
    }
    impl Bits {
        fn bit(&mut self, b: u32) {
            self.acc |= ((b & 1) as u8) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc);
                (self.acc, self.n) = (0, 0);
            }
        }
        /// A Huffman code: most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            for i in (0..len).rev() {
                self.bit(code >> i);
            }
        }
    }
    let mut w = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        acc: 0,
        n: 0,
    };
    w.bit(1); // BFINAL
    w.bit(1); // BTYPE = 01 (fixed Huffman), least significant bit first
    w.bit(0);
    w.code(0x30, 8); // literal 0
    let mut left = zeros - 1;
    while left >= 258 {
        w.code(0xC5, 8); // length 258 (symbol 285)
        w.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        w.code(0x30, 8);
    }
    w.code(0, 7); // end of block
    if w.n > 0 {
        w.out.push(w.acc);
    }
    w.out.extend_from_slice(&[0, 0, 0, 0]);
    w.out.extend_from_slice(&(zeros as u32).to_le_bytes());
    w.out
}

/// A 1 GiB chunked body is cut off at `--max-body-size` (the connection is
/// dropped, not drained), and a gzip bomb under `--compressed` is cut off
/// at the same limit on decoded bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_exploding_bodies_stop_at_the_size_limit() {
    let bomb = std::sync::Arc::new(gzip_zeros(64 << 20));
    let raw = RawServer::start(move |req| {
        if req.path == "/endless" {
            Act::endless_chunks(0x10000, std::time::Duration::ZERO)
        } else {
            Act::Keep(response("200 OK", &["Content-Encoding: gzip"], &bomb))
        }
    })
    .await;
    let input = lines(&[format!("{}/endless", raw.url), format!("{}/bomb", raw.url)]);
    let started = std::time::Instant::now();
    let out = Sluice::run(["--max-body-size", "1MiB", "--compressed"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let recs = by_line(&out.results());
    for line in [1, 2] {
        assert_eq!(recs[&line].kind(), "body_too_large", "{}", recs[&line]);
        assert_eq!(recs[&line].attempts, 1);
    }
    let streamed = raw.streamed();
    assert!(
        streamed < 64 << 20,
        "the client kept reading: {streamed} bytes"
    );
}

/// Under `--body auto`, a JSON body is embedded without changing its
/// values, anything else is stored as text. `[1 2 3]` (numpy's way of
/// printing an array) is not JSON. (Was: whitespace was stripped *before*
/// the JSON check, so it was stored as the JSON array `[123]`, `ok: true`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_only_looks_like_json_is_stored_unchanged() {
    let raw = RawServer::start(|req| match req.path.as_str() {
        "/numpy" => Act::Keep(response(
            "200 OK",
            &["Content-Type: text/plain"],
            b"[1 2 3]",
        )),
        _ => Act::Keep(response(
            "200 OK",
            &["Content-Type: application/json"],
            br#"{"a": 1 0, "b": tr ue}"#,
        )),
    })
    .await;
    let input = lines(&[format!("{}/numpy", raw.url), format!("{}/broken", raw.url)]);
    let out = Sluice::run(Vec::<&str>::new()).stdin(input).output().await;
    out.code(0);
    let recs = by_line(&out.results());
    assert_eq!(recs[&1].text(), Some("[1 2 3]"), "{}", recs[&1]);
    assert_eq!(recs[&1].body_encoding.as_deref(), Some("text"));
    assert_eq!(
        recs[&2].text(),
        Some(r#"{"a": 1 0, "b": tr ue}"#),
        "{}",
        recs[&2]
    );
    assert_eq!(recs[&2].body_encoding.as_deref(), Some("text"));
}
