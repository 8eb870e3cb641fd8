//! Children in a process group of their own, so that a test ends them together with every
//! process they start (the real Ollama's `ollama serve` starts an `ollama runner` per model:
//! killing only `serve` left the runner behind, reparented to init).

use std::process::{Child, Command};

/// Start `cmd`'s child as the leader of a new process group (its pgid is its pid); its own
/// children stay in that group unless they make their own.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(cmd, 0)
}

/// SIGKILL the child and its process group (a child started with [`own_group`] and all
/// its descendants that stayed in the group). Does not reap: `wait` for the child after.
pub fn kill_group(child: &mut Child) {
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: killpg only sends a signal. The child is not reaped yet, so its pid (the
        // group's id) cannot have been reused.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
    // The child itself, had it not been started in a group of its own.
    let _ = child.kill();
}
