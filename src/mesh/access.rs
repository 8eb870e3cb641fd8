//! `EDGENT_ALLOW` and `EDGENT_DENY`: which providers this node may choose, and whose
//! messages it takes. Each is a comma-separated list of node ids (64 hex, optionally
//! `0x`-prefixed) and ENS names. A denied node is never chosen and its messages are
//! dropped as they arrive; with an allow list, only the nodes on it are chosen.
//!
//! A node id is checked by Yggdrasil address (so a partial `X-From-Peer-Id` matches). An
//! ENS name in the allow list matches only a name this node checked
//! ([`crate::mesh::names`]: the name's `axl.pubkey` record is the node's key); in the deny
//! list it matches the name the node claims, checked or not (denying a claimer is safe), so
//! a deny by ENS name stops an honest node, and a deny by node id stops any.

use crate::axl::PeerKey;

/// One entry of an allow or deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessEntry {
    /// A node by its AXL key.
    Node(PeerKey),
    /// A node by the ENS name it announces (lower-cased).
    Ens(String),
}

/// A parsed list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList(pub Vec<AccessEntry>);

impl AccessList {
    /// Parse `a,b,c`: each a node id (64 hex, optional `0x`) or an ENS name (with a dot).
    pub fn parse(v: &str) -> Result<AccessList, String> {
        let mut out = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let hex = item.strip_prefix("0x").unwrap_or(item);
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                let k = PeerKey::from_hex(hex).map_err(|e| format!("{item}: {e}"))?;
                out.push(AccessEntry::Node(k));
            } else if item.contains('.')
                && item.len() <= crate::protocol::MAX_ENS_LEN
                && !item.contains(char::is_whitespace)
            {
                out.push(AccessEntry::Ens(item.to_ascii_lowercase()));
            } else {
                return Err(format!(
                    "{item:?} is neither a node id (64 hex) nor an ENS name"
                ));
            }
        }
        Ok(AccessList(out))
    }

    /// Whether the list names the node (by key, or by the ENS name it claims).
    pub fn names(&self, key: &PeerKey, ens: Option<&str>) -> bool {
        self.0.iter().any(|e| match e {
            AccessEntry::Node(k) => k.same_node(key),
            AccessEntry::Ens(n) => ens.is_some_and(|x| x.eq_ignore_ascii_case(n)),
        })
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The allow and deny lists together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `EDGENT_ALLOW`: when not empty, only these are chosen.
    pub allow: AccessList,
    /// `EDGENT_DENY`: never chosen, messages dropped.
    pub deny: AccessList,
}

impl Access {
    /// Whether `key`, claiming the ENS name `ens` (`verified`: checked), may be chosen as
    /// a provider.
    pub fn may_choose(&self, key: &PeerKey, ens: Option<&str>, verified: bool) -> bool {
        !self.deny.names(key, ens)
            && (self.allow.is_empty() || self.allow.names(key, ens.filter(|_| verified)))
    }

    /// Whether an ad of `key` may be kept at all: not denied (by key, or the name it
    /// claims); the allow list is applied when choosing, once the name is checked.
    pub fn may_keep(&self, key: &PeerKey, ens: Option<&str>) -> bool {
        !self.deny.names(key, ens)
    }

    /// Whether messages from `key` are dropped on arrival (denied by node id: the sender's
    /// address is all a message is known by before it is read).
    pub fn denied_sender(&self, key: &PeerKey) -> bool {
        self.deny.names(key, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_names_and_refuses_junk() {
        let id = "ab".repeat(32);
        let l = AccessList::parse(&format!(" 0x{id}, Dell-G15.edgent.eth ,")).unwrap();
        assert_eq!(l.0.len(), 2);
        assert!(l.names(&PeerKey([0xab; 32]), None));
        assert!(l.names(&PeerKey([1; 32]), Some("dell-g15.edgent.eth")));
        assert!(!l.names(&PeerKey([1; 32]), Some("other.eth")));
        assert!(AccessList::parse("nonsense").is_err());
        assert!(AccessList::parse("abc123").is_err());
    }

    #[test]
    fn deny_beats_allow() {
        let a = Access {
            allow: AccessList::parse(&format!("{},good.eth", "01".repeat(32))).unwrap(),
            deny: AccessList::parse(&"01".repeat(32)).unwrap(),
        };
        assert!(!a.may_choose(&PeerKey([1; 32]), None, true));
        assert!(a.may_choose(&PeerKey([2; 32]), Some("good.eth"), true));
        // An unchecked claim of an allowed name is not admitted; a denied one is denied.
        assert!(!a.may_choose(&PeerKey([2; 32]), Some("good.eth"), false));
        assert!(!a.may_choose(&PeerKey([3; 32]), None, true));
        assert!(a.denied_sender(&PeerKey([1; 32])));
        assert!(Access::default().may_choose(&PeerKey([3; 32]), None, false));
        let d = Access {
            allow: AccessList::default(),
            deny: AccessList::parse("bad.eth").unwrap(),
        };
        assert!(!d.may_choose(&PeerKey([4; 32]), Some("bad.eth"), false));
        assert!(!d.may_keep(&PeerKey([4; 32]), Some("bad.eth")));
    }
}
