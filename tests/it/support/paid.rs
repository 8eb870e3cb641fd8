//! The world of a paid-flow test: anvil with MockUSDC and EdgentEscrow, the KeeperHub
//! emulator, the Ollama stub, `edgent mesh-sim`, and a requester and a provider daemon
//! (real processes) paid through the escrow; plus the money checks every scenario ends
//! with.
#![allow(dead_code)]

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use edgent::chain::{EscrowClient, FairEscrow, FairStatus};
use edgent::harness::anvil::{deploy_local_with_window, LocalChain, LocalDeployment};
use edgent::harness::keeperhub_emulator::{EmulatorFaults, KeeperHubEmulator};
use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use serde_json::{json, Value};

use crate::support::{eventually, DaemonProc, MeshSimProc};

/// The provider's price: 0.01 USDC.
pub const PRICE: u64 = 10_000;
/// What the requester's wallet starts with: 100 USDC.
pub const FUND: u64 = 100_000_000;
/// Anvil accounts: 0 deploys, 1 is the escrow's operator, 2 the requester, 3 the provider,
/// 4 a second provider (on mesh node 2, in a world of three nodes).
const OPERATOR: usize = 1;
const REQUESTER: usize = 2;
const PROVIDER: usize = 3;
/// The anvil account of the second provider ([`PaidWorld::second_provider_env`]).
pub const SECOND_PROVIDER: usize = 4;

/// How a paid world is built beyond the default (two mesh nodes, instant mining).
#[derive(Clone, Copy, Debug, Default)]
pub struct WorldOptions {
    /// Mesh nodes: 2 (requester, provider) or 3 (plus a second provider on node 2).
    pub nodes: usize,
    /// Mine a block every this many seconds (like Base) instead of at once.
    pub block_time: Option<u64>,
    /// The escrow's dispute window, seconds (default: the local 30 s).
    pub dispute_window: Option<u64>,
}

/// Everything a paid scenario runs on.
pub struct PaidWorld {
    /// The chain.
    pub chain: LocalChain,
    /// MockUSDC + escrow.
    pub deployment: LocalDeployment,
    /// KeeperHub's stand-in.
    pub keeperhub: KeeperHubEmulator,
    /// Ollama's stand-in (the provider's backend).
    pub ollama: OllamaStub,
    /// Two mesh nodes: 0 requester, 1 provider.
    pub mesh: MeshSimProc,
    /// Data directories.
    pub dir: tempfile::TempDir,
    reader: EscrowClient,
    /// The requester's wallet.
    pub requester_wallet: Address,
    /// The requester's key (dev account 2, or a fresh key holding USDC and no ETH).
    requester_key: edgent::chain::Secret,
    /// The provider's wallet.
    pub provider_wallet: Address,
}

impl PaidWorld {
    /// Start the chain, deploy, fund the requester, start the emulator, stub and mesh.
    pub async fn new() -> PaidWorld {
        Self::build(false, WorldOptions::default()).await
    }

    /// A world of `nodes` mesh nodes, instant mining.
    pub async fn of_nodes(nodes: usize) -> PaidWorld {
        PaidWorld::with(WorldOptions {
            nodes,
            ..WorldOptions::default()
        })
        .await
    }

    /// A world built with `opts` (more mesh nodes, timed blocks).
    pub async fn with(opts: WorldOptions) -> PaidWorld {
        Self::build(false, opts).await
    }

    /// As [`PaidWorld::new`], with `n` mesh nodes: 0 requester, 1 provider, the rest free
    /// for the test itself (a raw peer).
    pub async fn with_nodes(n: usize) -> PaidWorld {
        Self::build(
            false,
            WorldOptions {
                nodes: n,
                ..WorldOptions::default()
            },
        )
        .await
    }

    /// As [`PaidWorld::new`], but the requester's wallet is a fresh key that holds USDC
    /// and no ETH at all (it can sign, never send a transaction).
    pub async fn with_gasless_requester() -> PaidWorld {
        Self::build(true, WorldOptions::default()).await
    }

    async fn build(gasless: bool, opts: WorldOptions) -> PaidWorld {
        let chain = match opts.block_time {
            Some(s) => LocalChain::start_with_block_time(s).await,
            None => LocalChain::start().await,
        }
        .expect("anvil (npm ci installs it)");
        let requester_key = if gasless {
            let fresh = alloy::signers::local::PrivateKeySigner::random();
            edgent::chain::Secret::new(format!("{:#x}", fresh.to_bytes()))
        } else {
            chain.key(REQUESTER)
        };
        let requester_wallet = requester_key.to_signer().expect("key").address();
        let provider_wallet = chain.signer(PROVIDER).address();
        let deployment = deploy_local_with_window(
            &chain.rpc_url(),
            chain.signer(0),
            chain.signer(OPERATOR).address(),
            &[(requester_wallet, U256::from(FUND))],
            opts.dispute_window
                .unwrap_or(edgent::harness::anvil::LOCAL_DISPUTE_WINDOW_SECS),
        )
        .await
        .expect("deploy");
        let keeperhub = KeeperHubEmulator::start(
            &chain.rpc_url(),
            deployment.escrow,
            chain.signer(OPERATOR),
            EmulatorFaults::default(),
        )
        .await
        .expect("KeeperHub emulator");
        let reader = EscrowClient::connect(&chain.settings(&deployment), None)
            .await
            .expect("escrow reader");
        let ollama = OllamaStub::start(StubBehaviour::default())
            .await
            .expect("ollama stub");
        let mesh = MeshSimProc::start(opts.nodes.max(2), 0);
        PaidWorld {
            chain,
            deployment,
            keeperhub,
            ollama,
            mesh,
            dir: tempfile::tempdir().expect("tempdir"),
            reader,
            requester_wallet,
            requester_key,
            provider_wallet,
        }
    }

    fn chain_env(&self, key: usize) -> Vec<(String, String)> {
        let key = if key == REQUESTER {
            self.requester_key.clone()
        } else {
            self.chain.key(key)
        };
        vec![
            ("EDGENT_PAYMENTS".into(), "on".into()),
            ("CHAIN_RPC_URL".into(), self.chain.rpc_url()),
            ("CHAIN_ID".into(), self.chain.chain_id().to_string()),
            (
                "ESCROW_ADDRESS".into(),
                format!("{:#x}", self.deployment.escrow),
            ),
            (
                "USDC_ADDRESS".into(),
                format!("{:#x}", self.deployment.usdc),
            ),
            ("WALLET_PRIVATE_KEY".into(), key.expose().to_string()),
            ("EXPLORER_URL".into(), "http://explorer.invalid".into()),
            ("PAYMENT_TICK_MS".into(), "100".into()),
            ("PAYMENT_GRACE_SECS".into(), "1".into()),
            // Providers trust the deployment's arbiter (the operator account).
            (
                "TRUSTED_ARBITERS".into(),
                format!("{:#x}", self.deployment.operator),
            ),
        ]
    }

    /// The requester daemon's settings: its own wallet releases its stakes (no operator
    /// credential).
    pub fn requester_env(&self) -> Vec<(String, String)> {
        let mut env = self.chain_env(REQUESTER);
        env.push(("AXL_API_URL".into(), self.mesh.nodes[0].1.clone()));
        env.push(("EDGENT_ROLE".into(), "requester".into()));
        env.push(("EDGENT_ENS_NAME".into(), "jetson-orin.edgent.eth".into()));
        env
    }

    /// The provider daemon's settings (Ollama stub backend, price 0.01 USDC).
    pub fn provider_env(&self) -> Vec<(String, String)> {
        let mut env = self.chain_env(PROVIDER);
        env.push(("AXL_API_URL".into(), self.mesh.nodes[1].1.clone()));
        env.push(("EDGENT_ROLE".into(), "provider".into()));
        env.push(("EDGENT_ENS_NAME".into(), "dell-g15.edgent.eth".into()));
        env.push(("OLLAMA_URL".into(), self.ollama.url()));
        env.push(("PRICE_USDC".into(), "0.01".into()));
        env
    }

    /// The settings of a second provider daemon on mesh node 2 (a world of three nodes),
    /// paid into anvil account [`SECOND_PROVIDER`], with `ollama_url` as its backend.
    pub fn second_provider_env(&self, ollama_url: &str) -> Vec<(String, String)> {
        let mut env = self.chain_env(SECOND_PROVIDER);
        env.push(("AXL_API_URL".into(), self.mesh.nodes[2].1.clone()));
        env.push(("EDGENT_ROLE".into(), "provider".into()));
        env.push(("EDGENT_ENS_NAME".into(), "rtx-4090.edgent.eth".into()));
        env.push(("OLLAMA_URL".into(), ollama_url.to_string()));
        env.push(("PRICE_USDC".into(), "0.01".into()));
        env
    }

    /// The settings of a provider daemon on mesh node `node`, paid into anvil account
    /// `account`, with `ollama_url` as its backend and `price` (USDC) as its price.
    pub fn provider_env_at(
        &self,
        node: usize,
        account: usize,
        ollama_url: &str,
        price: &str,
    ) -> Vec<(String, String)> {
        let mut env = self.chain_env(account);
        env.push(("AXL_API_URL".into(), self.mesh.nodes[node].1.clone()));
        env.push(("EDGENT_ROLE".into(), "provider".into()));
        env.push(("OLLAMA_URL".into(), ollama_url.to_string()));
        env.push(("PRICE_USDC".into(), price.to_string()));
        env
    }

    /// The wallet of anvil account `i`.
    pub fn wallet(&self, i: usize) -> Address {
        self.chain.signer(i).address()
    }

    /// The USDC balance of `a`, base units.
    pub async fn usdc_of(&self, a: Address) -> u64 {
        let v = self.reader.usdc_balance(a).await.expect("balance");
        u64::try_from(v).expect("fits u64")
    }

    /// Start both daemons; `provider_extra` is added to the provider's settings.
    pub async fn start(&self, provider_extra: &[(&str, &str)]) -> (DaemonProc, DaemonProc) {
        self.start_with(&[], provider_extra).await
    }

    /// Start both daemons with extra settings for each (they override the defaults).
    pub async fn start_with(
        &self,
        requester_extra: &[(&str, &str)],
        provider_extra: &[(&str, &str)],
    ) -> (DaemonProc, DaemonProc) {
        let owned = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut p_env = self.provider_env();
        p_env.extend(owned(provider_extra));
        let mut r_env = self.requester_env();
        r_env.extend(owned(requester_extra));
        // The requester first: it may be the one spawning the AXL node both attach to.
        let requester = DaemonProc::start_owned(&self.dir.path().join("requester"), r_env).await;
        let provider = DaemonProc::start_owned(&self.dir.path().join("provider"), p_env).await;
        (requester, provider)
    }

    /// USDC balances: (requester, provider, escrow), base units.
    pub async fn balances(&self) -> (u64, u64, u64) {
        let b = |a: Address| async move {
            let v = self.reader.usdc_balance(a).await.expect("balance");
            u64::try_from(v).expect("fits u64")
        };
        (
            b(self.requester_wallet).await,
            b(self.provider_wallet).await,
            b(self.deployment.escrow).await,
        )
    }

    /// Conservation: no unit created or lost, and the escrow holds exactly `live` stakes.
    pub async fn assert_conserved(&self, live: u64) {
        let (r, p, e) = self.balances().await;
        assert_eq!(r + p + e, FUND, "USDC created or lost: r={r} p={p} e={e}");
        assert_eq!(e, live, "the escrow holds {e}, live stakes are {live}");
    }

    /// As [`PaidWorld::assert_conserved`], with the wallets of more providers (`others`)
    /// counted.
    pub async fn assert_conserved_with(&self, others: &[Address], live: u64) {
        let (r, p, e) = self.balances().await;
        let mut all = r + p + e;
        for a in others {
            all += self.usdc_of(*a).await;
        }
        assert_eq!(
            all, FUND,
            "USDC created or lost: r={r} p={p} e={e} + {others:?}"
        );
        assert_eq!(e, live, "the escrow holds {e}, live stakes are {live}");
    }

    /// The stake's on-chain status (escrow v4).
    pub async fn stake_status(&self, job: &str) -> FairStatus {
        let id: B256 = job.parse().expect("job id");
        let fair = FairEscrow::new(self.reader.clone());
        fair.get_stake(id).await.expect("getStake").status
    }

    /// Waits until the requester has disputed `job`'s submit on chain, then decides it as
    /// the escrow's arbiter, refunding the requester.
    pub async fn arbiter_refunds(&self, job: &str) {
        crate::support::eventually(
            &format!("{job} disputed"),
            Duration::from_secs(60),
            || async { (self.stake_status(job).await == FairStatus::Disputed).then_some(()) },
        )
        .await;
        self.resolve(job, false).await;
    }

    /// The escrow's arbiter (the operator account) deciding `job`'s dispute.
    pub async fn resolve(&self, job: &str, pay_provider: bool) {
        let id: B256 = job.parse().expect("job id");
        let arbiter = EscrowClient::connect(
            &self.chain.settings(&self.deployment),
            Some(self.chain.signer(OPERATOR)),
        )
        .await
        .expect("arbiter client");
        FairEscrow::new(arbiter)
            .resolve(id, pay_provider)
            .await
            .expect("resolve");
    }

    /// An escrow client signing with the requester's funded wallet.
    pub async fn requester_client(&self) -> EscrowClient {
        EscrowClient::connect(
            &self.chain.settings(&self.deployment),
            Some(self.requester_key.to_signer().expect("key")),
        )
        .await
        .expect("requester escrow client")
    }

    /// Gives the requester's wallet 1 ETH (a gasless requester can send its release then).
    pub async fn fund_requester_eth(&self) {
        self.chain
            .set_eth(
                self.requester_wallet,
                U256::from(10u64).pow(U256::from(18u64)),
            )
            .await
            .expect("set balance");
    }

    /// Transactions the requester's wallet has sent.
    pub async fn requester_txs(&self) -> u64 {
        use alloy::providers::Provider;
        self.chain
            .provider()
            .get_transaction_count(self.requester_wallet)
            .await
            .expect("nonce")
    }

    /// Move the chain's clock forward.
    pub async fn advance(&self, secs: u64) {
        self.chain.advance_time(secs).await.expect("advance time");
    }
}

/// Wait until `d` shows `job`'s payment in `status`; returns the job.
pub async fn payment_becomes(d: &DaemonProc, id: &str, status: &str, within: Duration) -> Value {
    eventually(&format!("{} payment {status}", d.url), within, || async {
        let j = d.job(id).await?;
        (j["payment"]["status"] == json!(status)).then_some(j)
    })
    .await
}

/// A paid `task` for `prompt` as the hostile requester sends it from the evil node: staked by
/// an EIP-3009 authorization the requester's wallet signs for the provider (mesh node 1),
/// which the provider submits itself; its deadline `deadline_s` seconds away.
pub async fn hostile_task(
    w: &PaidWorld,
    job: B256,
    prompt: &str,
    deadline_s: u64,
    stream: bool,
) -> Value {
    let client = w.requester_client().await;
    let provider_key = crate::support::evil::node_key(&w.mesh, 1);
    let now = client.chain_time().await.expect("chain time");
    let stake_deadline = now + deadline_s + edgent::harness::anvil::LOCAL_DISPUTE_WINDOW_SECS;
    let auth = client
        .sign_stake_authorization(
            job,
            w.provider_wallet,
            edgent::chain::key_commitment(&provider_key.0),
            U256::from(PRICE),
            stake_deadline,
            stake_deadline,
        )
        .await
        .expect("authorization");
    json!({
        "v": 1, "type": "task", "job_id": format!("{job:#x}"), "model": "tinyllama",
        "prompt": prompt, "deadline_ms": edgent::jobs::now_ms() + deadline_s * 1000,
        "msg_id": uuid::Uuid::new_v4().to_string(), "stream": stream,
        "stake": {
            "chain_id": w.chain.chain_id(),
            "escrow": format!("{:#x}", w.deployment.escrow),
            "amount": PRICE.to_string(),
            "authorization": edgent::paid::authorization_to_wire(&auth),
        },
    })
}
