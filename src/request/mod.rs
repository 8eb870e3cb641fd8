//! One request type for every way an agent asks for a delegation: `POST /delegate`, the
//! CLI's `edgent delegate`, MCP's `delegate` tool (whose argument schema it is), and the
//! Ollama- and OpenAI-shaped front doors that translate into it.
//!
//! It holds what an agent sends ([`DelegateRequest`]) and how it is checked
//! ([`DelegateRequest::validate`] -> [`ValidRequest`]), what it gets back
//! ([`DelegateResponse`], in [`answer`]), and why a delegation failed ([`DelegateError`],
//! in [`error`]). The attempts and the error codes it answers with are the job record's
//! own ([`crate::jobs::attempt`], [`crate::jobs::error_code`]), re-exported here.

pub mod answer;
pub mod error;

pub use crate::jobs::{
    Attempt, AttemptOutcome, AttemptStake, ErrorCode, JobErrorCode, StakeOutcome,
};
pub use answer::{DelegateResponse, PaymentSummary, ProviderInfo, StreamEvent, StreamSink};
pub use error::{error_body, DelegateError, Unserved};

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::protocol::ChatMessage;

/// Why a delegation that would spend USDC is refused to a caller without the API token.
pub const SPEND_NEEDS_TOKEN: &str = "payments are on and this delegation would spend USDC: send the API token (Authorization: Bearer; `edgent init` writes it to EDGENT_API_TOKEN_PATH); a caller without it may do unpaid work only";

/// Shortest and longest `timeout_ms` an agent may ask for.
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// What an agent asks for at `POST /delegate`, and the argument of MCP's `delegate` tool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegateRequest {
    /// The model to run, as Ollama names it (e.g. `llama3.2:1b`); `list_models` shows
    /// which models the mesh serves. `name@sha256:<hex>` pins it to a digest, as
    /// `model_digest` does.
    pub model: String,
    /// The digest the provider's model must have, the sha256 of its weights (the GGUF file;
    /// `sha256:<hex>` or the hex alone): providers whose model has another digest, or none
    /// they told, are never chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// The prompt. Give either `prompt` or `messages`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// A chat, oldest message first. Give either `prompt` or `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// Generation options for the provider's backend, as Ollama takes them
    /// (`temperature`, `seed`, `num_predict`, `num_ctx`, `stop`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// The most you will pay for this job, in USDC (e.g. `0.05`), a number or a string.
    /// Providers asking more are not used. Default: the daemon's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<MaxPrice>,
    /// Paid jobs: answer once the proof checks (`verified`, the default; settlement goes
    /// on in the background) or once the payment's release is confirmed on chain
    /// (`settled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitFor>,
    /// How long to wait for the answer, in milliseconds. Default: the daemon's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Free memory the provider must have, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_mb: Option<u64>,
    /// `POST /delegate` only: answer NDJSON, one `{"delta": "..."}` line per piece of output
    /// as the provider generates it, then the whole answer (or `{error, detail}`) as the
    /// last line. (Not in MCP's schema: the tool streams on its own.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub stream: Option<bool>,
    /// Streamed delegations (the front door): where the output goes as it is generated.
    #[serde(skip)]
    pub sink: Option<StreamSink>,
    /// Set by the door for a caller without the API token ([`crate::guard::Caller::Local`]):
    /// refused ([`DelegateError::Unauthorized`]) when the delegation would be paid.
    #[serde(skip)]
    pub unpaid_only: bool,
}

/// When a paid delegation answers: `verified` or `settled` (an empty string is
/// `verified`, the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WaitFor {
    /// Once the provider's proof checks; settlement goes on in the background.
    #[default]
    Verified,
    /// Once the release of the payment is confirmed on chain.
    Settled,
}

impl<'de> Deserialize<'de> for WaitFor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim() {
            "" | "verified" => Ok(WaitFor::Verified),
            "settled" => Ok(WaitFor::Settled),
            other => Err(serde::de::Error::custom(format!(
                "wait must be verified or settled, got {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// The most an agent pays, USDC base units; written as a USDC amount, a number (`0.05`)
/// or a string (`"0.05"`), at most 6 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPrice(pub u64);

impl MaxPrice {
    /// USDC base units.
    pub fn units(&self) -> u64 {
        self.0
    }

    /// Parse a USDC amount (`0.05`).
    pub fn parse(s: &str) -> Result<MaxPrice, String> {
        crate::config::parse_usdc(s)
            .map(MaxPrice)
            .map_err(|e| format!("max_price: {e}"))
    }
}

impl Serialize for MaxPrice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::config::format_usdc(self.0))
    }
}

impl<'de> Deserialize<'de> for MaxPrice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Usdc;
        impl serde::de::Visitor<'_> for Usdc {
            type Value = MaxPrice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("max_price must be a USDC amount such as 0.05")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaxPrice, E> {
                MaxPrice::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MaxPrice, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MaxPrice, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MaxPrice, E> {
                self.visit_str(
                    &serde_json::Number::from_f64(v)
                        .map_or_else(|| v.to_string(), |n| n.to_string()),
                )
            }
        }
        d.deserialize_any(Usdc)
    }
}

/// How [`MaxPrice`] is written, for its JSON schema.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(untagged)]
enum MaxPriceSchema {
    /// `0.05`
    Number(f64),
    /// `"0.05"`
    Text(String),
}

impl JsonSchema for MaxPrice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Price".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        MaxPriceSchema::json_schema(generator)
    }
}

/// A [`DelegateRequest`] whose fields were checked and given their defaults.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Model name, trimmed, without its pin.
    pub model: String,
    /// The digest the model is pinned to (wire form), if any.
    pub model_digest: Option<String>,
    /// The prompt (not empty).
    pub prompt: String,
    /// Backend options.
    pub options: Option<Map<String, Value>>,
    /// Highest price, USDC base units.
    pub max_price: u64,
    /// How long the agent waits.
    pub timeout: Duration,
    /// Free memory the provider must have, MiB.
    pub min_memory_mb: u64,
    /// When a paid delegation answers.
    pub wait: WaitFor,
    /// The conversation, for a chat.
    pub messages: Option<Vec<ChatMessage>>,
    /// Where a streamed delegation's output goes.
    pub sink: Option<StreamSink>,
    /// Refused when the delegation would be paid (a caller without the API token).
    pub unpaid_only: bool,
}

impl DelegateRequest {
    /// Check every field and fill in the node's defaults.
    pub fn validate(&self, config: &Config) -> Result<ValidRequest, DelegateError> {
        let pin = crate::protocol::parse_pin(&self.model)
            .map_err(|e| DelegateError::BadInput(format!("model: {e}")))?;
        let model = pin.name;
        crate::protocol::check_model(&model)
            .map_err(|e| DelegateError::BadInput(format!("model: {e}")))?;
        let field = match &self.model_digest {
            Some(d) => Some(
                crate::protocol::parse_digest(d)
                    .map_err(|e| DelegateError::BadInput(format!("model_digest: {e}")))?,
            ),
            None => None,
        };
        let model_digest = match (pin.digest, field) {
            (Some(a), Some(b)) if a != b => {
                return Err(DelegateError::BadInput(
                    "model is pinned to one digest and model_digest names another".into(),
                ))
            }
            (a, b) => a.or(b),
        };
        let chat = self.messages.as_ref().is_some_and(|m| !m.is_empty());
        if self.prompt.is_empty() && !chat {
            return Err(DelegateError::BadInput("prompt must not be empty".into()));
        }
        let timeout = match self.timeout_ms {
            Some(ms) if !TIMEOUT_RANGE_MS.contains(&ms) => {
                return Err(DelegateError::BadInput(format!(
                    "timeout_ms must be between {} and {}",
                    TIMEOUT_RANGE_MS.start(),
                    TIMEOUT_RANGE_MS.end()
                )))
            }
            Some(ms) => Duration::from_millis(ms),
            None => config.delegation.default_timeout,
        };
        // An agent (an LLM, a page) sets `max_price`: the node's ceiling bounds it
        // (docs/threat-model.md, line 11).
        let ceiling = config.delegation.max_price_ceiling_units;
        let max_price = self
            .max_price
            .map_or(config.delegation.default_max_price_units, |p| p.units());
        if max_price > ceiling {
            return Err(DelegateError::BadInput(format!(
                "max_price {} USDC is above this node's ceiling of {} USDC (MAX_PRICE_CEILING_USDC)",
                crate::config::format_usdc(max_price),
                crate::config::format_usdc(ceiling)
            )));
        }
        Ok(ValidRequest {
            model,
            model_digest,
            prompt: self.prompt.clone(),
            options: self.options.clone(),
            max_price,
            timeout,
            min_memory_mb: self.min_memory_mb.unwrap_or(0),
            wait: self.wait.unwrap_or_default(),
            messages: self.messages.clone().filter(|m| !m.is_empty()),
            sink: self.sink.clone(),
            unpaid_only: self.unpaid_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_price(v: Value) -> Result<u64, serde_json::Error> {
        serde_json::from_value::<MaxPrice>(v).map(|p| p.units())
    }

    #[test]
    fn max_price_parses_numbers_and_strings() {
        assert_eq!(max_price(serde_json::json!(0.05)).unwrap(), 50_000);
        assert_eq!(max_price(serde_json::json!("1")).unwrap(), 1_000_000);
        assert!(max_price(serde_json::json!(true)).is_err());
        assert!(max_price(serde_json::json!(-1)).is_err());
    }

    #[test]
    fn wait_and_max_price_are_parsed_with_the_body() {
        let r: DelegateRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "prompt": "p", "max_price": "0.05", "wait": " settled "
        }))
        .unwrap();
        assert_eq!(r.max_price, Some(MaxPrice(50_000)));
        assert_eq!(r.wait, Some(WaitFor::Settled));
        let r: DelegateRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "wait": ""})).unwrap();
        assert_eq!(r.wait, Some(WaitFor::Verified));
        let e = serde_json::from_value::<DelegateRequest>(
            serde_json::json!({"model": "m", "prompt": "p", "wait": "later"}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("wait must be verified or settled"),
            "{e}"
        );
        let e = serde_json::from_value::<DelegateRequest>(
            serde_json::json!({"model": "m", "prompt": "p", "max_price": "lots"}),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("max_price: "), "{e}");
    }

    #[test]
    fn a_request_is_sent_as_it_was_written() {
        let body = serde_json::json!({"model": "m", "prompt": "p", "max_price": "0.05",
            "wait": "settled", "timeout_ms": 5});
        let r: DelegateRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), body);
        let r = DelegateRequest {
            model: "m".into(),
            messages: Some(vec![ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                ..Default::default()
            }]),
            max_price: Some(MaxPrice(500_000)),
            ..DelegateRequest::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["messages"][0]["content"], "hi");
        assert_eq!(v["max_price"], "0.5");
        assert!(v.get("prompt").is_none() && v.get("stream").is_none());
    }

    #[test]
    fn the_schema_asks_for_the_model_only() {
        let s = serde_json::to_value(schemars::schema_for!(DelegateRequest)).unwrap();
        assert_eq!(s["required"], serde_json::json!(["model"]), "{s}");
        for field in [
            "model",
            "prompt",
            "messages",
            "options",
            "max_price",
            "wait",
            "timeout_ms",
        ] {
            assert!(s["properties"][field].is_object(), "{field}: {s}");
        }
        assert!(s["properties"].get("stream").is_none());
        assert!(s["properties"].get("sink").is_none());
    }
}
