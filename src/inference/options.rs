//! The backend options a remote task may set (threat model line 29): an allow-list of
//! sampling options, each clamped to a sane range, so that one peer cannot generate
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
                Value::Object(_) => Some(v.clone()),
                _ => None,
            },
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
        let (kept, _) = sanitize(json!({"num_predict": 100000}).as_object());
        assert_eq!(kept.unwrap()["num_predict"], json!(MAX_NUM_PREDICT));
        assert_eq!(sanitize(None), (None, vec![]));
    }
}
