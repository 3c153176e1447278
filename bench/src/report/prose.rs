//! The analysis of the anatomy figures and the proposals for certherd, with this run's numbers.
use std::fmt::Write as _;

use super::fmt_s;
use crate::measure::{key_auth, Results};

/// The analysis of the anatomy figures, with this run's numbers.
pub(crate) fn findings(r: &Results) -> String {
    let g = |k: &str| r.median(&format!("anatomy/{k}"));
    let mut o = String::new();
    let _ = writeln!(o, "### Findings\n");
    if let (Some(new), Some(curve)) = (g("new"), g("new_curve25519")) {
        let _ = writeln!(
            o,
            "- **Key exchange: {} of {} per connection.** OpenSSH 9.2 defaults to the post-quantum hybrid `sntrup761x25519-sha512`; its cost is pure CPU, mostly the client's sntrup761 key generation (one `ssh -v` trace on this machine: ~80 ms between choosing the kex and sending the client's key share, ~25 ms after the server's reply). With `curve25519-sha256` the same connection takes {}. On 2 cores this is what makes a cold fan-out to many peers CPU-bound. (The PQ kex protects what travels inside SSH — for `deploy`, private keys — against later quantum decryption, so dropping it is a trade-off; OpenSSH ≥ 9.9's `mlkem768x25519-sha256` is far cheaper.)",
            fmt_s(new - curve),
            fmt_s(new),
            fmt_s(curve)
        );
    }
    if let (Some(curve), Some(both)) = (g("new_curve25519"), g("new_curve25519_nodelay")) {
        let default_pair = match (g("new"), g("new_nodelay")) {
            (Some(a), Some(b)) => format!(
                " ({} with the default kex, where the CPU-bound kex hides part of it)",
                fmt_s(a - b)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "- **Nagle + delayed ACK, client side: {}** per new connection (curve25519: {} → {}){default_pair}. ssh sets TCP_NODELAY only once the session starts; before that, its `SERVICE_REQUEST` right after `NEWKEYS` sits in the kernel until sshd's delayed ACK (40 ms minimum on Linux) arrives — `strace -tt` of sshd shows it waiting 41 ms for that packet. A socket with TCP_NODELAY from the first byte (here: `ProxyUseFdpass` and a 1 ms helper that connects and passes the socket) removes it.",
            fmt_s(curve - both),
            fmt_s(curve),
            fmt_s(both)
        );
    }
    if let (Some(first), Some(later)) = (g("mux_first"), g("mux_later")) {
        let _ = writeln!(
            o,
            "- **Nagle, server side: {}.** The first session over a new master takes {} against {} for later ones: sshd, too, sets TCP_NODELAY only when a session starts, and its post-authentication packets wait for the client's delayed ACK. Measured separately (sshd started with an `LD_PRELOAD` shim that sets TCP_NODELAY on accepted sockets): `ssh host true` with curve25519 went from ~130 ms to ~110 ms with the server fix alone and to ~65 ms with both sides fixed. Only sshd can fix its side (a client cannot make its own ACKs immediate for good).",
            fmt_s(first - later),
            fmt_s(first),
            fmt_s(later)
        );
    }
    if let (Some(m), Some(a)) = (g("mux_later"), g("agent_over_mux")) {
        let _ = writeln!(
            o,
            "- **A command over an existing master costs {} (`true`) and {} (`certherd agent` + hello; the first agent session over a new master: {})**, not the ~160 ms the issue measured: that was root's `~/.bashrc` (pyenv), which bash sources when sshd starts it for a command (`SSH_CLIENT` set) unless `SHLVL` ≥ 1 is inherited — `bash -c true` that way takes 0.15–0.19 s here, under 10 ms with `SHLVL=1`; the bed's sshd sets `SetEnv SHLVL=1`. On a real peer the agent's account has `/bin/sh` and no rc files — keep it that way (the README's `useradd --shell /bin/sh`).",
            fmt_s(m),
            fmt_s(a),
            g("agent_first").map_or("–".into(), fmt_s)
        );
    }
    if let (Some(p), Some(n)) = (g("new_via_proxy_0ms"), g("new")) {
        let _ = writeln!(
            o,
            "- The delay proxy itself at 0 ms adds {} per connection (four threads per connection, chunk hand-off).",
            fmt_s(p - n)
        );
    }
    let _ = writeln!(
        o,
        "- What is left of a new connection once kex and Nagle are fixed is sshd's per-connection fork + re-exec (`sshd -R`: ~7–10 ms before the banner), user authentication (ed25519 signature, privilege separation: ~15 ms) and the session (fork, shell, command: ~10 ms)."
    );
    o
}

/// Proposals for certherd itself, with this run's figures where there are some.
pub(crate) fn proposals(r: &Results) -> String {
    let g = |k: &str| r.median(&format!("anatomy/{k}"));
    let f = |x: Option<f64>| x.map_or("–".to_owned(), fmt_s);
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => fmt_s(a - b),
        _ => "–".to_owned(),
    };
    let mut o = String::new();
    let _ = writeln!(o, "## What would make certherd faster\n");
    let _ = writeln!(o, "Not done here (the benchmark does not change certherd); each is a contained change in `src/ssh.rs`, `src/fleet.rs` or `src/commands/deploy.rs`.\n");
    let _ = writeln!(
        o,
        "1. **TCP_NODELAY from the first byte** (cold path): run ssh with `-o ProxyCommand=\"<certherd> ssh-connect %h %p\" -o ProxyUseFdpass=yes`, a tiny subcommand that connects (honouring `connect_timeout`), sets TCP_NODELAY and hands the socket to ssh (`SCM_RIGHTS`), as `certherd-bench fdpass` does here. Run ssh with `SHELL=/bin/sh` in its environment: ssh starts the ProxyCommand through `$SHELL`, and bash, seeing a socket on its stdin, takes itself for an rsh session and sources `~/.bashrc` (with root's pyenv `.bashrc` here that cost 100–300 ms per connection, more than the fix saves). Saves {} per new connection on this bed (curve25519 {} → {}); on a real network the stall is the peer's delayed-ACK timer or one RTT, whichever is shorter.",
        diff(g("new_curve25519"), g("new_curve25519_nodelay")),
        f(g("new_curve25519")),
        f(g("new_curve25519_nodelay"))
    );
    let _ = writeln!(
        o,
        "2. **A cheaper key exchange** (cold path, and CPU at scale): an `[ssh] kex_algorithms` setting passed as `-o KexAlgorithms=…`; prefer `mlkem768x25519-sha256` where `ssh -Q kex` lists it (OpenSSH ≥ 9.9), which keeps post-quantum protection for the private keys `deploy` sends. With OpenSSH 9.2's choice between sntrup761 (default) and curve25519 the difference is {} per connection ({} → {}), most of it client CPU on the primary, paid once per peer by a cold fan-out.",
        diff(g("new"), g("new_curve25519")),
        f(g("new")),
        f(g("new_curve25519")),
    );
    let _ = writeln!(
        o,
        "3. *Tried, not a win:* running the agent as the master's own first session (`ssh -M -S sock -o ControlPersist=30 host certherd agent`, then ControlPersist keeps the master for the next call) instead of `ssh -M -f -N` plus a mux session: {} against {} + {} = {} today. With ControlPersist, ssh detaches the master after authentication and runs even its first session through the control socket, so the session's round trips and sshd's Nagle stall ({}: first session {} vs later {}) stay; only one process start is saved.",
        f(g("master_session_agent")),
        f(g("master_forced")),
        f(g("agent_first")),
        match (g("master_forced"), g("agent_first")) {
            (Some(a), Some(b)) => fmt_s(a + b),
            _ => "–".to_owned(),
        },
        diff(g("mux_first"), g("mux_later")),
        f(g("mux_first")),
        f(g("mux_later"))
    );
    let _ = writeln!(
        o,
        "4. **Fewer round trips per call**: write `hello` and the request in one go and then read both answers (the agent answers in order), or carry the protocol version in every request and drop `hello`; start the self-check as soon as a peer acknowledges instead of after `AgentChannel::close()` has waited for the channel's exit status. Together about two round trips per call — 40 ms at a 20 ms RTT, where a warm `auth` to one peer takes {}.",
        f(r.median(&key_auth("warm", 1, 20)))
    );
    let _ = writeln!(
        o,
        "5. **No helper processes on the warm path**: `master_alive()` runs `ssh -O check` for every peer on every call ({} each, CPU on the primary), and the `openssh` crate's process-mux spawns one `ssh -S` client per session. Trying the session directly (and starting a master only when that fails), or the crate's `native-mux` feature (which speaks the mux protocol on the control socket itself), removes both: at 30 peers that is 60 process starts per hook call on a 2-core primary.",
        f(g("mux_check"))
    );
    let _ = writeln!(
        o,
        "6. **Keep agent sessions open across hook calls** (warm path): a certbot run calls `auth` and `cleanup` once per name; a small per-run broker (started by the first hook, holding one agent session per peer over the masters, exiting after `persist`) would make every later call one round trip plus the self-check, with no sshd session, shell or agent start on the peers (an agent session + `hello` over a warm master costs {} per peer today).",
        f(g("agent_over_mux"))
    );
    let _ = writeln!(
        o,
        "7. **deploy's served-certificate check**: `served()` confirms every node with a second TLS handshake 200 ms after the first success (against nginx's graceful-reload window). `certherd deploy` exits {} after the lineage was written while every node already served the new certificate at {}. A 20–50 ms confirmation, or asking the agent whether the old nginx workers are gone, keeps the guarantee and saves most of that.",
        f(r.median("renew/hook_end")),
        f(r.median("renew/serving"))
    );
    o
}
