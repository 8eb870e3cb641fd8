//! `edgent escrow ...` and `edgent ens ...`: the chain commands a user runs by hand.

use alloy::primitives::{Address, B256};
use anyhow::Context;

use super::deploy::deploy_escrow;
use super::ens::{EnsClient, NodeRecords};
use super::escrow::{EscrowClient, StakeStatus};
use super::rpc::http_provider;
use super::settings::ChainSettings;

/// Escrow commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EscrowCmd {
    /// Deploy a new EdgentEscrow (signed by WALLET_PRIVATE_KEY) and print its address.
    Deploy {
        /// The USDC token the escrow holds.
        #[arg(long)]
        usdc: Address,
        /// The operator allowed to release and reject (e.g. your KeeperHub wallet).
        #[arg(long)]
        operator: Address,
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
    /// As the provider (WALLET_PRIVATE_KEY): take a submitted stake once the escrow's
    /// claim delay after the submit has run out (`claimTimeout`).
    Claim {
        /// The job id (0x-prefixed 32-byte hex).
        job_id: B256,
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
        EscrowCmd::Deploy { usdc, operator } => {
            let signer = settings
                .wallet_signer()
                .context("deploying needs a funded wallet key")?;
            let deployer = signer.address();
            let provider = http_provider(&settings.rpc_url, Some(signer))?;
            let escrow = deploy_escrow(&provider, usdc, operator)
                .await
                .context("deploying EdgentEscrow")?;
            println!("EdgentEscrow deployed at {escrow}");
            println!("  usdc:     {usdc}");
            println!("  operator: {operator}");
            println!("  deployer: {deployer}");
            println!("Set ESCROW_ADDRESS={escrow} (and USDC_ADDRESS={usdc}) in .env");
        }
        EscrowCmd::Refund { job_id } => end_by_hand(settings, job_id, Side::Refund).await?,
        EscrowCmd::Claim { job_id } => end_by_hand(settings, job_id, Side::Claim).await?,
        EscrowCmd::Show { job_id } => {
            let client = EscrowClient::connect(settings, None).await?;
            let s = client.get_stake(job_id).await?;
            println!("job        {job_id}");
            println!("escrow     {}", client.escrow_address());
            println!("status     {}", s.status);
            if s.status != super::escrow::StakeStatus::None {
                println!("requester  {}", s.requester);
                println!("provider   {}", s.provider);
                println!(
                    "key        {} (commitment to the provider's AXL key)",
                    s.key_commitment
                );
                println!("amount     {} (USDC base units, 6 decimals)", s.amount);
                println!("created    {}", s.created_at);
                println!("deadline   {}", s.deadline);
                println!("submitted  {}", s.submitted_at);
                println!("output     {}", s.output_hash);
            }
        }
    }
    Ok(())
}

/// Which hand ends a stake: the requester's refund or the provider's claim.
#[derive(Debug, Clone, Copy)]
enum Side {
    Refund,
    Claim,
}

/// Ends a stake by hand, after checking it is open, the wallet's, and due; the escrow's
/// own refusal (decoded) is shown for anything the checks cannot see.
async fn end_by_hand(settings: &ChainSettings, job_id: B256, side: Side) -> anyhow::Result<()> {
    let signer = settings
        .wallet_signer()
        .context("ending a stake needs the wallet key (WALLET_PRIVATE_KEY or WALLET_KEY_PATH)")?;
    let me = signer.address();
    let client = EscrowClient::connect(settings, Some(signer)).await?;
    let s = client.get_stake(job_id).await?;
    let (want, owner, role) = match side {
        Side::Refund => (StakeStatus::Staked, s.requester, "requester"),
        Side::Claim => (StakeStatus::Submitted, s.provider, "provider"),
    };
    if s.status == StakeStatus::None {
        anyhow::bail!(
            "no stake for job {job_id} on escrow {}",
            client.escrow_address()
        );
    }
    if s.status != want {
        anyhow::bail!(
            "the stake of job {job_id} is {}, not {want}: nothing to {}",
            s.status,
            match side {
                Side::Refund => "refund (only a stake with nothing submitted is refunded)",
                Side::Claim => "claim (only a submitted stake is claimed)",
            }
        );
    }
    if owner != me {
        anyhow::bail!(
            "the stake of job {job_id} is not yours: its {role} is {owner}, this wallet is {me}"
        );
    }
    if let Side::Refund = side {
        let now = client.chain_time().await?;
        if now <= s.deadline {
            anyhow::bail!(
                "too early: the stake of job {job_id} can be refunded after its deadline {} (chain time {now}, {} s to go)",
                s.deadline,
                s.deadline - now
            );
        }
    }
    let tx = match side {
        Side::Refund => client.refund(job_id).await,
        Side::Claim => client.claim_timeout(job_id).await,
    }
    .with_context(|| format!("the escrow refused to end the stake of job {job_id}"))?;
    let after = client.get_stake(job_id).await?;
    println!("job        {job_id}");
    println!("status     {}", after.status);
    println!("amount     {} (USDC base units, 6 decimals)", after.amount);
    println!("tx         {}", client.tx_url(tx));
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
