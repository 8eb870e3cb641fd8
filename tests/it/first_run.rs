//! A first run, as a user meets it (issue 15): `edgent init` writes a wallet key and a
//! `.env` that `edgent run` starts with; `EDGENT_PAYMENTS=auto` without a wallet, or with
//! the original project's escrow (an old-ABI fixture deployed on anvil), runs unpaid and
//! says why in `/status`; `EDGENT_PAYMENTS=on` with such a setup exits with status 78
//! (EX_CONFIG), which the systemd unit does not restart on. Under `auto` with the RPC down
//! at start, the daemon runs unpaid, retries the paid setup, and turns paid once the chain
//! is up.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use edgent::config::EX_CONFIG;
use edgent::harness::anvil::LocalChain;
use serde_json::Value;

use crate::support::chain::{escrow_chain, mint_usdc, DEPLOYER, OPERATOR};
use crate::support::{edgent_bin, eventually, free_port, free_port_block, DaemonProc, MeshSimProc};

alloy::sol!(
    /// The original project's escrow shape (a test fixture edgent must refuse).
    #[sol(rpc)]
    OldEscrow,
    "contracts/test-fixtures/artifacts/OldEscrow.json"
);

/// The version 2 escrow's bindings (its stake functions take many arguments).
#[allow(clippy::too_many_arguments)]
mod v2 {
    alloy::sol!(
        /// This repository's escrow at version 2, whose submit takes no proof (a test
        /// fixture edgent must refuse).
        #[sol(rpc)]
        EdgentEscrowV2,
        "contracts/test-fixtures/artifacts/EdgentEscrowV2.json"
    );
}
use v2::EdgentEscrowV2;

async fn deploy_old_escrow(chain: &LocalChain, usdc: Address) -> Address {
    let provider = edgent::chain::http_provider(&chain.rpc_url(), Some(chain.signer(0))).unwrap();
    *OldEscrow::deploy(&provider, usdc, chain.signer(OPERATOR).address())
        .await
        .expect("deploy OldEscrow")
        .address()
}

fn chain_env(chain: &LocalChain, escrow: Address, usdc: Address) -> Vec<(String, String)> {
    vec![
        ("CHAIN_RPC_URL".into(), chain.rpc_url()),
        ("CHAIN_ID".into(), chain.chain_id().to_string()),
        ("ESCROW_ADDRESS".into(), format!("{escrow:#x}")),
        ("USDC_ADDRESS".into(), format!("{usdc:#x}")),
        // A provider trusts the deployment's arbiter; a requester needs no operator key.
        (
            "TRUSTED_ARBITERS".into(),
            format!("{:#x}", chain.signer(OPERATOR).address()),
        ),
        // Within the local escrow's 30 s dispute window (with the 10 s to submit).
        ("PAYMENT_GRACE_SECS".into(), "5".into()),
    ]
}

/// `edgent <args>` with only `env` (and PATH), to completion within 60 s.
fn edgent(args: &[&str], env: &[(String, String)], cwd: &Path) -> Output {
    let mut child = Command::new(edgent_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgent");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "edgent {args:?} did not exit within 60 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_run_pays_with_the_wallet_init_made() {
    let (chain, d, _) = escrow_chain(None, &[]).await;
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    let data = dir.path().join("data");

    let mut init_args: Vec<String> = [
        "init",
        "--role",
        "requester",
        "--ens-name",
        "jetson-orin.edgent.eth",
        "--payments",
        "auto",
        "--env-file",
        env_file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in chain_env(&chain, d.escrow, d.usdc) {
        init_args.push("--set".into());
        init_args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = init_args.iter().map(String::as_str).collect();
    let out = edgent(&args, &[], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "init failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let address = stdout
        .split_whitespace()
        .find(|w| w.starts_with("0x") && w.len() == 42)
        .expect("init prints the address")
        .to_string();
    let key_path = data.join("wallet.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A second init refuses to overwrite, with the config status.
    let again = edgent(&args, &[], dir.path());
    assert_eq!(again.status.code(), Some(i32::from(EX_CONFIG)));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // Fund the new wallet: 100 USDC.
    let wallet: Address = address.parse().unwrap();
    mint_usdc(&chain, &d, wallet, U256::from(100_000_000u64)).await;

    // `edgent wallet` reads the key init wrote.
    let env_only = vec![(
        "EDGENT_ENV_FILE".to_string(),
        env_file.display().to_string(),
    )];
    let w = edgent(&["wallet"], &env_only, dir.path());
    let wout = String::from_utf8_lossy(&w.stdout).to_string();
    assert!(
        w.status.success(),
        "{wout}{}",
        String::from_utf8_lossy(&w.stderr)
    );
    assert!(wout.contains(&address), "{wout}");
    assert!(wout.contains("USDC:    100.000000"), "{wout}");

    // `edgent run` with that .env: paid, with init's wallet. (The harness's own defaults
    // are blanked so the .env decides: an empty value counts as unset.)
    let d1 = DaemonProc::start(
        &data,
        &[
            ("EDGENT_ENV_FILE", env_file.to_str().unwrap()),
            ("EDGENT_PAYMENTS", ""),
            ("AXL_API_URL", mesh.nodes[0].1.as_str()),
        ],
    )
    .await;
    // init wrote an API token (0600) and the daemon requires it: `edgent status` reads it
    // from the same .env; a caller without it is refused.
    let token_path = data.join(edgent::init::API_TOKEN_FILE);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let bare = reqwest::get(format!("{}/status", d1.url)).await.unwrap();
    assert_eq!(bare.status(), 401);
    let mut cli_env = env_only.clone();
    cli_env.push(("EDGENT_URL".to_string(), d1.url.clone()));
    let out = edgent(&["status", "--json"], &cli_env, dir.path());
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let st: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let p = &st["payments"];
    assert_eq!(p["mode"], "auto", "{st}");
    assert_eq!(p["active"], true, "{st}\n{}", d1.log());
    assert_eq!(p["wallet"].as_str(), Some(address.as_str()), "{st}");
    assert_eq!(p["balances"]["usdc"], "100.000000", "{st}");
    assert_eq!(p["balances"]["eth"], "0.000000000000000000", "{st}");
    assert_eq!(st["ens"], "jetson-orin.edgent.eth");
    assert_eq!(st["role"], "requester");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_without_a_wallet_runs_unpaid_and_says_why() {
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let d = DaemonProc::start(
        dir.path(),
        &[
            ("EDGENT_PAYMENTS", "auto"),
            ("AXL_API_URL", mesh.nodes[0].1.as_str()),
        ],
    )
    .await;
    let st = d.get("/status").await;
    let p = &st["payments"];
    assert_eq!(p["mode"], "auto", "{st}");
    assert_eq!(p["active"], false, "{st}");
    let reason = p["reason"].as_str().expect("a reason");
    assert!(reason.contains("WALLET_PRIVATE_KEY"), "{reason}");
    assert!(
        d.log().contains("payments are OFF"),
        "the log says so:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_without_a_wallet_exits_with_the_config_status() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("EDGENT_PAYMENTS".to_string(), "on".to_string()),
        (
            "EDGENT_ENV_FILE".to_string(),
            dir.path().join("none.env").display().to_string(),
        ),
        (
            "EDGENT_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
        ("AXL_SPAWN".to_string(), "false".to_string()),
        (
            "EDGENT_HTTP_ADDR".to_string(),
            format!("127.0.0.1:{}", free_port()),
        ),
    ];
    let out = edgent(&["run"], &env, dir.path());
    assert_eq!(out.status.code(), Some(i32::from(EX_CONFIG)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WALLET_PRIVATE_KEY"), "{err}");
}

/// A deployment of this repository's previous escrow (version 2: no proof at submit) is
/// refused at start by name, as the original project's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_2_escrow_is_refused_with_its_message() {
    let (chain, d, _) = escrow_chain(None, &[]).await;
    let provider = edgent::chain::http_provider(&chain.rpc_url(), Some(chain.signer(0))).unwrap();
    let v2 = *EdgentEscrowV2::deploy(&provider, d.usdc, chain.signer(OPERATOR).address())
        .await
        .expect("deploy EdgentEscrowV2")
        .address();
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut env = chain_env(&chain, v2, d.usdc);
    env.extend([
        (
            "WALLET_PRIVATE_KEY".to_string(),
            chain.key(2).expose().to_string(),
        ),
        ("EDGENT_PAYMENTS".to_string(), "on".to_string()),
        (
            "EDGENT_ENV_FILE".to_string(),
            dir.path().join("none.env").display().to_string(),
        ),
        (
            "EDGENT_DATA_DIR".to_string(),
            dir.path().join("on").display().to_string(),
        ),
        ("AXL_SPAWN".to_string(), "false".to_string()),
        ("AXL_API_URL".to_string(), mesh.nodes[0].1.clone()),
        (
            "EDGENT_HTTP_ADDR".to_string(),
            format!("127.0.0.1:{}", free_port()),
        ),
    ]);
    let out = edgent(&["run"], &env, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(EX_CONFIG)), "{err}");
    assert!(err.contains(&format!("{v2}")), "{err}");
    assert!(err.contains("version 2"), "{err}");
    assert!(err.contains("submit takes no proof"), "{err}");
    assert!(err.contains("submit(bytes32,bytes32,uint256[8])"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_escrow_is_refused_with_its_message() {
    let (chain, d, _) = escrow_chain(None, &[]).await;
    let old = deploy_old_escrow(&chain, d.usdc).await;
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut env = chain_env(&chain, old, d.usdc);
    env.push((
        "WALLET_PRIVATE_KEY".into(),
        chain.key(2).expose().to_string(),
    ));

    // on: refused at start with the config status, naming the missing function.
    let mut on = env.clone();
    on.extend([
        ("EDGENT_PAYMENTS".to_string(), "on".to_string()),
        (
            "EDGENT_ENV_FILE".to_string(),
            dir.path().join("none.env").display().to_string(),
        ),
        (
            "EDGENT_DATA_DIR".to_string(),
            dir.path().join("on").display().to_string(),
        ),
        ("AXL_SPAWN".to_string(), "false".to_string()),
        ("AXL_API_URL".to_string(), mesh.nodes[0].1.clone()),
        (
            "EDGENT_HTTP_ADDR".to_string(),
            format!("127.0.0.1:{}", free_port()),
        ),
    ]);
    let out = edgent(&["run"], &on, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(EX_CONFIG)), "{err}");
    assert!(err.contains(&format!("{old}")), "{err}");
    assert!(err.contains("original project"), "{err}");
    assert!(
        err.contains("stake(bytes32,address,bytes32,uint256,uint64)"),
        "{err}"
    );

    // auto: runs unpaid, and /status says why.
    let mut auto: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    auto.push(("EDGENT_PAYMENTS", "auto"));
    auto.push(("AXL_API_URL", mesh.nodes[0].1.as_str()));
    let daemon = DaemonProc::start(&dir.path().join("auto"), &auto).await;
    let st: Value = eventually("status", Duration::from_secs(10), || async {
        Some(daemon.get("/status").await)
    })
    .await;
    assert_eq!(st["payments"]["active"], false, "{st}");
    let reason = st["payments"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("original project"), "{reason}");
    assert!(st["chain"].is_null(), "{st}");

    // The repository's own escrow on the same chain is accepted.
    let mut good = chain_env(&chain, d.escrow, d.usdc);
    good.push((
        "WALLET_PRIVATE_KEY".into(),
        chain.key(2).expose().to_string(),
    ));
    let mut good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    good.push(("EDGENT_PAYMENTS", "on"));
    good.push(("AXL_API_URL", mesh.nodes[1].1.as_str()));
    let ok = DaemonProc::start(&dir.path().join("good"), &good).await;
    assert_eq!(ok.get("/status").await["payments"]["active"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_the_rpc_down_at_start_turns_paid_when_it_comes_up() {
    // The addresses a fresh anvil's deployment gets (the deployer's nonces decide them):
    // learnt from a first anvil, which is then stopped.
    let (probe, d, _) = escrow_chain(None, &[]).await;
    let mut env = chain_env(&probe, d.escrow, d.usdc);
    let wallet_key = probe.key(2).expose().to_string();
    drop(probe);
    // The daemon's RPC URL: a loopback port nothing listens on yet.
    let port = free_port_block(1);
    let rpc_url = format!("http://127.0.0.1:{port}");
    for (k, v) in env.iter_mut() {
        if k == "CHAIN_RPC_URL" {
            *v = rpc_url.clone();
        }
    }
    env.push(("WALLET_PRIVATE_KEY".into(), wallet_key));
    let mesh = MeshSimProc::start(1, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(("EDGENT_PAYMENTS", "auto"));
    vars.push(("AXL_API_URL", mesh.nodes[0].1.as_str()));
    let daemon = DaemonProc::start(dir.path(), &vars).await;

    // Unpaid, saying why, and retrying.
    let st = daemon.get("/status").await;
    let p = &st["payments"];
    assert_eq!(p["mode"], "auto", "{st}");
    assert_eq!(p["active"], false, "{st}");
    assert_eq!(p["retrying"], true, "{st}");
    let reason = p["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&rpc_url), "{reason}");
    assert!(
        daemon.log().contains("payments are OFF"),
        "{}",
        daemon.log()
    );

    // The chain comes up on that port with the same deployment.
    let chain = LocalChain::start_on_port(port)
        .await
        .expect("anvil on the port");
    let deployed = edgent::harness::anvil::deploy_local(
        &chain.rpc_url(),
        chain.signer(DEPLOYER),
        chain.signer(OPERATOR).address(),
        &[],
    )
    .await
    .expect("deploy");
    assert_eq!((deployed.escrow, deployed.usdc), (d.escrow, d.usdc));

    let st: Value = eventually("payments active", Duration::from_secs(60), || async {
        let st = daemon.get("/status").await;
        (st["payments"]["active"] == true).then_some(st)
    })
    .await;
    let p = &st["payments"];
    assert!(p["reason"].is_null(), "{st}");
    assert_eq!(p["retrying"], false, "{st}");
    assert_eq!(
        p["wallet"].as_str(),
        Some(format!("{:#x}", chain.signer(2).address()).as_str()),
        "{st}"
    );
    assert!(
        daemon.log().contains("payments are ON"),
        "the log says so:\n{}",
        daemon.log()
    );
}
