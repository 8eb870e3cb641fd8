//! The protocol's round trips and refusals.

use super::*;
use crate::zk::{PublicSignals, SnarkjsProof};
use serde_json::json;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::axl::identity::test_key as key;

/// A real proof (proving once per test binary).
fn sample_proof() -> (SnarkjsProof, PublicSignals) {
    static P: std::sync::OnceLock<(SnarkjsProof, PublicSignals)> = std::sync::OnceLock::new();
    P.get_or_init(|| crate::zk::prove(b"out", &[2; 32], &[7; 32]).unwrap())
        .clone()
}

/// One sample of every message type.
pub(crate) fn samples() -> Vec<Message> {
    let job = JobId([7; 32]);
    let mut extra = Map::new();
    extra.insert("escrow".into(), json!("0x".to_string() + &"a".repeat(40)));
    vec![
        Message::ResourceRequest(ResourceRequest {
            request_id: Uuid::new_v4(),
            node_id: key(1),
            model: "tinyllama".into(),
            min_memory_mb: 512,
            max_price: Some(10_000),
            sender_ens: Some("jetson-orin.edgent.eth".into()),
            hops: 2,
        }),
        Message::ResourceAd(ResourceAd {
            request_id: Uuid::new_v4(),
            node_id: key(2),
            ens: Some("dell-g15.edgent.eth".into()),
            wallet: Some(format!("0x{}", "b".repeat(40))),
            models: vec!["tinyllama:latest".into()],
            free_memory_mb: 8000,
            price: 10_000,
            load: 0.5,
            version: "0.1.0".into(),
            model_info: vec![ModelOffer {
                name: "tinyllama:latest".into(),
                size_bytes: Some(637_700_138),
                loaded: true,
                digest: Some("a".repeat(64)),
                family: Some("llama".into()),
                parameter_size: Some("1.1B".into()),
                quantization: Some("Q4_0".into()),
            }],
            slots: Some(2),
            queue: Some(0),
        }),
        Message::Task(Task {
            job_id: job,
            model: "tinyllama".into(),
            prompt: "hello".into(),
            options: Some(
                json!({"service": "x", "a2a": true})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            stake: Some(StakeRef {
                chain_id: 84532,
                escrow: format!("0x{}", "c".repeat(40)),
                amount: "10000".into(),
                tx: format!("0x{}", "d".repeat(64)),
                authorization: None,
                binding: None,
            }),
            deadline_ms: 1,
            sender_ens: None,
            messages: Some(vec![ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                ..Default::default()
            }]),
            stream: true,
            model_digest: Some("b".repeat(64)),
        }),
        Message::TaskChunk(TaskChunk {
            job_id: job,
            seq: 3,
            delta: "wor".into(),
        }),
        Message::TaskCancel(TaskCancel { job_id: job }),
        Message::TaskResult(TaskResult {
            job_id: job,
            output: "world".into(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
            receipt: Some(
                crate::protocol::receipt::ReceiptSigner::from_seed(&[1; 32]).sign(
                    crate::protocol::receipt::ReceiptBody {
                        job_id: job.to_string(),
                        model: "m".into(),
                        model_digest: String::new(),
                        options_json: "{}".into(),
                        prompt_hash: crate::protocol::receipt::prompt_hash("p", None),
                        output_hash: crate::protocol::receipt::output_hash("world"),
                        tool_calls_hash: String::new(),
                        time_ms: 1,
                        signer: String::new(),
                    },
                ),
            ),
        }),
        Message::TaskError(TaskError {
            job_id: job,
            code: TaskErrorCode::Busy,
            message: "at capacity".into(),
            retry_after_ms: Some(2000),
            status: None,
        }),
        Message::PaymentRequest(Box::new(PaymentRequest {
            job_id: job,
            payment_required: PaymentRequired {
                x402_version: 2,
                error: None,
                resource: ResourceInfo {
                    url: "axl://provider/job/7".into(),
                    description: None,
                    mime_type: None,
                },
                accepts: vec![PaymentRequirements {
                    scheme: "auth-capture".into(),
                    network: "eip155:84532".into(),
                    asset: format!("0x{}", "e".repeat(40)),
                    amount: "10000".into(),
                    pay_to: format!("0x{}", "f".repeat(40)),
                    max_timeout_seconds: 600,
                    extra,
                }],
            },
            output_commitment: format!("0x{}", "1".repeat(64)),
            wallet_commitment: format!("0x{}", "2".repeat(64)),
            proof: sample_proof().0,
            public_signals: sample_proof().1,
        })),
        Message::PaymentConfirmed(PaymentConfirmed {
            job_id: job,
            tx_hash: format!("0x{}", "3".repeat(64)),
            explorer_url: "https://sepolia.basescan.org/tx/0x".into(),
            settle_response: SettleResponse {
                success: true,
                error_reason: None,
                payer: Some(format!("0x{}", "4".repeat(40))),
                transaction: format!("0x{}", "3".repeat(64)),
                network: "eip155:84532".into(),
                amount: Some("10000".into()),
            },
        }),
        Message::Ack(Ack {
            acked: Uuid::new_v4(),
        }),
        Message::Heartbeat(Heartbeat {
            job_id: job,
            state: BeatState::Queued,
            queue_position: Some(3),
        }),
        Message::Announce(Announce {
            node_id: key(2),
            ens: None,
            known: vec![key(3), key(4)],
            ad: None,
            ttl_ms: 60_000,
        }),
        Message::Evidence(Box::new(evidence_sample())),
    ]
}

/// An `evidence` whose receipts are signed (by made-up keys).
fn evidence_sample() -> super::Evidence {
    use super::receipt::{output_hash, prompt_hash, ReceiptBody, ReceiptSigner};
    let run = |seed: u8, output: &str| {
        ReceiptSigner::from_seed(&[seed; 32]).sign(ReceiptBody {
            job_id: JobId([7; 32]).to_string(),
            model: "gemma3:270m".into(),
            model_digest: "ab".repeat(32),
            options_json: r#"{"temperature":0}"#.into(),
            prompt_hash: prompt_hash("hi", None),
            output_hash: output_hash(output),
            tool_calls_hash: String::new(),
            time_ms: 1_000_000,
            signer: String::new(),
        })
    };
    super::Evidence {
        accused: ReceiptSigner::from_seed(&[1; 32]).public(),
        model: "gemma3:270m".into(),
        model_digest: "ab".repeat(32),
        options: json!({"temperature": 0}).as_object().cloned(),
        prompt: "hi".into(),
        messages: None,
        accused_receipt: run(1, "nonsense"),
        checker_receipts: vec![run(2, "hello"), run(3, "hello")],
    }
}

#[test]
fn a_backends_refusal_keeps_its_status_on_the_wire() {
    let m = Message::TaskError(TaskError {
        job_id: JobId([7; 32]),
        code: TaskErrorCode::BadRequest,
        message: "model does not support tools".into(),
        retry_after_ms: None,
        status: Some(400),
    });
    let wire = m.encode().unwrap();
    let v: Value = serde_json::from_slice(&wire).unwrap();
    assert_eq!(v["status"], json!(400));
    assert_eq!(Message::decode(&wire).unwrap(), m);
    // An older node's task_error (no `status`) still reads.
    let mut old = v.clone();
    old.as_object_mut().unwrap().remove("status");
    let back = Message::decode(&serde_json::to_vec(&old).unwrap()).unwrap();
    let Message::TaskError(e) = back else {
        panic!("not a task_error")
    };
    assert_eq!(e.status, None);
}

#[test]
fn every_type_round_trips() {
    let s = samples();
    assert_eq!(s.len(), MESSAGE_TYPES.len());
    for m in s {
        let wire = m.encode().unwrap();
        let back = Message::decode(&wire).unwrap();
        assert_eq!(back, m);
        let v: Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(v["v"], json!(1));
        assert_eq!(v["type"], json!(m.kind()));
    }
}

#[test]
fn no_message_has_a_top_level_service_or_a2a_key() {
    for m in samples() {
        let v: Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
        let obj = v.as_object().unwrap();
        assert!(!obj.contains_key("service"), "{} has service", m.kind());
        assert!(!obj.contains_key("a2a"), "{} has a2a", m.kind());
    }
}

#[test]
fn bad_input_is_classified() {
    let cases: Vec<(&[u8], DropReason)> = vec![
        (b"not json", DropReason::BadJson),
        (b"{\"v\":1,\"type\":\"task\"", DropReason::BadJson),
        (b"[1,2]", DropReason::BadJson),
        (b"{\"type\":\"task\"}", DropReason::BadVersion),
        (b"{\"v\":2,\"type\":\"task\"}", DropReason::BadVersion),
        (b"{\"v\":\"1\",\"type\":\"task\"}", DropReason::BadVersion),
        (b"{\"v\":1,\"type\":\"steal\"}", DropReason::UnknownType),
        (b"{\"v\":1}", DropReason::UnknownType),
        (b"{\"v\":1,\"type\":\"task\"}", DropReason::Invalid),
        (
            b"{\"v\":1,\"type\":\"task_error\",\"job_id\":\"0x00\",\"code\":\"busy\",\"message\":\"\"}",
            DropReason::Invalid,
        ),
    ];
    for (body, reason) in cases {
        let e = Message::decode(body).unwrap_err();
        assert_eq!(e.reason, reason, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn a_newer_peers_unknown_fields_are_ignored_and_its_unknown_types_dropped() {
    for m in samples() {
        let mut v: Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
        v["extra_field"] = json!({"nested": [1, 2]});
        let got = Message::decode(&serde_json::to_vec(&v).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e:?}", m.kind()));
        assert_eq!(got, m, "{}", m.kind());
    }
    // Nested too: an unknown field inside the task's stake.
    let task = samples().into_iter().find(|m| m.kind() == "task").unwrap();
    let mut v: Value = serde_json::from_slice(&task.encode().unwrap()).unwrap();
    if v["stake"].is_object() {
        v["stake"]["new_thing"] = json!(true);
    }
    assert_eq!(
        Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap(),
        task
    );
    // A type this build does not know: dropped as unknown_type, nothing else.
    let e = Message::decode(br#"{"v":1,"type":"task_progress","job_id":"0x00"}"#).unwrap_err();
    assert_eq!(e.reason, DropReason::UnknownType);
}

#[test]
fn a_task_over_the_image_and_tool_call_bounds_is_refused() {
    let task = samples().into_iter().find(|m| m.kind() == "task").unwrap();
    let mut v: Value = serde_json::from_slice(&task.encode().unwrap()).unwrap();
    // Within the bounds: images and tool calls travel and come back as they were.
    let call = json!({"function": {"name": "f", "arguments": {"x": 1}}});
    let images = vec!["aGk="; MAX_IMAGES];
    let calls = vec![call.clone(); MAX_TOOL_CALLS];
    v["messages"] = json!([{"role": "user", "content": "hi", "images": images},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "1", "tool_name": "f", "tool_call_id": "c1"}]);
    let ok = Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap();
    let Message::Task(t) = &ok else { panic!() };
    let msgs = t.messages.as_ref().unwrap();
    assert_eq!(msgs[0].images.len(), MAX_IMAGES);
    assert_eq!(msgs[2].tool_name.as_deref(), Some("f"));
    assert_eq!(Message::decode(&ok.encode().unwrap()).unwrap(), ok);
    // One more image (across messages), or one more tool call: refused.
    v["messages"][2]["images"] = json!(["aGk="]);
    let e = Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(e.reason, DropReason::Invalid);
    v["messages"][2]["images"] = json!([]);
    let calls = vec![call.clone(); MAX_TOOL_CALLS + 1];
    v["messages"][1]["tool_calls"] = json!(calls);
    let e = Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(e.reason, DropReason::Invalid);
    // A result with too many tool calls too.
    let r = json!({"v": 1, "type": "task_result", "job_id": JobId([1; 32]), "output": "",
        "tool_calls": calls});
    let e = Message::decode(&serde_json::to_vec(&r).unwrap()).unwrap_err();
    assert_eq!(e.reason, DropReason::Invalid);
}

#[test]
fn bad_shapes_are_refused() {
    let mut ad: Value = serde_json::from_slice(&samples()[1].encode().unwrap()).unwrap();
    ad["load"] = json!(7.0);
    let e = Message::decode(&serde_json::to_vec(&ad).unwrap()).unwrap_err();
    assert_eq!(e.reason, DropReason::Invalid);
    ad["load"] = json!(0.1);
    ad["node_id"] = json!("abc");
    let e = Message::decode(&serde_json::to_vec(&ad).unwrap()).unwrap_err();
    assert_eq!(e.reason, DropReason::Invalid);
}

#[test]
fn oversize_is_refused_both_ways() {
    let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        Message::decode(&big).unwrap_err().reason,
        DropReason::Oversize
    );
    let m = Message::TaskResult(TaskResult {
        job_id: JobId::new(),
        output: "x".repeat(MAX_MESSAGE_BYTES),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        receipt: None,
    });
    assert!(matches!(m.encode(), Err(EncodeError::TooLarge(_))));
}

#[test]
fn reliable_messages_carry_an_optional_msg_id() {
    let id = Uuid::new_v4();
    for m in samples() {
        let with = m.encode_with_id(Some(id));
        if m.is_reliable() {
            let env = Message::decode_envelope(&with.unwrap()).unwrap();
            assert_eq!(env.msg_id, Some(id));
            assert_eq!(env.msg, m);
            // An older peer's message, without the id, is still understood.
            let env = Message::decode_envelope(&m.encode().unwrap()).unwrap();
            assert_eq!(env.msg_id, None);
        } else {
            assert!(with.is_err(), "{} encoded a msg_id", m.kind());
            // A newer peer may deliver it reliably: its msg_id is kept, to be acked.
            let mut v: Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
            v["msg_id"] = json!(id.to_string());
            let env = Message::decode_envelope(&serde_json::to_vec(&v).unwrap()).unwrap();
            assert_eq!(env.msg_id, Some(id), "{}", m.kind());
            assert_eq!(env.msg, m);
        }
    }
    let mut v: Value = serde_json::from_slice(&samples()[3].encode().unwrap()).unwrap();
    v["msg_id"] = json!("not-a-uuid");
    let e = Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(e.reason, DropReason::Invalid);
    v["msg_id"] = json!(7);
    let e = Message::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(e.reason, DropReason::Invalid);
}

#[test]
fn job_ids_are_bytes32_hex() {
    let j = JobId::new();
    assert_eq!(j.to_hex().len(), 66);
    assert_eq!(JobId::from_hex(&j.to_hex()).unwrap(), j);
    assert!(JobId::from_hex("0x1234").is_err());
    assert_ne!(JobId::new(), JobId::new());
}

#[test]
fn labels_and_codes_keep_their_names() {
    let labels: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "oversize",
            "bad_json",
            "bad_version",
            "unknown_type",
            "invalid",
            "spoofed",
            "unexpected",
            "duplicate",
            "rate_limited",
            "known_job"
        ]
    );
    let codes: Vec<TaskErrorCode> = <TaskErrorCode as strum::IntoEnumIterator>::iter().collect();
    assert_eq!(codes.len(), 9);
    for code in codes {
        assert_eq!(json!(code), json!(code.as_str()));
    }
    assert_eq!(
        TaskErrorCode::DeadlineTooClose.as_str(),
        "deadline_too_close"
    );
}
