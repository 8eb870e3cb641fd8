//! User story: an ENS name is a claim until checked (issue 21, item 5; docs/threat-model.md,
//! line 12). The ENS registry and resolver run on anvil; the name `dell-g15.edgent.eth`
//! is registered to its owner, whose `axl.pubkey` record names the honest provider's key
//! (mesh node 1). The evil node (mesh node 2, no daemon) announces the same name with a
//! cheaper, better-looking ad. The requester (node 0) allows only that name.

use std::time::Duration;

use edgent::chain::ens::{EnsClient, NodeRecords};
use edgent::harness::anvil::{deploy_ens, register_name, LocalChain};
use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use edgent::protocol::{Announce, Message, ModelOffer, ResourceAd};
use serde_json::{json, Value};

use crate::support::evil::{evil_on, node_key};
use crate::support::{eventually, start_pair, MeshSimProc};

const NAME: &str = "dell-g15.edgent.eth";
const WITHIN: Duration = Duration::from_secs(60);

/// On main the claim was enough: `EDGENT_ALLOW=dell-g15.edgent.eth` admitted the evil node
/// (its ad the cheapest and loaded, so it got the task), and the name was shown as trusted.
/// Now only the node whose key the name's records hold is admitted and shown plain; the
/// claimer is shown `(unverified)` and never gets a task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_name_is_not_admitted_by_the_allow_list_and_the_owner_is() {
    let chain = LocalChain::start().await.expect("anvil");
    let ens = deploy_ens(&chain.rpc_url(), chain.signer(0))
        .await
        .expect("ENS");
    let owner = chain.signer(4);
    register_name(
        &chain.rpc_url(),
        chain.signer(0),
        &ens,
        NAME,
        owner.address(),
        owner.address(),
    )
    .await
    .expect("register");
    let mesh = MeshSimProc::start(3, 0);
    EnsClient::new(&chain.rpc_url(), ens.registry, Some(owner))
        .expect("client")
        .publish_records(
            NAME,
            &NodeRecords {
                axl_pubkey: Some(mesh.nodes[1].0.clone()),
                ..NodeRecords::default()
            },
        )
        .await
        .expect("records");

    let stub = OllamaStub::start(StubBehaviour::default())
        .await
        .expect("stub");
    let dir = tempfile::tempdir().expect("dir");
    let registry = format!("{:#x}", ens.registry);
    let (requester, _provider) = start_pair(
        &mesh,
        dir.path(),
        &[("OLLAMA_URL", &stub.url()), ("EDGENT_ENS_NAME", NAME)],
        &[
            ("EDGENT_ALLOW", NAME),
            ("ENS_RPC_URL", &chain.rpc_url()),
            ("ENS_REGISTRY_ADDRESS", &registry),
        ],
    )
    .await;

    let evil = evil_on(&mesh, &[2]).await;
    evil.set_acks(true);
    let me = evil.key(0);
    let ad = ResourceAd {
        request_id: uuid::Uuid::nil(),
        node_id: me,
        ens: Some(NAME.into()),
        wallet: None,
        models: vec!["tinyllama".into()],
        free_memory_mb: 1 << 40,
        price: 1,
        load: 0.0,
        version: "0.1.0".into(),
        model_info: vec![ModelOffer {
            name: "tinyllama".into(),
            size_bytes: Some(1),
            loaded: true,
            ..ModelOffer::default()
        }],
        slots: Some(64),
        queue: Some(0),
    };
    let announce = Message::Announce(Announce {
        node_id: me,
        ens: Some(NAME.into()),
        known: Vec::new(),
        ad: Some(ad),
        ttl_ms: 600_000,
    });
    evil.send(0, &node_key(&mesh, 0), &announce)
        .await
        .expect("announce");

    // Both ads cached; the owner's name checked, the claimer's not.
    let ens_of = |st: &Value, id: &str| {
        st["mesh_providers"]
            .as_array()?
            .iter()
            .find(|p| p["node_id"] == json!(id))
            .map(|p| p["ens"].clone())
    };
    let evil_id = me.to_hex();
    eventually("the names checked", WITHIN, || async {
        let st = requester.get("/status").await;
        (ens_of(&st, &mesh.nodes[1].0) == Some(json!(NAME))
            && ens_of(&st, &evil_id) == Some(json!(format!("{NAME} (unverified)"))))
        .then_some(())
    })
    .await;

    for i in 0..2 {
        let (status, body) = requester
            .delegate(json!({"model": "tinyllama", "prompt": format!("named {i}")}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["provider"]["node_id"],
            json!(mesh.nodes[1].0),
            "{body}"
        );
        assert_eq!(body["provider"]["ens"], json!(NAME), "{body}");
        let job = requester
            .job(body["job_id"].as_str().expect("job id"))
            .await
            .expect("job");
        assert_eq!(job["peer_ens"], json!(NAME));
    }
    assert_eq!(stub.generate_calls(), 2);
    assert_eq!(
        evil.received_kind("task").len(),
        0,
        "the claimer got a task"
    );
}
