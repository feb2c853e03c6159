//! A kept-alive connection the server closed while it sat idle in the pool
//! is not reused, even when tokio has not yet seen the close: the request
//! goes out on a new connection and succeeds, and the server receives it
//! once. (A paced run meets this against a server whose keep-alive timeout
//! is about its interval: nginx's `keepalive_timeout 1s` at `--rate 1/s`.)

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use http::{HeaderMap, Method};
use sluice::Config;
use sluice::transport::direct::Direct;

/// How long the server keeps an idle connection.
const KEEP_ALIVE: Duration = Duration::from_millis(100);

/// What the server saw: connections accepted, request targets read, and
/// connections it closed for being idle.
#[derive(Default)]
struct Seen {
    accepts: AtomicUsize,
    targets: Mutex<Vec<String>>,
    closed_idle: AtomicUsize,
}

/// A server on 127.0.0.1 (blocking sockets, a thread a connection) that
/// answers every request `200 ok` and keeps the connection, but closes it
/// once it has been idle for [`KEEP_ALIVE`], as nginx's keep-alive
/// timeout does.
fn serve() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(Seen::default());
    let counted = Arc::clone(&seen);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            counted.accepts.fetch_add(1, Ordering::SeqCst);
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || keep_alive(tcp, &counted));
        }
    });
    (base, seen)
}

/// Serves requests (heads only) on `tcp` until it is idle for [`KEEP_ALIVE`].
fn keep_alive(mut tcp: TcpStream, seen: &Seen) {
    let (mut head, mut buf, mut answered) = (Vec::new(), [0u8; 4096], false);
    loop {
        // The first request may take its time; once one is answered, the
        // next must come within the keep-alive timeout.
        if tcp
            .set_read_timeout(answered.then_some(KEEP_ALIVE))
            .is_err()
        {
            return;
        }
        let n = match tcp.read(&mut buf) {
            Ok(0) => return, // the client went
            Err(e)
                if answered && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                drop(tcp); // idle too long: closed (a FIN)
                seen.closed_idle.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err(_) => return,
            Ok(n) => n,
        };
        head.extend_from_slice(&buf[..n]);
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).into_owned();
            head.drain(..end + 4);
            let target = text.split(' ').nth(1).unwrap_or_default().to_owned();
            seen.targets.lock().expect("targets").push(target);
            if tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
            answered = true;
        }
    }
}

/// GETs `url` through `client` and reads the body to its end (which puts
/// the connection back in the pool); the status, or the error.
async fn get(client: &Direct, url: &str) -> Result<u16, String> {
    let url = url::Url::parse(url).map_err(|e| e.to_string())?;
    let answer = (client
        .send(&Method::GET, &url, &HeaderMap::new(), None)
        .await)
        .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
    let mut body = answer.body;
    while let Some(chunk) = body.next().await {
        chunk.map_err(|e| e.to_string())?;
    }
    Ok(answer.status.as_u16())
}

/// The first GET leaves its connection idle in the pool; the server
/// closes it 100 ms later while this runtime's only thread waits without
/// yielding, so tokio's reactor does not see the close (as when a paced
/// start wakes just after a keep-alive timeout's FIN arrived). The second
/// GET must not be written into the closed connection (a reset, reported
/// as maybe applied): it opens a new one and is answered.
#[tokio::test(flavor = "current_thread")]
async fn a_connection_the_server_closed_while_idle_is_not_reused() {
    let (base, seen) = serve();
    let client = Direct::new(&Config::default(), Duration::from_secs(5)).expect("a client");
    assert_eq!(get(&client, &format!("{base}/one")).await, Ok(200));
    // Blocking waits: tokio's reactor must not run before the second GET.
    for _ in 0..1000 {
        if seen.closed_idle.load(Ordering::SeqCst) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen.closed_idle.load(Ordering::SeqCst), 1, "closed idle");
    // Past 250 ms idle, so the pool looks; the FIN is in by then.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&client, &format!("{base}/two")).await, Ok(200));
    assert_eq!(seen.accepts.load(Ordering::SeqCst), 2, "a new connection");
    let targets = seen.targets.lock().expect("targets").clone();
    assert_eq!(targets, ["/one", "/two"], "each request received once");
}
