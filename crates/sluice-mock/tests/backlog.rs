//! The listen backlog: a client that opens more connections at once than
//! tokio's default backlog (128) must not have SYNs dropped. A dropped SYN
//! is retried by the client's kernel one second later, so a run at
//! `-c 150` against the mock stalled a second now and then (counted by
//! `nstat TcpExtListenOverflows`).

use std::net::TcpStream;
use std::time::Duration;

use sluice_mock::MockServer;

/// More than tokio's and std's backlog of 128.
const BURST: usize = 300;

/// Each connect's bound: a dropped SYN would wait a second for its retry.
const CONNECT: Duration = Duration::from_millis(500);

/// The kernel completes handshakes into the accept queue without the
/// server's help, up to the backlog: with the server's runtime never driven
/// (nothing accepts), all `BURST` connections still complete at once.
#[test]
fn a_burst_beyond_128_connections_completes_without_an_accept() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let server = runtime
        .block_on(MockServer::start(
            "127.0.0.1:0".parse().expect("valid address"),
        ))
        .expect("bind loopback");
    let addr = server.addr();
    let mut open = Vec::with_capacity(BURST);
    for n in 0..BURST {
        match TcpStream::connect_timeout(&addr, CONNECT) {
            Ok(stream) => open.push(stream),
            Err(e) => panic!("connection {n} of {BURST} not completed in {CONNECT:?}: {e}"),
        }
    }
    assert_eq!(open.len(), BURST);
    drop(open);
    runtime.block_on(server.shutdown());
}
