//! Text from bytes: UTF-8 checked by simdutf8 (vector instructions chosen
//! at run time), several times faster than std's check on the response
//! bodies and request lines sluice reads; std's check runs again only when
//! the bytes are not UTF-8, for its error (where the first bad byte is).

/// `bytes` as text, when they are UTF-8: `std::str::from_utf8`, faster.
pub(crate) fn text(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    simdutf8::basic::from_utf8(bytes).or_else(|_| std::str::from_utf8(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_as_std_does() {
        let long = "é".repeat(100);
        for bytes in [
            &b""[..],
            b"plain",
            "é ∂ 😀".as_bytes(),
            long.as_bytes(),
            b"\xff",
            b"ok\xc0\x80",
            b"\xed\xa0\x80",
            &[b'a'; 200],
        ] {
            assert_eq!(text(bytes), std::str::from_utf8(bytes), "{bytes:?}");
        }
        let mut bad = long.into_bytes();
        bad[150] = 0xff;
        assert_eq!(text(&bad), std::str::from_utf8(&bad));
    }
}
