//! User story: an operator points Prometheus at both daemons' `GET /metrics` after a
//! delegation and sees, per side, the messages exchanged by type, no drops, the finished
//! job, one latency observation and a healthy AXL child.
//!
//! The scrape is parsed with `openmetrics-parser`, a strict OpenMetrics parser (it
//! requires the `# EOF` terminator, `_total` counter samples, well-formed histogram
//! buckets), so a malformed exposition fails here rather than in a user's Prometheus.

use std::time::Duration;

use edgent::inference::demo::DEMO_MODEL;
use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use serde_json::json;

use crate::support;
use crate::support::{eventually, DaemonProc, MeshSimProc};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// Scrape `/metrics`, check its content type, and return the raw text.
async fn scrape(d: &DaemonProc) -> String {
    let r = reqwest::get(format!("{}/metrics", d.url))
        .await
        .expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        ct.starts_with("application/openmetrics-text"),
        "content-type {ct:?}"
    );
    r.text().await.expect("body")
}

/// Parse a scrape, failing the test with the text when it is not valid OpenMetrics.
fn parse(text: &str) -> Exposition {
    match parse_openmetrics(text) {
        Ok(e) => e,
        Err(e) => panic!("/metrics is not valid OpenMetrics: {e:?}\n{text}"),
    }
}

/// The family `name`, which must exist and have the type `ty`.
fn family<'a>(
    expo: &'a Exposition,
    name: &str,
    ty: OpenMetricsType,
) -> &'a openmetrics_parser::MetricFamily<OpenMetricsType, OpenMetricsValue> {
    let f = expo.families.get(name).unwrap_or_else(|| {
        panic!(
            "no metric family {name}; have {:?}",
            expo.families.keys().collect::<Vec<_>>()
        )
    });
    assert_eq!(f.family_type, ty, "type of {name}");
    f
}

/// The value of the one sample of `name` whose labels are exactly `labels`.
fn value(expo: &Exposition, name: &str, ty: OpenMetricsType, labels: &[(&str, &str)]) -> f64 {
    let f = family(expo, name, ty);
    let mut found = None;
    for s in f.iter_samples() {
        let set = s.get_labelset().expect("labelset");
        let names: Vec<&String> = set.iter_names().collect();
        if names.len() != labels.len() {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| set.get_label_value(k) == Some(*v))
        {
            assert!(
                found.is_none(),
                "two samples of {name} with labels {labels:?}"
            );
            found = Some(match &s.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) => g.as_f64(),
                OpenMetricsValue::Unknown(u) => u.as_f64(),
                other => panic!("{name}{labels:?} is not a number: {other:?}"),
            });
        }
    }
    found.unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

/// Every sample of a counter family as (label value of `label`, value).
fn counter_by(expo: &Exposition, name: &str, label: &str) -> Vec<(String, f64)> {
    let f = family(expo, name, OpenMetricsType::Counter);
    let mut out = Vec::new();
    for s in f.iter_samples() {
        let set = s.get_labelset().expect("labelset");
        let l = set
            .get_label_value(label)
            .unwrap_or_else(|| panic!("{name} sample without {label}"))
            .to_string();
        let v = match &s.value {
            OpenMetricsValue::Counter(c) => c.value.as_f64(),
            other => panic!("{name} sample is not a counter: {other:?}"),
        };
        out.push((l, v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Assert that the counter family `name` (labelled by `type`) has exactly `expected` as
/// its non-zero samples, and a zero sample for every other message type.
fn assert_messages(expo: &Exposition, name: &str, expected: &[(&str, f64)], who: &str) {
    let all = counter_by(expo, name, "type");
    for t in edgent::protocol::MESSAGE_TYPES {
        assert!(
            all.iter().any(|(l, _)| l == t),
            "{who}: {name} has no series for type {t}: {all:?}"
        );
    }
    let nonzero: Vec<(String, f64)> = all.into_iter().filter(|(_, v)| *v != 0.0).collect();
    let want: Vec<(String, f64)> = {
        let mut w: Vec<(String, f64)> = expected.iter().map(|(t, v)| (t.to_string(), *v)).collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    };
    assert_eq!(nonzero, want, "{who}: {name}");
}

/// The one histogram sample of `name`: (count, sum, buckets as (upper bound, cumulative count)).
fn histogram(expo: &Exposition, name: &str) -> (u64, f64, Vec<(f64, f64)>) {
    let f = family(expo, name, OpenMetricsType::Histogram);
    let samples: Vec<_> = f.iter_samples().collect();
    assert_eq!(samples.len(), 1, "{name} has one unlabelled series");
    match &samples[0].value {
        OpenMetricsValue::Histogram(h) => (
            h.count.unwrap_or_else(|| panic!("{name} without _count")),
            h.sum
                .map(|s| s.as_f64())
                .unwrap_or_else(|| panic!("{name} without _sum")),
            h.buckets
                .iter()
                .map(|b| (b.upper_bound, b.count.as_f64()))
                .collect(),
        ),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_one_delegation_parse_and_count_what_happened() {
    let mesh = MeshSimProc::start(2, 0);
    let dir = tempfile::tempdir().unwrap();
    let (requester, provider) =
        // Announcements off: this test counts exactly the messages of one broadcast discovery.
        support::start_pair(
            &mesh,
            dir.path(),
            &[("INFERENCE_BACKEND", "demo"), ("ANNOUNCE_INTERVAL_SECS", "0")],
            &[("ANNOUNCE_INTERVAL_SECS", "0")],
        )
        .await;

    // Before any work: valid, with zeroed series already there.
    let before = parse(&scrape(&requester).await);
    assert_messages(&before, "edgent_messages_out", &[], "requester before");
    assert_eq!(histogram(&before, "edgent_delegation_latency_seconds").0, 0);

    let (status, body) = requester
        .delegate(json!({"model": DEMO_MODEL, "prompt": "count me"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_string();
    // The provider records its side after sending the result: wait for it.
    provider
        .job_in_state(&job_id, "completed", Duration::from_secs(10))
        .await;

    let text = scrape(&requester).await;
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF:\n{text}"
    );
    let r = parse(&text);
    // The parser is strict: the same text without its terminator is refused. This keeps
    // the parse above from being a formality.
    assert!(
        parse_openmetrics(text.trim_end_matches("# EOF\n")).is_err(),
        "the parser accepts a text without # EOF"
    );

    // Requester: asked the one other node, got its ad, sent the task, got the result;
    // the task and the result were each acknowledged (a job this short sends no heartbeat).
    assert_messages(
        &r,
        "edgent_messages_out",
        &[("ack", 1.0), ("resource_request", 1.0), ("task", 1.0)],
        "requester",
    );
    assert_messages(
        &r,
        "edgent_messages_in",
        &[("ack", 1.0), ("resource_ad", 1.0), ("task_result", 1.0)],
        "requester",
    );
    for (reason, n) in counter_by(&r, "edgent_messages_dropped", "reason") {
        assert_eq!(n, 0.0, "requester dropped a message for {reason}");
    }
    let reasons: Vec<String> = counter_by(&r, "edgent_messages_dropped", "reason")
        .into_iter()
        .map(|x| x.0)
        .collect();
    for want in [
        "bad_json",
        "bad_version",
        "unknown_type",
        "spoofed",
        "oversize",
        "invalid",
        "unexpected",
        "duplicate",
        "rate_limited",
    ] {
        assert!(
            reasons.iter().any(|x| x == want),
            "no drop series for {want}: {reasons:?}"
        );
    }
    assert_eq!(
        value(
            &r,
            "edgent_jobs",
            OpenMetricsType::Gauge,
            &[("side", "requester"), ("state", "completed")]
        ),
        1.0
    );
    for state in [
        "discovering",
        "tasked",
        "running",
        "failed",
        "timed_out",
        "cancelled",
    ] {
        assert_eq!(
            value(
                &r,
                "edgent_jobs",
                OpenMetricsType::Gauge,
                &[("side", "requester"), ("state", state)]
            ),
            0.0,
            "requester jobs in {state}"
        );
    }
    assert_eq!(
        value(
            &r,
            "edgent_jobs",
            OpenMetricsType::Gauge,
            &[("side", "provider"), ("state", "completed")]
        ),
        0.0
    );
    let (count, sum, buckets) = histogram(&r, "edgent_delegation_latency_seconds");
    assert_eq!(count, 1, "one delegation observed");
    let total_s = body["timings"]["total_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        sum > 0.0 && (sum - total_s).abs() < 0.5,
        "latency sum {sum} s vs total_ms {total_s} s"
    );
    let inf = buckets
        .iter()
        .find(|b| b.0.is_infinite())
        .expect("+Inf bucket");
    assert_eq!(inf.1, 1.0);
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "buckets cumulative: {buckets:?}"
    );
    assert_eq!(
        value(&r, "edgent_axl_restarts", OpenMetricsType::Gauge, &[]),
        0.0
    );
    // Paid-flow families exist (zero with payments off).
    assert_eq!(
        value(&r, "edgent_proofs_generated", OpenMetricsType::Counter, &[]),
        0.0
    );
    assert_eq!(
        counter_by(&r, "edgent_proofs_verified", "outcome"),
        vec![("invalid".into(), 0.0), ("valid".into(), 0.0)]
    );
    let settlements = counter_by(&r, "edgent_settlements", "outcome");
    for want in ["released", "rejected", "refunded", "claimed", "failed"] {
        assert!(
            settlements.contains(&(want.to_string(), 0.0)),
            "settlement series {want} at 0: {settlements:?}"
        );
    }
    assert_messages(&r, "edgent_send_failures", &[], "requester");

    // Provider: the mirror image.
    let p = parse(&scrape(&provider).await);
    assert_messages(
        &p,
        "edgent_messages_in",
        &[("ack", 1.0), ("resource_request", 1.0), ("task", 1.0)],
        "provider",
    );
    assert_messages(
        &p,
        "edgent_messages_out",
        &[("ack", 1.0), ("resource_ad", 1.0), ("task_result", 1.0)],
        "provider",
    );
    assert_eq!(
        value(
            &p,
            "edgent_jobs",
            OpenMetricsType::Gauge,
            &[("side", "provider"), ("state", "completed")]
        ),
        1.0
    );
    assert_eq!(
        histogram(&p, "edgent_delegation_latency_seconds").0,
        0,
        "the provider delegated nothing"
    );
    for (reason, n) in counter_by(&p, "edgent_messages_dropped", "reason") {
        assert_eq!(n, 0.0, "provider dropped a message for {reason}");
    }

    // A dropped message shows up under its reason.
    let bad = support::raw_send(&mesh.nodes[0].1, &mesh.nodes[1].0, b"{not json".to_vec()).await;
    assert_eq!(bad, 200);
    eventually("bad_json drop counted", Duration::from_secs(10), || async {
        let p = parse(&scrape(&provider).await);
        let n = value(
            &p,
            "edgent_messages_dropped",
            OpenMetricsType::Counter,
            &[("reason", "bad_json")],
        );
        (n == 1.0).then_some(())
    })
    .await;
}
