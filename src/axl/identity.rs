//! Peer identity on the Yggdrasil mesh that AXL runs on.
//!
//! A node is named by its 32-byte ed25519 public key. Yggdrasil derives a 128-bit IPv6
//! address from the key (`AddrForKey`): `0x02`, then the count of leading 1 bits of the
//! inverted key, then the bits after the first 0. AXL's `/recv` reports the sender as the
//! key it recovers from that address (`Address.GetKey`), so only the leading bits are the
//! real key's and the rest are 1s. Two keys name the same node when their addresses match.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte AXL/Yggdrasil public key (full, or the partial one from `X-From-Peer-Id`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub [u8; 32]);

/// A peer id that is not 64 hex characters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("peer id must be 64 hex characters (32 bytes), got {0:?}")]
pub struct BadPeerKey(pub String);

/// A 16-byte Yggdrasil IPv6 address.
pub type YggAddress = [u8; 16];

impl PeerKey {
    /// Parse 64 hex characters (an optional `0x` prefix is accepted).
    pub fn from_hex(s: &str) -> Result<Self, BadPeerKey> {
        let t = s.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        let mut out = [0u8; 32];
        if t.len() != 64 || hex::decode_to_slice(t, &mut out).is_err() {
            let shown: String = s.chars().take(80).collect();
            return Err(BadPeerKey(shown));
        }
        Ok(PeerKey(out))
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex characters, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Yggdrasil's `AddrForKey`.
    pub fn address(&self) -> YggAddress {
        let mut buf = self.0;
        for b in buf.iter_mut() {
            *b = !*b;
        }
        let mut addr = [0u8; 16];
        addr[0] = 0x02;
        let mut ones: u8 = 0;
        let mut done = false;
        let mut bits: u8 = 0;
        let mut n_bits = 0;
        let mut out_idx = 2;
        for idx in 0..256 {
            let bit = (buf[idx / 8] >> (7 - (idx % 8))) & 1;
            if !done && bit != 0 {
                ones = ones.wrapping_add(1);
                continue;
            }
            if !done {
                done = true;
                continue;
            }
            bits = (bits << 1) | bit;
            n_bits += 1;
            if n_bits == 8 {
                n_bits = 0;
                if out_idx < 16 {
                    addr[out_idx] = bits;
                    out_idx += 1;
                } else {
                    break;
                }
            }
        }
        addr[1] = ones;
        addr
    }

    /// Yggdrasil's `Address.GetKey`: the key as recovered from an address, which is what
    /// AXL puts in `X-From-Peer-Id`. Bits the address does not carry come out as 1s.
    pub fn from_address(addr: &YggAddress) -> PeerKey {
        let mut key = [0u8; 32];
        let ones = addr[1] as usize;
        for idx in 0..ones.min(256) {
            key[idx / 8] |= 0x80 >> (idx % 8);
        }
        let key_offset = ones + 1;
        let addr_offset = 16; // 8 bits of prefix + 8 bits of the ones count
        for idx in addr_offset..128 {
            let bit = (addr[idx / 8] >> (7 - (idx % 8))) & 1;
            let key_idx = key_offset + (idx - addr_offset);
            if key_idx / 8 >= key.len() {
                break;
            }
            key[key_idx / 8] |= bit << (7 - (key_idx % 8));
        }
        for b in key.iter_mut() {
            *b = !*b;
        }
        PeerKey(key)
    }

    /// The partial key AXL would report for this node in `X-From-Peer-Id`.
    pub fn partial(&self) -> PeerKey {
        PeerKey::from_address(&self.address())
    }

    /// Whether two keys (full or partial) name the same node: same Yggdrasil address.
    pub fn same_node(&self, other: &PeerKey) -> bool {
        self.address() == other.address()
    }

    /// The Yggdrasil address in IPv6 text form.
    pub fn ipv6(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(self.address())
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({}…)", self.short())
    }
}

impl std::str::FromStr for PeerKey {
    type Err = BadPeerKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerKey::from_hex(s)
    }
}

impl Serialize for PeerKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PeerKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PeerKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}
