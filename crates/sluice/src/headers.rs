//! The one place that decides which headers a user may set and checks
//! their names and values: `-H` options and request lines' `headers` share
//! these rules. Messages name the header (clipped), never its value.

use std::fmt;

use reqwest::header::{HeaderName, HeaderValue};

/// Headers a user may not set, and why: they frame the message or manage
/// the connection, so letting input set them could desynchronise it.
/// `Host` is refused only from request lines: an option may set it (a
/// virtual host behind an address), a line's URL already names its host.
const FORBIDDEN: &[(&str, &str)] = &[
    ("host", "sluice sets it from the URL"),
    ("content-length", "sluice sets it from the body"),
    ("transfer-encoding", "sluice sets it from the body"),
    ("connection", "sluice manages connections"),
    ("keep-alive", "sluice manages connections"),
    ("proxy-connection", "sluice manages connections"),
    ("te", "sluice manages connections"),
    ("upgrade", "sluice does not switch protocols"),
];

/// Who sets a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setter {
    /// An option of the whole run (the CLI's `-H`).
    Option,
    /// A request line's `headers`.
    RequestLine,
}

impl fmt::Display for Setter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Setter::Option => "an option",
            Setter::RequestLine => "a request line",
        })
    }
}

/// A header that cannot be set as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name holds CR, LF or NUL.
    #[error("header name `{name}` contains CR, LF or NUL: header names must be one token")]
    NameBreak {
        /// The name, clipped.
        name: String,
    },
    /// The name is not an HTTP token (or is empty).
    #[error("header name `{name}` is not valid: a name is letters, digits and !#$%&'*+-.^_`|~")]
    BadName {
        /// The name, clipped.
        name: String,
    },
    /// A header sluice sets itself.
    #[error("`{name}` cannot be set by {setter}; {why}")]
    Forbidden {
        /// The name, clipped.
        name: String,
        /// Who tried.
        setter: Setter,
        /// Why sluice sets it.
        why: &'static str,
    },
    /// The value holds CR or LF.
    #[error(
        "header `{name}` value contains a line break (CR or LF): a header value must be one line"
    )]
    ValueBreak {
        /// The name, clipped.
        name: String,
    },
    /// The value holds NUL.
    #[error("header `{name}` value contains a NUL byte")]
    ValueNul {
        /// The name, clipped.
        name: String,
    },
    /// The value holds another control character (or is not ASCII).
    #[error(
        "header `{name}` value contains a control character: only tab and visible characters are allowed"
    )]
    ValueControl {
        /// The name, clipped.
        name: String,
    },
}

/// Checks a header name set by `setter`.
///
/// # Errors
///
/// When the name is not an HTTP token, or names a header sluice sets itself
/// ([`HeaderError`]).
pub fn name(name: &str, setter: Setter) -> Result<HeaderName, HeaderError> {
    if name.contains(['\r', '\n', '\0']) {
        return Err(HeaderError::NameBreak { name: shown(name) });
    }
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| HeaderError::BadName { name: shown(name) })?;
    let refused = FORBIDDEN
        .iter()
        .filter(|(n, _)| setter == Setter::RequestLine || *n != "host")
        .find(|(n, _)| *n == header.as_str());
    match refused {
        Some((_, why)) => Err(HeaderError::Forbidden {
            name: shown(name),
            setter,
            why,
        }),
        None => Ok(header),
    }
}

/// Checks the value `text` of header `name`.
///
/// # Errors
///
/// When the value holds a line break, a NUL or another control character
/// ([`HeaderError`]).
pub fn value(name: &str, text: &str) -> Result<HeaderValue, HeaderError> {
    if text.contains(['\r', '\n']) {
        return Err(HeaderError::ValueBreak { name: shown(name) });
    }
    if text.contains('\0') {
        return Err(HeaderError::ValueNul { name: shown(name) });
    }
    HeaderValue::from_str(text).map_err(|_| HeaderError::ValueControl { name: shown(name) })
}

/// A name as messages show it: at most 200 characters, controls escaped.
fn shown(name: &str) -> String {
    crate::parse::clip(name, crate::parse::MESSAGE_CLIP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_only_from_options() {
        assert!(name("Host", Setter::Option).is_ok());
        let err = name("Host", Setter::RequestLine).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`Host` cannot be set by a request line; sluice sets it from the URL"
        );
        for framing in ["Content-Length", "transfer-encoding", "TE", "Upgrade"] {
            for setter in [Setter::Option, Setter::RequestLine] {
                assert!(
                    matches!(name(framing, setter), Err(HeaderError::Forbidden { .. })),
                    "{framing}"
                );
            }
        }
    }

    #[test]
    fn names_and_values_are_checked_without_showing_values() {
        assert!(matches!(
            name("X A", Setter::Option),
            Err(HeaderError::BadName { .. })
        ));
        assert!(matches!(
            name("", Setter::Option),
            Err(HeaderError::BadName { .. })
        ));
        assert!(matches!(
            name("X\nY", Setter::Option),
            Err(HeaderError::NameBreak { .. })
        ));
        for (text, expected) in [
            ("a\r\nb", "line break"),
            ("a\0b", "NUL"),
            ("a\x07b", "control character"),
        ] {
            let err = value("X-A", text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains(text), "{err}");
        }
        assert_eq!(value("X-A", "a\tb").unwrap(), "a\tb");
    }
}
