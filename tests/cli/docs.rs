//! The repository stands alone: every relative link in its Markdown reaches
//! a file inside it, nothing points at files outside it, and the user docs
//! cover every field of the schemas they describe.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every file of the repository but build output and version control.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("a readable directory");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') && name != ".ci" || name == "target" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn repository_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(Path::new(ROOT), &mut out);
    out
}

/// The targets of `[text](target)` links in `markdown`.
fn link_targets(markdown: &str) -> Vec<&str> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .collect()
}

#[test]
fn every_relative_link_reaches_a_file_in_the_repository() {
    let root = std::fs::canonicalize(ROOT).expect("the repository root");
    let markdown = repository_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"));
    let mut checked = 0;
    for file in markdown {
        let text = std::fs::read_to_string(&file).expect("Markdown is UTF-8");
        for target in link_targets(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with('#')
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or(target);
            let resolved = file.parent().expect("a file has a directory").join(path);
            let resolved = std::fs::canonicalize(&resolved).unwrap_or_else(|_| {
                panic!("{}: the link {target} reaches nothing", file.display())
            });
            assert!(
                resolved.starts_with(&root),
                "{}: the link {target} leaves the repository",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "the README links the docs and the schemas");
}

#[test]
fn nothing_refers_to_files_outside_the_repository() {
    // Spelled in pieces so that this file does not match itself.
    let outside = [
        ["../", "shared"].concat(),
        ["/work", "/"].concat(),
        ["SP", "EC"].concat(),
    ];
    for file in repository_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        for needle in &outside {
            assert!(
                !text.contains(needle.as_str()),
                "{} mentions `{needle}`, which is not in the repository",
                file.display()
            );
        }
    }
}

/// The top-level property names of `schema/NAME.schema.json`, and the error
/// kinds when it has them.
fn schema_words(name: &str) -> Vec<String> {
    let path = format!("{ROOT}/schema/{name}.schema.json");
    let text = std::fs::read_to_string(path).expect("the schema is readable");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    let mut words: Vec<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    let error = &schema["properties"]["error"]["oneOf"][1]["properties"];
    if let Some(kinds) = error["kind"]["enum"].as_array() {
        words.extend(kinds.iter().filter_map(|k| k.as_str()).map(String::from));
        words.push("maybe_applied".into());
    }
    words
}

#[test]
fn the_docs_describe_every_schema_field() {
    for (doc, schema) in [("input", "request"), ("output", "result")] {
        let text = std::fs::read_to_string(format!("{ROOT}/docs/{doc}.md")).expect("the doc");
        assert!(
            text.contains(&format!("schema/{schema}.schema.json")),
            "docs/{doc}.md"
        );
        for word in schema_words(schema) {
            assert!(
                text.contains(&format!("`{word}`")),
                "docs/{doc}.md does not describe `{word}` of schema/{schema}.schema.json"
            );
        }
    }
}
