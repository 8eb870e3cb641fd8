//! `edgent mesh-sim`: its arguments ([`MeshSimArgs`]) and the command that serves a sim
//! until it is stopped.

use std::io::Write as _;

use tokio_util::sync::CancellationToken;

use super::{MeshSim, SimError, SimOptions, SimTiming, SimTopology};

/// The `edgent mesh-sim` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MeshSimArgs {
    /// Number of nodes (default 2, or as many as --parents describes).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Node i serves on base-port + i (0: ephemeral ports).
    #[arg(long, default_value_t = 9002)]
    pub base_port: u16,
    /// Seed of the node keys (same seed, same ids).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Peering graph: `full` (everyone peers with everyone), `star` (node 0 the hub) or
    /// `hubs:K` (node 0 the hub, nodes 1..=K sub-hubs, the rest spokes spread over them).
    #[arg(long, default_value = "full", conflicts_with = "parents")]
    pub topology: String,
    /// Peering tree as the parent of each node from node 1 on, comma-separated, each
    /// below its node: `0,0,0` is a hub with three spokes, `0,0,1,1,2,2` a hub, two
    /// sub-hubs and four spokes.
    #[arg(long)]
    pub parents: Option<String>,
    /// Turn on every measured behaviour of the real node at once, with the measured
    /// durations: route warm-up 2 s with 1 s SYN backoff, 127 s blocking sends, departed
    /// nodes lingering 180 s.
    #[arg(long)]
    pub real: bool,
    /// Multiply the durations --real turns on (e.g. 0.1: warm-up 0.2 s, block 12.7 s).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Route warm-up after a node (re)starts, in ms (sends held meanwhile).
    #[arg(long)]
    pub warmup_ms: Option<u64>,
    /// SYN retry unit in ms: held sends dial at 0, 1, 3, 7, … units.
    #[arg(long)]
    pub syn_backoff_ms: Option<u64>,
    /// How long a send to an unreachable node blocks before its 502, in ms.
    #[arg(long)]
    pub block_ms: Option<u64>,
    /// How long a killed node stays in the others' tree, in ms.
    #[arg(long)]
    pub linger_ms: Option<u64>,
}

impl MeshSimArgs {
    /// The sim these arguments describe.
    pub fn options(&self) -> Result<SimOptions, SimError> {
        if !(self.time_scale.is_finite() && self.time_scale >= 0.0) {
            return Err(SimError::BadTiming(format!(
                "--time-scale must be a number >= 0, got {}",
                self.time_scale
            )));
        }
        let from_parents = match &self.parents {
            Some(list) => Some(SimTopology::parse_parents(list)?),
            None => None,
        };
        let nodes = match (
            self.nodes,
            from_parents.as_ref().and_then(|t| t.implied_nodes()),
        ) {
            (Some(n), Some(m)) if n != m => {
                return Err(SimError::BadTopology(format!(
                    "--nodes {n} but --parents describes {m} nodes"
                )))
            }
            (_, Some(m)) => m,
            (Some(n), None) => n,
            (None, None) => 2,
        };
        let topology = match from_parents {
            Some(t) => t,
            None => match self.topology.trim() {
                "full" => SimTopology::Full,
                "star" => SimTopology::star(nodes),
                other => {
                    let k = other
                        .strip_prefix("hubs:")
                        .and_then(|k| k.parse::<usize>().ok())
                        .filter(|&k| k < nodes.max(1))
                        .ok_or_else(|| {
                            SimError::BadTopology(format!(
                                "--topology {other:?}: expected full, star or hubs:K with K below the node count"
                            ))
                        })?;
                    SimTopology::hubs(nodes, k)
                }
            },
        };
        let base = if self.real {
            SimTiming::real()
        } else {
            SimTiming::default()
        };
        let mut timing = base.scaled(self.time_scale);
        timing.warmup_ms = self.warmup_ms.or(timing.warmup_ms);
        timing.syn_backoff_ms = self.syn_backoff_ms.unwrap_or(timing.syn_backoff_ms);
        timing.block_ms = self.block_ms.or(timing.block_ms);
        timing.linger_ms = self.linger_ms.or(timing.linger_ms);
        Ok(SimOptions {
            nodes,
            base_port: self.base_port,
            seed: self.seed,
            topology,
            timing,
        })
    }
}

/// `edgent mesh-sim`: start a sim, print one line per node
/// (`node <i> id=<64 hex> url=http://127.0.0.1:<port>`) to stdout, serve until `cancel`.
pub async fn run_mesh_sim_cli(args: MeshSimArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let options = args.options()?;
    let sim = MeshSim::start_with(options.clone()).await?;
    {
        let mut out = std::io::stdout().lock();
        for i in 0..sim.len() {
            writeln!(out, "node {i} id={} url={}", sim.key(i), sim.url(i))?;
        }
        out.flush()?;
    }
    eprintln!(
        "mesh-sim: {} simulated AXL nodes (test/demo harness), topology {:?}, timing {}; control at {}/sim/",
        sim.len(),
        options.topology,
        serde_json::to_string(&options.timing)?,
        sim.url(0)
    );
    cancel.cancelled().await;
    sim.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MeshSimArgs,
    }

    fn options(args: &[&str]) -> Result<SimOptions, SimError> {
        let argv = std::iter::once("mesh-sim").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map_err(|e| SimError::BadTopology(e.to_string()))?
            .args
            .options()
    }

    #[test]
    fn no_flags_is_the_old_sim() {
        let o = options(&[]).unwrap();
        assert_eq!((o.nodes, o.base_port, o.seed), (2, 9002, 1));
        assert_eq!(o.topology, SimTopology::Full);
        assert_eq!(o.timing, SimTiming::default());
    }

    #[test]
    fn real_scaled_with_one_duration_set_apart() {
        let o = options(&["--real", "--time-scale", "0.5", "--block-ms", "100"]).unwrap();
        assert_eq!(
            o.timing,
            SimTiming {
                warmup_ms: Some(1_000),
                syn_backoff_ms: 500,
                block_ms: Some(100),
                linger_ms: Some(90_000),
            }
        );
        let o = options(&["--linger-ms", "5"]).unwrap();
        assert_eq!(o.timing.linger_ms, Some(5));
        assert_eq!((o.timing.warmup_ms, o.timing.block_ms), (None, None));
        assert!(options(&["--time-scale", "-1"]).is_err());
    }

    #[test]
    fn topologies_from_the_command_line() {
        let o = options(&["--nodes", "12", "--topology", "hubs:2"]).unwrap();
        assert_eq!(o.topology, SimTopology::hubs(12, 2));
        let o = options(&["--parents", "0,0,1"]).unwrap();
        assert_eq!(
            (o.nodes, o.topology),
            (4, SimTopology::Parents(vec![0, 0, 1]))
        );
        let o = options(&["--nodes", "5", "--topology", "star"]).unwrap();
        assert_eq!(o.topology, SimTopology::star(5));
        assert!(options(&["--nodes", "3", "--parents", "0,0,0"]).is_err());
        assert!(options(&["--topology", "star", "--parents", "0"]).is_err());
        assert!(options(&["--topology", "hubs:x"]).is_err());
    }
}
