//! `auth`: one token to every peer — certherd cold, warm, cleanup and warmed (the first auth
//! after `certherd warm`, as with certbot's `--pre-hook`) against the sequential and parallel
//! ssh loops, at every N, with and without the injected round trip.
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::Bench;
use crate::measure::{key_auth, run, Run};
use crate::plan::{DOMAIN, RUN_TIMEOUT, THUMBPRINT};
use crate::sampler::Sampler;

impl Bench {
    pub(crate) fn next_token(&mut self, what: &str) -> String {
        self.token_counter += 1;
        format!("bench-{what}-{}-{}", std::process::id(), self.token_counter)
    }

    pub(crate) fn token_path(&self, node: usize, token: &str) -> PathBuf {
        self.bed
            .webroot(node)
            .join(".well-known/acme-challenge")
            .join(token)
    }

    pub(crate) fn peers_hold(&self, n: usize, token: &str, content: &str) -> bool {
        (2..=n + 1).all(|i| {
            fs::read_to_string(self.token_path(i, token)).is_ok_and(|c| c.trim() == content)
        })
    }

    pub(crate) fn remove_token(&self, n: usize, token: &str) {
        for i in 1..=n + 1 {
            let _ = fs::remove_file(self.token_path(i, token));
        }
    }

    pub(crate) fn peers_list_tokens(&self, n: usize, via_proxy: bool) -> String {
        (2..=n + 1)
            .map(|i| {
                format!(
                    "{}={}",
                    self.addrs(i, via_proxy).ssh.ip(),
                    self.bed
                        .webroot(i)
                        .join(".well-known/acme-challenge")
                        .display()
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn certherd_token(
        &mut self,
        what: &str,
        token: &str,
        ka: Option<&str>,
    ) -> Result<Run, String> {
        let mut cmd = Command::new(&self.certherd);
        cmd.arg("--config")
            .arg(self.bed.config_path(1))
            .arg(what)
            .env("CERTBOT_DOMAIN", DOMAIN)
            .env("CERTBOT_TOKEN", token);
        if let Some(ka) = ka {
            cmd.env("CERTBOT_VALIDATION", ka);
        }
        run(&mut cmd, None, RUN_TIMEOUT)
    }

    pub(crate) fn auth(&mut self, n: usize, rtt: u32) -> Result<(), String> {
        let via_proxy = rtt > 0;
        eprintln!("== auth, {n} peers, RTT {rtt} ms");
        self.configure(n, via_proxy)?;
        self.proxy
            .set_delay(Duration::from_secs_f64(f64::from(rtt) / 2000.0));
        const SEQ: &str = r#"set -e
for p in $PEERS; do ssh $SSH "${p%%=*}" "cat > ${p#*=}/$TOKEN" < "$TOKENFILE"; done"#;
        const PAR: &str = r#"for p in $PEERS; do ssh $SSH "${p%%=*}" "cat > ${p#*=}/$TOKEN" < "$TOKENFILE" & done
wait"#;
        for rep in 0..self.plan.reps {
            eprintln!("  rep {}/{}", rep + 1, self.plan.reps);
            // (a) sequential loop, (b) parallel loop.
            for (what, script) in [("seq", SEQ), ("par", PAR)] {
                if what == "seq" && n > self.plan.seq_full_max && rep >= 1 {
                    continue;
                }
                let (r, token, ka) = self.baseline_token(script, n, via_proxy);
                let ok = self.peers_hold(n, &token, &ka);
                self.results.record(&key_auth(what, n, rtt), r, |_| ok);
                self.remove_token(n, &token);
            }
            // certherd: cold (no master), warm (same run, masters up), cleanup (warm).
            self.bed.close_control_masters();
            self.proxy.reset_connections();
            let mut tokens = Vec::new();
            for what in ["cold", "warm"] {
                let token = self.next_token(what);
                let ka = format!("{token}.{THUMBPRINT}");
                let r = self.certherd_token("auth", &token, Some(&ka));
                let held = self.peers_hold(n, &token, &ka);
                self.results.record(&key_auth(what, n, rtt), r, |r| {
                    held && r.stdout.contains("\"ok\":true")
                });
                tokens.push(token);
            }
            let last = tokens.last().cloned().unwrap_or_default();
            let r = self.certherd_token("cleanup", &last, None);
            let gone = (2..=n + 1).all(|i| !self.token_path(i, &last).exists());
            self.results
                .record(&key_auth("cleanup", n, rtt), r, |_| gone);
            for t in &tokens {
                self.remove_token(n, t);
            }
            // A certbot run with `--pre-hook 'certherd warm'`: no master, `warm` (timed on its
            // own: it runs while certbot talks to the CA), then the run's first auth.
            self.bed.close_control_masters();
            self.proxy.reset_connections();
            let r = self.certherd_warm();
            self.results.record(&key_auth("warmup", n, rtt), r, |r| {
                !r.stderr.contains("warning")
            });
            let token = self.next_token("warmed");
            let ka = format!("{token}.{THUMBPRINT}");
            let r = self.certherd_token("auth", &token, Some(&ka));
            let held = self.peers_hold(n, &token, &ka);
            self.results.record(&key_auth("warmed", n, rtt), r, |r| {
                held && r.stdout.contains("\"ok\":true")
            });
            self.remove_token(n, &token);
            // The run's next auth: the steady state after `warm` (through the holder), which the
            // first one must match (issue 25: warm pays whatever a first use costs).
            let token = self.next_token("warmed2");
            let ka = format!("{token}.{THUMBPRINT}");
            let r = self.certherd_token("auth", &token, Some(&ka));
            let held = self.peers_hold(n, &token, &ka);
            self.results.record(&key_auth("warmed2", n, rtt), r, |r| {
                held && r.stdout.contains("\"ok\":true")
            });
            self.remove_token(n, &token);
        }
        self.sampled_auth(n, rtt);
        Ok(())
    }

    /// `certherd warm` on node 1 (its config as it stands).
    pub(crate) fn certherd_warm(&self) -> Result<Run, String> {
        run(
            Command::new(&self.certherd)
                .arg("--config")
                .arg(self.bed.config_path(1))
                .arg("warm"),
            None,
            RUN_TIMEOUT,
        )
    }

    /// One untimed cold and one untimed warmed-by-`warm` auth with the `/proc` sampler riding
    /// along: certherd's own peak RSS and its `ssh` processes' summed RSS and CPU.
    fn sampled_auth(&mut self, n: usize, rtt: u32) {
        for what in ["cold", "warmed"] {
            self.bed.close_control_masters();
            self.proxy.reset_connections();
            // For `warmed`, the ssh processes' CPU includes the masters' handshakes made by
            // `warm`, which the sampler watches too.
            let sampler = Sampler::start(self.ssh_marker());
            if what == "warmed" {
                let _ = self.certherd_warm();
            }
            let token = self.next_token("sampled");
            let ka = format!("{token}.{THUMBPRINT}");
            let r = self.certherd_token("auth", &token, Some(&ka));
            let got = sampler.stop();
            let held = self.peers_hold(n, &token, &ka);
            self.remove_token(n, &token);
            let key = format!("sampled/auth_{what}/n{n}/rtt{rtt}");
            self.results
                .record_sampled(&key, r, got, |r| held && r.stdout.contains("\"ok\":true"));
        }
    }

    /// What every `ssh` process of certherd's names on its command line: the control directory.
    pub(crate) fn ssh_marker(&self) -> String {
        self.bed
            .root()
            .join("ssh/cm")
            .to_string_lossy()
            .into_owned()
    }

    // --- deploy ---------------------------------------------------------------------------
}
