//! Offload before the out-of-memory (`EDGENT_OFFLOAD=predict`): before a generation goes
//! to the local Ollama, estimate what the model needs against what the machine has, and
//! send it to the mesh at once when it will not fit, or when Ollama already runs it with
//! layers spilled from video memory to the CPU.
//!
//! - **Needed**: the model's weights (its size in `/api/tags`) plus its KV cache for the
//!   context it will run with (`num_ctx`, else Ollama's default of 4096 on a machine
//!   without a large GPU: layers × context × KV heads × (key + value width) × 2 bytes, from
//!   `/api/show`'s `model_info`), plus [`OVERHEAD_PCT`] of the weights and [`OVERHEAD_FIXED`]
//!   for the compute graph. A rough estimate, on the safe side of Ollama's own.
//! - **Available**: `EDGENT_LOCAL_MEMORY_MB` when set (the memory the local Ollama may use:
//!   its own limit, or a Jetson's share of its unified memory), else `MemAvailable` of
//!   `/proc/meminfo`, bounded by this process's cgroup (v2 `memory.max` − `memory.current`,
//!   or v1's `limit_in_bytes` − `usage_in_bytes`).
//! - **Already loaded**: a model in `/api/ps` fits (it is loaded), unless part of it is in
//!   video memory and part is not (`0 < size_vram < size`): spilled, it runs many times
//!   slower, so it goes to the mesh.
//!
//! When anything is unknown (Ollama does not answer, the model is not there, `model_info`
//! lacks a field), nothing is predicted and the request goes to the local Ollama as with
//! `oom`, whose failure still sends it to the mesh.

use std::time::Duration;

use serde_json::{json, Value};

use crate::inference::weights::{json_answer, tags_entry};

/// The share of the weights added for buffers, percent.
pub const OVERHEAD_PCT: u64 = 10;
/// Bytes added for the compute graph and the runner.
pub const OVERHEAD_FIXED: u64 = 64 << 20;
/// Ollama's default context on a machine without a large GPU.
pub const DEFAULT_NUM_CTX: u64 = 4096;
/// How long the prediction may wait for the local Ollama.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the prediction sends a request to the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The model needs more than the machine has (bytes).
    TooBig {
        /// The estimate.
        need: u64,
        /// What is available.
        have: u64,
    },
    /// Ollama runs it with layers spilled to the CPU (bytes in video memory, in all).
    Spilled {
        /// `size_vram`.
        vram: u64,
        /// `size`.
        size: u64,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: &u64| b >> 20;
        match self {
            Verdict::TooBig { need, have } => write!(
                f,
                "predicted out of memory: the model needs about {} MiB, the local Ollama has {} MiB",
                mib(need),
                mib(have)
            ),
            Verdict::Spilled { vram, size } => write!(
                f,
                "the local Ollama runs the model spilled to the CPU ({} of {} MiB in video memory)",
                mib(vram),
                mib(size)
            ),
        }
    }
}

/// The shape of a model that decides its KV cache, from `/api/show`'s `model_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Layers (`<arch>.block_count`).
    pub layers: u64,
    /// KV heads (`<arch>.attention.head_count_kv`, else `head_count`).
    pub kv_heads: u64,
    /// Key plus value width per head.
    pub kv_width: u64,
    /// The longest context it takes (`<arch>.context_length`).
    pub max_ctx: u64,
}

impl Shape {
    /// Reads it from `model_info`; `None` when a field is missing.
    pub fn from_model_info(info: &Value) -> Option<Shape> {
        let arch = info.get("general.architecture")?.as_str()?;
        let num = |k: &str| info.get(format!("{arch}.{k}")).and_then(Value::as_u64);
        let heads = num("attention.head_count")?;
        let head_dim = num("embedding_length")? / heads.max(1);
        let key = num("attention.key_length").unwrap_or(head_dim);
        let value = num("attention.value_length").unwrap_or(head_dim);
        Some(Shape {
            layers: num("block_count")?,
            kv_heads: num("attention.head_count_kv").unwrap_or(heads),
            kv_width: key + value,
            max_ctx: num("context_length").unwrap_or(u64::MAX),
        })
    }

    /// Bytes of its KV cache at `num_ctx` (f16).
    pub fn kv_bytes(&self, num_ctx: u64) -> u64 {
        num_ctx
            .min(self.max_ctx)
            .saturating_mul(self.layers)
            .saturating_mul(self.kv_heads)
            .saturating_mul(self.kv_width)
            .saturating_mul(2)
    }
}

/// The estimate for weights of `weights` bytes and a KV cache of `kv` bytes.
pub fn needed(weights: u64, kv: u64) -> u64 {
    weights
        .saturating_add(weights / 100 * OVERHEAD_PCT)
        .saturating_add(kv)
        .saturating_add(OVERHEAD_FIXED)
}

/// What the machine has for the local Ollama: `configured` when set, else `MemAvailable`
/// bounded by this process's cgroup; `None` when unknown.
pub fn available(configured: Option<u64>) -> Option<u64> {
    if configured.is_some() {
        return configured;
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let free = mem_available(&meminfo)?;
    Some(cgroup_room().map_or(free, |room| room.min(free)))
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The room left under this process's memory cgroup limit, when it has one.
fn cgroup_room() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let read = |p: String| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (fstype, wants) = if id == "0" {
            ("cgroup2", "")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("cgroup", "memory")
        } else {
            continue;
        };
        let Some(mount) = mounts.lines().find_map(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            let fits = f.get(2) == Some(&fstype)
                && (wants.is_empty() || f.get(3).is_some_and(|o| o.split(',').any(|x| x == wants)));
            fits.then(|| f.get(1).map(|s| s.to_string())).flatten()
        }) else {
            continue;
        };
        let dir = format!("{mount}{}", path.trim_end_matches('/'));
        let (limit, used) = if id == "0" {
            (
                read(format!("{dir}/memory.max")),
                read(format!("{dir}/memory.current")),
            )
        } else {
            (
                read(format!("{dir}/memory.limit_in_bytes")),
                read(format!("{dir}/memory.usage_in_bytes")),
            )
        };
        // v1 writes "no limit" as a number near 2^63; v2 as "max" (which does not parse).
        if let (Some(limit), Some(used)) = (limit, used) {
            if limit < 1 << 60 {
                return Some(limit.saturating_sub(used));
            }
        }
    }
    None
}

/// Asks the local Ollama at `base` about `model` and predicts: `Some` when the request
/// should go to the mesh at once, `None` when it fits or nothing could be predicted.
pub async fn predict(
    http: &reqwest::Client,
    base: &str,
    model: &str,
    num_ctx: Option<u64>,
    configured: Option<u64>,
) -> Option<Verdict> {
    let same = |m: &Value| {
        m["name"]
            .as_str()
            .is_some_and(|n| crate::inference::model_matches(model, n))
            || m["model"]
                .as_str()
                .is_some_and(|n| crate::inference::model_matches(model, n))
    };
    let ps = json_answer(http.get(format!("{base}/api/ps")).timeout(ASK_TIMEOUT)).await;
    if let Some(ps) = ps {
        if let Some(m) = ps["models"]
            .as_array()
            .and_then(|a| a.iter().find(|m| same(m)))
        {
            let (size, vram) = (m["size"].as_u64()?, m["size_vram"].as_u64().unwrap_or(0));
            return (vram > 0 && vram < size).then_some(Verdict::Spilled { vram, size });
        }
    }
    let entry = tags_entry(http, base, model, ASK_TIMEOUT).await?;
    let weights = entry["size"].as_u64()?;
    let show = json_answer(
        http.post(format!("{base}/api/show"))
            .timeout(ASK_TIMEOUT)
            .json(&json!({"model": model})),
    )
    .await?;
    let shape = Shape::from_model_info(show.get("model_info")?)?;
    let need = needed(weights, shape.kv_bytes(num_ctx.unwrap_or(DEFAULT_NUM_CTX)));
    let have = available(configured)?;
    (need > have).then_some(Verdict::TooBig { need, have })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gemma 3 270M's `model_info`, as the real Ollama v0.17.4's `/api/show` gives it.
    fn gemma_info() -> Value {
        json!({
            "general.architecture": "gemma3",
            "gemma3.block_count": 18,
            "gemma3.attention.head_count": 4,
            "gemma3.attention.head_count_kv": 1,
            "gemma3.attention.key_length": 256,
            "gemma3.attention.value_length": 256,
            "gemma3.embedding_length": 640,
            "gemma3.context_length": 32768,
        })
    }

    #[test]
    fn the_kv_cache_grows_with_the_context_up_to_the_models_longest() {
        let s = Shape::from_model_info(&gemma_info()).expect("shape");
        assert_eq!(s.layers, 18);
        assert_eq!(s.kv_heads, 1);
        assert_eq!(s.kv_width, 512);
        // 4096 × 18 layers × 1 head × 512 × 2 bytes = 72 MiB.
        assert_eq!(s.kv_bytes(4096), 75_497_472);
        assert_eq!(s.kv_bytes(1 << 30), s.kv_bytes(32768));
    }

    #[test]
    fn a_missing_field_predicts_nothing() {
        let mut info = gemma_info();
        info.as_object_mut().map(|o| o.remove("gemma3.block_count"));
        assert_eq!(Shape::from_model_info(&info), None);
    }

    #[test]
    fn the_estimate_adds_buffers_and_the_graph() {
        // Gemma 3 270M Q4_K_M: 253,113,024 bytes of weights, 72 MiB of KV at 4096.
        let need = needed(253_113_024, 75_497_472);
        assert_eq!(need, 253_113_024 + 25_311_300 + 75_497_472 + (64 << 20));
        assert!(need > 200 << 20, "the demo's 200 MiB cannot hold it");
        assert!(need < 1 << 30);
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24683520 kB\nMemFree:         1046528 kB\nMemAvailable:   22771712 kB\n";
        assert_eq!(mem_available(text), Some(22_771_712 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn a_configured_amount_wins() {
        assert_eq!(available(Some(123)), Some(123));
        assert!(available(None).is_some_and(|b| b > 0));
    }

    #[test]
    fn verdicts_say_why_in_mib() {
        let v = Verdict::TooBig {
            need: 400 << 20,
            have: 200 << 20,
        };
        assert_eq!(
            v.to_string(),
            "predicted out of memory: the model needs about 400 MiB, the local Ollama has 200 MiB"
        );
    }
}
