//! Provider-shaped endpoints: `POST /v1/messages` (Anthropic Messages) and
//! `POST /v1/chat/completions` (OpenAI Chat Completions), so batch files of
//! both providers run end to end against the mock.
//!
//! Both answer 200 with a minimal, valid response object whose text names
//! the request's `model`, with a request id header (`request-id`,
//! `x-request-id`). A `model` of `status-NNN` answers status NNN with the
//! provider's error body instead, and `text-NNN` answers NNN with a
//! `text/plain` body (as a proxy in front of an API may).

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::MockBody;

/// Request ids, unique per process.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The request's `model`, if its body is JSON with one.
fn model(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The status a `status-NNN` model asks for.
fn asked_status(model: &str) -> Option<StatusCode> {
    let code: u16 = model.strip_prefix("status-")?.parse().ok()?;
    StatusCode::from_u16(code)
        .ok()
        .filter(|s| s.as_u16() >= 400)
}

fn answer(status: StatusCode, header: &'static str, value: &Value) -> Response<MockBody> {
    let id = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let mut response = super::handler::json_answer(status, value);
    if let Ok(v) = HeaderValue::from_str(&format!("req_mock{id:08}")) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(header), v);
    }
    response
}

/// The `text/plain` answer a `text-NNN` model asks for.
fn text_answer(model: &str) -> Option<Response<MockBody>> {
    let code: u16 = model.strip_prefix("text-")?.parse().ok()?;
    let status = StatusCode::from_u16(code)
        .ok()
        .filter(|s| s.as_u16() >= 200)?;
    let mut response = Response::new(MockBody::full(
        format!("upstream answered {code}").into_bytes(),
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Some(response)
}

/// `POST /v1/messages`.
pub fn messages(body: &[u8]) -> Response<MockBody> {
    let model = model(body);
    if let Some(response) = text_answer(&model) {
        return response;
    }
    if let Some(status) = asked_status(&model) {
        let kind = match status.as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        let error =
            json!({"type": "error", "error": {"type": kind, "message": format!("mock {kind}")}});
        return answer(status, "request-id", &error);
    }
    let message = json!({
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": format!("mock answer from {model}")}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": 4}
    });
    answer(StatusCode::OK, "request-id", &message)
}

/// `POST /v1/chat/completions`.
pub fn chat_completions(body: &[u8]) -> Response<MockBody> {
    let model = model(body);
    if let Some(response) = text_answer(&model) {
        return response;
    }
    if let Some(status) = asked_status(&model) {
        let error = json!({"error": {"message": format!("mock error {}", status.as_u16()), "type": "invalid_request_error", "param": null, "code": null}});
        return answer(status, "x-request-id", &error);
    }
    let completion = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": format!("mock answer from {model}"), "refusal": null},
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}
    });
    answer(StatusCode::OK, "x-request-id", &completion)
}
