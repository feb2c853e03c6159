//! Showing text in messages: clipped, control characters escaped.

/// How many characters of a URL, id or name a message quotes.
pub(crate) const MESSAGE_CLIP: usize = 200;

/// How many characters of a rejected URL an [`InvalidLine`] keeps.
pub(super) const FIELD_CLIP: usize = 2048;

/// At most `max` characters of `text`, control characters escaped, `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` (an id, a URL, a name from outside) as a message quotes it:
/// at most 200 characters (`MESSAGE_CLIP`), control characters escaped.
pub fn for_message(text: &str) -> String {
    clip(text, MESSAGE_CLIP)
}

/// A character named for a message: "a space", "a control character (U+000D)".
pub(super) fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        '\r' | '\n' => format!("a line break (U+{:04X})", c as u32),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        c => format!("`{c}`"),
    }
}

/// `64 MiB`, `16 KiB` or `100 bytes`.
pub(super) fn show_size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    match bytes {
        0 => "0 bytes".into(),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}
