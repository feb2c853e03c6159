//! TLS: certificates are verified by default (`tls`, never retried), an
//! extra CA is trusted with `--cacert`, and `-k` skips verification loudly.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

use crate::support::raw::{Act, RawServer, acceptor};
use crate::support::{Out, Sluice, by_line, kind, tempdir, write_file};
use sluice_mock::{MockOptions, MockServer};

/// A loopback HTTPS server whose certificate is signed by a fresh CA;
/// returns its URL and the CA in PEM.
async fn tls_server() -> (String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sluice test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let url = serve(leaf.der().clone(), &leaf_key).await;
    (url, ca_cert.pem())
}

/// A server presenting one self-signed certificate marked as a CA, as
/// `openssl req -x509` makes them; returns its URL and the certificate.
async fn self_signed_ca_server() -> (String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("certificate");
    let url = serve(cert.der().clone(), &key).await;
    (url, cert.pem())
}

/// Fetches `url` once with `pem` as the `--cacert` file.
async fn fetch_trusting(url: &str, pem: String) -> Out {
    let dir = tempdir();
    let ca_file = write_file(dir.path(), "ca.pem", pem);
    let ca_arg = ca_file.to_string_lossy().into_owned();
    Sluice::run(["-q", "--cacert", ca_arg.as_str()])
        .stdin(format!("{url}\n"))
        .output()
        .await
}

/// Serves a fixed `200 ok` over TLS with `cert`; returns the URL.
async fn serve(cert: CertificateDer<'static>, leaf_key: &KeyPair) -> String {
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    let server =
        RawServer::start_tls(acceptor(cert, leaf_key), |_| Act::Last(reply.to_vec())).await;
    format!("{}/", server.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_certificates_fail_as_tls_and_are_not_retried() {
    let (url, _) = tls_server().await;
    let out = Sluice::run(["-q", "--retries", "3"])
        .stdin(format!("{url}\n"))
        .output()
        .await;
    out.code(1);
    let records = by_line(&out.results());
    assert_eq!(kind(&records[&1]), "tls");
    assert_eq!(records[&1].attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacert_trusts_the_extra_ca() {
    let (url, ca) = tls_server().await;
    let out = fetch_trusting(&url, ca).await;
    out.code(0);
    let records = by_line(&out.results());
    assert!(records[&1].ok);
    assert_eq!(records[&1].body_json(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skips_verification_and_says_so() {
    let (url, _) = tls_server().await;
    let out = Sluice::run(["-k"]).stdin(format!("{url}\n")).output().await;
    out.code(0);
    assert!(by_line(&out.results())[&1].ok);
    assert!(out.stderr.contains("NOT verified"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacert_trusts_a_self_signed_ca_certificate_as_curl_does() {
    let (url, cert) = self_signed_ca_server().await;
    let out = fetch_trusting(&url, cert).await;
    out.code(0);
    assert!(by_line(&out.results())[&1].ok);
    // Without it, the same server is refused.
    let out = Sluice::run(["-q"]).stdin(format!("{url}\n")).output().await;
    out.code(1);
    assert_eq!(kind(&by_line(&out.results())[&1]), "tls");
}

/// With `--include-headers`, the record names the TLS and HTTP versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_headers_records_the_tls_version() {
    let (url, _) = tls_server().await;
    let out = Sluice::run(["-k", "-q", "--include-headers"])
        .stdin(format!("{url}\n"))
        .output()
        .await;
    out.code(0);
    let rec = &by_line(&out.results())[&1];
    assert_eq!(
        (&rec.json["tls_version"], rec.http_version.as_deref()),
        (&"TLSv1.3".into(), Some("HTTP/1.1")),
        "{rec}"
    );
}

/// An HTTPS front for `backend` (a plain-HTTP mock) whose TLS handshake
/// (ALPN h2) starts `delay` after the TCP connection: a slow connect. The
/// certificate is self-signed; returns the URL and the certificate.
async fn slow_handshake_front(
    backend: std::net::SocketAddr,
    delay: std::time::Duration,
) -> (String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("certificate");
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (url, cert.pem())
}

/// An attempt's clock starts when its connection is there: under
/// `--http2`, requests waiting for a slow TLS handshake (300 ms, below the
/// connect timeout of 95% of 400 ms) are not cut by the 400 ms timeout and
/// answer in 250 ms. Before, the handshake counted against the attempt and
/// every POST ended `timeout`, `maybe_applied`. `duration_ms` too runs
/// from when the request was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_clock_waits_for_a_slow_handshake() {
    let server = crate::support::mock().await;
    let (url, cert) =
        slow_handshake_front(server.addr(), std::time::Duration::from_millis(300)).await;
    let dir = tempdir();
    let ca = write_file(dir.path(), "ca.pem", cert);
    let ca = ca.to_string_lossy().into_owned();
    let input: String = (0..10)
        .map(|i| format!("{{\"method\":\"POST\",\"url\":\"{url}/delay/0.25\",\"body\":{i}}}\n"))
        .collect();
    let out = Sluice::run([
        "-q",
        "--http2",
        "-c",
        "10",
        "--timeout",
        "400ms",
        "--retries",
        "0",
        "--include-headers",
        "--cacert",
        &ca,
    ])
    .stdin(input)
    .output()
    .await;
    let records = by_line(&out.results());
    for record in records.values() {
        assert!(record.ok, "{record}");
        assert_eq!(record.http_version.as_deref(), Some("HTTP/2"), "{record}");
        // From when it was sent: not the probe's and the lane's handshakes
        // (300 ms each) before it.
        let took = record.duration_ms;
        assert!(took < 800.0, "{record}");
    }
    out.code(0);
    assert_eq!(crate::support::path_requests(&server, "/delay/0.25"), 10);
    server.shutdown().await;
}

/// `-k` does not hide an HTTP/2 server's stream limit: the probe reads it
/// without verifying the certificate, so `--http2 -c 50` against a 10-stream
/// limit puts 50 requests on the wire (5 connections), not 10 with 40
/// waiting inside one connection on their attempts' clocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_still_learns_the_stream_limit() {
    let server = MockServer::start_with(
        "127.0.0.1:0".parse().expect("a valid address"),
        MockOptions {
            h2_max_streams: Some(10),
            ..MockOptions::default()
        },
    )
    .await
    .expect("the mock binds 127.0.0.1:0");
    let (url, _) = slow_handshake_front(server.addr(), std::time::Duration::ZERO).await;
    let input: String = (0..50)
        .map(|i| format!("{{\"method\":\"POST\",\"url\":\"{url}/delay/0.5\",\"body\":{i}}}\n"))
        .collect();
    let out = Sluice::run(["-q", "--http2", "-k", "-c", "50", "--timeout", "5s"])
        .stdin(input)
        .output()
        .await;
    out.code(0);
    let stats = server.stats();
    assert_eq!(
        (stats.requests, stats.peak_in_flight),
        (50, 50),
        "{stats:?}"
    );
    server.shutdown().await;
}
