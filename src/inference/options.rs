//! The backend options a remote task may set (threat model line 29): an allow-list of
//! sampling options (and the tools, JSON format, `keep_alive` and embedding settings the
//! front door carries in them), each clamped to a sane range or size, so that one peer cannot generate
//! without end (`num_predict: -1`) or make the backend reload its model (`num_ctx`,
//! `num_gpu`, ... change how a model is loaded in Ollama). An option not on the list is
//! dropped, with a log line; the task still runs with the rest.
//!
//! The ranges follow Ollama's documented parameters (`docs/modelfile.md`, "Valid
//! Parameters and Values", and the API's `options`).

use serde_json::{Map, Value};

/// Most tokens a remote task may ask for (`num_predict`); `-1` (no limit), `-2` (fill
/// the context) and anything above become this.
pub const MAX_NUM_PREDICT: i64 = 4_096;

/// Most `stop` sequences, and the longest one in bytes.
pub const MAX_STOP: (usize, usize) = (8, 128);

/// Most tools a remote task may offer the model, and the largest their JSON (or a
/// `format` schema's) may be, in bytes.
pub const MAX_TOOLS: (usize, usize) = (64, 256 * 1024);

/// Longest a remote task may ask the provider's Ollama to keep its model loaded
/// (`keep_alive`), seconds: a peer cannot pin a model in memory for ever (`-1`).
pub const MAX_KEEP_ALIVE_S: i64 = 3_600;

/// The options kept, with their range (`None`: any integer, for `seed`).
const NUMERIC: &[(&str, Option<(f64, f64)>)] = &[
    ("temperature", Some((0.0, 2.0))),
    ("top_k", Some((1.0, 1_000.0))),
    ("top_p", Some((0.0, 1.0))),
    ("min_p", Some((0.0, 1.0))),
    ("typical_p", Some((0.0, 1.0))),
    ("repeat_penalty", Some((0.0, 2.0))),
    ("repeat_last_n", Some((-1.0, 4_096.0))),
    ("presence_penalty", Some((-2.0, 2.0))),
    ("frequency_penalty", Some((-2.0, 2.0))),
    ("seed", None),
];

/// A remote task's options as this provider runs them, and the names it dropped.
pub fn sanitize(opts: Option<&Map<String, Value>>) -> (Option<Map<String, Value>>, Vec<String>) {
    let Some(opts) = opts else {
        return (None, Vec::new());
    };
    let mut kept = Map::new();
    let mut dropped = Vec::new();
    for (k, v) in opts {
        let value = match k.as_str() {
            "num_predict" => v.as_i64().map(|n| {
                let n = if n <= 0 {
                    MAX_NUM_PREDICT
                } else {
                    n.min(MAX_NUM_PREDICT)
                };
                Value::from(n)
            }),
            "stop" => stops(v),
            "format" => match v {
                Value::String(s) if s == "json" => Some(v.clone()),
                Value::Object(_) if json_len(v) <= MAX_TOOLS.1 => Some(v.clone()),
                _ => None,
            },
            "tools" => match v {
                Value::Array(a)
                    if a.len() <= MAX_TOOLS.0
                        && a.iter().all(Value::is_object)
                        && json_len(v) <= MAX_TOOLS.1 =>
                {
                    Some(v.clone())
                }
                _ => None,
            },
            "keep_alive" => keep_alive(v).map(Value::from),
            // An embedding task ([`super::embed`]) and its two settings.
            "embed" => match v {
                Value::String(s) if ["embed", "embeddings"].contains(&s.as_str()) => {
                    Some(v.clone())
                }
                _ => None,
            },
            "truncate" => v.is_boolean().then(|| v.clone()),
            "dimensions" => v
                .as_u64()
                .filter(|d| (1..=65_536).contains(d))
                .map(Value::from),
            // Ollama's `think`: on, off, or a level (the front door carries it here).
            "think" => match v {
                Value::Bool(_) => Some(v.clone()),
                Value::String(s) if ["low", "medium", "high"].contains(&s.as_str()) => {
                    Some(v.clone())
                }
                _ => None,
            },
            name => NUMERIC
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, range)| clamp(v, *range)),
        };
        match value {
            Some(v) => {
                kept.insert(k.clone(), v);
            }
            None => dropped.push(k.clone()),
        }
    }
    (Some(kept), dropped)
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// `keep_alive` as seconds within `0..=MAX_KEEP_ALIVE_S`: a number of seconds, or Ollama's
/// duration text (`"90s"`, `"5m"`, `"1h"`); a negative one (for ever) becomes the most.
fn keep_alive(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite())?,
        Value::String(s) => {
            let s = s.trim();
            let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
                Some(i) => s.split_at(i),
                None => (s, "s"),
            };
            let scale = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3_600.0,
                _ => return None,
            };
            num.parse::<f64>().ok().filter(|x| x.is_finite())? * scale
        }
        _ => return None,
    };
    let max = MAX_KEEP_ALIVE_S as f64;
    Some(if secs < 0.0 { max } else { secs.min(max) } as i64)
}

fn clamp(v: &Value, range: Option<(f64, f64)>) -> Option<Value> {
    match range {
        None => v.as_i64().map(Value::from),
        Some((lo, hi)) => {
            let x = v.as_f64().filter(|x| x.is_finite())?;
            let x = x.clamp(lo, hi);
            Some(if v.is_i64() || v.is_u64() {
                Value::from(x as i64)
            } else {
                Value::from(x)
            })
        }
    }
}

fn stops(v: &Value) -> Option<Value> {
    let ok = |s: &str| !s.is_empty() && s.len() <= MAX_STOP.1;
    match v {
        Value::String(s) if ok(s) => Some(v.clone()),
        Value::Array(a) => Some(Value::Array(
            a.iter()
                .filter(|x| x.as_str().is_some_and(ok))
                .take(MAX_STOP.0)
                .cloned()
                .collect(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_allow_listed_and_clamped() {
        let o = json!({"num_predict": -1, "num_ctx": 131072, "num_gpu": 99, "temperature": 9.5,
            "top_k": 40, "seed": 7, "stop": ["a", "", "b"], "use_mmap": false, "top_p": "x",
            "think": true, "format": "xml"});
        let (kept, mut dropped) = sanitize(o.as_object());
        dropped.sort();
        assert_eq!(
            Value::Object(kept.unwrap()),
            json!({"num_predict": MAX_NUM_PREDICT, "temperature": 2.0, "top_k": 40, "seed": 7,
                "stop": ["a", "b"], "think": true})
        );
        assert_eq!(
            dropped,
            vec!["format", "num_ctx", "num_gpu", "top_p", "use_mmap"]
        );
        let tool = json!({"type": "function", "function": {"name": "f"}});
        let o = json!({"tools": [tool], "keep_alive": "-1", "embed": "embed", "dimensions": 8,
            "truncate": true, "format": {"type": "object"}});
        let (kept, dropped) = sanitize(o.as_object());
        assert!(dropped.is_empty(), "{dropped:?}");
        let kept = kept.unwrap();
        assert_eq!(
            kept["keep_alive"],
            json!(MAX_KEEP_ALIVE_S),
            "never for ever"
        );
        assert_eq!(kept["tools"], json!([tool]));
        let too_many = vec![tool.clone(); MAX_TOOLS.0 + 1];
        let big = json!({"type": "object", "description": "x".repeat(MAX_TOOLS.1)});
        let o = json!({"tools": too_many, "format": big, "keep_alive": "forever",
            "embed": "generate", "dimensions": 0});
        let (_, mut dropped) = sanitize(o.as_object());
        dropped.sort();
        assert_eq!(
            dropped,
            ["dimensions", "embed", "format", "keep_alive", "tools"]
        );
        assert_eq!(keep_alive(&json!("5m")), Some(300));
        assert_eq!(keep_alive(&json!(10)), Some(10));
        let (kept, _) = sanitize(json!({"num_predict": 100000}).as_object());
        assert_eq!(kept.unwrap()["num_predict"], json!(MAX_NUM_PREDICT));
        assert_eq!(sanitize(None), (None, vec![]));
    }
}
