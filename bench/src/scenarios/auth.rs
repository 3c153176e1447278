//! `auth`: one token to every peer — certherd cold, warm and cleanup against the sequential and
//! parallel ssh loops, at every N, with and without the injected round trip.
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::Bench;
use crate::measure::{key_auth, run, Run};
use crate::plan::{DOMAIN, RUN_TIMEOUT, THUMBPRINT};

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
        }
        Ok(())
    }

    // --- deploy ---------------------------------------------------------------------------
}
