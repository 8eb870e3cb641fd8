//! User story: a person at a terminal drives the daemon with the `edgent` command: a prompt
//! streamed as it is generated, a conversation from a file, a chat on standard input, the
//! answer as JSON, `status` and `jobs` at a glance, and an exit code a script can act on
//! for each way a delegation fails. The real `edgent` binary against real daemons over
//! mesh-sim, the provider's backend the Ollama stub (the paid case on anvil).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use edgent::harness::ollama_stub::{OllamaStub, StubBehaviour};
use edgent::inference::demo::DEMO_MODEL;
use serde_json::{json, Value};

use crate::support;
use crate::support::paid::PaidWorld;
use crate::support::MeshSimProc;

/// Run `edgent <args>` against the daemon at `url`, feeding `stdin`.
fn edgent(url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(support::edgent_bin())
        .args(args)
        .env("EDGENT_URL", url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run edgent");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("edgent output")
}

/// The command ended with exit code `code` (its output in the message when not).
fn exits(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn edgent_async(url: &str, args: &[&str], stdin: &str) -> Output {
    let (url, stdin) = (url.to_string(), stdin.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        edgent(&url, &args, &stdin)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegate_streams_chats_answers_json_and_status_and_jobs_read_at_a_glance() {
    // The provider runs the built-in demo backend, which answers chats too.
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, _provider) =
        support::start_pair(&mesh, dir.path(), &[("INFERENCE_BACKEND", "demo")], &[]).await;
    support::until(
        "the requester sees the provider",
        Duration::from_secs(30),
        || async {
            requester.get("/status").await["mesh_providers"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        },
    )
    .await;
    let url = requester.url.clone();
    let model = DEMO_MODEL;

    // --json: one JSON line, the API's answer.
    let out = edgent_async(
        &url,
        &["delegate", "--model", model, "--json", "hello cli"],
        "",
    )
    .await;
    exits(&out, 0);
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let answer: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(answer["provider"]["node_id"], json!(mesh.nodes[1].0));
    let want = answer["output"].as_str().unwrap().to_string();
    assert!(want.contains("Reversed: ilc olleh"), "{want}");

    // --stream: the text on stdout as it comes, one summary line on stderr.
    let out = edgent_async(
        &url,
        &["delegate", "--model", model, "--stream", "hello cli"],
        "",
    )
    .await;
    exits(&out, 0);
    assert_eq!(text(&out.stdout), format!("{want}\n"));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("edgent: job ") && err.contains(", unpaid"),
        "{err}"
    );

    // --stream --json: delta lines whose text makes the output, then the answer.
    let out = edgent_async(
        &url,
        &[
            "delegate",
            "--model",
            model,
            "--stream",
            "--json",
            "hello cli",
        ],
        "",
    )
    .await;
    exits(&out, 0);
    let values: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, deltas) = values.split_last().unwrap();
    assert!(!deltas.is_empty());
    let joined: String = deltas
        .iter()
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(joined, want);
    assert_eq!(last["output"], json!(want));

    // --messages FILE: a conversation, answered as a chat.
    let conv = dir.path().join("conv.json");
    let msgs =
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    std::fs::write(&conv, msgs.to_string()).unwrap();
    let out = edgent_async(
        &url,
        &[
            "delegate",
            "--model",
            model,
            "--json",
            "--messages",
            conv.to_str().unwrap(),
        ],
        "",
    )
    .await;
    exits(&out, 0);
    let answer: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let chat_answer = answer["output"].as_str().unwrap().to_string();
    assert!(!chat_answer.is_empty());

    // --chat: two turns on stdin, two answers; the second turn carries the first.
    let out = edgent_async(
        &url,
        &["delegate", "--model", model, "--chat", "--json"],
        "first\n\nsecond\n",
    )
    .await;
    exits(&out, 0);
    let turns: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(turns.len(), 2, "{turns:?}");
    let jobs = requester.get("/jobs?limit=1").await;
    assert!(
        jobs[0]["prompt"]
            .as_str()
            .is_some_and(|p| p.contains("first") && p.contains("second")),
        "the second turn carries the conversation: {}",
        jobs[0]["prompt"]
    );

    // status and jobs, at a glance.
    let out = edgent_async(&url, &["status"], "").await;
    exits(&out, 0);
    let st = text(&out.stdout);
    let first: Vec<&str> = st
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        first,
        ["node", "axl", "payments", "models", "mesh", "jobs"],
        "{st}"
    );
    assert!(st.contains("1 providers"), "{st}");
    assert!(st.contains("payments  off (off)"), "{st}");
    let out = edgent_async(&url, &["jobs", "--limit", "3"], "").await;
    exits(&out, 0);
    let table = text(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "a header and three jobs:\n{table}");
    assert!(rows[0].starts_with("JOB"), "{table}");
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.contains("requester") && r.contains("completed")),
        "{table}"
    );
    let out = edgent_async(&url, &["jobs", "--json", "--limit", "3"], "").await;
    let raw: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(raw.as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_exit_code() {
    let ollama = OllamaStub::start(StubBehaviour {
        delay: Duration::from_secs(30),
        models: vec!["tinyllama:latest".into(), "slow:latest".into()],
        ..StubBehaviour::default()
    })
    .await
    .unwrap();
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    // The provider's API wants a token the CLI does not have.
    let (requester, provider) = support::start_pair(
        &mesh,
        dir.path(),
        &[
            ("OLLAMA_URL", &ollama.url()),
            ("EDGENT_API_TOKEN", "the-providers-own-token"),
        ],
        &[("DISCOVERY_WINDOW_MS", "1500")],
    )
    .await;
    let url = requester.url.clone();

    // No provider serves the model: 3.
    let out = edgent_async(&url, &["delegate", "--model", "nobody-has-this", "hi"], "").await;
    exits(&out, 3);
    assert!(
        text(&out.stderr).starts_with("edgent: no_provider: "),
        "{}",
        text(&out.stderr)
    );
    // The deadline passes while the provider works: 4.
    let out = edgent_async(
        &url,
        &[
            "delegate",
            "--model",
            "tinyllama",
            "--timeout-ms",
            "3000",
            "hi",
        ],
        "",
    )
    .await;
    exits(&out, 4);
    // The daemon refuses the request as wrong: 6 (with --json, the error on stdout).
    let out = edgent_async(&url, &["delegate", "--model", "", "--json", "hi"], "").await;
    exits(&out, 6);
    let body: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(body["error"], json!("bad_request"));
    // Nobody listens: 7.
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let out = edgent_async(&closed, &["delegate", "--model", "tinyllama", "hi"], "").await;
    exits(&out, 7);
    let out = edgent_async(&closed, &["status"], "").await;
    exits(&out, 7);
    // A wrong command line: 2 (clap), and a conversation file that is not one: 2.
    let out = edgent_async(&url, &["delegate", "--model", "tinyllama"], "").await;
    exits(&out, 2);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a list\"}").unwrap();
    let out = edgent_async(
        &url,
        &[
            "delegate",
            "--model",
            "tinyllama",
            "--messages",
            bad.to_str().unwrap(),
        ],
        "",
    )
    .await;
    exits(&out, 2);
    // Without the daemon's API token: 9.
    for view in ["status", "jobs"] {
        let out = edgent_async(&provider.url, &[view], "").await;
        exits(&out, 9);
        assert!(
            text(&out.stderr).starts_with("edgent: unauthorized: "),
            "{}",
            text(&out.stderr)
        );
    }
    // The only provider's backend fails: 8.
    ollama.set(|b| {
        b.fail = Some((500, "the GPU fell off the bus".into()));
        b.delay = Duration::ZERO;
    });
    let out = edgent_async(
        &url,
        &[
            "delegate",
            "--model",
            "tinyllama",
            "--timeout-ms",
            "60000",
            "hi",
        ],
        "",
    )
    .await;
    exits(&out, 8);
    assert!(
        text(&out.stderr).starts_with("edgent: provider_failed: "),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payment_exits_5() {
    let w = PaidWorld::new().await;
    let broke = w.chain.key(5);
    let (requester, _provider) = w
        .start_with(&[("WALLET_PRIVATE_KEY", broke.expose())], &[])
        .await;
    let out = edgent_async(
        &requester.url,
        &["delegate", "--model", "tinyllama", "on credit?"],
        "",
    )
    .await;
    exits(&out, 5);
    assert!(
        text(&out.stderr).starts_with("edgent: payment_failed: "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(w.ollama.generate_calls(), 0);
}

#[test]
fn an_answer_that_is_not_json_exits_1() {
    // Something else listens where the daemon should: a web page, not the API's JSON.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        let body = "<html>not edgent</html>";
        write!(
            &stream,
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let out = edgent(&url, &["status"], "");
    server.join().unwrap();
    exits(&out, 1);
    assert!(
        text(&out.stderr).starts_with("edgent: bad_answer: "),
        "{}",
        text(&out.stderr)
    );
}
