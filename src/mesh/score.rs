//! Choosing among providers: which ads qualify, and in what order to try them.
//!
//! An ad qualifies when it serves the model, asks at most the agent's `max_price`, has at
//! least `min_memory_mb` free, the access lists allow its node (by key, or by an ENS name
//! this node checked: [`crate::mesh::names`]), and (paid jobs) names a wallet.
//!
//! The premium cap (`PRICE_PREMIUM_CAP_PCT`, [`Want::premium_cap_pct`]) is measured from
//! the cheapest ad of a proven provider in good standing (no dispute, no failure quarter):
//! an ad that asks more than the cap over it is not chosen. With no proven provider it is
//! measured from the cheapest ad in good standing, and an ad over it is tried only after
//! every ad within it (a newcomer's low price may be bait: it does not shut others out).
//!
//! The rest are ordered by, first to last:
//!
//! 1. disputes here (a provider whose proof failed, or that was caught cheating, is ranked
//!    last from then on), then being over the premium cap;
//! 2. its class ([`class`]): its success rate here in quarters (counting one success up
//!    front; one failure alone drops it a quarter), and within a quarter the providers
//!    proven here (at least [`Want::proven_after`] jobs delivered) before the newcomers:
//!    a newcomer is given a job only when no proven provider in good standing serves it
//!    (its probation);
//! 3. price, cheapest first;
//! 4. model fit: loaded now, then fitting in its free memory, then unknown, then too big;
//! 5. in-flight load: running jobs plus its queue over its slots;
//! 6. average latency here (unknown counts as average);
//! 7. node id, so that equal providers are always tried in the same order.
//!
//! What an ad says of itself (`loaded`, `load`, free memory) costs nothing to claim, so it
//! orders only ads of one class and one price: an ad cannot buy its rank with claims or a
//! high price (docs/threat-model.md, line 9).

use std::cmp::Ordering;

use crate::axl::PeerKey;
use crate::inference::model_matches;
use crate::mesh::access::Access;
use crate::mesh::history::ProviderRecord;
use crate::mesh::names::NameChecks;
use crate::protocol::ResourceAd;

/// How well a provider's memory fits the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    /// The model is loaded now (`/api/ps`).
    Loaded,
    /// Its size fits in the provider's free memory.
    Fits,
    /// The provider did not say.
    Unknown,
    /// It is larger than the provider's free memory.
    TooBig,
}

/// How the model fits on the provider that sent `ad`.
pub fn fit(ad: &ResourceAd, model: &str) -> Fit {
    let Some(info) = ad.model_info.iter().find(|o| model_matches(model, &o.name)) else {
        return Fit::Unknown;
    };
    if info.loaded {
        return Fit::Loaded;
    }
    match info.size_bytes {
        Some(size) if size.div_ceil(1024 * 1024) <= ad.free_memory_mb => Fit::Fits,
        Some(_) => Fit::TooBig,
        None => Fit::Unknown,
    }
}

/// The digest of the model `model` on the provider that sent `ad`, when it told one.
pub fn digest<'a>(ad: &'a ResourceAd, model: &str) -> Option<&'a str> {
    ad.model_info
        .iter()
        .find(|o| model_matches(model, &o.name))
        .and_then(|o| o.digest.as_deref())
}

/// The provider's load as a fraction: running jobs plus queued over its slots.
pub fn load(ad: &ResourceAd) -> f64 {
    match (ad.slots, ad.queue) {
        (Some(slots), Some(q)) if slots > 0 => ad.load + f64::from(q) / f64::from(slots),
        _ => ad.load,
    }
}

/// What a choice needs to know besides the ads.
pub struct Want<'a> {
    /// The model asked for.
    pub model: &'a str,
    /// The digest it must have, when the request is pinned (wire form).
    pub digest: Option<&'a str>,
    /// Highest price, USDC base units.
    pub max_price: u64,
    /// Least free memory, MiB.
    pub min_memory_mb: u64,
    /// Whether the job is paid (the ad must name a wallet).
    pub paid: bool,
    /// `PRICE_PREMIUM_CAP_PCT`: how much more than the cheapest ad of a provider in good
    /// standing an ad may ask, in percent (300: at most four times as much).
    pub premium_cap_pct: u32,
    /// `PROVEN_AFTER_JOBS`: jobs a provider must have delivered here to be proven.
    pub proven_after: u32,
    /// The checked ENS names (none: no name is checked, so none is allowed by name).
    pub names: Option<&'a NameChecks>,
}

/// Whether `ad` may be chosen at all.
pub fn qualifies(ad: &ResourceAd, want: &Want<'_>, access: &Access) -> bool {
    unfit(ad, want, access).is_none()
}

/// Why `ad` may not be chosen, if it may not, as the `unfit` reasons of the `no_provider`
/// answer name it: `model_unavailable`, `other_digest` (pinned, and the provider's model
/// has another digest or none it told), `price`, `memory`, `denied`, `no_wallet`.
pub fn unfit(ad: &ResourceAd, want: &Want<'_>, access: &Access) -> Option<&'static str> {
    if !ad.models.iter().any(|m| model_matches(want.model, m)) {
        Some("model_unavailable")
    } else if want
        .digest
        .is_some_and(|d| digest(ad, want.model) != Some(d))
    {
        Some("other_digest")
    } else if ad.price > want.max_price {
        Some("price")
    } else if ad.free_memory_mb < want.min_memory_mb {
        Some("memory")
    } else if !access.may_choose(
        &ad.node_id,
        ad.ens.as_deref(),
        ad.ens.as_deref().is_some_and(|n| {
            want.names
                .is_some_and(|c| c.verified(&ad.node_id, n, ad.wallet.as_deref()))
        }),
    ) {
        Some("denied")
    } else if want.paid && ad.wallet.is_none() {
        Some("no_wallet")
    } else {
        None
    }
}

fn reliability_quarter(r: Option<&ProviderRecord>) -> u8 {
    let rel = r.map_or(1.0, |r| r.reliability());
    ((1.0 - rel) * 4.0).floor().clamp(0.0, 3.0) as u8
}

/// A provider's class, lower first: its success rate here in quarters, twice, and within
/// a quarter the proven ones (at least `proven_after` jobs delivered) before the rest.
/// 0 is a proven provider that (nearly) never failed here, 1 a newcomer.
pub fn class(r: Option<&ProviderRecord>, proven_after: u32) -> u8 {
    let proven = r.is_some_and(|r| r.successes >= proven_after);
    reliability_quarter(r) * 2 + u8::from(!proven)
}

/// The premium cap over `ads` (all qualifying): the highest price an ad may ask, and
/// whether the cheapest ad it is measured from is a proven provider's. The cap is the
/// cheapest ad of a proven provider in good standing (no dispute, no failure quarter) plus
/// `premium_cap_pct`; with none proven, the cheapest ad in good standing.
fn price_cap(
    ads: &[(ResourceAd, Option<ProviderRecord>)],
    premium_cap_pct: u32,
    proven_after: u32,
) -> (u64, bool) {
    let good = |r: &Option<ProviderRecord>| {
        r.as_ref().map_or(0, |r| r.disputes) == 0 && reliability_quarter(r.as_ref()) == 0
    };
    let cheapest = |proven: bool| {
        ads.iter()
            .filter(|(_, r)| good(r) && (!proven || class(r.as_ref(), proven_after) == 0))
            .map(|(a, _)| a.price)
            .min()
    };
    let (base, proven) = match cheapest(true) {
        Some(p) => (p, true),
        None => (cheapest(false).unwrap_or(u64::MAX), false),
    };
    let cap = u128::from(base) * (100 + u128::from(premium_cap_pct)) / 100;
    (u64::try_from(cap).unwrap_or(u64::MAX), proven)
}

/// Keep the ads that qualify, best first (see the module docs for the order).
pub fn rank(
    ads: Vec<ResourceAd>,
    want: &Want<'_>,
    access: &Access,
    history: impl Fn(&PeerKey) -> Option<ProviderRecord>,
) -> Vec<ResourceAd> {
    let mut keyed: Vec<(ResourceAd, Option<ProviderRecord>)> = Vec::new();
    for ad in ads {
        if !qualifies(&ad, want, access)
            || keyed.iter().any(|(a, _)| a.node_id.same_node(&ad.node_id))
        {
            continue;
        }
        let rec = history(&ad.node_id);
        keyed.push((ad, rec));
    }
    // Over the premium cap: not chosen when a proven provider set the cap; else (only
    // newcomers set it, and a newcomer's price may be bait) tried after every ad within it.
    let (cap, proven_cap) = price_cap(&keyed, want.premium_cap_pct, want.proven_after);
    keyed.retain(|(a, _)| {
        let keep = !proven_cap || a.price <= cap;
        if !keep {
            tracing::debug!(provider = %a.node_id.short(), price = a.price, cap, "ad over the premium cap: not chosen");
        }
        keep
    });
    let avg_latency = {
        let l: Vec<f64> = keyed
            .iter()
            .filter_map(|(_, r)| r.as_ref().and_then(|r| r.latency_ms))
            .collect();
        if l.is_empty() {
            0.0
        } else {
            l.iter().sum::<f64>() / l.len() as f64
        }
    };
    keyed.sort_by(|(a, ra), (b, rb)| {
        let disputes = |r: &Option<ProviderRecord>| r.as_ref().map_or(0, |r| r.disputes);
        let latency = |r: &Option<ProviderRecord>| {
            r.as_ref().and_then(|r| r.latency_ms).unwrap_or(avg_latency)
        };
        disputes(ra)
            .cmp(&disputes(rb))
            .then((a.price > cap).cmp(&(b.price > cap)))
            .then(class(ra.as_ref(), want.proven_after).cmp(&class(rb.as_ref(), want.proven_after)))
            .then(a.price.cmp(&b.price))
            .then(fit(a, want.model).cmp(&fit(b, want.model)))
            .then(load(a).total_cmp(&load(b)))
            .then(
                latency(ra)
                    .partial_cmp(&latency(rb))
                    .unwrap_or(Ordering::Equal),
            )
            .then(a.node_id.cmp(&b.node_id))
    });
    keyed.into_iter().map(|(a, _)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::access::AccessList;
    use crate::mesh::ads::tests::ad;
    use crate::protocol::ModelOffer;

    /// A provider's record of jobs delivered, failed and disputed.
    fn record(successes: u32, failures: u32, disputes: u32) -> Option<ProviderRecord> {
        Some(ProviderRecord {
            successes,
            failures,
            disputes,
            ..Default::default()
        })
    }

    fn want(model: &str) -> Want<'_> {
        Want {
            model,
            digest: None,
            max_price: 100,
            min_memory_mb: 0,
            paid: false,
            premium_cap_pct: 10_000,
            proven_after: 3,
            names: None,
        }
    }

    fn ids(v: &[ResourceAd]) -> Vec<u8> {
        v.iter().map(|a| a.node_id.0[0]).collect()
    }

    fn offer(name: &str, size: Option<u64>, loaded: bool) -> ModelOffer {
        ModelOffer {
            name: name.into(),
            size_bytes: size,
            loaded,
            ..ModelOffer::default()
        }
    }

    #[test]
    fn at_one_price_loaded_then_fits_then_unknown_then_too_big() {
        let mut a = ad(1, &["m"]);
        a.model_info = vec![offer("m", Some(20_000 * 1024 * 1024), false)]; // too big for 8000 MiB
        let b = ad(2, &["m"]); // unknown
        let mut c = ad(3, &["m"]);
        c.model_info = vec![offer("m", Some(1024 * 1024 * 1024), false)]; // fits
        let mut d = ad(4, &["m"]);
        d.model_info = vec![offer("m", Some(1024 * 1024 * 1024), true)]; // loaded
        d.load = 0.5; // even busier, loaded wins at one price
        let mut e = d.clone();
        e.node_id = PeerKey([5; 32]);
        e.price = 11; // loaded, but dearer: after every cheaper one
        let r = rank(vec![a, b, c, d, e], &want("m"), &Access::default(), |_| {
            None
        });
        assert_eq!(ids(&r), vec![4, 3, 2, 1, 5]);
    }

    #[test]
    fn class_then_price_then_load_then_latency_then_id() {
        let mut a = ad(1, &["m"]);
        a.price = 30;
        let mut b = ad(2, &["m"]);
        b.load = 0.5;
        b.price = 1;
        let mut c = ad(3, &["m"]);
        c.price = 20;
        let mut d = ad(4, &["m"]);
        d.price = 20;
        let mut e = ad(5, &["m"]);
        e.price = 20;
        e.queue = Some(1);
        e.slots = Some(2);
        let mut f = ad(6, &["m"]);
        f.price = 20;
        let hist = |k: &PeerKey| match k.0[0] {
            // Proven (3 jobs delivered): before every newcomer, whatever they ask.
            3 => Some(ProviderRecord {
                successes: 3,
                latency_ms: Some(900.0),
                ..Default::default()
            }),
            // Two delivered: still a newcomer, and slower than the average.
            6 => Some(ProviderRecord {
                successes: 2,
                latency_ms: Some(2_000.0),
                ..Default::default()
            }),
            _ => None,
        };
        // Newcomers by price (2 asks least); at 20, by load (5 has a queue, last of
        // them), then latency: 4 has no record (the average), 6 is slower; 1 asks most.
        let r = rank(vec![a, b, c, d, e, f], &want("m"), &Access::default(), hist);
        assert_eq!(ids(&r), vec![3, 2, 4, 6, 5, 1]);
    }

    /// Attack line 9 of docs/threat-model.md: an ad that claims every model, loaded, idle,
    /// at the highest price the agent allows. Main's order (fit and load before price) put
    /// it first; here it is never chosen over the cap, and without a cap it is last.
    #[test]
    fn an_ad_that_claims_everything_at_the_highest_price_does_not_outrank_honest_ones() {
        let mut evil = ad(1, &["m", "x", "y"]);
        evil.model_info = vec![offer("m", Some(1), true)];
        evil.price = 100; // the agent's max_price
        evil.free_memory_mb = u64::MAX;
        let mut honest = ad(2, &["m"]);
        honest.model_info = vec![offer("m", Some(1024 * 1024 * 1024), false)];
        honest.load = 0.5;
        let mut busy = ad(3, &["m"]);
        busy.load = 0.9;
        busy.price = 12;
        let mut w = want("m");
        let all = vec![evil, honest, busy];
        assert_eq!(
            ids(&rank(all.clone(), &w, &Access::default(), |_| None)),
            vec![2, 3, 1]
        );
        w.premium_cap_pct = 300; // at most 4 x 10: newcomers only, so it is tried last
        assert_eq!(
            ids(&rank(all.clone(), &w, &Access::default(), |_| None)),
            vec![2, 3, 1]
        );
        // Once the honest provider is proven, the cap keeps the bought ad out.
        let proven = |k: &PeerKey| record(3, 0, 0).filter(|_| k.0[0] == 2);
        assert_eq!(ids(&rank(all, &w, &Access::default(), proven)), vec![2, 3]);
    }

    #[test]
    fn a_newcomers_bait_price_does_not_shut_others_out() {
        let mut bait = ad(1, &["m"]);
        bait.price = 1;
        let honest = ad(2, &["m"]); // 10, over 4 x 1
        let mut w = want("m");
        w.premium_cap_pct = 300;
        let r = rank(vec![bait, honest], &w, &Access::default(), |_| None);
        assert_eq!(ids(&r), vec![1, 2]);
    }

    #[test]
    fn the_cap_is_set_by_proven_providers_in_good_standing() {
        let mut cheap_failing = ad(1, &["m"]);
        cheap_failing.price = 1;
        let proven = ad(2, &["m"]); // 10
        let mut dear = ad(3, &["m"]);
        dear.price = 41;
        let hist = |k: &PeerKey| match k.0[0] {
            1 => record(0, 2, 0),
            2 => record(9, 0, 0),
            _ => None,
        };
        let mut w = want("m");
        w.premium_cap_pct = 300;
        // The failing provider's price 1 does not set the cap (which would drop 2): 10 does.
        let r = rank(
            vec![cheap_failing, proven, dear],
            &w,
            &Access::default(),
            hist,
        );
        assert_eq!(ids(&r), vec![2, 1]);
    }

    #[test]
    fn history_demotes_failures_and_disputes() {
        let ads = vec![ad(1, &["m"]), ad(2, &["m"]), ad(3, &["m"])];
        let hist = |k: &PeerKey| match k.0[0] {
            1 => record(10, 0, 1),
            2 => record(0, 1, 0),
            _ => None,
        };
        assert_eq!(
            ids(&rank(ads, &want("m"), &Access::default(), hist)),
            vec![3, 2, 1]
        );
    }

    #[test]
    fn a_pinned_digest_keeps_only_the_providers_of_that_digest() {
        let (mine, theirs) = ("a".repeat(64), "b".repeat(64));
        let with_digest = |id: u8, d: Option<&str>| {
            let mut a = ad(id, &["m:latest"]);
            a.model_info = vec![ModelOffer {
                digest: d.map(String::from),
                ..offer("m:latest", None, true)
            }];
            a
        };
        let ads = vec![
            with_digest(1, Some(&theirs)),
            with_digest(2, None),
            ad(3, &["m"]), // no details at all
            with_digest(4, Some(&mine)),
        ];
        let mut w = want("m");
        w.digest = Some(&mine);
        let access = Access::default();
        assert_eq!(ids(&rank(ads.clone(), &w, &access, |_| None)), vec![4]);
        let why: Vec<_> = ads.iter().map(|a| unfit(a, &w, &access)).collect();
        assert_eq!(
            why,
            vec![
                Some("other_digest"),
                Some("other_digest"),
                Some("other_digest"),
                None
            ]
        );
        // Not pinned: all four qualify.
        assert_eq!(rank(ads, &want("m"), &access, |_| None).len(), 4);
    }

    #[test]
    fn filters_price_memory_model_wallet_and_access() {
        let mut dear = ad(1, &["m"]);
        dear.price = 1000;
        let mut small = ad(2, &["m"]);
        small.free_memory_mb = 10;
        let other = ad(3, &["x"]);
        let mut paid = ad(4, &["m:latest"]);
        paid.wallet = Some(format!("0x{}", "b".repeat(40)));
        let denied = ad(5, &["m"]);
        let mut by_name = ad(6, &["m"]);
        by_name.ens = Some("bad.eth".into());
        let ok = ad(7, &["m"]);
        let access = Access {
            allow: AccessList::default(),
            deny: AccessList::parse(&format!("{},bad.eth", "05".repeat(32))).unwrap(),
        };
        let mut w = want("m");
        w.min_memory_mb = 100;
        let all = vec![dear, small, other, paid, denied, by_name, ok];
        assert_eq!(ids(&rank(all.clone(), &w, &access, |_| None)), vec![4, 7]);
        w.paid = true;
        assert_eq!(ids(&rank(all, &w, &access, |_| None)), vec![4]);
    }
}
