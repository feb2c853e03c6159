//! The request type the engine executes, and the input item that carries
//! either a request or the reason its line was rejected.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use url::Url;

use crate::record::Id;

/// One HTTP request to execute, as read from one input line.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request's id (`id`/`custom_id`, else the line number).
    pub id: Id,
    /// The line number in the input stream (1-based, running on across files).
    pub line: u64,
    /// The HTTP method.
    pub method: Method,
    /// The absolute http or https URL.
    pub url: Url,
    /// Headers from the input line; they override the run's headers of the
    /// same name.
    pub headers: HeaderMap,
    /// The body to send, if any.
    pub body: Option<Bytes>,
    /// The body came from a JSON `body` field: send `Content-Type:
    /// application/json` unless a header sets one.
    pub json_body: bool,
    /// Overrides the run's attempt timeout.
    pub timeout: Option<Duration>,
    /// Spent from the run's budget by every attempt (default 1).
    pub cost: f64,
    /// The line gave `cost`: where an origin's headers limit tokens, it is
    /// also the request's token cost, instead of an estimate from its body
    /// ([`crate::ratelimit::cost`]).
    pub cost_given: bool,
    /// Where the line came from, `file:line` (the file's own line number),
    /// for messages about it; `None` for requests not read from a file.
    pub place: Option<String>,
    /// Lets the caller give the request up mid-run (see [`Abandon`]).
    pub abandon: Option<Abandon>,
}

/// Gives requests up while the run goes on: once [`Abandon::abandon`] is
/// called, a request carrying this handle is dropped without a record
/// ([`crate::Event::Dropped`]) wherever it is: its attempt in flight is
/// cancelled at once (its connection closed, its slot freed), a retry
/// waiting for its time is dropped then, and a queued one when it would
/// start, so it never starts again. The other requests of the run, and
/// every limit, carry on. For callers that feed one run from several
/// sources (the Python package's client) and must cancel one of them.
#[derive(Clone, Debug, Default)]
pub struct Abandon(tokio_util::sync::CancellationToken);

impl Abandon {
    /// A handle no request has been given up by yet.
    pub fn new() -> Abandon {
        Abandon::default()
    }

    /// Gives up every request carrying this handle.
    pub fn abandon(&self) {
        self.0.cancel();
    }

    /// True once [`Abandon::abandon`] was called.
    pub fn is_abandoned(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once [`Abandon::abandon`] is called.
    pub async fn abandoned(&self) {
        self.0.cancelled().await;
    }
}

impl Request {
    /// A GET of `url` with the given line number and the line number as id.
    ///
    /// ```
    /// let url = url::Url::parse("http://127.0.0.1:8080/fast").unwrap();
    /// let req = sluice::Request::get(1, url);
    /// assert_eq!(req.id.as_str(), "1");
    /// ```
    pub fn get(line: u64, url: Url) -> Request {
        Request {
            id: Id::line(line),
            line,
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            json_body: false,
            timeout: None,
            cost: 1.0,
            cost_given: false,
            place: None,
            abandon: None,
        }
    }
}

/// A line that could not become a request; it gets an `invalid_request` record.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidLine {
    /// The line number in the input stream.
    pub line: u64,
    /// The id, when the line was read far enough to know it.
    pub id: Option<Id>,
    /// The method, when known.
    pub method: Option<String>,
    /// The URL (redacted), when known.
    pub url: Option<String>,
    /// What is wrong, naming the file and its own line number.
    pub message: String,
}

/// One item of the input stream the engine consumes.
///
/// The request is boxed once, where its line is parsed: from the reader
/// through the stream adapters and the intake to the scheduler, which
/// shares it with its attempts, it moves as a pointer rather than as its
/// few hundred bytes, a dozen times a line. `Input::from(request)` boxes it.
#[derive(Clone, Debug)]
pub enum Input {
    /// A request to execute.
    Request(Box<Request>),
    /// A line that was rejected while parsing.
    Invalid(Box<InvalidLine>),
    /// A line that already has a record from an earlier run (`--resume`),
    /// or that another shard owns ([`crate::shard`]): it claims its id but
    /// is neither sent nor written.
    Recorded {
        /// The line number.
        line: u64,
        /// The line's id.
        id: Id,
    },
}

impl Request {
    /// True when the caller gave the request up ([`Abandon`]).
    pub fn is_abandoned(&self) -> bool {
        self.abandon.as_ref().is_some_and(Abandon::is_abandoned)
    }
}

impl From<Request> for Input {
    fn from(request: Request) -> Input {
        Input::Request(Box::new(request))
    }
}

impl From<InvalidLine> for Input {
    fn from(invalid: InvalidLine) -> Input {
        Input::Invalid(Box::new(invalid))
    }
}

impl Input {
    /// The item's line number.
    pub fn line(&self) -> u64 {
        match self {
            Input::Request(r) => r.line,
            Input::Invalid(i) => i.line,
            Input::Recorded { line, .. } => *line,
        }
    }
}

/// True for the methods HTTP defines as idempotent (RFC 9110 §9.2.2), which
/// may be retried after the server might have acted on them.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
