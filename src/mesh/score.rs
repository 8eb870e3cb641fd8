//! Choosing among providers: which ads qualify, and in what order to try them.
//!
//! An ad qualifies when it serves the model, asks at most the agent's `max_price`, has at
//! least `min_memory_mb` free, the access lists allow its node, and (paid jobs) names a
//! wallet. Qualifying ads are ordered by, first to last:
//!
//! 1. disputes here (a provider whose proof failed is ranked last from then on);
//! 2. its record here: success rate, counting one success up front, in quarters
//!    (a newcomer and a reliable provider rank alike; one failure alone drops it a class);
//! 3. model fit: loaded now, then fitting in its free memory, then unknown, then too big;
//! 4. in-flight load: running jobs plus its queue over its slots;
//! 5. price;
//! 6. average latency here (unknown counts as average);
//! 7. node id, so that equal providers are always tried in the same order.

use std::cmp::Ordering;

use crate::axl::PeerKey;
use crate::inference::model_matches;
use crate::mesh::access::Access;
use crate::mesh::history::ProviderRecord;
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
    } else if !access.may_choose(&ad.node_id, ad.ens.as_deref()) {
        Some("denied")
    } else if want.paid && ad.wallet.is_none() {
        Some("no_wallet")
    } else {
        None
    }
}

fn reliability_class(r: Option<&ProviderRecord>) -> u8 {
    let rel = r.map_or(1.0, |r| r.reliability());
    ((1.0 - rel) * 4.0).floor().clamp(0.0, 3.0) as u8
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
            .then(reliability_class(ra.as_ref()).cmp(&reliability_class(rb.as_ref())))
            .then(fit(a, want.model).cmp(&fit(b, want.model)))
            .then(load(a).total_cmp(&load(b)))
            .then(a.price.cmp(&b.price))
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

    fn want(model: &str) -> Want<'_> {
        Want {
            model,
            digest: None,
            max_price: 100,
            min_memory_mb: 0,
            paid: false,
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
    fn loaded_then_fits_then_unknown_then_too_big() {
        let mut a = ad(1, &["m"]);
        a.model_info = vec![offer("m", Some(20_000 * 1024 * 1024), false)]; // too big for 8000 MiB
        let b = ad(2, &["m"]); // unknown
        let mut c = ad(3, &["m"]);
        c.model_info = vec![offer("m", Some(1024 * 1024 * 1024), false)]; // fits
        let mut d = ad(4, &["m"]);
        d.model_info = vec![offer("m", Some(1024 * 1024 * 1024), true)]; // loaded
        d.load = 0.5; // even busier and dearer, loaded wins
        d.price = 50;
        let r = rank(vec![a, b, c, d], &want("m"), &Access::default(), |_| None);
        assert_eq!(ids(&r), vec![4, 3, 2, 1]);
    }

    #[test]
    fn then_load_then_price_then_latency_then_id() {
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
        let hist = |k: &PeerKey| {
            (k.0[0] == 3).then(|| ProviderRecord {
                successes: 5,
                latency_ms: Some(900.0),
                ..Default::default()
            })
        };
        // 4 (price 20, no record: average latency 900) ties 3 on latency: id decides.
        let r = rank(vec![a, b, c, d, e], &want("m"), &Access::default(), hist);
        assert_eq!(ids(&r), vec![3, 4, 1, 2, 5]);
    }

    #[test]
    fn history_demotes_failures_and_disputes() {
        let ads = vec![ad(1, &["m"]), ad(2, &["m"]), ad(3, &["m"])];
        let hist = |k: &PeerKey| match k.0[0] {
            1 => Some(ProviderRecord {
                disputes: 1,
                successes: 10,
                ..Default::default()
            }),
            2 => Some(ProviderRecord {
                failures: 1,
                ..Default::default()
            }),
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
