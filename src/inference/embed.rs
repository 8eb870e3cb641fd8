//! Embeddings as a task: the front door's `/api/embed`, `/api/embeddings` and
//! `/v1/embeddings` offload as a task whose `options` carry [`EMBED`] (the endpoint the
//! provider's Ollama runs: `embed`, or `embeddings` for the older, unnormalised one), whose
//! prompt is the input (a JSON array of strings) and whose output is the vectors (a JSON
//! array of arrays of numbers). So the receipt binds all three as it binds any task (the
//! options, the prompt hash, the output hash), and a paid embedding is proved and paid as
//! a generation is.

use serde_json::{json, Value};

use super::{GenerateOutput, GenerateRequest, InferenceError};

/// The options key that makes a task an embedding, with the Ollama endpoint as its value.
pub const EMBED: &str = "embed";

/// Most inputs in one embedding task.
pub const MAX_INPUTS: usize = 256;

/// Which embedding endpoint a task asks for (`embed` or `embeddings`), when it is one.
pub fn kind(req: &GenerateRequest) -> Option<&str> {
    req.options
        .as_ref()?
        .get(EMBED)?
        .as_str()
        .filter(|k| ["embed", "embeddings"].contains(k))
}

/// The inputs of an embedding task: its prompt, a JSON array of 1..=[`MAX_INPUTS`] strings.
pub fn inputs(prompt: &str) -> Result<Vec<String>, String> {
    let v: Vec<String> = serde_json::from_str(prompt)
        .map_err(|e| format!("an embedding's input must be a list of strings: {e}"))?;
    if v.is_empty() || v.len() > MAX_INPUTS {
        return Err(format!(
            "an embedding takes 1 to {MAX_INPUTS} inputs, not {}",
            v.len()
        ));
    }
    Ok(v)
}

/// The vectors of an embedding task's output: a JSON array of `n` arrays of numbers, all of
/// one length (a provider that sends anything else has failed).
pub fn vectors(output: &str, n: usize) -> Result<Vec<Vec<Value>>, String> {
    let v: Vec<Vec<Value>> =
        serde_json::from_str(output).map_err(|e| format!("not a list of vectors: {e}"))?;
    if v.len() != n {
        return Err(format!("{} vectors for {n} inputs", v.len()));
    }
    let dim = v.first().map_or(0, Vec::len);
    if dim == 0
        || v.iter()
            .any(|e| e.len() != dim || !e.iter().all(Value::is_number))
    {
        return Err("the vectors are not all numbers of one length".into());
    }
    Ok(v)
}

/// An Ollama at `base` through `http`, with the most bytes an answer may have.
pub(super) struct Ollama<'a> {
    /// The HTTP client.
    pub http: &'a reqwest::Client,
    /// Its base URL.
    pub base: &'a str,
    /// The most bytes an answer may have.
    pub limit: usize,
}

impl Ollama<'_> {
    /// Run an embedding task on Ollama's `/api/embed` (or `/api/embeddings`, one input
    /// at a time), the vectors as the output's JSON.
    pub(super) async fn embed(
        &self,
        req: &GenerateRequest,
        kind: &str,
    ) -> Result<GenerateOutput, InferenceError> {
        let input = inputs(&req.prompt).map_err(|message| InferenceError::Rejected {
            status: 400,
            message,
        })?;
        let opts = req.options.clone().unwrap_or_default();
        let mut vectors = Vec::with_capacity(input.len());
        let mut prompt_tokens = None;
        if kind == "embed" {
            let mut body = json!({"model": req.model, "input": input});
            for key in ["truncate", "dimensions", "keep_alive"] {
                if let Some(v) = opts.get(key) {
                    body[key] = v.clone();
                }
            }
            let v = self.post_json("/api/embed", &body).await?;
            prompt_tokens = v.get("prompt_eval_count").and_then(Value::as_u64);
            match v.get("embeddings") {
                Some(Value::Array(a)) => vectors.extend(a.iter().cloned()),
                _ => return Err(InferenceError::BadResponse("no embeddings".into())),
            }
        } else {
            for prompt in &input {
                let mut body = json!({"model": req.model, "prompt": prompt});
                if let Some(v) = opts.get("keep_alive") {
                    body["keep_alive"] = v.clone();
                }
                let v = self.post_json("/api/embeddings", &body).await?;
                match v.get("embedding") {
                    Some(e @ Value::Array(_)) => vectors.push(e.clone()),
                    _ => return Err(InferenceError::BadResponse("no embedding".into())),
                }
            }
        }
        let text = serde_json::to_string(&vectors).unwrap_or_default();
        self::vectors(&text, input.len())
            .map_err(|e| InferenceError::BadResponse(format!("Ollama's embeddings: {e}")))?;
        Ok(GenerateOutput {
            text,
            prompt_tokens,
            ..GenerateOutput::default()
        })
    }

    /// POST `body` to `path` and read the JSON answer, at most `limit` bytes.
    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, InferenceError> {
        use futures_util::StreamExt;
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| InferenceError::Unreachable(format!("Ollama at {}: {e}", self.base)))?;
        let status = resp.status();
        let mut buf = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| InferenceError::Backend(format!("{path}: {e}")))?;
            buf.extend_from_slice(&chunk);
            if buf.len() > self.limit {
                return Err(InferenceError::BadResponse(format!(
                    "{path}: the answer exceeds {} bytes",
                    self.limit
                )));
            }
        }
        if !status.is_success() {
            return Err(InferenceError::from_status(status, super::error_text(&buf)));
        }
        serde_json::from_slice(&buf)
            .map_err(|e| InferenceError::BadResponse(format!("{path}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_vectors_are_checked() {
        assert_eq!(inputs(r#"["a","b"]"#).unwrap(), ["a", "b"]);
        assert!(inputs("[]").is_err());
        assert!(inputs("a").is_err());
        let many = serde_json::to_string(&vec!["x"; MAX_INPUTS + 1]).unwrap();
        assert!(inputs(&many).is_err());
        assert_eq!(vectors("[[0.5,1],[2,3]]", 2).unwrap().len(), 2);
        assert!(vectors("[[0.5,1],[2]]", 2).is_err(), "ragged");
        assert!(vectors("[[0.5,1]]", 2).is_err(), "too few");
        assert!(vectors(r#"[["x"]]"#, 1).is_err(), "not numbers");
        assert!(vectors("[[]]", 1).is_err(), "empty");
    }
}
