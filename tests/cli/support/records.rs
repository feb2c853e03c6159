//! Result lines read back: every line validated against the published
//! schema (`schema/result.schema.json`) and the rule the schema cannot say,
//! then typed as a [`Record`] so that a test names the fields it checks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// The schema of a result line, as the repository publishes it to users.
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/result.schema.json");

/// One result line, typed: the fields the tests check (serde skips the
/// others; `json` keeps the line as written, for messages and for fields a
/// test reads as JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    /// A string, or a line number as an integer.
    pub id: Value,
    pub line: u64,
    pub url: Option<String>,
    pub final_url: Option<String>,
    pub http_version: Option<String>,
    /// With `--include-headers`.
    pub headers: Option<BTreeMap<String, String>>,
    pub ok: bool,
    pub status: Option<u16>,
    pub attempts: u32,
    pub duration_ms: f64,
    pub error: Option<Failure>,
    /// Absent without a body; JSON `null` is a body too.
    #[serde(default, deserialize_with = "present")]
    pub body: Option<Value>,
    pub body_encoding: Option<String>,
    #[serde(skip)]
    pub json: Value,
}

/// A record's `error`.
#[derive(Debug, Clone, Deserialize)]
pub struct Failure {
    pub kind: String,
    pub message: String,
    pub maybe_applied: Option<bool>,
}

/// A field that is there, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Record {
    /// The error kind, or "" when the record has none.
    pub fn kind(&self) -> &str {
        self.error.as_ref().map_or("", |e| e.kind.as_str())
    }

    /// The error message, or "" when the record has none.
    pub fn message(&self) -> &str {
        self.error.as_ref().map_or("", |e| e.message.as_str())
    }

    /// Whether the error says the server may have applied the request.
    pub fn maybe_applied(&self) -> bool {
        self.error.as_ref().and_then(|e| e.maybe_applied) == Some(true)
    }

    /// A response header, its name in any case (with `--include-headers`).
    pub fn header(&self, name: &str) -> Option<&str> {
        let headers = self.headers.as_ref()?;
        let (_, value) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        Some(value.as_str())
    }

    /// The body as JSON (`null` when there is none): for indexing an echo.
    pub fn body_json(&self) -> &Value {
        self.body.as_ref().unwrap_or(&Value::Null)
    }

    /// The body when it was stored as text.
    pub fn text(&self) -> Option<&str> {
        self.body.as_ref().and_then(Value::as_str)
    }

    /// Types a validated line.
    fn typed(json: Value) -> Record {
        let mut record: Record = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("record {json} does not type ({e})"));
        record.json = json;
        record
    }
}

/// Two records are equal when their lines are: every field, as written.
impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.json == other.json
    }
}

impl fmt::Display for Record {
    /// The line as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.json.fmt(f)
    }
}

/// A record as JSON or typed: what [`by_line`] and [`kind`] accept.
pub trait Json {
    fn json(&self) -> &Value;
}

impl Json for Value {
    fn json(&self) -> &Value {
        self
    }
}

impl Json for Record {
    fn json(&self) -> &Value {
        &self.json
    }
}

impl<T: Json + ?Sized> Json for &T {
    fn json(&self) -> &Value {
        (**self).json()
    }
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let text = std::fs::read_to_string(SCHEMA).expect("schema/result.schema.json is readable");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema compiles")
    })
}

/// What the result schema finds wrong with `record`.
pub fn schema_errors(record: &Value) -> Vec<String> {
    validator()
        .iter_errors(record)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Validates one record against the result schema, and the rule the schema
/// cannot say: a record with no attempt has no start time and no duration.
pub fn check_record(record: &Value) {
    let errors = schema_errors(record);
    assert!(
        errors.is_empty(),
        "record {record} breaks the schema: {errors:?}"
    );
    if record["attempts"] == 0 {
        assert_eq!(record["started_at"], Value::Null, "attempts 0: {record}");
        assert_eq!(
            record["duration_ms"].as_f64(),
            Some(0.0),
            "attempts 0: {record}"
        );
    } else {
        assert!(record["started_at"].is_string(), "attempted: {record}");
    }
}

/// Every line of `text` as a validated record, as JSON. Kept for the tests
/// that index records; new tests use [`parse_results`].
pub fn parse_records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            check_record(&record);
            record
        })
        .collect()
}

/// Every line of `text` as a validated, typed record.
pub fn parse_results(text: &str) -> Vec<Record> {
    parse_records(text).into_iter().map(Record::typed).collect()
}

/// Records keyed by `line`, asserting each line has exactly one.
pub fn by_line<R: Json + Clone>(records: &[R]) -> BTreeMap<u64, R> {
    let mut map = BTreeMap::new();
    for record in records {
        let line = record.json()["line"].as_u64().expect("line is an integer");
        let previous = map.insert(line, record.clone());
        assert!(previous.is_none(), "line {line} has two records");
    }
    map
}

/// The error kind of a record, or "" when it has none.
pub fn kind<R: Json + ?Sized>(record: &R) -> &str {
    record.json()["error"]["kind"].as_str().unwrap_or("")
}

/// Looks up a header in a JSON object of headers, ignoring case.
pub fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Complete lines (ending in a newline) in `path`: what a reader can trust.
pub fn complete_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// The complete lines of a results file that may end torn (after kill -9),
/// each validated and typed, keyed by line (at most one record per line).
pub fn results_so_far(path: &Path) -> BTreeMap<u64, Record> {
    let text = std::fs::read_to_string(path).expect("read the results file");
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    by_line(&parse_results(complete))
}

/// The records of a finished results file (no torn line), each validated
/// and typed, keyed by line (at most one record per line).
pub fn file_results(path: &Path) -> BTreeMap<u64, Record> {
    let text = std::fs::read_to_string(path).expect("read the results file");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the results file ends with a torn line: {:?}",
        text.lines().last()
    );
    by_line(&parse_results(&text))
}
