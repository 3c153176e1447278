//! An agent of another age, emulated: the real agent behind a filter in its forced command, a
//! Python script between sshd and the agent that rewrites what an older agent would have said or
//! refused (`tests/old_agent.rs`: no batch ops; `tests/staging_limit.rs`: no staging limit in
//! `hello`). The script is root-owned and named in the root-owned authorized_keys line, as any
//! forced command: the agent's account may not change what runs it.

use std::os::unix::fs::PermissionsExt;

use certherd_testbed::Bed;

/// The filter: passes every line between sshd and the real agent, one answer per request (as
/// every agent before `working` lines wrote), except that the ops in `REFUSED` are refused as
/// unknown, with the agent's words, and left out of `hello`'s ops, and the fields in `HIDDEN`
/// are left out of `hello`.
const FILTER: &str = r#"
import json, subprocess, sys
REFUSED = @REFUSED@
HIDDEN = @HIDDEN@
agent = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
for line in sys.stdin.buffer:
    try:
        op = json.loads(line).get("op")
    except Exception:
        op = None
    if op in REFUSED:
        answer = {"result": "error", "kind": "unknown_op",
                  "message": "unknown op %s: expected one of hello, put_token, ..." % op}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        continue
    agent.stdin.write(line)
    agent.stdin.flush()
    reply = agent.stdout.readline()
    if not reply:
        break
    answer = json.loads(reply)
    if answer.get("result") == "hello":
        answer["ops"] = [o for o in answer["ops"] if o not in REFUSED]
        for field in HIDDEN:
            assert field in answer, (field, answer)
            del answer[field]
        reply = (json.dumps(answer) + "\n").encode()
    sys.stdout.buffer.write(reply)
    sys.stdout.flush()
agent.stdin.close()
sys.exit(agent.wait())
"#;

/// Puts a filter in front of node `n`'s agent that makes it look like an older one: the ops in
/// `refused` unknown to it, the fields in `hidden` missing from its `hello`.
pub fn filter_agent(bed: &Bed, n: usize, refused: &[&str], hidden: &[&str]) {
    let tuple = |items: &[&str]| {
        let quoted: Vec<String> = items.iter().map(|i| format!("{i:?},")).collect();
        format!("({})", quoted.concat())
    };
    let script = FILTER
        .replace("@REFUSED@", &tuple(refused))
        .replace("@HIDDEN@", &tuple(hidden));
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
