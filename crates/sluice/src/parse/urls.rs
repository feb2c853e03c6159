//! URL lines, and the base URL relative request URLs join.

use std::cell::RefCell;

use reqwest::Method;
use url::Url;

use crate::config::Setting;
use crate::record::Id;
use crate::request::{Input, Request};

use super::problem::Problem;
use super::show::{FIELD_CLIP, MESSAGE_CLIP, clip, describe_char};
use super::{Bad, Known, Line, ParseOptions};

/// Appends a relative URL to a base URL the way httpx does, so
/// `https://h/v1` + `chat` or `/chat` → `https://h/v1/chat`.
///
/// The base path gets a trailing `/`, leading `/`s of `relative` are dropped,
/// and the rest is resolved as a path below the base: it never changes the
/// scheme, host or port. The relative part's query and fragment are kept; the
/// base's query is not carried over. Errors say why the result is not a
/// usable http or https URL.
///
/// ```
/// let base = url::Url::parse("https://h/v1").unwrap();
/// let url = sluice::parse::join_base_url(&base, "/chat?x=1").unwrap();
/// assert_eq!(url.as_str(), "https://h/v1/chat?x=1");
/// ```
///
/// # Errors
///
/// When the joined URL does not parse, or is not http or https with a host.
pub fn join_base_url(base: &Url, relative: &str) -> Result<Url, UrlError> {
    let mut dir = base.clone();
    if !dir.path().ends_with('/') {
        let path = format!("{}/", dir.path());
        dir.set_path(&path);
    }
    // The `./` keeps a `:` or `\` in the first segment in the path, where it
    // cannot become a scheme or a host.
    let below = format!("./{}", relative.trim_start_matches('/'));
    let joined = dir.join(&below).map_err(UrlError::Join)?;
    require_http(joined)
}

/// Why a URL (the base URL, or one joined to it) cannot be used. Messages
/// never repeat the URL, which may hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// A control character or a space (`what` describes it).
    #[error("the base URL contains {what}: percent-encode it or remove it")]
    ForbiddenChar {
        /// The character, described (`a space`, `a line break`...).
        what: String,
    },
    /// A base URL without a scheme.
    #[error("the base URL must be absolute, starting with http:// or https://")]
    NotAbsolute,
    /// A base URL that does not parse.
    #[error("the base URL is not valid: {0}")]
    Invalid(url::ParseError),
    /// A base URL with a query or a fragment.
    #[error(
        "the base URL must not have a query (`?…`) or fragment (`#…`): put query parameters in each request's url"
    )]
    QueryOrFragment,
    /// A relative URL that cannot be joined to the base.
    #[error("cannot append it to the base URL: {0}")]
    Join(url::ParseError),
    /// A scheme other than http and https.
    #[error(
        "unsupported scheme `{scheme}`: only http and https (write the URL with http:// or https://)"
    )]
    UnsupportedScheme {
        /// The scheme, clipped.
        scheme: String,
    },
    /// A URL without a host.
    #[error("the URL has no host")]
    NoHost,
}

/// Checks a `--base-url` value: an absolute http or https URL with a host,
/// without control characters or spaces, and without a query or fragment
/// (which could not be carried to the joined URLs).
///
/// Messages do not repeat the URL, which may hold a secret.
///
/// ```
/// assert!(sluice::parse::check_base_url("https://api.example.com/v1").is_ok());
/// assert!(sluice::parse::check_base_url("ftp://h/").is_err());
/// ```
///
/// # Errors
///
/// When `text` is not an absolute http or https URL with a host, or holds a query or fragment.
pub fn check_base_url(text: &str) -> Result<Url, UrlError> {
    if let Some(c) = text.chars().find(|&c| is_forbidden_url_char(c)) {
        return Err(UrlError::ForbiddenChar {
            what: describe_char(c),
        });
    }
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => return Err(UrlError::NotAbsolute),
        Err(e) => return Err(UrlError::Invalid(e)),
    };
    let url = require_http(url)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::QueryOrFragment);
    }
    Ok(url)
}

/// The `http(s)://authority` of the last absolute URL parsed, and the last
/// URL parsed with it, so that a run of lines to one origin parses its host
/// and port once (the url crate's host parsing is most of a URL line's
/// cost), and a run of lines to one URL (JSON lines that all POST to one
/// endpoint) parses nothing: a text that is the cached URL's serialization
/// is that URL (parsing a serialized http(s) URL gives it back), and a URL
/// with the same prefix and a path-absolute rest is the rest joined to the
/// cached URL, which the URL standard makes the same URL (the relative
/// slash state takes the base's userinfo, host and port, and parses the
/// path, query and fragment as a whole URL's). A proptest holds both equal
/// to `Url::parse`. One per input stream: [`super::parse_line`] alone
/// parses every URL whole.
#[derive(Debug, Default)]
pub struct UrlCache(RefCell<Option<(String, Url)>>);

impl UrlCache {
    /// `Url::parse(text)`, through the cache.
    pub(crate) fn parse(&self, text: &str) -> Result<Url, url::ParseError> {
        let mut cache = self.0.borrow_mut();
        if let Some((_, last)) = &*cache
            && last.as_str() == text
        {
            return Ok(last.clone());
        }
        let Some((prefix, rest)) = split_origin(text) else {
            return Url::parse(text);
        };
        if let Some((cached, last)) = &mut *cache
            && cached == prefix
            && let Ok(url) = last.join(rest)
        {
            last.clone_from(&url);
            return Ok(url);
        }
        let url = Url::parse(text)?;
        *cache = Some((prefix.to_owned(), url.clone()));
        Ok(url)
    }
}

/// `http(s)://authority` and the path-absolute rest after it (`/`, then
/// neither `/` nor `\\`); `None` for any other URL, which is parsed whole.
fn split_origin(text: &str) -> Option<(&str, &str)> {
    let after = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))?;
    // Where the url crate's authority state ends, for a special scheme.
    let end = (after.bytes()).position(|b| matches!(b, b'/' | b'\\' | b'?' | b'#'))?;
    let rest = &after.as_bytes()[end..];
    if end == 0 || rest[0] != b'/' || matches!(rest.get(1), Some(b'/' | b'\\')) {
        return None;
    }
    Some(text.split_at(text.len() - after.len() + end))
}

pub(super) fn parse_url_line(text: &str, line: &Line) -> Input {
    let known = |url: Option<String>| Known {
        id: Some(Id::line(line.number)),
        method: Some(Method::GET.to_string()),
        url,
    };
    if text.starts_with(['[', '"']) {
        return line.invalid(known(None), Problem::JsonNotObject);
    }
    match url_field(text, line) {
        Ok(url) => Input::from(Request::get(line.number, url)),
        Err(bad) => line.invalid(known(bad.shown), bad.problem),
    }
}

/// The URL, or what is wrong with it and the URL as it may be shown.
pub(super) fn url_field(text: &str, line: &Line) -> Result<Url, Bad> {
    let opts = line.opts;
    resolve_url(text, opts, line.urls).map_err(|problem| Bad {
        problem,
        shown: (!text.is_empty()).then(|| clip(&opts.redactor.raw_url(text), FIELD_CLIP)),
    })
}

/// A request URL: absolute http(s), or relative to the base URL.
fn resolve_url(text: &str, opts: &ParseOptions, urls: &UrlCache) -> Result<Url, Problem> {
    let shown = || clip(&opts.redactor.raw_url(text), MESSAGE_CLIP);
    if text.is_empty() {
        return Err(Problem::UrlEmpty);
    }
    // Checked before parsing: the url crate silently drops tab, CR and LF.
    if has_forbidden_byte(text)
        && let Some(c) = text.chars().find(|&c| is_forbidden_url_char(c))
    {
        return Err(Problem::UrlChar {
            url: shown(),
            what: describe_char(c),
        });
    }
    match urls.parse(text) {
        Ok(url) => require_http(url).map_err(Problem::Url),
        Err(url::ParseError::RelativeUrlWithoutBase) => resolve_relative(text, opts, shown),
        Err(error) => Err(Problem::UrlInvalid {
            url: shown(),
            error,
        }),
    }
}

fn resolve_relative(
    text: &str,
    opts: &ParseOptions,
    shown: impl Fn() -> String,
) -> Result<Url, Problem> {
    if text.starts_with("//") || text.starts_with(':') {
        return Err(Problem::UrlNoScheme { url: shown() });
    }
    let Some(base) = &opts.base_url else {
        return Err(Problem::RelativeWithoutBase {
            url: shown(),
            base_url: opts.name(Setting::BaseUrl),
        });
    };
    join_base_url(base, text).map_err(|error| Problem::RelativeJoin {
        url: shown(),
        error,
    })
}

fn require_http(url: Url) -> Result<Url, UrlError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::UnsupportedScheme {
            scheme: clip(url.scheme(), MESSAGE_CLIP),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    Ok(url)
}

/// ASCII control characters and the space, which a URL must carry
/// percent-encoded.
fn is_forbidden_url_char(c: char) -> bool {
    c.is_ascii_control() || c == ' '
}

/// Whether `text` holds an [`is_forbidden_url_char`]: a test of its bytes
/// (every byte of a multi-byte character is above 0x7f), 16 at a time
/// with no branch per byte, where decoding characters cost about seven
/// instructions a byte on every request line.
fn has_forbidden_byte(text: &str) -> bool {
    let forbidden = |b: u8| b <= b' ' || b == 0x7f;
    let mut blocks = text.as_bytes().chunks_exact(16);
    let found = blocks.any(|block| block.iter().fold(false, |f, &b| f | forbidden(b)));
    found || blocks.remainder().iter().any(|&b| forbidden(b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::parse::testing::*;
    use crate::parse::{Input, ParseOptions, parse_line};

    #[test]
    fn url_lines_are_gets_with_the_line_number_as_id() {
        let r = ok("  https://example.com/a?q=1 \r");
        assert_eq!(r.url.as_str(), "https://example.com/a?q=1");
        assert!(r.id.is_numeric());
        assert_eq!(
            (r.method, r.id, r.line),
            (Method::GET, Id::line(LINE), LINE)
        );
        assert_eq!(
            (r.body, r.json_body, r.timeout, r.cost),
            (None, false, None, 1.0)
        );
        let bom = parse_line(
            b"\xEF\xBB\xBFhttp://h/x\r",
            1,
            &ORIGIN,
            &ParseOptions::default(),
        );
        assert!(matches!(bom, Some(Input::Request(r)) if r.url.as_str() == "http://h/x"));
    }

    #[test]
    fn bad_urls() {
        for (line, part) in [
            ("http://", "empty host"),
            ("http://exa mple.com", "contains a space"),
            ("http://[::1", "invalid IPv6"),
            ("http://h:99999/", "invalid port"),
            ("://x", "has no scheme"),
            ("//h/x", "has no scheme"),
            (
                "file:///etc/passwd",
                "unsupported scheme `file`: only http and https",
            ),
            ("ftp://h/", "unsupported scheme `ftp`: only http and https"),
            ("javascript:alert(1)", "unsupported scheme `javascript`"),
            ("unix:///var/run/x.sock", "unsupported scheme `unix`"),
            ("localhost:8080/x", "unsupported scheme `localhost`"),
            (
                "chat/completions",
                "relative URL `chat/completions` needs base_url",
            ),
            ("[1]", "JSON but not an object"),
            ("\"http://h/\"", "JSON but not an object"),
        ] {
            let invalid = rejects(line, &[part]);
            assert_eq!(invalid.id, Some(Id::line(LINE)), "{line}");
            assert_eq!(invalid.method.as_deref(), Some("GET"), "{line}");
        }
        // Non-object JSON stays rejected even where relative URLs are allowed.
        bad_with("[1]", &with_base("https://h/v1"));
    }

    #[test]
    fn a_url_rejected_for_a_tab_or_a_space_is_shown_as_written() {
        // The url crate would show `http://h/ab` and `http://h/a%20b`.
        let tab = rejects("http://h/a\tb", &["`http://h/a\\tb`", "a tab"]);
        assert_eq!(tab.url.as_deref(), Some("http://h/a\\tb"));
        let space = rejects("http://h/a b?key=SECRET", &["`http://h/a b?…`", "a space"]);
        assert_eq!(space.url.as_deref(), Some("http://h/a b?…"));
        assert!(!space.message.contains("SECRET"), "{}", space.message);
    }

    #[test]
    fn control_characters_in_urls_are_rejected_not_stripped() {
        for (url, what) in [
            ("http://h/a\tb", "a tab"),
            ("http://h/a\x01", "U+0001"),
            ("http://h/a\x7f", "U+007F"),
            ("http://h/a\x00", "U+0000"),
        ] {
            rejects(url, &[what]);
        }
        let json = r#"{"url": "http://127.0.0.1:1/a\r\nX-Injected: 1"}"#;
        let invalid = rejects(json, &["line break"]);
        assert!(invalid.url.is_some());
        // Percent-encoded, the same bytes are fine and sent as written.
        assert_eq!(ok("http://h/a%0d%0a").url.as_str(), "http://h/a%0d%0a");
    }

    #[test]
    fn relative_urls_join_the_base_like_httpx() {
        let opts = with_base("https://h/v1");
        for (rel, want) in [
            ("chat", "https://h/v1/chat"),
            ("/chat", "https://h/v1/chat"),
            (
                "chat/completions?x=1&y=2",
                "https://h/v1/chat/completions?x=1&y=2",
            ),
            ("?x=1", "https://h/v1/?x=1"),
            ("/a:b", "https://h/v1/a:b"),
        ] {
            let line = format!(r#"{{"url": "{rel}"}}"#);
            assert_eq!(ok_with(&line, &opts).url.as_str(), want, "{rel}");
        }
        assert_eq!(ok_with("chat", &opts).url.as_str(), "https://h/v1/chat");
        // An absolute URL ignores the base.
        assert_eq!(
            ok_with("http://other/x", &opts).url.as_str(),
            "http://other/x"
        );
        bad_with("//evil.example/x", &opts);
        // Text before a `:` is a scheme, so this is not relative.
        assert!(
            bad_with("a:b", &opts)
                .message
                .contains("unsupported scheme `a`")
        );
    }

    #[test]
    fn join_base_url_never_leaves_the_base_origin() {
        let base = |s| Url::parse(s).expect("valid test URL");
        for (b, rel, want) in [
            ("https://h/v1", "chat", "https://h/v1/chat"),
            ("https://h/v1/", "chat", "https://h/v1/chat"),
            ("https://h/v1/", "/chat", "https://h/v1/chat"),
            ("https://h", "chat", "https://h/chat"),
            ("https://h:8443/v1", "", "https://h:8443/v1/"),
            ("https://h/v1", "a:b", "https://h/v1/a:b"),
            (
                "https://h/v1",
                "\\\\evil.example/x",
                "https://h/v1///evil.example/x",
            ),
            ("https://h/v1", "x#frag", "https://h/v1/x#frag"),
        ] {
            let joined = join_base_url(&base(b), rel).expect("joins");
            assert_eq!(joined.as_str(), want, "{b} + {rel}");
        }
    }

    #[test]
    fn base_url_checks() {
        assert_eq!(
            check_base_url("https://api.example.com/v1").map(String::from),
            Ok("https://api.example.com/v1".to_string())
        );
        for (text, part) in [
            ("ftp://h/", "unsupported scheme `ftp`"),
            ("api.example.com/v1", "must be absolute"),
            ("https://h/ v1", "a space"),
            ("https://h/v1\n", "line break"),
            ("https://h/v1?key=SECRET", "must not have a query"),
            ("https://h/v1#x", "must not have a query"),
            ("http://", "the base URL is not valid: empty host"),
            ("http://h:99999", "invalid port"),
        ] {
            let err = check_base_url(text).expect_err(text).to_string();
            assert!(err.contains(part), "{text}: {err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn required_and_wrongly_typed_urls() {
        for (line, part) in [
            ("{}", "`url` is missing"),
            (r#"{"url": null}"#, "`url` is missing"),
            (r#"{"url": 5}"#, "`url` must be a string, not a number"),
            (r#"{"url": ""}"#, "`url` is empty"),
            (
                r#"{"url": "ftp://h/"}"#,
                "unsupported scheme `ftp`: only http and https",
            ),
            (r#"{"url": "chat"}"#, "relative URL `chat` needs base_url"),
        ] {
            rejects(line, &[part]);
        }
    }

    fn prefix() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "http://h",
            "https://h",
            "http://Ex.COM:80",
            "https://h:443",
            "http://127.0.0.1:8080",
            "http://u:p%40@h:9",
            "http://@h",
            "http://[::1]:9",
            "http://xn--bcher-kva.example",
            "http://bücher.example",
            "http://h:99999",
            "http://a b",
            "http:///h",
            "https://h.",
            "HTTP://h",
        ])
    }

    fn rest() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "/", "a", "..", ".", "%2e", "%41", "?", "#", "é", "\\", "|", "^", "'", "=", "&",
                "%", "%zz", "~", ":", "@", "[", "]", "{",
            ]),
            0..8,
        )
        .prop_flat_map(|parts| {
            // Mostly path-absolute, the rest the cache takes.
            let parts = parts.concat();
            prop_oneof![3 => Just(format!("/{parts}")), 1 => Just(parts)]
        })
    }

    proptest! {
        /// The byte test finds what the character test finds.
        #[test]
        fn forbidden_bytes_are_forbidden_chars(text in "(\\PC|[\\x00-\\x20\\x7f]){0,40}") {
            prop_assert_eq!(
                has_forbidden_byte(&text),
                text.chars().any(is_forbidden_url_char),
                "{:?}", text
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// A URL parsed through the cache, cold or warm, is the URL parsed
        /// whole (or the same error).
        #[test]
        fn the_cache_parses_as_url_does(
            warm in (prefix(), rest()),
            urls in prop::collection::vec((any::<bool>(), prefix(), rest()), 1..4),
        ) {
            let cache = UrlCache::default();
            // Half of the later URLs share the first one's prefix.
            let later = urls.into_iter().map(|(same, p, r)| (if same { warm.0 } else { p }, r));
            for (p, r) in std::iter::once(warm.clone()).chain(later) {
                let text = format!("{p}{r}");
                let whole = Url::parse(&text);
                // Again: the same text, or its serialization, hits the
                // cached URL itself.
                let again = whole.as_ref().map_or(text.clone(), |u| u.as_str().to_owned());
                for text in [&text, &text, &again] {
                    let whole = Url::parse(text);
                    let cached = cache.parse(text);
                    prop_assert_eq!(&cached, &whole, "{}", text);
                    if let (Ok(a), Ok(b)) = (&cached, &whole) {
                        prop_assert_eq!(a.as_str(), b.as_str());
                        prop_assert_eq!(a.host(), b.host());
                        prop_assert_eq!(a.port(), b.port());
                        prop_assert_eq!(a.path(), b.path());
                        prop_assert_eq!(a.query(), b.query());
                    }
                }
            }
        }
    }
}
