//! The job and payment machines, and the store that keeps them.

use super::store::SCHEMA;
use super::*;
use crate::axl::PeerKey;
use crate::protocol::{ChatMessage, JobId};
use rusqlite::{params, Connection};

#[test]
fn requester_happy_path_and_refusals() {
    let store = JobStore::in_memory().unwrap();
    let id = JobId::new();
    store
        .insert(&JobRecord::new(
            id,
            Side::Requester,
            "m",
            "p",
            now_ms() + 1000,
        ))
        .unwrap();
    assert!(matches!(
        store.insert(&JobRecord::new(id, Side::Requester, "m", "p", 0)),
        Err(JobError::Exists(_))
    ));
    // Cannot complete before being tasked.
    assert!(matches!(
        store.transition(&id, Side::Requester, JobState::Completed, |_| {}),
        Err(JobError::BadTransition { .. })
    ));
    store
        .transition(&id, Side::Requester, JobState::Tasked, |r| {
            r.peer = Some(PeerKey([1; 32]))
        })
        .unwrap();
    let done = store
        .transition(&id, Side::Requester, JobState::Completed, |r| {
            r.output = Some("out".into())
        })
        .unwrap();
    assert_eq!(done.output.as_deref(), Some("out"));
    assert_eq!(done.peer, Some(PeerKey([1; 32])));
    // A finished job stays finished.
    assert!(store
        .transition(&id, Side::Requester, JobState::Failed, |_| {})
        .is_err());
    assert_eq!(
        store.get(&id, Side::Requester).unwrap().unwrap().state,
        JobState::Completed
    );
    assert!(store.get(&id, Side::Provider).unwrap().is_none());
}

#[test]
fn jobs_survive_reopen_and_interrupted_ones_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (JobId::new(), JobId::new());
    {
        let store = JobStore::open(dir.path()).unwrap();
        store
            .insert(&JobRecord::new(a, Side::Provider, "m", "p", 0))
            .unwrap();
        store
            .transition(&a, Side::Provider, JobState::Completed, |_| {})
            .unwrap();
        store
            .insert(&JobRecord::new(b, Side::Requester, "m", "p", 0))
            .unwrap();
    }
    let store = JobStore::open(dir.path()).unwrap();
    assert_eq!(store.list(10).unwrap().len(), 2);
    assert_eq!(store.close_interrupted().unwrap(), 1);
    let b_rec = store.get(&b, Side::Requester).unwrap().unwrap();
    assert_eq!(b_rec.state, JobState::Failed);
    assert_eq!(
        b_rec.error_code.as_ref().map(|c| c.as_str()),
        Some("interrupted")
    );
    let counts = store.counts().unwrap();
    assert!(counts.contains(&(Side::Provider, JobState::Completed, 1)));
    assert!(counts.contains(&(Side::Requester, JobState::Failed, 1)));
}

#[test]
fn cancelled_ends_a_job_on_either_side() {
    use JobState::*;
    for (side, from) in [
        (Side::Requester, Discovering),
        (Side::Requester, Tasked),
        (Side::Provider, Running),
    ] {
        assert!(from.can_move_to(side, Cancelled), "{side:?} {from:?}");
    }
    assert!(Cancelled.is_terminal());
    for to in JobState::ALL {
        assert!(
            !Cancelled.can_move_to(Side::Requester, to),
            "cancelled -> {to:?}"
        );
        assert!(
            !Cancelled.can_move_to(Side::Provider, to),
            "cancelled -> {to:?}"
        );
        assert!(
            !Completed.can_move_to(Side::Provider, to),
            "completed -> {to:?}"
        );
    }
    let store = JobStore::in_memory().unwrap();
    let id = JobId::new();
    store
        .insert(&JobRecord::new(id, Side::Provider, "m", "p", 0))
        .unwrap();
    let rec = store
        .transition(&id, Side::Provider, Cancelled, |r| {
            r.error_code = Some(super::ErrorCode::Cancelled.into())
        })
        .unwrap();
    assert_eq!(rec.state, Cancelled);
    assert!(store
        .transition(&id, Side::Provider, Completed, |_| {})
        .is_err());
    assert!(store
        .counts()
        .unwrap()
        .contains(&(Side::Provider, Cancelled, 1)));
    assert_eq!(JobState::parse("cancelled"), Some(Cancelled));
}

#[test]
fn a_chat_is_recorded_as_role_lines_bounded_to_its_latest_part() {
    let msg = |role: &str, content: &str| ChatMessage {
        role: role.into(),
        content: content.into(),
        ..Default::default()
    };
    assert_eq!(prompt_of("plain", None), "plain");
    let chat = [msg("system", "be brief"), msg("user", "hello edge mesh")];
    assert_eq!(
        prompt_of("", Some(&chat)),
        "system: be brief\nuser: hello edge mesh"
    );
    let long = [
        msg("user", &"é".repeat(5000)),
        msg("user", "the last question"),
    ];
    let p = prompt_of("", Some(&long));
    assert_eq!(p.chars().count(), CHAT_PROMPT_CHARS);
    assert!(
        p.starts_with('…') && p.ends_with("user: the last question"),
        "{p}"
    );
}

fn paid(status: PayStatus) -> PaymentRecord {
    PaymentRecord::new(status, 31337, "0x01".into(), 10, "0x02".into(), 100)
}

#[test]
fn open_payments_are_found_and_a_paid_job_may_complete_late() {
    let store = JobStore::in_memory().unwrap();
    let (paid_job, unpaid_job, settled) = (JobId::new(), JobId::new(), JobId::new());
    for (id, pay) in [
        (paid_job, Some(paid(PayStatus::Staked))),
        (unpaid_job, None),
        (settled, Some(paid(PayStatus::Released))),
    ] {
        let mut r = JobRecord::new(id, Side::Requester, "m", "p", 0);
        r.payment = pay;
        store.insert(&r).unwrap();
        store
            .transition(&id, Side::Requester, JobState::Failed, |_| {})
            .unwrap();
    }
    let open: Vec<JobId> = store
        .open_payments(Side::Requester)
        .unwrap()
        .iter()
        .map(|r| r.job_id)
        .collect();
    assert_eq!(open, vec![paid_job]);
    assert!(store.open_payments(Side::Provider).unwrap().is_empty());

    // A late result completes the paid job whose stake is open, and nothing else.
    let done = store
        .transition(&paid_job, Side::Requester, JobState::Completed, |r| {
            r.output = Some("late".into())
        })
        .unwrap();
    assert_eq!(done.state, JobState::Completed);
    for id in [unpaid_job, settled] {
        assert!(store
            .transition(&id, Side::Requester, JobState::Completed, |_| {})
            .is_err());
    }

    // advance moves the payment without moving the state, and the index follows it.
    let r = store
        .advance(&paid_job, Side::Requester, PayStatus::Released, |_, _| {})
        .unwrap();
    assert_eq!(r.state, JobState::Completed);
    assert!(store.open_payments(Side::Requester).unwrap().is_empty());
}

/// The payment machine's whole table: every allowed move, one status per line.
#[rustfmt::skip]
const PAY_MOVES: &[(PayStatus, &[PayStatus])] = {
    use PayStatus::*;
    &[
        (Staking, &[Staked, Unwound, Released, Claimed, Rejected, Refunded]),
        (Staked, &[Verified, Disputed, Released, Claimed, Rejected, Refunded]),
        (Verified, &[Released, Claimed, Rejected, Refunded]),
        (Disputed, &[Released, Claimed, Rejected, Refunded]),
        (Accepted, &[Delivered, Abandoned, Released, Claimed, Rejected, Refunded]),
        (Delivered, &[Submitted, Abandoned, Released, Claimed, Rejected, Refunded]),
        (Submitted, &[Released, Claimed, Rejected]),
        (Released, &[]),
        (Claimed, &[]),
        (Rejected, &[]),
        (Refunded, &[]),
        (Unwound, &[]),
        (Abandoned, &[]),
    ]
};

#[test]
fn the_payment_machine_allows_exactly_its_table() {
    assert_eq!(PAY_MOVES.len(), PayStatus::ALL.len());
    for from in PayStatus::ALL {
        let allowed = PAY_MOVES
            .iter()
            .find(|(f, _)| *f == from)
            .map(|(_, to)| *to)
            .unwrap();
        for to in PayStatus::ALL {
            assert_eq!(
                from.can_move_to(to),
                allowed.contains(&to),
                "{} -> {}",
                from.as_str(),
                to.as_str()
            );
        }
        // Settled money never moves, and nothing stays put.
        assert!(!from.can_move_to(from), "{} -> itself", from.as_str());
        if !from.is_open() {
            assert!(allowed.is_empty(), "{} is settled", from.as_str());
        }
    }
}

#[test]
fn the_payment_machine_refuses_backward_and_cross_side_moves() {
    use PayStatus::*;
    for (from, to) in [
        (Released, Staked),
        (Released, Refunded),
        (Refunded, Released),
        (Unwound, Staked),
        (Verified, Staked),
        (Disputed, Verified),
        (Staking, Verified),
        (Submitted, Delivered),
        (Submitted, Refunded),
        (Delivered, Accepted),
        (Staked, Delivered),
        (Accepted, Verified),
        (Staked, Abandoned),
        (Delivered, Unwound),
    ] {
        assert!(
            !from.can_move_to(to),
            "{} -> {}",
            from.as_str(),
            to.as_str()
        );
    }
}

#[test]
fn advance_moves_a_stored_payment_and_refuses_what_the_table_refuses() {
    let store = JobStore::in_memory().unwrap();
    let (id, unpaid) = (JobId::new(), JobId::new());
    let mut r = JobRecord::new(id, Side::Requester, "m", "p", 0);
    r.payment = Some(paid(PayStatus::Staking));
    store.insert(&r).unwrap();
    store
        .insert(&JobRecord::new(unpaid, Side::Requester, "m", "p", 0))
        .unwrap();

    let r = store
        .advance(&id, Side::Requester, PayStatus::Staked, |r, p| {
            p.stake_tx = Some("0xabc".into());
            r.timings.stake_ms = Some(5);
        })
        .unwrap();
    let p = r.payment.unwrap();
    assert_eq!(p.status, PayStatus::Staked);
    assert_eq!(p.stake_tx.as_deref(), Some("0xabc"));
    assert_eq!(r.timings.stake_ms, Some(5));

    // The edit cannot choose the status: advance sets the one it checked.
    let r = store
        .advance(&id, Side::Requester, PayStatus::Verified, |_, p| {
            p.status = PayStatus::Staking;
        })
        .unwrap();
    assert_eq!(r.payment.unwrap().status, PayStatus::Verified);
    store
        .advance(&id, Side::Requester, PayStatus::Released, |_, _| {})
        .unwrap();

    // Refused: the record is unchanged, the edit not applied, the error names both ends.
    let err = store
        .advance(&id, Side::Requester, PayStatus::Staked, |_, p| {
            p.error = Some("must not be written".into())
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            JobError::BadPayTransition {
                from: "released",
                to: "staked",
                ..
            }
        ),
        "{err}"
    );
    let p = store
        .get(&id, Side::Requester)
        .unwrap()
        .unwrap()
        .payment
        .unwrap();
    assert_eq!(p.status, PayStatus::Released);
    assert_eq!(p.error, None);
    assert!(matches!(
        store
            .advance(&id, Side::Requester, PayStatus::Released, |_, _| {})
            .unwrap_err(),
        JobError::BadPayTransition { .. }
    ));

    // An unpaid job has no payment to move; an unknown one is not found.
    assert!(matches!(
        store
            .advance(&unpaid, Side::Requester, PayStatus::Staked, |_, _| {})
            .unwrap_err(),
        JobError::NoPayment(j) if j == unpaid
    ));
    assert!(matches!(
        store
            .advance(&id, Side::Provider, PayStatus::Delivered, |_, _| {})
            .unwrap_err(),
        JobError::NotFound { .. }
    ));
}

#[test]
fn a_database_from_before_payments_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let id = JobId::new();
    {
        let conn = Connection::open(dir.path().join("jobs.sqlite")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let rec = JobRecord::new(id, Side::Provider, "m", "p", 0);
        conn.execute(
            "INSERT INTO jobs (job_id, side, state, created_ms, updated_ms, record) VALUES (?1, ?2, ?3, 0, 0, ?4)",
            params![id.to_hex(), "provider", "running", serde_json::to_string(&rec).unwrap()],
        )
        .unwrap();
    }
    let store = JobStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get(&id, Side::Provider).unwrap().unwrap().payment,
        None
    );
    assert!(store.open_payments(Side::Provider).unwrap().is_empty());
    // The old row gets a change counter: a cursor from 0 sees it, and a write after
    // moves it past the cursor of that read.
    let first = store.changed_since(0, 10).unwrap();
    assert_eq!(first.jobs.len(), 1);
    assert_eq!(first.cursor, 1);
    store
        .update(&id, Side::Provider, |r| r.model = "n".into())
        .unwrap();
    let next = store.changed_since(first.cursor, 10).unwrap();
    assert_eq!(next.jobs.len(), 1);
    assert_eq!(next.jobs[0].model, "n");
    // Opening again does not migrate twice.
    drop(store);
    JobStore::open(dir.path()).unwrap();
}

#[test]
fn stored_names_are_unchanged_and_parse_back() {
    let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        states,
        [
            "discovering",
            "tasked",
            "running",
            "completed",
            "failed",
            "timed_out",
            "cancelled"
        ]
    );
    for s in JobState::ALL {
        assert_eq!(s.as_str().parse::<JobState>().ok(), Some(s));
        assert_eq!(serde_json::json!(s), serde_json::json!(s.as_str()));
    }
    let pays: Vec<&str> = PayStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        pays,
        [
            "staking",
            "staked",
            "verified",
            "disputed",
            "accepted",
            "delivered",
            "submitted",
            "released",
            "claimed",
            "rejected",
            "refunded",
            "unwound",
            "abandoned"
        ]
    );
    for s in PayStatus::ALL {
        assert_eq!(serde_json::json!(s), serde_json::json!(s.as_str()));
    }
    for side in [Side::Requester, Side::Provider, Side::Local] {
        assert_eq!(side.as_str().parse::<Side>().ok(), Some(side));
        assert_eq!(serde_json::json!(side), serde_json::json!(side.as_str()));
    }
    assert_eq!(Side::Requester.as_str(), "requester");
    assert!("Requester".parse::<Side>().is_err() && "".parse::<JobState>().is_err());
}

#[test]
fn stored_errors_carry_no_url_secrets() {
    let store = JobStore::in_memory().unwrap();
    let id = JobId::new();
    let mut rec = JobRecord::new(id, Side::Requester, "m", "p", now_ms() + 1000);
    rec.error = Some("error sending request for url (https://rpc.example/v2/KEY1)".into());
    store.insert(&rec).unwrap();
    store
        .update(&id, Side::Requester, |r| {
            r.error = Some(format!(
                "{} then http://u:KEY2@rpc.example",
                r.error.clone().unwrap_or_default()
            ));
        })
        .unwrap();
    let listed = serde_json::to_string(&store.list(10).unwrap()).unwrap();
    assert!(
        !listed.contains("KEY1") && !listed.contains("KEY2"),
        "{listed}"
    );
    assert!(listed.contains("https://rpc.example/…"), "{listed}");
}

#[test]
fn a_cursor_gives_exactly_the_jobs_written_after_it() {
    let store = JobStore::in_memory().unwrap();
    let empty = store.changed_since(0, 10).unwrap();
    assert_eq!(
        (empty.jobs.len(), empty.cursor, empty.truncated),
        (0, 0, false)
    );
    let ids: Vec<JobId> = (0..3).map(|_| JobId::new()).collect();
    for id in &ids {
        store
            .insert(&JobRecord::new(*id, Side::Requester, "m", "p", 0))
            .unwrap();
    }
    let all = store.changed_since(0, 10).unwrap();
    let got: Vec<JobId> = all.jobs.iter().map(|r| r.job_id).collect();
    assert_eq!(got, [ids[2], ids[1], ids[0]], "latest change first");
    assert_eq!((all.cursor, all.truncated), (3, false));
    // Nothing changed: nothing comes, and the cursor stays.
    let none = store.changed_since(all.cursor, 10).unwrap();
    assert_eq!((none.jobs.len(), none.cursor), (0, 3));
    // The oldest job moves: only it comes, in its new state.
    store
        .transition(&ids[0], Side::Requester, JobState::Failed, |_| {})
        .unwrap();
    let moved = store.changed_since(all.cursor, 10).unwrap();
    assert_eq!(moved.jobs.len(), 1);
    assert_eq!(moved.jobs[0].job_id, ids[0]);
    assert_eq!(moved.jobs[0].state, JobState::Failed);
    assert_eq!(moved.cursor, 4);
    // A refused move writes nothing, so it is no change.
    assert!(store
        .transition(&ids[0], Side::Requester, JobState::Tasked, |_| {})
        .is_err());
    assert_eq!(store.changed_since(moved.cursor, 10).unwrap().jobs.len(), 0);
    // More changes than the limit: the latest ones, and it says so.
    let cut = store.changed_since(0, 2).unwrap();
    let got: Vec<JobId> = cut.jobs.iter().map(|r| r.job_id).collect();
    assert_eq!(got, [ids[0], ids[2]]);
    assert!(cut.truncated);
    assert_eq!(cut.cursor, 4);
}

#[test]
fn a_local_job_runs_then_ends_like_a_provider_job() {
    let store = JobStore::in_memory().unwrap();
    let rec = JobRecord::new(JobId::new(), Side::Local, "m", "p", 0);
    assert_eq!(rec.state, JobState::Running);
    store.insert(&rec).unwrap();
    assert!(store
        .transition(&rec.job_id, Side::Local, JobState::Tasked, |_| {})
        .is_err());
    let done = store
        .transition(&rec.job_id, Side::Local, JobState::Completed, |r| {
            r.timings.first_token_ms = Some(3)
        })
        .unwrap();
    assert_eq!(done.timings.first_token_ms, Some(3));
    assert!(store
        .transition(&rec.job_id, Side::Local, JobState::Failed, |_| {})
        .is_err());
    // Stored under its own side: not found as a requester job.
    assert!(store.get(&rec.job_id, Side::Requester).unwrap().is_none());
}

#[test]
fn another_nodes_long_prompt_is_stored_cut_with_its_hash() {
    use crate::jobs::{stored_prompt, STORED_PROMPT_BYTES};
    assert_eq!(stored_prompt("short".into()), "short");
    let big = "é".repeat(8 << 20); // 16 MiB
    let kept = stored_prompt(big);
    assert!(kept.len() < STORED_PROMPT_BYTES + 120, "{}", kept.len());
    assert!(kept.ends_with(']') && kept.contains("16777216 bytes, keccak256 0x"));
}

#[test]
fn other_nodes_prompts_are_blanked_after_their_retention_and_lists_cut_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path()).unwrap();
    let (theirs, mine) = (JobId::new(), JobId::new());
    let long = "p".repeat(5_000);
    store
        .insert(&JobRecord::new(
            theirs,
            Side::Provider,
            "m",
            "their prompt",
            0,
        ))
        .unwrap();
    store
        .insert(&JobRecord::new(mine, Side::Requester, "m", &long, 0))
        .unwrap();
    // A list cuts a long prompt; one job shows it whole.
    let listed = store.list(10).unwrap();
    let my_listed = listed.iter().find(|r| r.job_id == mine).unwrap();
    assert_eq!(
        my_listed.prompt.chars().count(),
        store::LIST_PROMPT_CHARS + 1
    );
    assert_eq!(
        store.get(&mine, Side::Requester).unwrap().unwrap().prompt,
        long
    );
    // Nothing is older than a cutoff in the past; everything is older than one ahead.
    assert_eq!(store.forget_prompts(0).unwrap(), 0);
    assert_eq!(store.forget_prompts(now_ms() + 1_000).unwrap(), 1);
    let rec = store.get(&theirs, Side::Provider).unwrap().unwrap();
    assert_eq!(rec.prompt, "", "the record stays, its prompt is gone");
    assert_eq!(
        store.get(&mine, Side::Requester).unwrap().unwrap().prompt,
        long
    );
    assert_eq!(store.forget_prompts(now_ms() + 1_000).unwrap(), 0);
}

#[test]
fn a_check_run_is_stored_and_listed_as_a_check_of_its_job() {
    let store = JobStore::in_memory().unwrap();
    let (checked, run) = (JobId::new(), JobId::new());
    store
        .insert(&JobRecord::new(checked, Side::Requester, "m", "p", 0))
        .unwrap();
    let mut rec = JobRecord::new(run, Side::Requester, "m", "p", 0);
    rec.check_of = Some(checked);
    store.insert(&rec).unwrap();
    let got = store.get(&run, Side::Requester).unwrap().unwrap();
    assert_eq!(got.check_of, Some(checked));
    // `/jobs` shows the mark on the check run only.
    let listed = serde_json::to_value(store.list(10).unwrap()).unwrap();
    let marks: Vec<(String, Option<String>)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job_id"].as_str().unwrap().to_string(),
                j.get("check_of").map(|c| c.as_str().unwrap().to_string()),
            )
        })
        .collect();
    let mut want = vec![
        (checked.to_string(), None),
        (run.to_string(), Some(checked.to_string())),
    ];
    want.sort();
    let mut marks = marks;
    marks.sort();
    assert_eq!(marks, want);
}

#[test]
fn a_spot_check_kept_before_its_end_time_was_reads_as_time_zero() {
    let old = serde_json::json!({
        "provider": PeerKey([7; 32]).to_hex(), "verdict": "caught", "mode": "rerun",
        "checkers": [], "receipts": [], "output_hashes": [], "ms": 12,
    });
    let c: SpotCheck = serde_json::from_value(old).unwrap();
    assert_eq!((c.verdict, c.ms, c.at_ms), (SpotVerdict::Caught, 12, 0));
    let again = serde_json::to_value(&c).unwrap();
    assert_eq!(again["at_ms"], 0);
}
