//! The endpoint table, kept once: it is the crate documentation's table,
//! the answer to `GET /`, and the list in `sluice mock --help`.

/// The endpoints as a Markdown table (`| path | answer |`).
pub const ENDPOINTS_MD: &str = include_str!("endpoints.md");

/// The endpoints as (path, answer) pairs of plain text, in table order.
pub fn endpoints() -> Vec<(String, String)> {
    ENDPOINTS_MD.lines().filter_map(row).skip(1).collect()
}

/// The endpoints as plain text: one per line, the paths aligned in a column.
pub fn endpoint_list() -> String {
    let rows = endpoints();
    let width = rows.iter().map(|(path, _)| path.chars().count()).max();
    let width = width.unwrap_or(0);
    rows.iter()
        .map(|(path, answer)| format!("{path:width$}  {answer}\n"))
        .collect()
}

/// The two cells of a table row, without Markdown; `None` for the
/// separator row and for lines that are not rows.
fn row(line: &str) -> Option<(String, String)> {
    let cells = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    let (path, answer) = cells.split_once('|')?;
    if path.trim().starts_with("---") {
        return None;
    }
    Some((plain(path), plain(answer)))
}

/// A cell as plain text: no code spans, no link brackets.
fn plain(cell: &str) -> String {
    cell.trim()
        .replace("[`", "")
        .replace("`]", "")
        .replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_listed_once_without_markdown() {
        let list = endpoint_list();
        let table_rows = ENDPOINTS_MD.lines().filter(|l| l.starts_with('|')).count();
        // The header and the separator are not endpoints.
        assert_eq!(list.lines().count(), table_rows - 2);
        assert!(!list.contains('`') && !list.contains('|'), "{list}");
        let first = list.lines().next().expect("a first endpoint");
        assert!(first.starts_with("GET /  "), "{first}");
        assert!(list.contains("\n/delay/{secs}  "), "{list}");
        assert!(list.contains("Stats as JSON"), "{list}");
    }
}
