//! The schemas in `schema/` are the ones users read: they compile, and the
//! validators really validate.

use serde_json::{Value, json};

/// The request schema, compiled from the repository's copy.
fn request_schema() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/request.schema.json");
    let text = std::fs::read_to_string(path).expect("schema/request.schema.json is readable");
    let schema: Value = serde_json::from_str(&text).expect("the request schema is JSON");
    jsonschema::draft202012::new(&schema).expect("the request schema compiles")
}

/// The documented request line is valid, and the schema refuses what the
/// input format refuses.
#[test]
fn the_request_schema_accepts_the_documented_line() {
    let schema = request_schema();
    let line = json!({"id": "u-17", "method": "POST", "url": "https://api.example.com/v1/items",
        "headers": {"Content-Type": "application/json"}, "body": {"name": "x"}, "cost": 1});
    assert!(schema.is_valid(&line), "{line}");
    for bad in [
        json!({"id": 1}),
        json!({"url": "/x", "body": 1, "body_text": "x"}),
        json!({"url": "/x", "cost": -1}),
        json!({"url": "/x", "method": "GE T"}),
    ] {
        assert!(!schema.is_valid(&bad), "{bad}");
    }
}

/// The validator really validates: formats included.
#[test]
fn the_validator_rejects_broken_records() {
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
