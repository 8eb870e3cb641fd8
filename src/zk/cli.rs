//! `edgent zk prove` and `edgent zk verify`: the module's two operations on snarkjs files.

use std::path::PathBuf;

use anyhow::Context;

use super::snarkjs::{PublicSignals, SnarkjsProof};

/// `edgent zk …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ZkCmd {
    /// Prove that an output and a provider key match their commitments for a job; writes
    /// snarkjs `proof.json` and `public.json`.
    Prove {
        /// File holding the output (its raw bytes are hashed with keccak256).
        #[arg(long)]
        output_file: PathBuf,
        /// The provider's 32-byte AXL public key, 64 hex digits (optional 0x).
        #[arg(long)]
        provider_key: String,
        /// The bytes32 job id, 64 hex digits (optional 0x).
        #[arg(long)]
        job_id: String,
        /// Where to write the proof.
        #[arg(long, default_value = "proof.json")]
        proof_out: PathBuf,
        /// Where to write the public signals.
        #[arg(long, default_value = "public.json")]
        public_out: PathBuf,
    },
    /// Check a snarkjs proof and its public signals against the committed verification key.
    Verify {
        /// snarkjs `proof.json`.
        proof: PathBuf,
        /// snarkjs `public.json`.
        public: PathBuf,
        /// A snarkjs `verification_key.json` to use instead of the committed one.
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

/// Runs one `edgent zk` subcommand.
pub fn run(cmd: ZkCmd) -> anyhow::Result<()> {
    match cmd {
        #[cfg(not(feature = "prover"))]
        ZkCmd::Prove { .. } => anyhow::bail!("this edgent was built without the `prover` feature"),
        #[cfg(feature = "prover")]
        ZkCmd::Prove {
            output_file,
            provider_key,
            job_id,
            proof_out,
            public_out,
        } => prove_cmd(
            &output_file,
            &provider_key,
            &job_id,
            &proof_out,
            &public_out,
        ),
        ZkCmd::Verify { proof, public, key } => {
            let proof_text = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let public_text = std::fs::read_to_string(&public)
                .with_context(|| format!("reading {}", public.display()))?;
            let proof_v = SnarkjsProof::from_json(&proof_text)
                .with_context(|| format!("parsing {}", proof.display()))?;
            let public_v = PublicSignals::from_json(&public_text)
                .with_context(|| format!("parsing {}", public.display()))?;
            match key {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let vk = super::VerifyingKey::from_snarkjs_json(&text)
                        .with_context(|| format!("parsing {}", path.display()))?;
                    super::verify_with_key(&vk, &proof_v, &public_v)?;
                }
                None => super::verify(&proof_v, &public_v)?,
            }
            println!("OK: the proof verifies");
            Ok(())
        }
    }
}

/// Parses 32 bytes written as 64 hex digits, with or without `0x`.
pub fn parse_hex32(what: &str, s: &str) -> anyhow::Result<[u8; 32]> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(digits).with_context(|| format!("{what} is not hex"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "{what} must be 32 bytes (64 hex digits), got {}",
            bytes.len()
        )
    })
}

#[cfg(feature = "prover")]
fn prove_cmd(
    output_file: &std::path::Path,
    provider_key: &str,
    job_id: &str,
    proof_out: &std::path::Path,
    public_out: &std::path::Path,
) -> anyhow::Result<()> {
    let output =
        std::fs::read(output_file).with_context(|| format!("reading {}", output_file.display()))?;
    let key = parse_hex32("--provider-key", provider_key)?;
    let job = parse_hex32("--job-id", job_id)?;
    let (proof, public) = super::prove(&output, &key, &job)?;
    std::fs::write(proof_out, proof.to_json() + "\n")
        .with_context(|| format!("writing {}", proof_out.display()))?;
    std::fs::write(public_out, public.to_json() + "\n")
        .with_context(|| format!("writing {}", public_out.display()))?;
    let c = super::commitments(&output, &key, &job);
    println!(
        "outputCommitment (on-chain outputHash): {}",
        c.output_hash_hex()
    );
    println!("walletCommitment: {}", c.wallet_commitment_hex());
    println!("wrote {} and {}", proof_out.display(), public_out.display());
    Ok(())
}
