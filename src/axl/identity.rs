//! Peer identity on the Yggdrasil mesh that AXL runs on.
//!
//! A node is named by its 32-byte ed25519 public key. Yggdrasil derives a 128-bit IPv6
//! address from the key (`AddrForKey`): `0x02`, then the count of leading 1 bits of the
//! inverted key, then the bits after the first 0. AXL's `/recv` reports the sender as the
//! key it recovers from that address (`Address.GetKey`), so only the leading bits are the
//! real key's and the rest are 1s. Two keys name the same node when their addresses match.

use std::fmt;

use serde_with::{DeserializeFromStr, SerializeDisplay};

/// A 32-byte AXL/Yggdrasil public key (full, or the partial one from `X-From-Peer-Id`),
/// 64 hex characters in JSON.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, SerializeDisplay, DeserializeFromStr,
)]
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

/// A key of 32 bytes `b`, for tests that need a few distinct peers.
#[cfg(test)]
pub(crate) fn test_key(b: u8) -> PeerKey {
    PeerKey([b; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, AddrForKey as hex, the address as IPv6 text, GetKey of that address), generated
    /// with github.com/yggdrasil-network/yggdrasil-go v0.5.12 `src/address` (a 30-line Go
    /// program calling `address.AddrForKey` and `Address.GetKey`).
    const YGGDRASIL_VECTORS: &[(&str, &str, &str, &str)] = &[
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "02000000000000000000000000000000",
            "200::",
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
        (
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "02000000000000000000000000000000",
            "200::",
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
        (
            "000000000000000fedcba98765432100112233445566778899aabbccddeeff01",
            "023c02468acf13579bdffddbb9977553",
            "23c:246:8acf:1357:9bdf:fddb:b997:7553",
            "000000000000000fedcba98765432100112233445567ffffffffffffffffffff",
        ),
        (
            "00000000000000000000000000000000000000000000000000000000000000a5",
            "02f80000000000000000000000000000",
            "2f8::",
            "00000000000000000000000000000000000000000000000000000000000000ff",
        ),
        (
            "d2b5b7f2f8d4c3b1a0918273645566778899aabbccddeeff0011223344556677",
            "02005a94901a0e56789cbedcfb193755",
            "200:5a94:901a:e56:789c:bedc:fb19:3755",
            "d2b5b7f2f8d4c3b1a091827364557fffffffffffffffffffffffffffffffffff",
        ),
        (
            "3c4e1f2a9b8d7e6f5a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b",
            "02021d8f06ab23940c852da61e970f87",
            "202:1d8f:6ab:2394:c85:2da6:1e97:f87",
            "3c4e1f2a9b8d7e6f5a4b3c2d1e0f1fffffffffffffffffffffffffffffffffff",
        ),
        (
            "0000000100000000000000000000000000000000000000000000000000000000",
            "021fffffffffffffffffffffffffffff",
            "21f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "000000010000000000000000000000000000ffffffffffffffffffffffffffff",
        ),
        (
            "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "02010000000000000000000000000000",
            "201::",
            "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
    ];

    #[test]
    fn address_matches_yggdrasil_addr_for_key() {
        for (key, addr, ipv6, _) in YGGDRASIL_VECTORS {
            let k = PeerKey::from_hex(key).unwrap();
            assert_eq!(hex::encode(k.address()), *addr, "AddrForKey({key})");
            assert_eq!(k.ipv6().to_string(), *ipv6, "IPv6 text of {key}");
        }
    }

    #[test]
    fn partial_matches_yggdrasil_get_key() {
        for (key, addr, _, partial) in YGGDRASIL_VECTORS {
            let k = PeerKey::from_hex(key).unwrap();
            let mut a = [0u8; 16];
            hex::decode_to_slice(addr, &mut a).unwrap();
            assert_eq!(
                PeerKey::from_address(&a).to_hex(),
                *partial,
                "GetKey({addr})"
            );
            assert_eq!(k.partial().to_hex(), *partial, "partial({key})");
        }
    }

    #[test]
    fn partial_names_the_same_node_but_is_not_the_key() {
        let (key, _, _, partial) = YGGDRASIL_VECTORS[4];
        let full = PeerKey::from_hex(key).unwrap();
        let part = PeerKey::from_hex(partial).unwrap();
        assert_ne!(full, part);
        assert!(full.same_node(&part));
        assert!(part.same_node(&full));
        let (other, _, _, _) = YGGDRASIL_VECTORS[5];
        assert!(!full.same_node(&PeerKey::from_hex(other).unwrap()));
    }

    #[test]
    fn from_hex_rejects_bad_ids() {
        assert!(PeerKey::from_hex("abc").is_err());
        assert!(PeerKey::from_hex(&"g".repeat(64)).is_err());
        assert!(PeerKey::from_hex(&"a".repeat(66)).is_err());
        let k = PeerKey::from_hex(&format!("0x{}", "Ab".repeat(32))).unwrap();
        assert_eq!(k.to_hex(), "ab".repeat(32));
    }
}
