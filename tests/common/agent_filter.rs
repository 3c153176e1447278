//! An agent of another age, emulated: the real agent behind a filter in its forced command, a
//! Python script between sshd and the agent that rewrites what an older agent would have said or
//! refused (`tests/old_agent.rs`: no batch ops; `tests/staging_limit.rs`: no staging limit in
//! `hello`). The script is root-owned and named in the root-owned authorized_keys line, as any
//! forced command: the agent's account may not change what runs it.

use std::os::unix::fs::PermissionsExt;

use certherd_testbed::Bed;

/// Puts `script` (Python 3, given the real agent's argv) in front of node `n`'s agent.
pub fn filter_agent(bed: &Bed, n: usize, script: &str) {
    let dir = bed.node_dir(n);
    let path = dir.join("agent-filter.py");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let agent = format!(
        "{} agent --config {}",
        bed.certherd_bin().display(),
        bed.config_path(n).display()
    );
    let keys = dir.join("sshd").join("authorized_keys");
    let line = std::fs::read_to_string(&keys).unwrap();
    let forced = format!("command=\"{agent}\"");
    assert!(line.contains(&forced), "{forced} not in {line}");
    let filtered = format!("command=\"/usr/bin/python3 {} {agent}\"", path.display());
    std::fs::write(&keys, line.replace(&forced, &filtered)).unwrap();
    // sshd binds the forced command when the key authenticates: a kept master would go on
    // running the unfiltered agent.
    bed.close_control_masters();
}
