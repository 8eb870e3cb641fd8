//! The configuration as a whole: precedence, defaults, errors, `.env.example`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sources::read_dotenv;
use super::*;

fn src(dotenv: &[(&str, &str)], env: &[(&str, &str)], flags: &[(&str, &str)]) -> Sources {
    let m = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Sources {
        dotenv: m(dotenv),
        env: m(env),
        flags: m(flags),
    }
}

#[test]
fn defaults_are_sensible() {
    let c = Config::from_sources(&src(&[], &[("EDGENT_PAYMENTS", "off")], &[])).unwrap();
    assert_eq!(c.node.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(c.node.role, Role::Both);
    assert!(matches!(c.payments, Payments::Off(None)));
    assert!(c.axl.spawn);
    assert_eq!(c.axl.api_url, "http://127.0.0.1:9002");
    assert_eq!(c.axl.api_port(), 9002);
    assert_eq!(c.inference.ollama_url, "http://127.0.0.1:11434");
    assert_eq!(c.provider.price_units, 10_000);
    assert_eq!(c.axl.key_path, PathBuf::from("./data/axl-private.pem"));
}

#[test]
fn flags_beat_env_beat_dotenv() {
    let s = src(
        &[
            ("EDGENT_ROLE", "provider"),
            ("PRICE_USDC", "1"),
            ("EDGENT_ENS_NAME", "a.edgent.eth"),
        ],
        &[
            ("EDGENT_ROLE", "requester"),
            ("PRICE_USDC", "2"),
            ("EDGENT_PAYMENTS", "off"),
        ],
        &[("EDGENT_ROLE", "both")],
    );
    let c = Config::from_sources(&s).unwrap();
    assert_eq!(c.node.role, Role::Both);
    assert_eq!(c.provider.price_units, 2_000_000);
    assert_eq!(c.node.ens_name.as_deref(), Some("a.edgent.eth"));
}

#[test]
fn errors_name_the_setting() {
    for (k, v) in [
        ("EDGENT_HTTP_ADDR", "nope"),
        ("EDGENT_ROLE", "king"),
        ("EDGENT_PAYMENTS", "maybe"),
        ("AXL_SPAWN", "2"),
        ("AXL_API_URL", "ftp://x"),
        ("AXL_PEERS", "1.2.3.4:9001"),
        ("PRICE_USDC", "0.0000001"),
        ("PROVIDER_MAX_JOBS", "0"),
        ("DISCOVERY_WINDOW_MS", "-5"),
        ("INFERENCE_BACKEND", "gpt"),
    ] {
        let e =
            Config::from_sources(&src(&[("EDGENT_PAYMENTS", "off")], &[(k, v)], &[])).unwrap_err();
        assert!(e.to_string().starts_with(k), "{k}: {e}");
    }
}

#[test]
fn payments_are_auto_by_default_and_on_needs_a_wallet() {
    // auto without a wallet: unpaid, with the reason.
    let c = Config::from_sources(&Sources::default()).unwrap();
    assert_eq!(c.payments_mode, PaymentsMode::Auto);
    assert!(c.payments.chain().is_none());
    let reason = c.payments.off_reason().unwrap();
    assert!(reason.contains("WALLET_PRIVATE_KEY"), "{reason}");
    // on without a wallet: refused, naming the setting.
    let e = Config::from_sources(&src(&[], &[("EDGENT_PAYMENTS", "on")], &[])).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("WALLET_PRIVATE_KEY"), "{text}");
    assert!(text.contains("EDGENT_PAYMENTS=off"), "{text}");
    // A malformed chain value is an error under auto too.
    let e = Config::from_sources(&src(&[], &[("ESCROW_ADDRESS", "0x12")], &[])).unwrap_err();
    assert!(e.to_string().contains("ESCROW_ADDRESS"), "{e}");
    assert_eq!(PaymentsMode::parse("true").unwrap(), PaymentsMode::On);
    assert_eq!(PaymentsMode::parse("AUTO").unwrap(), PaymentsMode::Auto);
    assert!(PaymentsMode::parse("maybe").is_err());

    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let c = Config::from_sources(&src(
        &[],
        &[
            ("WALLET_PRIVATE_KEY", key),
            ("SETTLER", "direct"),
            ("PAYMENT_GRACE_SECS", "2"),
        ],
        &[],
    ))
    .unwrap();
    let Payments::On(chain) = c.payments else {
        panic!("payments are off: {:?}", c.payments);
    };
    assert_eq!(chain.chain_id, crate::chain::settings::DEFAULT_CHAIN_ID);
    assert!(chain.wallet_key.is_some());
    assert_eq!(c.paid.settler, SettlerKind::Direct);
    assert_eq!(c.paid.payment_grace, Duration::from_secs(2));
    assert!(!c.provider.tamper_output());

    for (k, v) in [("SETTLER", "bank"), ("PAYMENT_GRACE_SECS", "0")] {
        let e = Config::from_sources(&src(&[], &[("WALLET_PRIVATE_KEY", key), (k, v)], &[]))
            .unwrap_err();
        assert!(e.to_string().starts_with(k), "{k}: {e}");
    }
}

#[test]
fn usdc_amounts() {
    assert_eq!(parse_usdc("0.01"), Ok(10_000));
    assert_eq!(parse_usdc("1"), Ok(1_000_000));
    assert_eq!(parse_usdc(".5"), Ok(500_000));
    assert_eq!(parse_usdc("12.345678"), Ok(12_345_678));
    assert!(parse_usdc("1.2345678").is_err());
    assert!(parse_usdc("-1").is_err());
    assert!(parse_usdc("abc").is_err());
    assert_eq!(format_usdc(10_000), "0.01");
    assert_eq!(format_usdc(2_000_000), "2");
}

#[test]
fn env_example_is_a_valid_configuration() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    let dotenv = read_dotenv(&p).unwrap();
    assert_eq!(
        dotenv.get("EDGENT_PAYMENTS").map(String::as_str),
        Some("auto")
    );
    // The example leaves the wallet empty: the daemon runs unpaid and says why.
    let c = Config::from_sources(&Sources {
        dotenv: dotenv.clone(),
        ..Default::default()
    })
    .unwrap();
    let reason = c.payments.off_reason().unwrap();
    assert!(reason.contains("WALLET_PRIVATE_KEY"), "{reason}");
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let c = Config::from_sources(&Sources {
        dotenv,
        env: [("WALLET_PRIVATE_KEY".to_string(), key.to_string())].into(),
        ..Default::default()
    })
    .unwrap();
    assert!(c.payments.chain().is_some() && !c.provider.tamper_output());
    assert_eq!(c.paid.payment_grace, Duration::from_secs(60));
}

#[test]
fn dotenv_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(
        &p,
        "# comment\nEDGENT_ROLE=provider\nAXL_PEERS=\"tls://1.2.3.4:9001, tls://5.6.7.8:9001\"\n",
    )
    .unwrap();
    let s = Sources {
        dotenv: read_dotenv(&p).unwrap(),
        env: [("EDGENT_PAYMENTS".to_string(), "off".to_string())].into(),
        ..Default::default()
    };
    let c = Config::from_sources(&s).unwrap();
    assert_eq!(c.node.role, Role::Provider);
    assert_eq!(c.axl.peers.len(), 2);
}

/// Every key the configuration asks for, recorded by a lookup that answers nothing (so
/// `EDGENT_PAYMENTS` is `auto` and the chain settings are read too).
fn keys_read() -> BTreeSet<String> {
    let keys = RefCell::new(BTreeSet::new());
    Config::from_lookup(&|k| {
        keys.borrow_mut().insert(k.to_string());
        None
    })
    .unwrap();
    keys.into_inner()
}

#[test]
fn every_key_read_is_in_env_example() {
    let example = include_str!("../../.env.example");
    let listed: BTreeSet<&str> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    let read = keys_read();
    for key in [
        "EDGENT_HTTP_ADDR",
        "WALLET_KEY_PATH",
        "STAKE_MODE",
        "PEER_TASK_BURST",
    ] {
        assert!(read.contains(key), "{key} is not read: {read:?}");
    }
    let missing: Vec<&String> = read
        .iter()
        .filter(|k| !listed.contains(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "read but not in .env.example: {missing:?}"
    );
}

#[test]
fn debug_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, "TOKENSECRET\n").unwrap();
    let c = Config::from_sources(&src(
        &[],
        &[
            ("EDGENT_PAYMENTS", "on"),
            (
                "WALLET_PRIVATE_KEY",
                "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
            ),
            (
                "OPERATOR_PRIVATE_KEY",
                "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            ),
            ("KEEPERHUB_API_KEY", "kh_KHSECRET"),
            ("OPENAI_API_KEY", "sk-OPENAISECRET"),
            ("EDGENT_API_TOKEN_PATH", token_file.to_str().unwrap()),
            (
                "CHAIN_RPC_URL",
                "https://base-sepolia.g.example.com/v2/RPCSECRET",
            ),
            ("ENS_RPC_URL", "https://eth.example/ENSSECRET"),
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(c.front.token.as_ref().unwrap().expose(), "TOKENSECRET");
    let dump = format!("{c:?}");
    for secret in [
        "ac0974bec",
        "59c6995e9",
        "KHSECRET",
        "OPENAISECRET",
        "TOKENSECRET",
        "RPCSECRET",
        "ENSSECRET",
    ] {
        assert!(!dump.contains(secret), "{secret} in {dump}");
    }
    assert!(
        dump.contains("https://base-sepolia.g.example.com/…"),
        "{dump}"
    );
    // Both forms of one secret: refused, naming them.
    let e = Config::from_sources(&src(
        &[],
        &[
            ("EDGENT_API_TOKEN", "t"),
            ("EDGENT_API_TOKEN_PATH", token_file.to_str().unwrap()),
        ],
        &[],
    ))
    .unwrap_err();
    assert!(e.to_string().contains("EDGENT_API_TOKEN_PATH"), "{e}");
}
