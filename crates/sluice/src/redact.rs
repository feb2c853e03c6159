//! The one place where secrets are recognised and replaced by `REDACTED`.
//!
//! Every sink (records, error messages, events, summaries) passes URLs and
//! headers through a [`Redactor`]; nothing else decides what is secret.

use url::Url;

/// The text that stands in for a secret value.
pub const REDACTED: &str = "REDACTED";

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
];

const SECRET_PARAMS: &[&str] = &["key", "api_key", "apikey", "access_token", "token"];

/// Knows which header names and query parameters are secret.
///
/// The built-in list is the documented one (Authorization, Cookie, X-Api-Key, `?api_key=`,
/// ...); [`Redactor::with_extra`] adds names given by `--redact`, which apply
/// to both headers and query parameters. Names compare case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<String>,
}

impl Redactor {
    /// A redactor that also treats each of `names` as secret.
    pub fn with_extra<I, S>(names: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let extra = names
            .into_iter()
            .map(|n| n.as_ref().trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        Redactor { extra }
    }

    /// True for a header whose value must never be shown.
    pub fn is_secret_header(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        SECRET_HEADERS.contains(&lower.as_str()) || self.extra.contains(&lower)
    }

    /// True for a query parameter whose value must never be shown.
    pub fn is_secret_param(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        SECRET_PARAMS.contains(&lower.as_str()) || self.extra.contains(&lower)
    }

    /// The URL as it may be shown: userinfo and secret query values replaced.
    pub fn url(&self, url: &Url) -> String {
        let has_userinfo = !url.username().is_empty() || url.password().is_some();
        let has_secret_param = url.query_pairs().any(|(k, _)| self.is_secret_param(&k));
        // OAuth implicit flows put tokens in the fragment (`#access_token=`).
        let secret_fragment = url.fragment().is_some_and(|f| self.has_secret_pair(f));
        if !has_userinfo && !has_secret_param && !secret_fragment {
            // The serialisation itself: one copy, no formatting machinery.
            return url.as_str().to_owned();
        }
        let mut shown = url.clone();
        if has_userinfo {
            // Setting userinfo fails only for URLs that cannot have one, which
            // `has_userinfo` already excludes.
            let _ = shown.set_password(None);
            let _ = shown.set_username(REDACTED);
        }
        if has_secret_param {
            // Rewrite only the secret values, keeping every other byte of the
            // query as it was written (no re-encoding).
            shown.set_query(Some(&self.redact_pairs(url.query().unwrap_or(""))));
        }
        if secret_fragment {
            shown.set_fragment(Some(&self.redact_pairs(url.fragment().unwrap_or(""))));
        }
        shown.to_string()
    }

    /// `a=1&token=x` with the values of secret names replaced, every other
    /// byte kept as written (no re-encoding).
    fn redact_pairs(&self, pairs: &str) -> String {
        pairs
            .split('&')
            .map(|pair| {
                let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
                if self.is_secret_param(&decode_key(key)) {
                    format!("{key}={REDACTED}")
                } else {
                    pair.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    fn has_secret_pair(&self, pairs: &str) -> bool {
        pairs
            .split('&')
            .any(|pair| self.is_secret_param(&decode_key(pair.split('=').next().unwrap_or(""))))
    }

    /// A raw URL string as it may be shown, for lines whose URL did not parse.
    ///
    /// Without a parse we cannot find the parts reliably, so anything that
    /// looks like userinfo or a query is cut. Text with a space or a
    /// control character is not parsed at all: the url crate would drop
    /// its tabs and line breaks and encode its spaces, showing a URL
    /// rejected for one of them without it.
    pub fn raw_url(&self, raw: &str) -> String {
        let as_written = raw.contains(|c: char| c.is_ascii_control() || c == ' ');
        match Url::parse(raw).ok().filter(|_| !as_written) {
            Some(url) => self.url(&url),
            None => {
                let mut shown = raw.split(['?', '#']).next().unwrap_or("").to_string();
                if let Some(at) = shown.rfind('@') {
                    let start = shown.find("://").map(|i| i + 3).unwrap_or(0);
                    if at >= start {
                        shown.replace_range(start..at, REDACTED);
                    }
                }
                if shown.len() < raw.len() {
                    shown.push_str("?…");
                }
                shown
            }
        }
    }

    /// The header value as it may be shown.
    pub fn header_value<'a>(&self, name: &str, value: &'a str) -> &'a str {
        if self.is_secret_header(name) {
            REDACTED
        } else {
            value
        }
    }
}

fn decode_key(key: &str) -> String {
    url::form_urlencoded::parse(key.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_and_secret_params() {
        let r = Redactor::with_extra(["X-Custom-Token"]);
        let url =
            Url::parse("https://user:pw@h.example/a?api_key=S1&x=1&token=S2&x-custom-token=S3")
                .unwrap();
        let shown = r.url(&url);
        assert_eq!(
            shown,
            "https://REDACTED@h.example/a?api_key=REDACTED&x=1&token=REDACTED&x-custom-token=REDACTED"
        );
        let mixed = Url::parse("http://h/a?q=hello%20world&path=a/b&token=t1").unwrap();
        assert_eq!(
            r.url(&mixed),
            "http://h/a?q=hello%20world&path=a/b&token=REDACTED"
        );
        let frag = Url::parse("http://h/cb#state=1&access_token=SECRET").unwrap();
        assert_eq!(r.url(&frag), "http://h/cb#state=1&access_token=REDACTED");
        let plain = Url::parse("http://h/a?q=1").unwrap();
        assert_eq!(r.url(&plain), "http://h/a?q=1");
        let user_only = Url::parse("http://u@h/p").unwrap();
        assert_eq!(r.url(&user_only), "http://REDACTED@h/p");
        let password_only = Url::parse("http://:pw@h/p").unwrap();
        assert_eq!(r.url(&password_only), "http://REDACTED@h/p");
        let bare = Url::parse("https://h.example:8443/a/b").unwrap();
        assert_eq!(r.url(&bare), "https://h.example:8443/a/b");
    }

    #[test]
    fn raw_urls_are_cut() {
        let r = Redactor::default();
        assert_eq!(
            r.raw_url("http://u:p@exa mple/?key=1"),
            "http://REDACTED@exa mple/?…"
        );
    }

    #[test]
    fn raw_urls_with_a_space_or_a_tab_are_shown_as_written() {
        let r = Redactor::default();
        assert_eq!(r.raw_url("http://h/a\tb"), "http://h/a\tb");
        assert_eq!(r.raw_url("https://h/ v1"), "https://h/ v1");
        assert_eq!(
            r.raw_url("http://u:p@h/a b?key=1"),
            "http://REDACTED@h/a b?…"
        );
    }

    #[test]
    fn headers() {
        let r = Redactor::with_extra(["x-custom"]);
        assert_eq!(r.header_value("Authorization", "Bearer x"), REDACTED);
        assert_eq!(r.header_value("X-CUSTOM", "x"), REDACTED);
        assert_eq!(r.header_value("Accept", "x"), "x");
    }
}
