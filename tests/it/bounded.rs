//! User story: a node stays bounded under attack (issue 25, items 1 and 4;
//! docs/threat-model.md, lines 25-32). The attacker is the scriptable evil node on mesh
//! nodes 2 and 3 (two identities, no daemon); the requester (node 0) and the provider
//! (node 1, the Ollama stub as its backend) are real daemons. Each test floods the provider
//! while an honest delegation runs, and that delegation must still succeed.

use std::time::Duration;

use bytes::Bytes;
use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use edgent::protocol::{Message, Task};
use serde_json::json;

use crate::support::evil::{evil_on, node_key};
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
