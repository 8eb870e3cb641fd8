//! ENS against a real anvil with the test registry and resolver: resolve, reverse lookup
//! (checked forward), and the node text records written by the name's owner.

use alloy::primitives::Address;
use edgent::chain::ens::{EnsClient, EnsError, NodeRecords, KEY_MODELS};
use edgent::harness::anvil::{deploy_ens, register_name, register_reverse, LocalChain, LocalEns};

struct Fixture {
    chain: LocalChain,
    ens: LocalEns,
}

impl Fixture {
    async fn new() -> Self {
        let chain = LocalChain::start().await.unwrap();
        let ens = deploy_ens(&chain.rpc_url(), chain.signer(0)).await.unwrap();
        Self { chain, ens }
    }

    async fn register(&self, name: &str, addr: Address, owner: Address) {
        register_name(
            &self.chain.rpc_url(),
            self.chain.signer(0),
            &self.ens,
            name,
            addr,
            owner,
        )
        .await
        .unwrap();
    }

    fn client(&self, signer: Option<usize>) -> EnsClient {
        EnsClient::new(
            &self.chain.rpc_url(),
            self.ens.registry,
            signer.map(|i| self.chain.signer(i)),
        )
        .unwrap()
    }
}

#[tokio::test]
async fn resolves_names_and_verified_reverse_records() {
    let f = Fixture::new().await;
    let node = f.chain.signer(4).address();
    f.register("jetson-orin.edgent.eth", node, node).await;
    let ens = f.client(None);

    assert_eq!(ens.resolve("jetson-orin.edgent.eth").await.unwrap(), node);
    assert!(matches!(
        ens.resolve("nobody.edgent.eth").await.unwrap_err(),
        EnsError::NoResolver(_)
    ));
    assert!(matches!(
        ens.resolve("Bad Name.eth").await.unwrap_err(),
        EnsError::InvalidName(_)
    ));

    assert_eq!(ens.lookup_address(node).await.unwrap(), None);
    register_reverse(
        &f.chain.rpc_url(),
        f.chain.signer(0),
        &f.ens,
        node,
        "jetson-orin.edgent.eth",
    )
    .await
    .unwrap();
    assert_eq!(
        ens.lookup_address(node).await.unwrap().as_deref(),
        Some("jetson-orin.edgent.eth")
    );

    // A reverse record claiming a name that resolves elsewhere is not trusted.
    let liar = f.chain.signer(5).address();
    register_reverse(
        &f.chain.rpc_url(),
        f.chain.signer(0),
        &f.ens,
        liar,
        "jetson-orin.edgent.eth",
    )
    .await
    .unwrap();
    assert_eq!(ens.lookup_address(liar).await.unwrap(), None);
}

#[tokio::test]
async fn the_owner_publishes_node_records_and_anyone_reads_them() {
    let f = Fixture::new().await;
    let owner = f.chain.signer(4);
    f.register("dell-g15.edgent.eth", owner.address(), owner.address())
        .await;
    let records = NodeRecords {
        axl_pubkey: Some("ab".repeat(32)),
        wallet: Some(owner.address()),
        models: vec!["tinyllama".into(), "llama3.2:1b".into()],
        version: Some("0.1.0".into()),
    };
    let txs = f
        .client(Some(4))
        .publish_records("dell-g15.edgent.eth", &records)
        .await
        .unwrap();
    assert_eq!(txs.len(), 4);

    let reader = f.client(None);
    assert_eq!(
        reader.node_records("dell-g15.edgent.eth").await.unwrap(),
        records
    );
    assert_eq!(
        reader
            .text("dell-g15.edgent.eth", KEY_MODELS)
            .await
            .unwrap()
            .as_deref(),
        Some("tinyllama,llama3.2:1b")
    );
    assert_eq!(
        reader.text("dell-g15.edgent.eth", "url").await.unwrap(),
        None
    );

    // Someone else's key is refused before any transaction.
    let err = f
        .client(Some(5))
        .publish_records("dell-g15.edgent.eth", &records)
        .await
        .unwrap_err();
    assert!(matches!(err, EnsError::NotOwner { .. }), "{err:?}");
    // Reading needs no key; writing does.
    assert!(matches!(
        reader
            .publish_records("dell-g15.edgent.eth", &records)
            .await
            .unwrap_err(),
        EnsError::NoSigner
    ));
}

#[tokio::test]
async fn malformed_records_are_reported_not_trusted() {
    let f = Fixture::new().await;
    let owner = f.chain.signer(4);
    f.register("odd.edgent.eth", owner.address(), owner.address())
        .await;
    let writer = f.client(Some(4));
    // Write a bad pubkey through the raw resolver binding.
    let provider = edgent::chain::http_provider(&f.chain.rpc_url(), Some(owner)).unwrap();
    edgent::chain::bindings::PublicResolver::new(f.ens.resolver, &provider)
        .setText(
            alloy_ens::namehash("odd.edgent.eth"),
            "axl.pubkey".into(),
            "not-a-key".into(),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let err = writer.node_records("odd.edgent.eth").await.unwrap_err();
    assert!(
        matches!(
            err,
            EnsError::BadRecord {
                key: "axl.pubkey",
                ..
            }
        ),
        "{err:?}"
    );
}
