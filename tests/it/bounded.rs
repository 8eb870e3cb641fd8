//! User story: a node stays bounded under attack (issue 25, items 1 and 4;
//! docs/threat-model.md, lines 25-32). The attacker is the scriptable evil node on mesh
//! nodes 2 and 3 (two identities, no daemon); the requester (node 0) and the provider
//! (node 1, the Ollama stub as its backend) are real daemons. Each test floods the provider
//! while an honest delegation runs, and that delegation must still succeed.

use std::time::Duration;

use bytes::Bytes;
use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use edgent::protocol::{Announce, Message, Task};
use serde_json::{json, Value};

use crate::support::evil::{evil_on, introduce, node_key};
use crate::support::{start_pair, until, DaemonProc, MeshSimProc};

const WITHIN: Duration = Duration::from_secs(60);

/// A gauge or counter of `d`'s `/metrics` named exactly `name` (no labels).
async fn gauge(d: &DaemonProc, name: &str) -> i64 {
    let text = d.metrics().await;
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}")) as i64
}

/// The provider's peak resident memory (`VmHWM`), printed for the report (never asserted).
fn print_rss_peak(d: &DaemonProc, flood: &str) {
    let Some(pid) = d.pid() else { return };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?");
    eprintln!("RSS peak of the provider under {flood}: {hwm}");
}

/// `n` tasks for `model`, each a fresh job with a `msg_id`, a deadline `deadline_ms` and
/// the backend `options`.
fn tasks_for(n: usize, model: &str, deadline_ms: u64, options: Option<Value>) -> Vec<Bytes> {
    (0..n)
        .map(|_| {
            Message::Task(Task {
                job_id: edgent::protocol::JobId::new(),
                model: model.into(),
                prompt: "hold a slot".into(),
                options: options.as_ref().and_then(|o| o.as_object().cloned()),
                stake: None,
                deadline_ms,
                sender_ens: None,
                messages: None,
                stream: false,
                model_digest: None,
            })
            .encode_with_id(Some(uuid::Uuid::new_v4()))
            .expect("encode")
        })
        .collect()
}

/// `n` tasks for a model nobody serves, each a fresh job carrying a `msg_id` (so today's
/// provider answers each with a reliable `task_error`).
fn refused_tasks(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|_| {
            Message::Task(Task {
                job_id: edgent::protocol::JobId::new(),
                model: "no-such-model".into(),
                prompt: "refuse me".into(),
                options: None,
                stake: None,
                deadline_ms: edgent::jobs::now_ms() + 20_000,
                sender_ens: None,
                messages: None,
                stream: false,
                model_digest: None,
            })
            .encode_with_id(Some(uuid::Uuid::new_v4()))
            .expect("encode")
        })
        .collect()
}

/// Two identities send tasks fast and never ack (threat model line 25): refused and
/// over-rate tasks (`model_unavailable`, `busy`) are answered once, with no `msg_id`,
/// no resend and no place in the provider's pending-ack table, whose capacity is set to
/// 400 here (the default is 65,536) so that the 1,600 refusals of the flood would fill it
/// four times over when each waited for its ack. An honest delegation run while the
/// second identity floods is served, and the table held only its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_take_no_pending_acks_and_an_honest_delegation_is_served() {
    let stub = OllamaStub::start(StubBehaviour::default())
        .await
        .expect("stub");
    let mesh = MeshSimProc::start(4, 0);
    let dir = tempfile::tempdir().expect("dir");
    let (requester, provider) = start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &stub.url()), ("MAX_PENDING_ACKS", "400")],
        &[],
    )
    .await;
    let evil = evil_on(&mesh, &[2, 3]).await;
    let to = node_key(&mesh, 1);
    const PER_ID: usize = 800;
    // Refusals go only to nodes whose full key is known: both identities say who they are.
    for id in 0..2 {
        introduce(&evil, id, &to).await;
    }

    // Identity 0 first: every task answered before the honest delegation starts.
    let first = evil
        .flood(0, &to, refused_tasks(PER_ID), Some(400.0), 8)
        .await
        .expect("flood");
    assert_eq!(first.accepted, PER_ID as u64, "{first:?}");
    until("identity 0's tasks all answered", WITHIN, || async {
        evil.received_kind("task_error").len() >= PER_ID
    })
    .await;

    // Identity 1 floods while the honest delegation runs.
    let (second, (status, body)) = tokio::join!(
        evil.flood(1, &to, refused_tasks(PER_ID), Some(400.0), 8),
        requester.delegate(json!({"model": "tinyllama", "prompt": "under a flood"})),
    );
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    assert_eq!(second.expect("flood").accepted, PER_ID as u64);
    until("identity 1's tasks all answered", WITHIN, || async {
        evil.received_kind("task_error").len() >= 2 * PER_ID
    })
    .await;

    // Each refused task was answered exactly once, unreliably.
    let errors = evil.received_kind("task_error");
    assert_eq!(errors.len(), 2 * PER_ID, "a refusal was sent again");
    assert!(
        errors.iter().all(|r| r.msg_id.is_none()),
        "a refusal carries a msg_id"
    );
    for id in 0..2 {
        assert_eq!(errors.iter().filter(|r| r.identity == id).count(), PER_ID);
    }
    // The only entry the table ever held was the honest result's, now acknowledged.
    assert_eq!(gauge(&provider, "edgent_pending_acks").await, 0);
    assert_eq!(gauge(&provider, "edgent_pending_acks_peak").await, 1);
    assert_eq!(gauge(&provider, "edgent_pending_acks_peer_peak").await, 1);
}

/// A requester (node 0) and a provider (node 1, the Ollama stub answering after `delay`,
/// with `env` besides) on a mesh whose next `evil_ids` nodes are the evil node's
/// identities, which acknowledge what they receive.
struct Scene {
    stub: OllamaStub,
    mesh: MeshSimProc,
    _dir: tempfile::TempDir,
    requester: DaemonProc,
    provider: DaemonProc,
    evil: edgent::harness::evil_node::EvilNode,
}

async fn scene(delay: Duration, evil_ids: usize, env: &[(&str, &str)]) -> Scene {
    let stub = OllamaStub::start(StubBehaviour {
        delay,
        ..Default::default()
    })
    .await
    .expect("stub");
    let mesh = MeshSimProc::start(2 + evil_ids, 0);
    let dir = tempfile::tempdir().expect("dir");
    let url = stub.url();
    let mut p_env = vec![("OLLAMA_URL", url.as_str())];
    p_env.extend_from_slice(env);
    let (requester, provider) = start_pair(&mesh, dir.path(), &p_env, &[]).await;
    let ids: Vec<usize> = (2..2 + evil_ids).collect();
    let evil = evil_on(&mesh, &ids).await;
    evil.set_acks(true);
    Scene {
        stub,
        mesh,
        _dir: dir,
        requester,
        provider,
        evil,
    }
}

/// Threat model line 26 (and refusals only to full keys): one identity that never said
/// who it is floods 800 valid tasks while the inference takes 4 s. With
/// `PEER_MAX_HANDLERS=2`, its first two tasks hold the only two handlers it may have, and
/// each of the other 798 is dropped at the router (counted, no task spawned); nothing is
/// ever sent back to its partial key as a refusal. An honest delegation run during the
/// flood is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_handlers_are_bounded_and_unknown_keys_get_no_refusals() {
    let sc = scene(
        Duration::from_secs(4),
        1,
        &[("PEER_MAX_HANDLERS", "2"), ("PROVIDER_MAX_JOBS", "4")],
    )
    .await;
    let (mesh, requester, provider, evil) = (&sc.mesh, &sc.requester, &sc.provider, &sc.evil);
    let to = node_key(mesh, 1);
    const FLOOD: usize = 800;
    let far = edgent::jobs::now_ms() + 60_000;
    let (flood, (status, body)) = tokio::join!(
        evil.flood(
            0,
            &to,
            tasks_for(FLOOD, "tinyllama", far, None),
            Some(400.0),
            8
        ),
        requester.delegate(json!({"model": "tinyllama", "prompt": "under a flood"})),
    );
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    assert_eq!(flood.expect("flood").accepted, FLOOD as u64);
    // Its tasks' results come after 4 s; by then no refusal went to its partial key.
    until("the evil node's first results", WITHIN, || async {
        result_jobs(evil) >= 2
    })
    .await;
    assert_eq!(evil.received_kind("task_error").len(), 0);
    until("the flood's tasks all taken or dropped", WITHIN, || async {
        bounded(provider, "handlers_dropped").await >= (FLOOD - 2) as i64
    })
    .await;
    assert_eq!(
        bounded(provider, "handlers_dropped").await,
        (FLOOD - 2) as i64
    );
    assert_eq!(bounded(provider, "handlers_peer_peak").await, 2);
    assert_eq!(result_jobs(evil), 2, "only its first two tasks ran");
    print_rss_peak(provider, "800 tasks from an unknown key");
}

/// Threat model line 29: one requester sends 20 tasks with a deadline near `u64::MAX`,
/// `num_predict: -1` and load-time options (`num_ctx`, `num_gpu`) while the inference
/// takes 2 s, to a provider of 2 slots and 6 queue places. It holds at most its default
/// share, all but a quarter of the 8 (6); the other 14 are answered `busy`, once each,
/// and the 2 places left serve an honest delegation. The backend never sees `num_ctx` or `num_gpu`, and
/// `num_predict` is cut to 4,096; the recorded deadlines are at most an hour away. An
/// honest delegation run meanwhile is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_requester_cannot_hold_every_slot_or_set_load_options() {
    let sc = scene(
        Duration::from_secs(2),
        1,
        &[("PROVIDER_MAX_JOBS", "2"), ("PROVIDER_MAX_QUEUE", "6")],
    )
    .await;
    let (stub, mesh, requester, provider, evil) =
        (&sc.stub, &sc.mesh, &sc.requester, &sc.provider, &sc.evil);
    let to = node_key(mesh, 1);
    introduce(evil, 0, &to).await;
    let opts = json!({"num_predict": -1, "num_ctx": 131072, "num_gpu": 99, "temperature": 0.5});
    let forever = u64::MAX / 2;
    let flood = evil
        .flood(
            0,
            &to,
            tasks_for(20, "tinyllama", forever, Some(opts)),
            None,
            4,
        )
        .await
        .expect("flood");
    assert_eq!(flood.accepted, 20);
    until("14 tasks answered busy", WITHIN, || async {
        evil.received_kind("task_error").len() >= 14
    })
    .await;
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "beside a greedy peer"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    let errors = evil.received_kind("task_error");
    assert_eq!(errors.len(), 14);
    assert!(errors.iter().all(|e| matches!(&e.msg,
        Some(Message::TaskError(t)) if t.code == edgent::protocol::TaskErrorCode::Busy)));
    until("the 6 held tasks' results", WITHIN, || async {
        result_jobs(evil) == 6
    })
    .await;
    let seen = stub.options_seen();
    let evils: Vec<&Value> = seen.iter().flatten().collect();
    assert_eq!(evils.len(), 6, "{seen:?}");
    for o in evils {
        assert_eq!(o, &json!({"num_predict": 4096, "temperature": 0.5}));
    }
    let jobs = provider.get("/jobs").await;
    let horizon = edgent::jobs::now_ms() + 3_600_000;
    let held: Vec<&Value> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["prompt"] == "hold a slot")
        .collect();
    assert_eq!(held.len(), 6, "{jobs}");
    assert!(
        held.iter()
            .all(|j| j["deadline_ms"].as_u64().is_some_and(|d| d <= horizon)),
        "{jobs}"
    );
    print_rss_peak(provider, "20 greedy tasks");
}

/// Threat model line 27: an identity sends 40 `announce`s naming 64 made-up keys each
/// (2,560 keys, as fast as the mesh takes them). The directory takes in at most the
/// sender's hearsay burst (64) plus one a second, and keeps the nodes it heard from: the
/// requester and a second evil identity that announced itself before. An honest
/// delegation run during the flood is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearsay_keys_are_limited_and_never_evict_nodes_heard_from() {
    let sc = scene(Duration::ZERO, 2, &[]).await;
    let (mesh, requester, provider, evil) = (&sc.mesh, &sc.requester, &sc.provider, &sc.evil);
    let to = node_key(mesh, 1);
    introduce(evil, 1, &to).await;
    let started = std::time::Instant::now();
    let announces: Vec<Bytes> = (0..40)
        .map(|_| {
            Message::Announce(Announce {
                node_id: evil.key(0),
                ens: None,
                known: (0..64)
                    .map(|_| {
                        let mut k = [0u8; 32];
                        k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                        k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                        edgent::axl::PeerKey(k)
                    })
                    .collect(),
                ad: None,
                ttl_ms: 60_000,
            })
            .encode_with_id(None)
            .expect("encode")
        })
        .collect();
    let (flood, (status, body)) = tokio::join!(
        evil.flood(0, &to, announces, None, 4),
        requester.delegate(json!({"model": "tinyllama", "prompt": "under hearsay"})),
    );
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    assert_eq!(flood.expect("flood").accepted, 40);
    // The directory never held more than the nodes heard from and the hearsay allowed.
    let known = provider.get("/status").await["known_nodes"]
        .as_i64()
        .expect("known_nodes");
    let bound = 3 + 64 + started.elapsed().as_secs() as i64 + 1;
    assert!(known <= bound, "the directory holds {known}");
    until("every hearsay key taken or dropped", WITHIN, || async {
        bounded(provider, "hearsay_dropped").await + bounded(provider, "directory_hearsay").await
            >= 2560
    })
    .await;
    let elapsed = started.elapsed().as_secs() as i64 + 1;
    let taken = bounded(provider, "directory_hearsay").await;
    assert_eq!(taken + bounded(provider, "hearsay_dropped").await, 2560);
    assert!(taken <= 64 + elapsed, "{taken} hearsay keys in {elapsed} s");
    print_rss_peak(provider, "2,560 hearsay keys");
}

/// `edgent_bounded{table="<table>"}` of `d`'s `/metrics`.
async fn bounded(d: &DaemonProc, table: &str) -> i64 {
    let text = d.metrics().await;
    let name = format!("edgent_bounded{{table=\"{table}\"}}");
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.parse::<f64>().ok())?
        })
        .unwrap_or(0.0) as i64
}

/// The distinct jobs whose `task_result` `evil` received (a result may be sent again).
fn result_jobs(evil: &edgent::harness::evil_node::EvilNode) -> usize {
    let jobs: std::collections::HashSet<String> = evil
        .received_kind("task_result")
        .iter()
        .filter_map(|r| match &r.msg {
            Some(Message::TaskResult(t)) => Some(t.job_id.to_string()),
            _ => None,
        })
        .collect();
    jobs.len()
}

/// Threat model line 30: a requester sends a 1.5 MB prompt (the stub takes bodies of 2 MiB) while an honest delegation
/// runs. The provider serves it, and its job record keeps only the prompt's first KiB,
/// its length and its keccak256 (not the whole prompt for every `/jobs` poll and for ever); the
/// pruning pass blanks it after `PROMPT_RETENTION_HOURS` (unit-tested in `jobs::tests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_huge_prompt_is_stored_cut_with_its_hash() {
    let sc = scene(Duration::ZERO, 1, &[]).await;
    let (mesh, requester, provider, evil) = (&sc.mesh, &sc.requester, &sc.provider, &sc.evil);
    let to = node_key(mesh, 1);
    introduce(evil, 0, &to).await;
    let job = edgent::protocol::JobId::new();
    let huge = Message::Task(Task {
        job_id: job,
        model: "tinyllama".into(),
        prompt: "word ".repeat(300_000),
        options: None,
        stake: None,
        deadline_ms: edgent::jobs::now_ms() + 60_000,
        sender_ens: None,
        messages: None,
        stream: false,
        model_digest: None,
    });
    let (sent, (status, body)) = tokio::join!(
        evil.send(0, &to, &huge),
        requester.delegate(json!({"model": "tinyllama", "prompt": "beside a huge prompt"})),
    );
    sent.expect("send");
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    until("the huge prompt's result", WITHIN, || async {
        result_jobs(evil) == 1
    })
    .await;
    let rec = provider.job(&job.to_hex()).await.expect("the job");
    let prompt = rec["prompt"].as_str().expect("prompt");
    assert!(prompt.len() <= 1024 + 120, "stored {} bytes", prompt.len());
    assert!(
        prompt.starts_with("word word ") && prompt.contains("… [1500000 bytes, keccak256 0x"),
        "{}",
        &prompt[prompt.len().saturating_sub(120)..]
    );
    print_rss_peak(provider, "a 1.5 MB prompt");
}

/// Threat model line 31: a provider (the evil node, the only one serving `evil-model`)
/// streams "Hello, " to the agent, then sends a result that does not begin with it. The
/// requester fails the attempt (the agent's stream ends with an error, the job is
/// `failed`) instead of taking the result; an honest delegation to the honest provider
/// runs at the same time and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_result_that_does_not_extend_the_streamed_text_fails() {
    let sc = scene(Duration::ZERO, 1, &[]).await;
    let (mesh, requester, provider, evil) = (&sc.mesh, &sc.requester, &sc.provider, &sc.evil);
    let me = node_key(mesh, 0);
    let ad = edgent::protocol::ResourceAd {
        request_id: uuid::Uuid::nil(),
        node_id: evil.key(0),
        ens: None,
        wallet: None,
        models: vec!["evil-model".into()],
        free_memory_mb: 8_000,
        price: 0,
        load: 0.0,
        version: env!("CARGO_PKG_VERSION").into(),
        model_info: vec![],
        slots: Some(4),
        queue: Some(0),
    };
    let hello = Message::Announce(Announce {
        node_id: evil.key(0),
        ens: None,
        known: vec![],
        ad: Some(ad),
        ttl_ms: 600_000,
    });
    evil.send(0, &me, &hello).await.expect("announce");
    until("the requester knows the evil ad", WITHIN, || async {
        requester.get("/status").await["mesh_models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["name"] == "evil-model"))
    })
    .await;

    let streamed = async {
        let r = requester
            .request(reqwest::Method::POST, "/delegate")
            .json(&json!({"model": "evil-model", "prompt": "say hello", "stream": true}))
            .send()
            .await
            .expect("delegate");
        r.text().await.expect("body")
    };
    let script = async {
        let got = evil
            .wait_for(WITHIN, |r| r.kind() == Some("task"))
            .await
            .expect("the streamed task");
        let Some(Message::Task(t)) = got.msg else {
            panic!("not a task")
        };
        let chunk = Message::TaskChunk(edgent::protocol::TaskChunk {
            job_id: t.job_id,
            seq: 0,
            delta: "Hello, ".into(),
        });
        evil.send(0, &me, &chunk).await.expect("chunk");
        let result = Message::TaskResult(edgent::protocol::TaskResult {
            job_id: t.job_id,
            output: "Goodbye, world".into(),
            tool_calls: Vec::new(),
            usage: edgent::protocol::Usage {
                prompt_tokens: Some(2),
                completion_tokens: Some(2),
                inference_ms: 1,
                backend: None,
            },
            receipt: None,
        });
        evil.send(0, &me, &result).await.expect("result");
        t.job_id
    };
    let (text, job, (status, body)) = tokio::join!(
        streamed,
        script,
        requester.delegate(json!({"model": "tinyllama", "prompt": "beside a liar"})),
    );
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
        .collect();
    let (last, deltas) = lines.split_last().expect("lines");
    assert_eq!(deltas.len(), 1, "{text}");
    assert_eq!(deltas[0]["delta"], json!("Hello, "), "{text}");
    assert!(
        last.get("output").is_none(),
        "the lying result was taken: {text}"
    );
    assert!(text.contains("does not extend"), "{text}");
    let rec = requester
        .job_in_state(&job.to_hex(), "failed", WITHIN)
        .await;
    assert!(rec["output"].is_null(), "{rec}");
}
