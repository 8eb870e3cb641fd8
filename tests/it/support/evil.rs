//! The hostile peer of the tests: [`edgent::harness::evil_node::EvilNode`] on nodes of a
//! running `edgent mesh-sim` (one identity per node), and the forged messages the attack
//! tests send.

use edgent::axl::PeerKey;
use edgent::harness::evil_node::EvilNode;
use serde_json::{json, Value};

use crate::support::MeshSimProc;

/// An evil node holding the identities of mesh nodes `nodes` (identity `i` is
/// `nodes[i]`), receiving on each. The nodes must run no daemon.
pub async fn evil_on(mesh: &MeshSimProc, nodes: &[usize]) -> EvilNode {
    let urls: Vec<String> = nodes.iter().map(|&i| mesh.nodes[i].1.clone()).collect();
    EvilNode::connect(&urls).await.expect("evil node")
}

/// Identity `id` of `evil` announces itself to `to`, so `to` learns its full key (a node
/// answers a refused task only to a full key it knows: threat model line 26).
pub async fn introduce(evil: &EvilNode, id: usize, to: &PeerKey) {
    let hello = edgent::protocol::Message::Announce(edgent::protocol::Announce {
        node_id: evil.key(id),
        ens: None,
        known: vec![],
        ad: None,
        ttl_ms: 60_000,
    });
    evil.send(id, to, &hello).await.expect("announce");
}

/// The full key of mesh node `i` (as the daemon on it knows itself).
pub fn node_key(mesh: &MeshSimProc, i: usize) -> PeerKey {
    PeerKey::from_hex(&mesh.nodes[i].0).expect("node id")
}

/// A `task` for `job` as a hostile peer forges it: `prompt` for `tinyllama`, a deadline
/// 20 s away (well inside an honest stake's margin), and a stake naming `escrow` on `chain_id` by a made-up transaction hash.
pub fn forged_task(job: &str, prompt: &str, chain_id: u64, escrow: &str, amount: u64) -> Value {
    json!({
        "v": 1, "type": "task", "job_id": job, "model": "tinyllama", "prompt": prompt,
        "deadline_ms": edgent::jobs::now_ms() + 20_000,
        "msg_id": uuid::Uuid::new_v4().to_string(),
        "stake": {"chain_id": chain_id, "escrow": escrow, "amount": amount.to_string(),
            "tx": format!("0x{}", "ab".repeat(32))},
    })
}
