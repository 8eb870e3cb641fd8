//! `/status` and `/jobs` as a person reads them in a terminal: a few aligned lines, ids
//! shortened, amounts without trailing zeros. `--json` prints the API's answer instead.

use serde_json::Value;

use super::delegate::short;

/// A decimal amount as people read it: no trailing zeros (`10000.000000000000000000` is
/// `10000`), at most `places` decimals.
pub fn amount(text: &str, places: usize) -> String {
    let Some((whole, frac)) = text.split_once('.') else {
        return text.to_string();
    };
    let frac: String = frac.chars().take(places).collect();
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{frac}")
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// A string value between `before` and `after`; nothing when it is not a string.
fn framed(v: &Value, before: &str, after: &str) -> String {
    v.as_str()
        .map(|t| format!("{before}{t}{after}"))
        .unwrap_or_default()
}

fn list(v: &Value) -> String {
    let names: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// `/status` in a few lines: the node, AXL, payments, models, the mesh and the jobs.
pub fn status(st: &Value) -> String {
    let mut out = Vec::new();
    let ens = framed(&st["ens"], " (", ")");
    out.push(format!(
        "node      {}{ens}  role {}  up {} s  v{}",
        short(s(st, "node_id")),
        s(st, "role"),
        st["uptime_s"].as_u64().unwrap_or(0),
        s(st, "version"),
    ));
    let peers = st["peers"].as_array().map_or(0, Vec::len);
    let axl_error = framed(&st["axl_error"], "  error: ", "");
    out.push(format!(
        "axl       {}  {peers} peers{axl_error}",
        s(&st["axl"], "state")
    ));
    let pay = &st["payments"];
    let payments = if pay["active"].as_bool() == Some(true) {
        let bal = &pay["balances"];
        let money = if bal.is_object() {
            format!(
                "  USDC {}  ETH {}",
                amount(s(bal, "usdc"), 6),
                amount(s(bal, "eth"), 6)
            )
        } else {
            String::new()
        };
        format!(
            "on ({})  wallet {}{money}",
            s(pay, "mode"),
            s(pay, "wallet")
        )
    } else {
        let why = framed(&pay["reason"], ": ", "");
        format!("off ({}){why}", s(pay, "mode"))
    };
    out.push(format!("payments  {payments}"));
    out.push(format!(
        "models    {}  (price {} USDC)",
        list(&st["models"]),
        s(st, "price_usdc")
    ));
    out.push(format!(
        "mesh      {} providers, {} known nodes, models: {}",
        st["mesh_providers"].as_array().map_or(0, Vec::len),
        st["known_nodes"].as_u64().unwrap_or(0),
        list(&st["mesh_models"]),
    ));
    out.push(format!(
        "jobs      {} running here",
        st["active_jobs"].as_u64().unwrap_or(0)
    ));
    out.join("\n")
}

/// `/jobs` as a table: one line a job, newest first as the API lists them; a spot check's
/// paid run (`check_of`) shows `check` as its side, not the agent's `requester`.
pub fn jobs(answer: &Value) -> String {
    let rows = answer["jobs"]
        .as_array()
        .or_else(|| answer.as_array())
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        return "no jobs".into();
    }
    let mut out = vec![format!(
        "{:<8}  {:<9}  {:<10}  {:<20}  {:<8}  {:>8}  {}",
        "JOB", "SIDE", "STATE", "MODEL", "PEER", "MS", "PAYMENT / ERROR"
    )];
    for j in rows {
        let peer = j["peer"]
            .as_str()
            .or_else(|| j["provider"].as_str())
            .map(short)
            .unwrap_or_else(|| "-".into());
        let ms = j["timings"]["total_ms"]
            .as_u64()
            .map_or("-".to_string(), |m| m.to_string());
        let money = match (j["payment"]["status"].as_str(), j["error_code"].as_str()) {
            (Some(p), Some(e)) => format!("{p} / {e}"),
            (Some(p), None) => p.to_string(),
            (None, Some(e)) => e.to_string(),
            (None, None) => "-".to_string(),
        };
        let model: String = s(&j, "model").chars().take(20).collect();
        let side = if j["check_of"].is_string() {
            "check"
        } else {
            s(&j, "side")
        };
        out.push(format!(
            "{:<8}  {:<9}  {:<10}  {:<20}  {:<8}  {:>8}  {money}",
            short(s(&j, "job_id")),
            side,
            s(&j, "state"),
            model,
            peer,
            ms,
        ));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_read_as_people_read_them() {
        assert_eq!(amount("10000.000000000000000000", 6), "10000");
        assert_eq!(amount("12.500000", 6), "12.5");
        assert_eq!(amount("0.000000123", 6), "0");
        assert_eq!(amount("0.1234567", 6), "0.123456");
        assert_eq!(amount("7", 6), "7");
    }

    #[test]
    fn a_job_table_has_a_line_a_job() {
        let t = jobs(&json!({"jobs": [
            {"job_id": "aabbccddeeff", "side": "requester", "state": "completed",
             "model": "tinyllama", "peer": "0123456789", "timings": {"total_ms": 42},
             "payment": {"status": "released"}},
            {"job_id": "1122334455", "side": "provider", "state": "failed",
             "model": "m", "error_code": "busy"},
            {"job_id": "99887766554433", "side": "requester", "state": "completed",
             "model": "m", "check_of": "aabbccddeeff", "payment": {"status": "released"}},
        ]}));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[1].starts_with("aabbccdd  requester  completed"),
            "{t}"
        );
        assert!(lines[1].ends_with("42  released"), "{t}");
        assert!(lines[2].ends_with("busy"), "{t}");
        // A spot check's paid run reads as a check, not as one of the agent's requests.
        assert!(
            lines[3].starts_with("99887766  check      completed"),
            "{t}"
        );
        assert_eq!(jobs(&json!({"jobs": []})), "no jobs");
    }
}
