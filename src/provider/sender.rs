//! Whom a provider serves: its access lists (`EDGENT_ALLOW`, `EDGENT_DENY`) applied to a
//! task's sender, whose announced ENS name (`sender_ens`) counts as a requester's name only
//! once checked, as a provider's does ([`crate::mesh::names`]; docs/threat-model.md, line
//! 12). A denied sender (by key, or by the name it claims) is refused; with an allow list,
//! only a sender it names by key, or by a name whose `axl.pubkey` record is the sender's
//! key, is served.

use crate::axl::PeerKey;

use super::Provider;

impl Provider {
    /// Why a task from `requester`, announcing `ens`, is not served here (`None`: served).
    /// The name is checked at once only when the allow list would admit the sender by it.
    pub(super) async fn sender_refused(
        &self,
        requester: &PeerKey,
        ens: Option<&str>,
    ) -> Option<String> {
        let access = &self.ctx.mesh.access;
        let names = &self.ctx.mesh.names;
        let by_name = ens.filter(|n| {
            !access.allow.is_empty()
                && !access.allow.names(requester, None)
                && access.allow.names(requester, Some(n))
        });
        let verified = match by_name {
            Some(name) => names.verify_now(requester, name).await,
            None => false,
        };
        if access.may_choose(requester, ens, verified) {
            return None;
        }
        let claim = ens.map_or(String::new(), |n| format!(" (announcing {n})"));
        tracing::warn!(from = %requester.short(), ens = ?ens, verified,
            "a task from a node the access lists do not admit: refused");
        Some(format!(
            "this provider does not serve {}{claim}: denied, or not on its allow list (an ENS name counts once its axl.pubkey record names the sender)",
            requester.short()
        ))
    }

    /// The name a task's sender announces, as the job table shows it: plain when checked,
    /// else marked unverified (a check starts in the background for the next time).
    pub(super) fn sender_shown(&self, requester: &PeerKey, ens: Option<&str>) -> Option<String> {
        let names = &self.ctx.mesh.names;
        if let Some(n) = ens {
            names.check(*requester, n);
        }
        names.shown(requester, ens, None)
    }
}
