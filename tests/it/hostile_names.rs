//! User story: an ENS name is a claim until checked (issue 21, item 5; docs/threat-model.md,
//! line 12), a provider's and a requester's alike. The ENS registry and resolver run on
//! anvil. In the first test the name `dell-g15.edgent.eth` is registered to its owner, whose
//! `axl.pubkey` record names the honest provider's key (mesh node 1); the evil node (mesh
//! node 2, no daemon) announces the same name with a cheaper, better-looking ad; the
//! requester (node 0) allows only that name. In the second the provider allows only the
//! honest requester's name, and the evil node sends tasks under it.

use std::time::Duration;

use edgent::chain::ens::{EnsClient, NodeRecords};
use edgent::harness::anvil::{deploy_ens, register_name};
use edgent::protocol::{Announce, Message, ModelOffer, ResourceAd};
use serde_json::{json, Value};

use crate::support::eventually;
use crate::support::evil::{evil_on, introduce, node_key};
use crate::support::paid::{payment_becomes, PaidWorld, FUND, PRICE, SECOND_PROVIDER};

const NAME: &str = "dell-g15.edgent.eth";
const WITHIN: Duration = Duration::from_secs(60);

/// On main the claim was enough: `EDGENT_ALLOW=dell-g15.edgent.eth` admitted the evil node
/// (its ad the cheapest and loaded, so it got the task), and the name was shown as trusted.
/// Now only the node whose key the name's records hold is admitted and shown plain; the
/// claimer is shown `(unverified)` and never gets a task. Payments are on (escrow v4 and
/// ENS on one anvil): the owner is paid for each delegation, the claimer's wallet (anvil
/// account 4, named in its ad) nothing, and USDC is conserved with no stake left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_name_is_not_admitted_by_the_allow_list_and_the_owner_is() {
    let w = PaidWorld::with_nodes(3).await;
    let rpc = w.chain.rpc_url();
    let ens = deploy_ens(&rpc, w.chain.signer(0)).await.expect("ENS");
    let owner = w.chain.signer(5);
    register_name(
        &rpc,
        w.chain.signer(0),
        &ens,
        NAME,
        owner.address(),
        owner.address(),
    )
    .await
    .expect("register");
    EnsClient::new(&rpc, ens.registry, Some(owner))
        .expect("client")
        .publish_records(
            NAME,
            &NodeRecords {
                axl_pubkey: Some(w.mesh.nodes[1].0.clone()),
                // A paid ad names its wallet: the records must name it too.
                wallet: Some(w.provider_wallet),
                ..NodeRecords::default()
            },
        )
        .await
        .expect("records");
    let registry = format!("{:#x}", ens.registry);
    // The provider announces NAME (PaidWorld's provider settings).
    let (requester, provider) = w
        .start_with(
            &[
                ("EDGENT_ALLOW", NAME),
                ("ENS_RPC_URL", &rpc),
                ("ENS_REGISTRY_ADDRESS", &registry),
            ],
            &[],
        )
        .await;

    let evil = evil_on(&w.mesh, &[2]).await;
    evil.set_acks(true);
    let me = evil.key(0);
    let evil_wallet = w.wallet(SECOND_PROVIDER);
    let ad = ResourceAd {
        request_id: uuid::Uuid::nil(),
        node_id: me,
        ens: Some(NAME.into()),
        wallet: Some(format!("{evil_wallet:#x}")),
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
    evil.send(0, &node_key(&w.mesh, 0), &announce)
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
        (ens_of(&st, &w.mesh.nodes[1].0) == Some(json!(NAME))
            && ens_of(&st, &evil_id) == Some(json!(format!("{NAME} (unverified)"))))
        .then_some(())
    })
    .await;

    for i in 0..2u64 {
        let (status, body) = requester
            .delegate(
                json!({"model": "tinyllama", "prompt": format!("named {i}"), "wait": "settled"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["provider"]["node_id"],
            json!(w.mesh.nodes[1].0),
            "{body}"
        );
        assert_eq!(body["provider"]["ens"], json!(NAME), "{body}");
        assert_eq!(body["payment"]["status"], json!("released"), "{body}");
        let id = body["job_id"].as_str().expect("job id");
        let job = requester.job(id).await.expect("job");
        assert_eq!(job["peer_ens"], json!(NAME));
        payment_becomes(&provider, id, "released", WITHIN).await;
        assert_eq!(
            w.balances().await,
            (FUND - (i + 1) * PRICE, (i + 1) * PRICE, 0)
        );
    }
    assert_eq!(w.ollama.generate_calls(), 2);
    assert_eq!(
        evil.received_kind("task").len(),
        0,
        "the claimer got a task"
    );
    assert_eq!(w.usdc_of(evil_wallet).await, 0, "the claimer was paid");
    w.assert_conserved(0).await;
}

/// The requester's side of line 12: a task's `sender_ens` is a claim too. The provider
/// serves only `EDGENT_ALLOW=jetson-orin.edgent.eth`, whose `axl.pubkey` record names the
/// honest requester (mesh node 0). The evil node (node 2) sends a task announcing that name,
/// with a valid stake (an authorization from a funded wallet: it lends the requester's).
/// Before the fix a provider matched no name of a requester and showed the claim plain; a
/// provider that filtered by the claim served the evil task. Now the claimer is refused
/// `not_allowed` before its stake is touched, and the name's owner is served, paid, and
/// shown by its checked name. USDC is conserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_claiming_an_allowed_name_is_refused_and_the_owner_is_served() {
    use alloy::primitives::{keccak256, U256};
    use edgent::harness::anvil::LOCAL_DISPUTE_WINDOW_SECS;

    const REQUESTER_NAME: &str = "jetson-orin.edgent.eth";
    let w = PaidWorld::with_nodes(3).await;
    let rpc = w.chain.rpc_url();
    let ens = deploy_ens(&rpc, w.chain.signer(0)).await.expect("ENS");
    let owner = w.chain.signer(5);
    register_name(
        &rpc,
        w.chain.signer(0),
        &ens,
        REQUESTER_NAME,
        owner.address(),
        owner.address(),
    )
    .await
    .expect("register");
    EnsClient::new(&rpc, ens.registry, Some(owner))
        .expect("client")
        .publish_records(
            REQUESTER_NAME,
            &NodeRecords {
                axl_pubkey: Some(w.mesh.nodes[0].0.clone()),
                ..NodeRecords::default()
            },
        )
        .await
        .expect("records");
    let registry = format!("{:#x}", ens.registry);
    let (requester, provider) = w
        .start(&[
            ("EDGENT_ALLOW", REQUESTER_NAME),
            ("ENS_RPC_URL", &rpc),
            ("ENS_REGISTRY_ADDRESS", &registry),
        ])
        .await;

    // The claimer: a task announcing the allowed name, with a stake the provider could take.
    let evil = evil_on(&w.mesh, &[2]).await;
    let client = w.requester_client().await;
    let to = node_key(&w.mesh, 1);
    let job = keccak256(b"a claimed requester name");
    let now = client.chain_time().await.expect("chain time");
    let stake_deadline = now + 30 + LOCAL_DISPUTE_WINDOW_SECS;
    let auth = client
        .sign_stake_authorization(
            job,
            w.provider_wallet,
            edgent::chain::key_commitment(&to.0),
            U256::from(PRICE),
            stake_deadline,
            stake_deadline,
        )
        .await
        .expect("authorization");
    let task = json!({
        "v": 1, "type": "task", "job_id": format!("{job:#x}"), "model": "tinyllama",
        "prompt": "serve me, I am jetson-orin", "deadline_ms": edgent::jobs::now_ms() + 30_000,
        "msg_id": uuid::Uuid::new_v4().to_string(), "sender_ens": REQUESTER_NAME,
        "stake": {
            "chain_id": w.chain.chain_id(),
            "escrow": format!("{:#x}", w.deployment.escrow),
            "amount": PRICE.to_string(),
            "authorization": edgent::paid::authorization_to_wire(&auth),
        },
    });
    // It introduces itself first, so the provider may answer it (a refusal goes only to a
    // full key it knows).
    introduce(&evil, 0, &to).await;
    evil.send_json(0, &to, &task).await.expect("send");
    let refused = evil
        .wait_for(WITHIN, |r| {
            r.kind() == Some("task_error") || r.kind() == Some("task_result")
        })
        .await
        .expect("an answer");
    match refused.msg {
        Some(Message::TaskError(e)) => {
            assert_eq!(e.code.as_str(), "not_allowed", "{e:?}");
        }
        other => panic!("the claimer was served: {other:?}"),
    }
    assert!(evil.received_kind("task_result").is_empty());
    assert_eq!(w.ollama.generate_calls(), 0, "the claimer's prompt ran");
    assert!(provider.job(&format!("{job:#x}")).await.is_none());
    assert_eq!(w.balances().await, (FUND, 0, 0), "no stake was taken");

    // The owner of the name is served, paid, and shown by its checked name.
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "the owner asks", "wait": "settled"}))
        .await;
    assert_eq!(status, 200, "{body}\n{}", provider.log());
    assert_eq!(body["payment"]["status"], json!("released"), "{body}");
    let id = body["job_id"].as_str().expect("job id").to_string();
    let pjob = payment_becomes(&provider, &id, "released", WITHIN).await;
    assert_eq!(pjob["peer_ens"], json!(REQUESTER_NAME), "{pjob}");
    assert_eq!(w.ollama.generate_calls(), 1);
    assert_eq!(w.balances().await, (FUND - PRICE, PRICE, 0));
    w.assert_conserved(0).await;
}
