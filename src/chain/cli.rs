//! `edgent escrow ...` and `edgent ens ...`: the chain commands a user runs by hand.

use alloy::primitives::{Address, B256};
use anyhow::Context;

use super::deploy::deploy_fair_escrow;
use super::ens::{EnsClient, NodeRecords};
use super::escrow::EscrowClient;
use super::fair_escrow::{FairEscrow, DEFAULT_DISPUTE_WINDOW_SECS};
use super::rpc::http_provider;
use super::settings::ChainSettings;
use super::stake::FairStatus;

/// How far back `edgent escrow show` looks for a stake's dispute (as the reconcile at start
/// does for stakes: about 5.5 h of 2 s blocks; an RPC caps a log query near 10,000 blocks).
const EVIDENCE_LOOKBACK_BLOCKS: u64 = 9_999;

/// Escrow commands (version 4 of the escrow, the one the daemon runs on).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EscrowCmd {
    /// Deploy a new escrow, version 4 (signed by WALLET_PRIVATE_KEY), and print its address.
    Deploy {
        /// The USDC token the escrow holds.
        #[arg(long)]
        usdc: Address,
        /// The arbiter who decides disputes, and nothing else (e.g. your KeeperHub wallet);
        /// providers put it in TRUSTED_ARBITERS.
        #[arg(long)]
        arbiter: Address,
        /// Seconds after a submit during which the requester may dispute; also when anyone
        /// may finalize, and the margin of a stake's deadline (30 to 86400).
        #[arg(long, default_value_t = DEFAULT_DISPUTE_WINDOW_SECS)]
        dispute_window: u64,
    },
    /// Show the stake of a job.
    Show {
        /// The job id (0x-prefixed 32-byte hex).
        job_id: B256,
    },
    /// As the requester (WALLET_PRIVATE_KEY): take a stake back after its deadline, when
    /// nothing was submitted.
    Refund {
        /// The job id (0x-prefixed 32-byte hex).
        job_id: B256,
    },
    /// Anyone (normally the provider): pay the provider a submitted stake once its dispute
    /// window has closed undisputed (`finalize`).
    #[command(alias = "claim")]
    Finalize {
        /// The job id (0x-prefixed 32-byte hex).
        job_id: B256,
    },
    /// As the escrow's arbiter (WALLET_PRIVATE_KEY): decide a disputed stake.
    Resolve {
        /// The job id (0x-prefixed 32-byte hex).
        job_id: B256,
        /// Pay the provider (otherwise the requester is refunded).
        #[arg(long)]
        pay_provider: bool,
    },
}

/// ENS commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EnsCmd {
    /// Resolve a name to its address.
    Resolve {
        /// The ENS name.
        name: String,
    },
    /// Find the primary name of an address.
    Lookup {
        /// The address.
        address: Address,
    },
    /// Show a node's records (axl.pubkey, wallet, models, version).
    Records {
        /// The ENS name.
        name: String,
    },
    /// Publish a node's records (signed by WALLET_PRIVATE_KEY, which must own the name).
    Publish {
        /// The ENS name.
        name: String,
        /// The node's AXL public key (64 hex).
        #[arg(long)]
        axl_pubkey: Option<String>,
        /// The payout wallet.
        #[arg(long)]
        wallet: Option<Address>,
        /// Models served, comma-separated.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// The edgent version.
        #[arg(long)]
        version: Option<String>,
    },
}

/// Runs an escrow command.
pub async fn run(cmd: EscrowCmd, settings: &ChainSettings) -> anyhow::Result<()> {
    match cmd {
        EscrowCmd::Deploy {
            usdc,
            arbiter,
            dispute_window,
        } => {
            let signer = settings
                .wallet_signer()
                .context("deploying needs a funded wallet key")?;
            let deployer = signer.address();
            let provider = http_provider(&settings.rpc_url, Some(signer))?;
            let escrow = deploy_fair_escrow(&provider, usdc, arbiter, dispute_window)
                .await
                .context("deploying EdgentEscrowV4")?;
            println!("EdgentEscrowV4 deployed at {escrow}");
            println!("  usdc:           {usdc}");
            println!("  arbiter:        {arbiter}");
            println!("  dispute window: {dispute_window} s");
            println!("  deployer:       {deployer}");
            println!("Set ESCROW_ADDRESS={escrow} (and USDC_ADDRESS={usdc}) in .env; providers set TRUSTED_ARBITERS={arbiter}");
        }
        EscrowCmd::Refund { job_id } => end_by_hand(settings, job_id, Hand::Refund).await?,
        EscrowCmd::Finalize { job_id } => end_by_hand(settings, job_id, Hand::Finalize).await?,
        EscrowCmd::Resolve {
            job_id,
            pay_provider,
        } => end_by_hand(settings, job_id, Hand::Resolve(pay_provider)).await?,
        EscrowCmd::Show { job_id } => {
            let client = FairEscrow::new(EscrowClient::connect(settings, None).await?);
            let s = client.get_stake(job_id).await?;
            let i = &s.info;
            let mut rows = vec![
                ("job", job_id.to_string()),
                ("escrow", client.client().escrow_address().to_string()),
                ("status", s.status.to_string()),
            ];
            if s.status != FairStatus::None {
                rows.extend([
                    ("requester", i.requester.to_string()),
                    ("provider", i.provider.to_string()),
                    (
                        "key",
                        format!(
                            "{} (commitment to the provider's AXL key)",
                            i.key_commitment
                        ),
                    ),
                    (
                        "amount",
                        format!("{} (USDC base units, 6 decimals)", i.amount),
                    ),
                    ("created", i.created_at.to_string()),
                    ("deadline", i.deadline.to_string()),
                    ("submitted", i.submitted_at.to_string()),
                    ("output", i.output_hash.to_string()),
                ]);
            }
            print_rows("", 10, &rows);
            // What an arbiter judges (docs/paid-flow.md, "The arbiter's procedure").
            let evidence = client
                .dispute_evidence(job_id, EVIDENCE_LOOKBACK_BLOCKS)
                .await?;
            if let Some(d) = evidence.filter(|_| s.status != FairStatus::Staked) {
                println!(
                    "disputed by {} (its own transaction, so its wallet's signature)",
                    d.requester
                );
                let mut rows = vec![
                    ("task hash", d.task_hash.to_string()),
                    ("result hash", d.result_hash.to_string()),
                    (
                        "output",
                        format!("{} (the submitted commitment)", d.output_hash),
                    ),
                ];
                if let Some(tx) = d.tx {
                    rows.push(("tx", client.client().tx_url(tx)));
                }
                print_rows("  ", 11, &rows);
            }
        }
    }
    Ok(())
}

/// Prints `(label, value)` rows after `indent`, each label padded to `width`.
fn print_rows(indent: &str, width: usize, rows: &[(&str, String)]) {
    for (label, value) in rows {
        println!("{indent}{label:<width$} {value}");
    }
}

/// Which hand ends a stake: the requester's refund, anyone's finalize, the arbiter's
/// resolve (paying the provider when true).
#[derive(Debug, Clone, Copy)]
enum Hand {
    Refund,
    Finalize,
    Resolve(bool),
}

/// Ends a stake by hand, after checking it is open for this action, the wallet's (refund:
/// the requester; resolve: the arbiter), and due; the escrow's own refusal (decoded) is
/// shown for anything the checks cannot see.
async fn end_by_hand(settings: &ChainSettings, job_id: B256, hand: Hand) -> anyhow::Result<()> {
    let signer = settings
        .wallet_signer()
        .context("ending a stake needs the wallet key (WALLET_PRIVATE_KEY or WALLET_KEY_PATH)")?;
    let me = signer.address();
    let client = FairEscrow::new(EscrowClient::connect(settings, Some(signer)).await?);
    let escrow = client.client().escrow_address();
    let s = client.get_stake(job_id).await?;
    let (want, what) = match hand {
        Hand::Refund => (
            FairStatus::Staked,
            "refund (only a stake with nothing submitted is refunded)",
        ),
        Hand::Finalize => (
            FairStatus::Submitted,
            "finalize (only an undisputed submitted stake is finalized)",
        ),
        Hand::Resolve(_) => (
            FairStatus::Disputed,
            "resolve (only a disputed stake is resolved)",
        ),
    };
    if s.status == FairStatus::None {
        anyhow::bail!("no stake for job {job_id} on escrow {escrow}");
    }
    if s.status != want {
        anyhow::bail!(
            "the stake of job {job_id} is {}, not {want}: nothing to {what}",
            s.status
        );
    }
    let now = client.client().chain_time().await?;
    match hand {
        Hand::Refund => {
            let owner = s.info.requester;
            if owner != me {
                anyhow::bail!(
                    "the stake of job {job_id} is not yours: its requester is {owner}, this wallet is {me}"
                );
            }
            if now <= s.info.deadline {
                anyhow::bail!(
                    "too early: the stake of job {job_id} can be refunded after its deadline {} (chain time {now}, {} s to go)",
                    s.info.deadline,
                    s.info.deadline - now
                );
            }
        }
        Hand::Finalize => {
            let closes = s.info.submitted_at + client.dispute_window().await?;
            if now < closes {
                anyhow::bail!(
                    "too early: the dispute window of job {job_id} closes at {closes} (chain time {now}, {} s to go)",
                    closes - now
                );
            }
        }
        Hand::Resolve(_) => {
            let arbiter = client.arbiter().await?;
            if arbiter != me {
                anyhow::bail!(
                    "only the escrow's arbiter {arbiter} resolves a dispute; this wallet is {me}"
                );
            }
        }
    }
    let tx = match hand {
        Hand::Refund => client.refund(job_id).await,
        Hand::Finalize => client.finalize(job_id).await,
        Hand::Resolve(pay) => client.resolve(job_id, pay).await,
    }
    .with_context(|| format!("the escrow refused to end the stake of job {job_id}"))?;
    let after = client.get_stake(job_id).await?;
    println!("job        {job_id}");
    println!("status     {}", after.status);
    println!(
        "amount     {} (USDC base units, 6 decimals)",
        after.info.amount
    );
    println!("tx         {}", client.client().tx_url(tx));
    Ok(())
}

/// Runs an ENS command.
pub async fn run_ens(cmd: EnsCmd, settings: &ChainSettings) -> anyhow::Result<()> {
    match cmd {
        EnsCmd::Resolve { name } => {
            let ens = EnsClient::from_settings(settings, None)?;
            println!("{}", ens.resolve(&name).await?);
        }
        EnsCmd::Lookup { address } => {
            let ens = EnsClient::from_settings(settings, None)?;
            match ens.lookup_address(address).await? {
                Some(name) => println!("{name}"),
                None => anyhow::bail!("{address} has no verified primary ENS name"),
            }
        }
        EnsCmd::Records { name } => {
            let ens = EnsClient::from_settings(settings, None)?;
            let r = ens.node_records(&name).await?;
            let show = |v: Option<String>| v.unwrap_or_else(|| "(unset)".into());
            println!("axl.pubkey  {}", show(r.axl_pubkey));
            println!("wallet      {}", show(r.wallet.map(|w| w.to_string())));
            println!("models      {}", r.models.join(","));
            println!("version     {}", show(r.version));
        }
        EnsCmd::Publish {
            name,
            axl_pubkey,
            wallet,
            models,
            version,
        } => {
            let signer = settings
                .wallet_signer()
                .context("publishing needs the name owner's key")?;
            let ens = EnsClient::from_settings(settings, Some(signer))?;
            let records = NodeRecords {
                axl_pubkey,
                wallet,
                models,
                version,
            };
            let txs = ens.publish_records(&name, &records).await?;
            println!("published {} record(s) on {name}", txs.len());
            for tx in txs {
                println!("  {tx}");
            }
        }
    }
    Ok(())
}
