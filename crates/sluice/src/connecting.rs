//! Connections being made by one client, watched so that an attempt's clock
//! starts when the connection that will carry it is there.
//!
//! A request sent while its connection is still being made (TCP, TLS) waits
//! inside the client: under `--http2`, every request of a new lane waits
//! for the one connection the lane opens. Were the attempt's timeout
//! running meanwhile, a slow handshake would end requests that never left
//! as `timeout` — "maybe applied" although the server never saw them. The
//! connect has its own, shorter timeout (which ends as `connect`, not
//! sent), so the attempt's clock waits for it instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;

/// How many connections one client is making right now.
#[derive(Clone, Debug)]
pub struct Connecting(Arc<watch::Sender<usize>>);

impl Connecting {
    /// Nothing being connected yet.
    pub fn new() -> Connecting {
        Connecting(Arc::new(watch::Sender::new(0)))
    }

    /// The connector layer that counts this client's connects.
    pub fn layer(&self) -> CountLayer {
        CountLayer(self.clone())
    }

    /// Resolves once no connection is being made, or after `at_most` (a
    /// connect never outlives the connect timeout).
    pub async fn settled(&self, at_most: Duration) {
        let mut rx = self.0.subscribe();
        let _ = tokio::time::timeout(at_most, rx.wait_for(|&n| n == 0)).await;
    }

    fn begin(&self) -> InProgress {
        self.0.send_modify(|n| *n += 1);
        InProgress(self.clone())
    }
}

/// One connect in progress, counted until dropped (done, failed, timed out
/// or abandoned).
struct InProgress(Connecting);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A tower layer over reqwest's connector.
#[derive(Clone, Debug)]
pub struct CountLayer(Connecting);

impl<S> tower_layer::Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            connecting: self.0.clone(),
        }
    }
}

/// The connector, counting the connects it makes.
#[derive(Clone, Debug)]
pub struct Count<S> {
    inner: S,
    connecting: Connecting,
}

impl<S, R> tower_service::Service<R> for Count<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let counted = self.connecting.begin();
        let connect = self.inner.call(req);
        Box::pin(async move {
            let out = connect.await;
            drop(counted);
            out
        })
    }
}
