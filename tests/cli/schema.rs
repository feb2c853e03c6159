//! The schema copy beside these tests stays the spec's schema.

#[test]
fn the_schema_copy_matches_the_shared_schema() {
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/schema/result.schema.json"
    );
    let copy = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/result.schema.json");
    let copy = std::fs::read_to_string(copy).expect("tests/cli/result.schema.json");
    // CI may clone the repository without ../shared; then the copy is all there is.
    if let Ok(shared) = std::fs::read_to_string(shared) {
        assert_eq!(
            copy, shared,
            "tests/cli/result.schema.json differs from ../shared/schema/result.schema.json: copy it again"
        );
    }
}

/// The validator really validates: formats included.
#[test]
fn the_validator_rejects_broken_records() {
    use serde_json::json;
    let good = json!({"id": 1, "line": 1, "method": "GET", "url": "http://h/", "ok": true,
        "status": 200, "attempts": 1, "started_at": "2026-11-25T18:52:31.123Z",
        "duration_ms": 1.5, "body": {"a": 1}, "body_encoding": "json", "error": null});
    assert_eq!(crate::support::schema_errors(&good), Vec::<String>::new());
    let broken = [
        ("started_at", json!("yesterday")),
        ("error", json!({"kind": "oops", "message": "x"})),
        ("id", json!(1.5)),
        ("line", json!(0)),
        ("status", json!(600)),
        ("body_encoding", json!("hex")),
    ];
    for (field, value) in broken {
        let mut bad = good.clone();
        bad[field] = value;
        assert!(
            !crate::support::schema_errors(&bad).is_empty(),
            "{field}: {bad}"
        );
    }
    let mut bad = good.clone();
    bad.as_object_mut().unwrap().remove("body_encoding");
    assert!(
        !crate::support::schema_errors(&bad).is_empty(),
        "body without body_encoding"
    );
    let mut bad = good;
    bad["error"] = json!({"kind": "timeout", "message": "x"});
    assert!(
        !crate::support::schema_errors(&bad).is_empty(),
        "ok with an error"
    );
}
