//! TLS: certificates are verified by default (`tls`, never retried), an
//! extra CA is trusted with `--cacert`, and `-k` skips verification loudly.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{Out, Sluice, by_line, kind, tempdir, write_file};

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
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert];
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}/", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                let _ = tls.write_all(reply).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_certificates_fail_as_tls_and_are_not_retried() {
    let (url, _) = tls_server().await;
    let out = Sluice::run(["-q", "--retries", "3"])
        .stdin(format!("{url}\n"))
        .output()
        .await;
    out.code(1);
    let records = by_line(&out.records());
    assert_eq!(kind(&records[&1]), "tls");
    assert_eq!(records[&1]["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacert_trusts_the_extra_ca() {
    let (url, ca) = tls_server().await;
    let out = fetch_trusting(&url, ca).await;
    out.code(0);
    let records = by_line(&out.records());
    assert_eq!(records[&1]["ok"], true);
    assert_eq!(records[&1]["body"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skips_verification_and_says_so() {
    let (url, _) = tls_server().await;
    let out = Sluice::run(["-k"]).stdin(format!("{url}\n")).output().await;
    out.code(0);
    assert_eq!(by_line(&out.records())[&1]["ok"], true);
    assert!(out.stderr.contains("NOT verified"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacert_trusts_a_self_signed_ca_certificate_as_curl_does() {
    let (url, cert) = self_signed_ca_server().await;
    let out = fetch_trusting(&url, cert).await;
    out.code(0);
    assert_eq!(by_line(&out.records())[&1]["ok"], true);
    // Without it, the same server is refused.
    let out = Sluice::run(["-q"]).stdin(format!("{url}\n")).output().await;
    out.code(1);
    assert_eq!(kind(&by_line(&out.records())[&1]), "tls");
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
    let rec = &by_line(&out.records())[&1];
    assert_eq!(
        (&rec["tls_version"], &rec["http_version"]),
        (&"TLSv1.3".into(), &"HTTP/1.1".into()),
        "{rec}"
    );
}
