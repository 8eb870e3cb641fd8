//! User story: the daemon spawns and supervises its AXL node. Here `edgent mesh-sim`
//! stands in for the AXL binary (the real one cannot be fetched in CI): a wrapper script
//! execs it, so killing the child kills the mesh, exactly as if AXL crashed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edgent::harness::ollama_stub::{stub_output, OllamaStub, StubBehaviour};
use serde_json::json;

use crate::support::{alive, edgent_bin, eventually, free_port_block, DaemonProc};

/// Write a stand-in AXL binary into `dir`: a script that ignores `-config` and execs
/// `edgent mesh-sim` with `nodes` nodes from port `base`, so its pid is the mesh's.
fn fake_axl(dir: &Path, nodes: usize, base: u16) -> PathBuf {
    let wrapper = dir.join("fake-axl-node");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# Stand-in for the AXL node: ignores -config and serves the AXL HTTP API.\nexec {} mesh-sim --nodes {nodes} --base-port {base} --seed 7\n",
            edgent_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_axl_child_is_restarted_and_no_child_outlives_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(2);
    let wrapper = fake_axl(dir.path(), 2, base);

    let ollama = OllamaStub::start(StubBehaviour::default()).await.unwrap();
    let axl0 = format!("http://127.0.0.1:{base}");
    let axl1 = format!("http://127.0.0.1:{}", base + 1);
    let mut requester = DaemonProc::start(
        &dir.path().join("r"),
        &[
            ("AXL_SPAWN", "true"),
            ("AXL_BIN", wrapper.to_str().unwrap()),
            ("AXL_API_URL", &axl0),
            ("EDGENT_ROLE", "requester"),
        ],
    )
    .await;
    let provider = DaemonProc::start(
        &dir.path().join("p"),
        &[
            ("AXL_API_URL", &axl1),
            ("EDGENT_ROLE", "provider"),
            ("OLLAMA_URL", &ollama.url()),
        ],
    )
    .await;

    // The supervisor wrote AXL's config and a key that openssl-style tools can read.
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("r/node-config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["api_port"], json!(base));
    let key = std::fs::read_to_string(dir.path().join("r/axl-private.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));

    let st = requester.get("/status").await;
    assert_eq!(st["axl"]["mode"], json!("spawned"));
    assert_eq!(st["axl"]["restarts"], json!(0));
    let pid = st["axl"]["pid"].as_u64().expect("child pid") as u32;
    assert!(alive(pid));
    let (status, body) = requester
        .delegate(json!({"model": "tinyllama", "prompt": "one"}))
        .await;
    assert_eq!(status, 200, "{body}");

    // Kill the AXL child: it comes back, with the same node ids.
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let st = eventually("AXL restarted", Duration::from_secs(30), || async {
        let st = requester.get("/status").await;
        (st["axl"]["restarts"] == json!(1) && st["axl"]["state"] == json!("running")).then_some(st)
    })
    .await;
    let new_pid = st["axl"]["pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, pid);
    assert!(!alive(pid));

    // Delegation works again once the provider's receive loop has found its node again.
    let body = eventually(
        "delegation after restart",
        Duration::from_secs(30),
        || async {
            let (status, body) = requester
                .delegate(json!({"model": "tinyllama", "prompt": "two", "timeout_ms": 5000}))
                .await;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert_eq!(
        body["output"],
        json!(stub_output("tinyllama:latest", "two"))
    );
    drop(provider);

    // Shutting the daemon down leaves no AXL process behind.
    assert!(
        requester.stop(),
        "daemon exit status; log:\n{}",
        requester.log()
    );
    assert!(!alive(new_pid), "AXL child {new_pid} outlived the daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_with_sigkill_takes_its_axl_child_along() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(1);
    let wrapper = fake_axl(dir.path(), 1, base);
    let daemon = DaemonProc::start(
        &dir.path().join("d"),
        &[
            ("AXL_SPAWN", "true"),
            ("AXL_BIN", wrapper.to_str().unwrap()),
            ("AXL_API_URL", &format!("http://127.0.0.1:{base}")),
            ("INFERENCE_BACKEND", "demo"),
        ],
    )
    .await;
    let st = daemon.get("/status").await;
    let child = st["axl"]["pid"].as_u64().expect("child pid") as u32;
    assert!(alive(child));
    let pid = daemon.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    eventually(
        "AXL child gone after the daemon was SIGKILLed",
        Duration::from_secs(10),
        || async { (!alive(child)).then_some(()) },
    )
    .await;
}
