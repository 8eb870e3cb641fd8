//! The sim's peering graph and the spanning tree each node reports in `/topology`.
//!
//! A [`SimTopology`] is either `Full` (every node a direct peer of every other, the sim's
//! old behaviour) or a tree of peerings given by each node's parent. On the real node
//! (`axl/README.md`), a node's `tree` lists only itself, its direct peers and their
//! ancestors, so spokes of one hub never see each other; `/send` still routes to any key
//! with a path of running nodes. The spanning tree is rooted, per connected part, at the
//! node with the numerically smallest public key (our reading of Yggdrasil's ironwood
//! router; nothing in edgent depends on which node is the root), and each node's parent
//! is its neighbour one hop closer to the root.

use std::collections::VecDeque;
use std::str::FromStr;

use super::SimError;
use crate::axl::PeerKey;

/// Who peers with whom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SimTopology {
    /// Every node is a direct peer of every other.
    #[default]
    Full,
    /// A tree of peerings: entry `k` is the parent (the node it dials) of node `k + 1`,
    /// and must be below `k + 1`, so node 0 is the top. `[0, 0, 0]` is a hub (0) with
    /// three spokes; `[0, 0, 1, 1, 2, 2]` a hub, two sub-hubs and four spokes.
    Parents(Vec<usize>),
}

impl SimTopology {
    /// Node 0 the hub, every other node its spoke.
    pub fn star(n: usize) -> SimTopology {
        SimTopology::Parents(vec![0; n.saturating_sub(1)])
    }

    /// Node 0 the hub, nodes `1..=sub_hubs` its sub-hubs, the rest spokes spread over the
    /// sub-hubs in turn (a plain star when `sub_hubs` is 0).
    pub fn hubs(n: usize, sub_hubs: usize) -> SimTopology {
        if sub_hubs == 0 {
            return SimTopology::star(n);
        }
        let parents = (1..n)
            .map(|node| {
                if node <= sub_hubs {
                    0
                } else {
                    1 + (node - sub_hubs - 1) % sub_hubs
                }
            })
            .collect();
        SimTopology::Parents(parents)
    }

    /// Parse a `--parents` list: comma-separated parents of nodes 1, 2, … (so n - 1
    /// entries for n nodes), each below its node's index.
    pub fn parse_parents(list: &str) -> Result<SimTopology, SimError> {
        let parents = list
            .split(',')
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<usize>()
                    .map_err(|e| SimError::BadTopology(format!("parent {p:?}: {e}")))
            })
            .collect::<Result<Vec<usize>, SimError>>()?;
        let t = SimTopology::Parents(parents);
        t.validate(t.implied_nodes().unwrap_or(1))?;
        Ok(t)
    }

    /// The node count a `Parents` list implies (`None` for `Full`).
    pub fn implied_nodes(&self) -> Option<usize> {
        match self {
            SimTopology::Full => None,
            SimTopology::Parents(p) => Some(p.len() + 1),
        }
    }

    pub(super) fn validate(&self, n: usize) -> Result<(), SimError> {
        let SimTopology::Parents(parents) = self else {
            return Ok(());
        };
        if parents.len() + 1 != n {
            return Err(SimError::BadTopology(format!(
                "{} parents describe {} nodes, not {n}",
                parents.len(),
                parents.len() + 1
            )));
        }
        for (k, &p) in parents.iter().enumerate() {
            if p > k {
                return Err(SimError::BadTopology(format!(
                    "node {}'s parent {p} must be a lower-numbered node",
                    k + 1
                )));
            }
        }
        Ok(())
    }
}

/// `full`, or a parents list as [`SimTopology::parse_parents`] takes it.
impl FromStr for SimTopology {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "full" => Ok(SimTopology::Full),
            list => SimTopology::parse_parents(list),
        }
    }
}

/// The peering graph of a running sim.
pub(super) struct Graph {
    adj: Vec<Vec<usize>>,
    /// `Some(parents)` for a tree (index = node - 1), used for `inbound`.
    parents: Option<Vec<usize>>,
}

impl Graph {
    pub(super) fn new(topology: &SimTopology, n: usize) -> Graph {
        match topology {
            SimTopology::Full => Graph {
                adj: (0..n)
                    .map(|i| (0..n).filter(|&j| j != i).collect())
                    .collect(),
                parents: None,
            },
            SimTopology::Parents(parents) => {
                let mut adj = vec![Vec::new(); n];
                for (k, &p) in parents.iter().enumerate() {
                    adj[k + 1].push(p);
                    adj[p].push(k + 1);
                }
                for a in &mut adj {
                    a.sort_unstable();
                }
                Graph {
                    adj,
                    parents: Some(parents.clone()),
                }
            }
        }
    }

    /// Direct peers of `i`.
    pub(super) fn peers(&self, i: usize) -> &[usize] {
        &self.adj[i]
    }

    /// Whether peer `j` dialled `i` (in a tree a child dials its parent; in the full mesh
    /// the higher-numbered node dials).
    pub(super) fn inbound(&self, i: usize, j: usize) -> bool {
        match &self.parents {
            None => j < i,
            Some(p) => j >= 1 && p[j - 1] == i,
        }
    }

    /// Breadth-first parents from `start` over nodes where `ok` holds (`start` included
    /// regardless): `parent[j]` is `Some(k)` for reached nodes, `start`'s is itself.
    fn bfs(&self, start: usize, ok: &dyn Fn(usize) -> bool) -> Vec<Option<usize>> {
        let mut parent = vec![None; self.adj.len()];
        parent[start] = Some(start);
        let mut todo = VecDeque::from([start]);
        while let Some(i) = todo.pop_front() {
            for &j in &self.adj[i] {
                if parent[j].is_none() && ok(j) {
                    parent[j] = Some(i);
                    todo.push_back(j);
                }
            }
        }
        parent
    }

    /// The nodes a message from `from` to `to` crosses (both ends included) over nodes
    /// where `ok` holds, or `None` when no such path exists.
    pub(super) fn path(
        &self,
        from: usize,
        to: usize,
        ok: &dyn Fn(usize) -> bool,
    ) -> Option<Vec<usize>> {
        if !ok(to) {
            return None;
        }
        let parent = self.bfs(from, ok);
        let mut path = vec![to];
        let mut at = to;
        while at != from {
            at = parent[at]?;
            path.push(at);
        }
        Some(path)
    }

    /// What node `me` lists in its `tree`: `(node, its parent)` for itself, its direct
    /// peers and all their ancestors, over the nodes `present` says `me` can see.
    pub(super) fn tree_view(
        &self,
        me: usize,
        keys: &[PeerKey],
        present: &dyn Fn(usize) -> bool,
    ) -> Vec<(usize, usize)> {
        let part = self.bfs(me, present);
        let root = (0..keys.len())
            .filter(|&j| part[j].is_some())
            .min_by_key(|&j| keys[j].0)
            .unwrap_or(me);
        let up = self.bfs(root, &|j| part[j].is_some());
        let mut listed = vec![false; keys.len()];
        let starts = std::iter::once(me).chain(self.adj[me].iter().copied());
        for start in starts {
            let mut at = start;
            while let Some(p) = up[at] {
                if listed[at] {
                    break;
                }
                listed[at] = true;
                if p == at {
                    break;
                }
                at = p;
            }
        }
        (0..keys.len())
            .filter(|&j| listed[j])
            .filter_map(|j| up[j].map(|p| (j, p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<PeerKey> {
        // Key order = reverse index order, so the root is the highest-numbered node.
        (0..n).map(|i| PeerKey([255 - i as u8; 32])).collect()
    }

    fn listed(view: &[(usize, usize)]) -> Vec<usize> {
        view.iter().map(|&(j, _)| j).collect()
    }

    #[test]
    fn parents_lists_parse_and_validate() {
        assert_eq!(
            SimTopology::parse_parents("0, 0,1").unwrap(),
            SimTopology::Parents(vec![0, 0, 1])
        );
        assert!(
            SimTopology::parse_parents("0,3").is_err(),
            "parent above its node"
        );
        assert!(SimTopology::parse_parents("0,x").is_err());
        assert_eq!("full".parse::<SimTopology>().unwrap(), SimTopology::Full);
        assert!(SimTopology::Parents(vec![0, 0]).validate(4).is_err());
        assert_eq!(
            SimTopology::hubs(12, 2),
            SimTopology::Parents(vec![0, 0, 1, 2, 1, 2, 1, 2, 1, 2, 1])
        );
        assert_eq!(SimTopology::star(4), SimTopology::Parents(vec![0, 0, 0]));
    }

    /// The measured three-node case: hub 0, spokes 1 and 2, spoke 2 the root (smallest
    /// key). Spoke 1, whose path to the root runs through the hub, lists spoke 2; spoke 2
    /// (the root) never lists spoke 1. The hub lists everyone.
    #[test]
    fn a_spoke_sees_its_peers_and_their_ancestors_only() {
        let g = Graph::new(&SimTopology::star(3), 3);
        let k = keys(3);
        let all = |_| true;
        assert_eq!(listed(&g.tree_view(0, &k, &all)), [0, 1, 2]);
        assert_eq!(listed(&g.tree_view(1, &k, &all)), [0, 1, 2]);
        assert_eq!(listed(&g.tree_view(2, &k, &all)), [0, 2]);
        // Parents: the root (2) is its own parent, the hub hangs off it.
        assert_eq!(g.tree_view(2, &k, &all), [(0, 2), (2, 2)]);
    }

    #[test]
    fn spokes_of_a_two_level_tree_do_not_see_each_other() {
        let g = Graph::new(&SimTopology::hubs(7, 2), 7);
        let k: Vec<PeerKey> = (0..7).map(|i| PeerKey([i as u8; 32])).collect(); // root 0
        let all = |_| true;
        assert_eq!(listed(&g.tree_view(3, &k, &all)), [0, 1, 3]);
        assert_eq!(listed(&g.tree_view(1, &k, &all)), [0, 1, 3, 5]);
        assert_eq!(listed(&g.tree_view(0, &k, &all)), [0, 1, 2]);
        let path = g.path(3, 4, &all).unwrap();
        assert_eq!(path, [4, 2, 0, 1, 3]);
        assert!(
            g.path(3, 4, &|j| j != 0).is_none(),
            "the hub is the only way"
        );
        assert!(g.inbound(1, 3) && !g.inbound(3, 1));
    }
}
