//! What a request costs in tokens, for an origin whose rate-limit headers
//! limit tokens: estimated from its body before it is sent, as the servers
//! reserve it at admission, and what the response's `usage` says it
//! really cost. Pure functions of bytes; no tokenizer.
//!
//! The estimate follows the OpenAI cookbook's parallel processor
//! (`api_request_parallel_processor.py`): prompt tokens plus `max_tokens ×
//! n`, with `max_tokens` 15 when a chat or completions body gives none.
//! Instead of a tokenizer, prompt tokens are the characters of the
//! prompt's JSON text divided by 4, rounded up ([`CHARS_PER_TOKEN`]): the
//! text of `messages`, `prompt`, `input`, `system`, `instructions`, `tools`
//! and `functions` as sent, keys and punctuation included, which stands in
//! for the few tokens per message the cookbook adds for roles and framing.
//! English text runs about 4 characters a token; text in scripts that take
//! more tokens a character is underestimated, which the `usage` of the
//! response and the next headers correct.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Dimension;

/// Characters a token, for the estimate (OpenAI's rule of thumb for English).
pub const CHARS_PER_TOKEN: u64 = 4;

/// The completion a chat or completions body without `max_tokens` is
/// estimated at (the cookbook's default: an underestimate the response's
/// `usage` corrects).
pub const DEFAULT_MAX_TOKENS: u64 = 15;

/// A request's tokens, split as the servers' token limits count them:
/// input (prompt) and output (completion).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
}

impl Tokens {
    /// Input and output together.
    pub fn total(self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// What a limit of `dimension` counts of it (nothing for requests).
    pub fn of(self, dimension: Dimension) -> u64 {
        match dimension {
            Dimension::Requests => 0,
            Dimension::Tokens => self.total(),
            Dimension::InputTokens => self.input,
            Dimension::OutputTokens => self.output,
        }
    }

    /// A cost given outright (a request line's `cost`): all of it counts as
    /// input, so every token limit sees it whole.
    pub fn given(cost: f64) -> Tokens {
        Tokens {
            input: crate::intake::cost_cells(cost),
            output: 0,
        }
    }
}

/// A request's token cost: its `cost` when the line gave one, else the
/// estimate from its body (a request without a body costs one token).
pub fn of_request(req: &crate::request::Request) -> Tokens {
    match &req.body {
        _ if req.cost_given => Tokens::given(req.cost),
        Some(body) => estimate(body),
        None => Tokens {
            input: 1,
            output: 0,
        },
    }
}

/// The fields of an OpenAI or Anthropic request body the estimate reads;
/// the rest is skipped.
#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    system: Option<&'a RawValue>,
    #[serde(borrow)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    functions: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
}

/// The tokens a request with this body is expected to cost (see the module
/// docs). A body that is not shaped like an OpenAI or Anthropic request
/// (no `messages`, `prompt` or `input`) is estimated as prompt text whole;
/// every request costs at least one token.
pub fn estimate(body: &[u8]) -> Tokens {
    let shaped = serde_json::from_slice::<Shape>(body)
        .ok()
        .filter(|s| s.messages.is_some() || s.prompt.is_some() || s.input.is_some());
    let Some(shape) = shaped else {
        let chars = String::from_utf8_lossy(body).chars().count() as u64;
        return Tokens {
            input: chars.div_ceil(CHARS_PER_TOKEN).max(1),
            output: 0,
        };
    };
    let prompt = [
        shape.messages,
        shape.prompt,
        shape.input,
        shape.system,
        shape.instructions,
        shape.tools,
        shape.functions,
    ];
    let chars: u64 = prompt
        .into_iter()
        .flatten()
        .map(|raw| raw.get().chars().count() as u64)
        .sum();
    let asked = [
        shape.max_tokens,
        shape.max_completion_tokens,
        shape.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .filter_map(count)
    .max();
    let chat = shape.messages.is_some() || shape.prompt.is_some();
    let each = asked.unwrap_or(if chat { DEFAULT_MAX_TOKENS } else { 0 });
    let n = shape.n.and_then(count).unwrap_or(1).max(1);
    Tokens {
        input: chars.div_ceil(CHARS_PER_TOKEN).max(1),
        output: each.saturating_mul(n),
    }
}

/// A JSON number as a whole count (fractions rounded up); `None` for
/// anything else.
fn count(raw: &RawValue) -> Option<u64> {
    let n: f64 = serde_json::from_str(raw.get()).ok()?;
    (n.is_finite() && n >= 0.0).then(|| n.ceil().min(u64::MAX as f64) as u64)
}

#[derive(Deserialize)]
struct Answer {
    usage: Option<Usage>,
}

/// OpenAI's (`prompt_tokens`, `completion_tokens`, `total_tokens`) and
/// Anthropic's or the Responses API's (`input_tokens`, `output_tokens`)
/// names.
#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// What a response body's `usage` says the request cost, when it has one
/// with whole numbers. OpenAI's `total_tokens` without a split (an
/// embedding) counts as input.
pub fn usage(body: &str) -> Option<Tokens> {
    let usage = serde_json::from_str::<Answer>(body).ok()?.usage?;
    let output = usage.completion_tokens.or(usage.output_tokens);
    let input = usage.prompt_tokens.or(usage.input_tokens);
    match (input, output, usage.total_tokens) {
        (Some(input), output, _) => Some(Tokens {
            input,
            output: output.unwrap_or(0),
        }),
        (None, output, Some(total)) => {
            let output = output.unwrap_or(0);
            Some(Tokens {
                input: total.saturating_sub(output),
                output,
            })
        }
        (None, Some(output), None) => Some(Tokens { input: 0, output }),
        (None, None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, output: u64) -> Tokens {
        Tokens { input, output }
    }

    #[test]
    fn estimates() {
        let chat_messages = r#"[{"role":"user","content":"Hello there, how are you?"}]"#;
        assert_eq!(chat_messages.len(), 55);
        let cases: Vec<(String, Tokens)> = vec![
            // Chat: prompt JSON text / 4 (55 → 14), plus max_tokens.
            (
                format!(r#"{{"model":"m","messages":{chat_messages},"max_tokens":100}}"#),
                tokens(14, 100),
            ),
            // ... times n.
            (
                format!(r#"{{"model":"m","messages":{chat_messages},"max_tokens":100,"n":3}}"#),
                tokens(14, 300),
            ),
            // Reasoning models' name.
            (
                format!(r#"{{"messages":{chat_messages},"max_completion_tokens":64}}"#),
                tokens(14, 64),
            ),
            // No max: the cookbook's 15.
            (
                format!(r#"{{"messages":{chat_messages}}}"#),
                tokens(14, DEFAULT_MAX_TOKENS),
            ),
            // Anthropic: system counts as prompt.
            (
                format!(
                    r#"{{"model":"claude","system":"Be brief.","messages":{chat_messages},"max_tokens":50}}"#
                ),
                tokens((55 + 11_u64).div_ceil(4), 50),
            ),
            // Completions.
            (
                r#"{"prompt":"12345678","max_tokens":7}"#.into(),
                tokens(3, 7),
            ),
            // Embeddings: no completion.
            (
                r#"{"model":"e","input":"123456789012"}"#.into(),
                tokens(4, 0),
            ),
            // Responses API.
            (
                r#"{"input":"1234","max_output_tokens":9}"#.into(),
                tokens(2, 9),
            ),
            // Fractions round up; a negative or text maximum is ignored.
            (r#"{"prompt":"1234","max_tokens":2.5}"#.into(), tokens(2, 3)),
            (r#"{"prompt":"1234","max_tokens":-4}"#.into(), tokens(2, 15)),
            (
                r#"{"prompt":"1234","max_tokens":"lots"}"#.into(),
                tokens(2, 15),
            ),
            // Multi-byte characters count once.
            (r#"{"prompt":"ééééé"}"#.into(), tokens(2, 15)),
            // Not shaped like a model request: the whole body as prompt.
            (r#"{"name":"x"}"#.into(), tokens(3, 0)),
            ("plain text body".into(), tokens(4, 0)),
            ("".into(), tokens(1, 0)),
            // Malformed JSON too.
            (r#"{"messages": ["#.into(), tokens(4, 0)),
        ];
        for (body, want) in cases {
            assert_eq!(estimate(body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn usages() {
        let cases = [
            (
                r#"{"id":"x","usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
                Some(tokens(9, 12)),
            ),
            (
                r#"{"usage":{"input_tokens":10,"output_tokens":3}}"#,
                Some(tokens(10, 3)),
            ),
            // Embeddings: prompt and total only.
            (
                r#"{"usage":{"prompt_tokens":8,"total_tokens":8}}"#,
                Some(tokens(8, 0)),
            ),
            (r#"{"usage":{"total_tokens":8}}"#, Some(tokens(8, 0))),
            (r#"{"usage":{}}"#, None),
            (r#"{"usage":null}"#, None),
            (r#"{"ok":true}"#, None),
            (r#"{"usage":{"prompt_tokens":-1}}"#, None),
            ("not json", None),
        ];
        for (body, want) in cases {
            assert_eq!(usage(body), want, "{body}");
        }
    }

    #[test]
    fn dimensions_count_their_part() {
        let t = tokens(10, 5);
        assert_eq!(t.of(Dimension::Tokens), 15);
        assert_eq!(t.of(Dimension::InputTokens), 10);
        assert_eq!(t.of(Dimension::OutputTokens), 5);
        assert_eq!(t.of(Dimension::Requests), 0);
        assert_eq!(Tokens::given(2.5), tokens(3, 0));
    }

    #[test]
    fn a_given_cost_wins_over_the_estimate() {
        let url = url::Url::parse("http://h/v1/chat/completions").expect("a URL");
        let mut req = crate::request::Request::get(1, url);
        // No body: one token.
        assert_eq!(of_request(&req), tokens(1, 0));
        req.body = Some(bytes::Bytes::from_static(
            br#"{"prompt":"1234","max_tokens":9}"#,
        ));
        assert_eq!(of_request(&req), tokens(2, 9));
        req.cost = 250.0;
        req.cost_given = true;
        assert_eq!(of_request(&req), tokens(250, 0));
    }
}
