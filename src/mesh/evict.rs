//! Room in a bounded map: the mesh state's maps (the peer book, the ad cache, the provider
//! history, the checked names) each hold at most a fixed number of entries, and a new key
//! takes the place of the oldest.

use std::collections::HashMap;
use std::hash::Hash;

/// Makes room for `key` in `map`, which holds at most `capacity` entries: when `key` is
/// new and the map is full, removes the entry `age` ranks lowest (the oldest) and returns
/// its key. A key already present, or a map with room, removes nothing.
pub fn evict_oldest<K, V, A>(
    map: &mut HashMap<K, V>,
    key: &K,
    capacity: usize,
    age: impl Fn(&V) -> A,
) -> Option<K>
where
    K: Eq + Hash + Clone,
    A: Ord,
{
    if map.contains_key(key) || map.len() < capacity {
        return None;
    }
    let oldest = map
        .iter()
        .min_by_key(|(_, v)| age(v))
        .map(|(k, _)| k.clone())?;
    map.remove(&oldest);
    Some(oldest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_in_a_full_map_takes_the_oldest_entrys_place() {
        let mut m: HashMap<u8, u64> = HashMap::from([(1, 30), (2, 10), (3, 20)]);
        assert_eq!(evict_oldest(&mut m, &3, 3, |v| *v), None);
        assert_eq!(m.len(), 3);
        assert_eq!(evict_oldest(&mut m, &4, 4, |v| *v), None);
        assert_eq!(m.len(), 3);
        assert_eq!(evict_oldest(&mut m, &4, 3, |v| *v), Some(2));
        assert_eq!(m.len(), 2);
        assert!(!m.contains_key(&2));
    }
}
