//! Checked ENS names: a name a node announces is its claim until this node resolved the
//! name's `axl.pubkey` text record (and `wallet`) and found the sender's key (and the
//! wallet its ad names). Only a checked name is matched by `EDGENT_ALLOW` and shown plain;
//! an unchecked one is shown with [`UNVERIFIED`] after it (in `/status`, `/jobs`, the
//! answer's `provider.ens`, `X-Edgent-Provider`, MCP results). `EDGENT_DENY` matches the
//! claim either way: denying a claimer is safe (docs/threat-model.md, line 12).
//!
//! A requester's name (the `sender_ens` of its tasks) is checked the same way before a
//! provider's allow list matches it or its job table shows it (`crate::provider`).
//!
//! A check runs in the background when a name is heard (an announcement, an ad), or at once
//! for a task whose sender's name an allow list would match; its verdict is cached for
//! `ENS_CHECK_TTL_SECS` (a failed lookup for [`RETRY_AFTER`]). The cache and the checks
//! under way are bounded ([`MAX_NAMES`], [`MAX_CHECKS`]). Without an ENS endpoint
//! (`ENS_RPC_URL` empty) nothing is checked and every name is unverified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;

use super::evict::evict_oldest;
use crate::axl::PeerKey;
use crate::chain::ens::EnsClient;

/// What an unchecked name is shown with: `dell-g15.edgent.eth (unverified)`.
pub const UNVERIFIED: &str = " (unverified)";
/// Most (name, node) verdicts cached; the oldest goes first.
pub const MAX_NAMES: usize = 4096;
/// Most checks under way at once; a name heard meanwhile is checked when heard again.
pub const MAX_CHECKS: usize = 32;
/// How soon a lookup that failed (RPC error) is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest a task waits for the check of its sender's name ([`NameChecks::verify_now`]).
pub const CHECK_WAIT: Duration = Duration::from_secs(5);

/// What the records of a name said about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// `axl.pubkey` is the node's key; `wallet` as the records name it.
    Owner(Option<Address>),
    /// The records name another key, or none.
    NotOwner,
    /// The lookup failed.
    Unknown,
}

/// A name (lower-cased) and a node's Yggdrasil address.
type NameOf = (String, [u8; 16]);

/// The checked names of the nodes heard from.
pub struct NameChecks {
    ens: Option<EnsClient>,
    ttl: Duration,
    cache: Mutex<HashMap<NameOf, (Verdict, Instant)>>,
    under_way: Mutex<usize>,
}

impl NameChecks {
    /// Checks through `ens` (none: nothing is ever verified), verdicts kept for `ttl`.
    pub fn new(ens: Option<EnsClient>, ttl: Duration) -> NameChecks {
        NameChecks {
            ens,
            ttl,
            cache: Mutex::new(HashMap::new()),
            under_way: Mutex::new(0),
        }
    }

    fn fresh(&self, name: &str, key: &PeerKey) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (v, at) = cache.get(&(name.to_ascii_lowercase(), key.address()))?;
        let ttl = if *v == Verdict::Unknown {
            RETRY_AFTER.min(self.ttl)
        } else {
            self.ttl
        };
        (at.elapsed() < ttl).then(|| v.clone())
    }

    /// Whether `key` owns `name` by its records (and, when the ad names a `wallet`, the
    /// records name that wallet too), as last checked within the TTL.
    pub fn verified(&self, key: &PeerKey, name: &str, wallet: Option<&str>) -> bool {
        match self.fresh(name, key) {
            Some(Verdict::Owner(rec)) => match (wallet, rec) {
                (Some(w), Some(r)) => w.parse::<Address>().is_ok_and(|w| w == r),
                (Some(_), None) => false,
                (None, _) => true,
            },
            _ => false,
        }
    }

    /// The name as shown: plain when checked, else with [`UNVERIFIED`] after it.
    pub fn shown(&self, key: &PeerKey, name: Option<&str>, wallet: Option<&str>) -> Option<String> {
        let name = name?;
        Some(if self.verified(key, name, wallet) {
            name.to_string()
        } else {
            format!("{name}{UNVERIFIED}")
        })
    }

    /// Record a verdict (tests and the check itself).
    fn put(&self, name: &str, key: &PeerKey, v: Verdict) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let k = (name.to_ascii_lowercase(), key.address());
        evict_oldest(&mut cache, &k, MAX_NAMES, |(_, at)| *at);
        cache.insert(k, (v, Instant::now()));
    }

    /// Take one of the [`MAX_CHECKS`] places for a lookup, if one is free.
    fn begin(&self) -> bool {
        let mut n = self.under_way.lock().unwrap_or_else(|p| p.into_inner());
        if *n >= MAX_CHECKS {
            return false;
        }
        *n += 1;
        true
    }

    /// Give a place back.
    fn end(&self) {
        let mut n = self.under_way.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
    }

    /// Check that `key` owns `name` in the background, unless a fresh verdict is cached,
    /// there is no ENS endpoint, or [`MAX_CHECKS`] are under way.
    pub fn check(self: &Arc<Self>, key: PeerKey, name: &str) {
        let Some(ens) = self.ens.clone() else { return };
        if self.fresh(name, &key).is_some() || !self.begin() {
            return;
        }
        let me = self.clone();
        let name = name.to_ascii_lowercase();
        tokio::spawn(async move {
            let verdict = lookup(&ens, &key, &name).await;
            me.put(&name, &key, verdict);
            me.end();
        });
    }

    /// Whether `key` owns `name` (no wallet asked), checking it now when no fresh verdict
    /// is cached: within [`CHECK_WAIT`], and only while fewer than [`MAX_CHECKS`] are under
    /// way (otherwise: not verified). A provider asks this of a task's sender before its
    /// allow list matches the name the task announces (`sender_ens`).
    pub async fn verify_now(&self, key: &PeerKey, name: &str) -> bool {
        if self.fresh(name, key).is_none() {
            if let Some(ens) = self.ens.as_ref().filter(|_| self.begin()) {
                // The place is given back even if the task is dropped while it waits.
                struct Place<'a>(&'a NameChecks);
                impl Drop for Place<'_> {
                    fn drop(&mut self) {
                        self.0.end();
                    }
                }
                let _place = Place(self);
                let name = name.to_ascii_lowercase();
                let verdict = tokio::time::timeout(CHECK_WAIT, lookup(ens, key, &name))
                    .await
                    .unwrap_or(Verdict::Unknown);
                self.put(&name, key, verdict);
            }
        }
        self.verified(key, name, None)
    }
}

/// Read `name`'s records and compare its `axl.pubkey` with `key`.
async fn lookup(ens: &EnsClient, key: &PeerKey, name: &str) -> Verdict {
    let verdict = match ens.node_records(name).await {
        Ok(r)
            if r.axl_pubkey
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(&key.to_hex())) =>
        {
            Verdict::Owner(r.wallet)
        }
        Ok(_) => Verdict::NotOwner,
        Err(e) => {
            tracing::debug!(%name, error = %e, "ENS name check failed");
            Verdict::Unknown
        }
    };
    if verdict == Verdict::NotOwner {
        tracing::warn!(%name, node = %key.short(), "a node claims an ENS name whose axl.pubkey is another key's: shown unverified");
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_verified_only_for_its_owner_and_wallet() {
        let n = NameChecks::new(None, Duration::from_secs(60));
        let (owner, other) = (PeerKey([1; 32]), PeerKey([2; 32]));
        let w = Address::repeat_byte(0xaa);
        n.put("a.eth", &owner, Verdict::Owner(Some(w)));
        n.put("a.eth", &other, Verdict::NotOwner);
        assert!(n.verified(&owner, "A.eth", None));
        assert!(n.verified(&owner, "a.eth", Some(&format!("{w:#x}"))));
        assert!(!n.verified(&owner, "a.eth", Some(&format!("0x{}", "bb".repeat(20)))));
        assert!(!n.verified(&other, "a.eth", None));
        assert!(!n.verified(&owner, "b.eth", None), "never checked");
        assert_eq!(
            n.shown(&owner, Some("a.eth"), None).as_deref(),
            Some("a.eth")
        );
        assert_eq!(
            n.shown(&other, Some("a.eth"), None).as_deref(),
            Some("a.eth (unverified)")
        );
        assert_eq!(n.shown(&other, None, None), None);
    }

    #[tokio::test]
    async fn a_task_senders_name_counts_only_when_its_owner_sends_it() {
        let n = NameChecks::new(None, Duration::from_secs(60));
        let (owner, claimer) = (PeerKey([1; 32]), PeerKey([2; 32]));
        assert!(!n.verify_now(&owner, "a.eth").await, "never checked");
        n.put("a.eth", &owner, Verdict::Owner(None));
        n.put("a.eth", &claimer, Verdict::NotOwner);
        assert!(n.verify_now(&owner, "A.eth").await);
        assert!(!n.verify_now(&claimer, "a.eth").await);
        assert_eq!(*n.under_way.lock().unwrap(), 0, "no place held");
    }

    #[test]
    fn verdicts_expire_with_the_ttl() {
        let n = NameChecks::new(None, Duration::ZERO);
        n.put("a.eth", &PeerKey([1; 32]), Verdict::Owner(None));
        assert!(!n.verified(&PeerKey([1; 32]), "a.eth", None));
    }
}
