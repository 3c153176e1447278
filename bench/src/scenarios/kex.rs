//! Key exchange: what each `[ssh] kex_algorithms` choice costs per peer — `certherd warm` over
//! up to 10 peers with no master up, so every peer is one new connection (wall time, the
//! client's CPU: certherd and the `ssh -M -f` processes it reaps, which make the key exchange
//! before they fork; the bed's CPU: the peers' sshd).
use std::process::Command;
use std::time::Duration;

use super::Bench;
use crate::measure::key_kex;

/// The key exchanges compared: OpenSSH 9.x's default (post-quantum hybrid), the classic one,
/// and ML-KEM where the installed OpenSSH lists it (≥ 9.9).
pub(crate) fn kex_variants() -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("sntrup761", "sntrup761x25519-sha512@openssh.com"),
        ("curve25519", "curve25519-sha256"),
    ];
    let listed = Command::new("/usr/bin/ssh")
        .args(["-Q", "kex"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if listed.lines().any(|l| l.trim() == "mlkem768x25519-sha256") {
        v.push(("mlkem768", "mlkem768x25519-sha256"));
    }
    v
}

impl Bench {
    /// Peers in the key-exchange table: 10, fewer on a smaller bed.
    pub(crate) fn kex_peers(&self) -> usize {
        (self.bed.nodes() - 1).min(10)
    }

    pub(crate) fn kex(&mut self) -> Result<(), String> {
        let n = self.kex_peers();
        let variants = kex_variants();
        for &rtt in &self.rtts() {
            eprintln!("== key exchange: certherd warm over {n} peers, RTT {rtt} ms");
            self.proxy
                .set_delay(Duration::from_secs_f64(f64::from(rtt) / 2000.0));
            for rep in 0..self.plan.reps {
                eprintln!("  rep {}/{}", rep + 1, self.plan.reps);
                for (name, algo) in &variants {
                    self.configure(n, rtt > 0)?;
                    self.set_kex(algo)?;
                    self.bed.close_control_masters();
                    self.proxy.reset_connections();
                    let r = self.certherd_warm();
                    self.results
                        .record(&key_kex(name, n, rtt), r, |r| !r.stderr.contains("warning"));
                }
            }
        }
        self.bed.close_control_masters();
        self.proxy.set_delay(Duration::ZERO);
        // Back to OpenSSH's default for whatever runs next.
        self.configure(n, false)
    }

    /// Puts `kex_algorithms = [algo]` into node 1's `[ssh]` section.
    fn set_kex(&self, algo: &str) -> Result<(), String> {
        self.edit_ssh_section(
            "\n[ssh]\n",
            &format!("\n[ssh]\nkex_algorithms = [\"{algo}\"]\n"),
        )
    }
}
