//! The field-level checks beyond what the types enforce: lengths, hex shapes, amounts.

use super::{
    Message, ResourceAd, MAX_ACCEPTS, MAX_AD_MODELS, MAX_ANNOUNCE_KNOWN, MAX_ENS_LEN, MAX_IMAGES,
    MAX_MODEL_LEN, MAX_RELAY_HOPS, MAX_TEXT_LEN, MAX_TOOL_CALLS,
};

impl Message {
    /// Field-level checks beyond what the types enforce.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Message::ResourceRequest(m) => {
                check_model(&m.model)?;
                if m.hops > MAX_RELAY_HOPS {
                    return Err(format!("hops {} exceeds {MAX_RELAY_HOPS}", m.hops));
                }
                check_opt_ens(&m.sender_ens)
            }
            Message::ResourceAd(m) => check_ad(m),
            Message::Announce(m) => {
                check_opt_ens(&m.ens)?;
                if m.known.len() > MAX_ANNOUNCE_KNOWN {
                    return Err(format!("more than {MAX_ANNOUNCE_KNOWN} known nodes"));
                }
                if let Some(ad) = &m.ad {
                    if ad.node_id != m.node_id {
                        return Err("the ad's node_id is not the sender's".into());
                    }
                    check_ad(ad)?;
                }
                Ok(())
            }
            Message::Task(m) => {
                check_model(&m.model)?;
                if let Some(d) = &m.model_digest {
                    super::check_digest(d)?;
                }
                check_opt_ens(&m.sender_ens)?;
                if let Some(s) = &m.stake {
                    check_address("stake.escrow", &s.escrow)?;
                    check_amount("stake.amount", &s.amount)?;
                    if !s.tx.is_empty() || s.authorization.is_none() {
                        check_hash("stake.tx", &s.tx)?;
                    }
                    if s.binding
                        .as_ref()
                        .is_some_and(|b| !is_hex(&b.signature, 130))
                    {
                        return Err(
                            "stake.binding.signature must be 0x + 130 hex characters".into()
                        );
                    }
                    if let Some(a) = &s.authorization {
                        check_address("stake.authorization.from", &a.from)?;
                        check_hash("stake.authorization.nonce", &a.nonce)?;
                        if !is_hex(&a.signature, 130) {
                            return Err(
                                "stake.authorization.signature must be 0x + 130 hex characters"
                                    .into(),
                            );
                        }
                    }
                }
                if let Some(msgs) = &m.messages {
                    if msgs.len() > 4096 {
                        return Err("too many messages".into());
                    }
                    let mut images = 0;
                    for msg in msgs {
                        check_text("messages.role", &msg.role)?;
                        images += msg.images.len();
                        if msg.tool_calls.len() > MAX_TOOL_CALLS {
                            return Err(format!(
                                "more than {MAX_TOOL_CALLS} tool calls in a message"
                            ));
                        }
                        for f in [&msg.tool_name, &msg.tool_call_id].into_iter().flatten() {
                            check_text("messages.tool_name", f)?;
                        }
                    }
                    if images > MAX_IMAGES {
                        return Err(format!("more than {MAX_IMAGES} images"));
                    }
                }
                Ok(())
            }
            Message::TaskChunk(_) | Message::TaskCancel(_) => Ok(()),
            Message::TaskResult(r) if r.tool_calls.len() > MAX_TOOL_CALLS => {
                Err(format!("more than {MAX_TOOL_CALLS} tool calls in a result"))
            }
            Message::TaskResult(_) => Ok(()),
            Message::TaskError(m) => check_text("message", &m.message),
            Message::PaymentRequest(m) => {
                check_hash("output_commitment", &m.output_commitment)?;
                check_hash("wallet_commitment", &m.wallet_commitment)?;
                let pr = &m.payment_required;
                check_text("payment_required.resource.url", &pr.resource.url)?;
                if let Some(e) = &pr.error {
                    check_text("payment_required.error", e)?;
                }
                if pr.accepts.is_empty() || pr.accepts.len() > MAX_ACCEPTS {
                    return Err(format!(
                        "payment_required.accepts must hold 1 to {MAX_ACCEPTS} entries"
                    ));
                }
                for r in &pr.accepts {
                    check_address("accepts.asset", &r.asset)?;
                    check_address("accepts.payTo", &r.pay_to)?;
                    check_amount("accepts.amount", &r.amount)?;
                    check_text("accepts.scheme", &r.scheme)?;
                    check_text("accepts.network", &r.network)?;
                    if serde_json::to_string(&r.extra).map_or(0, |s| s.len()) > MAX_TEXT_LEN {
                        return Err(format!("accepts.extra longer than {MAX_TEXT_LEN} bytes"));
                    }
                }
                Ok(())
            }
            Message::PaymentConfirmed(m) => {
                check_hash("tx_hash", &m.tx_hash)?;
                check_text(
                    "settle_response.transaction",
                    &m.settle_response.transaction,
                )?;
                check_text("settle_response.network", &m.settle_response.network)?;
                check_text("explorer_url", &m.explorer_url)
            }
            Message::Ack(_) | Message::Heartbeat(_) => Ok(()),
            Message::Evidence(m) => {
                check_model(&m.model)?;
                m.check_bounds().map_err(|e| e.to_string())
            }
        }
    }
}

fn check_ad(m: &ResourceAd) -> Result<(), String> {
    check_opt_ens(&m.ens)?;
    if let Some(w) = &m.wallet {
        check_address("wallet", w)?;
    }
    if m.models.len() > MAX_AD_MODELS || m.model_info.len() > MAX_AD_MODELS {
        return Err("too many models".into());
    }
    for model in &m.models {
        check_model(model)?;
    }
    for model in &m.model_info {
        check_model(&model.name)?;
        if let Some(d) = &model.digest {
            super::check_digest(d)?;
        }
        for detail in [&model.family, &model.parameter_size, &model.quantization]
            .into_iter()
            .flatten()
        {
            check_model(detail).map_err(|e| format!("model details: {e}"))?;
        }
    }
    if !(0.0..=1.0).contains(&m.load) {
        return Err(format!("load {} is outside 0..=1", m.load));
    }
    check_text("version", &m.version)
}

/// A model name as the protocol accepts it: 1..=[`MAX_MODEL_LEN`] printable characters.
pub fn check_model(m: &str) -> Result<(), String> {
    if m.is_empty() || m.len() > MAX_MODEL_LEN || m.chars().any(|c| c.is_control()) {
        return Err(format!(
            "model must be 1..={MAX_MODEL_LEN} printable characters"
        ));
    }
    Ok(())
}

fn check_opt_ens(e: &Option<String>) -> Result<(), String> {
    match e {
        Some(n) if n.len() > MAX_ENS_LEN || n.chars().any(|c| c.is_control()) => {
            Err("ENS name too long or not printable".into())
        }
        _ => Ok(()),
    }
}

fn check_text(field: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT_LEN {
        return Err(format!("{field} longer than {MAX_TEXT_LEN} bytes"));
    }
    Ok(())
}

fn is_hex(s: &str, n: usize) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| h.len() == n && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_address(field: &str, s: &str) -> Result<(), String> {
    if !is_hex(s, 40) {
        return Err(format!("{field} must be 0x + 40 hex characters"));
    }
    Ok(())
}

fn check_hash(field: &str, s: &str) -> Result<(), String> {
    if !is_hex(s, 64) {
        return Err(format!("{field} must be 0x + 64 hex characters"));
    }
    Ok(())
}

fn check_amount(field: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{field} must be a decimal integer string"));
    }
    Ok(())
}
