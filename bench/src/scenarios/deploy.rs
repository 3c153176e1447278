//! `deploy`: a new certificate version to every peer — certherd cold and warm against the rsync
//! script, alternating between two archive versions so every run changes something.
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::{tail, Bench};
use crate::measure::{key_deploy, run, Run};
use crate::plan::{KINDS, LINEAGE, RUN_TIMEOUT};
use crate::sampler::Sampler;

impl Bench {
    pub(crate) fn live_dir(&self, node: usize) -> PathBuf {
        self.bed.letsencrypt_dir(node).join("live").join(LINEAGE)
    }

    pub(crate) fn archive_dir(&self, node: usize) -> PathBuf {
        self.bed.letsencrypt_dir(node).join("archive").join(LINEAGE)
    }

    /// The version node `node`'s `live/site.test/cert.pem` names.
    pub(crate) fn live_version(&self, node: usize) -> Option<u32> {
        let target = fs::read_link(self.live_dir(node).join("cert.pem")).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        name.strip_prefix("cert")?
            .strip_suffix(".pem")?
            .parse()
            .ok()
    }

    /// Versions present in node 1's archive, ascending.
    pub(crate) fn archive_versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = fs::read_dir(self.archive_dir(1))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("cert")?
                    .strip_suffix(".pem")?
                    .parse()
                    .ok()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Repoints node 1's live links to `version` (symlink + rename, like certbot's layout).
    pub(crate) fn set_primary_version(&self, version: u32) -> Result<(), String> {
        let live = self.live_dir(1);
        for k in KINDS {
            let tmp = live.join(format!(".{k}.bench-tmp"));
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(format!("../../archive/{LINEAGE}/{k}{version}.pem"), &tmp)
                .and_then(|()| fs::rename(&tmp, live.join(format!("{k}.pem"))))
                .map_err(|e| format!("relink {k}: {e}"))?;
        }
        Ok(())
    }

    pub(crate) fn peers_on(&self, n: usize, version: u32) -> bool {
        (2..=n + 1).all(|i| self.live_version(i) == Some(version))
    }

    pub(crate) fn certherd_deploy(&self) -> Result<Run, String> {
        run(
            Command::new(&self.certherd)
                .arg("--config")
                .arg(self.bed.config_path(1))
                .args(["deploy", "--lineage", LINEAGE]),
            None,
            RUN_TIMEOUT,
        )
    }

    pub(crate) fn deploy(&mut self, n: usize) -> Result<(), String> {
        eprintln!("== deploy, {n} peers");
        self.configure(n, false)?;
        let versions = self.archive_versions();
        let [.., a, b] = versions[..] else {
            return Err(format!("need two versions of {LINEAGE}, have {versions:?}"));
        };
        // Bring every peer to version b first (untimed), so each timed run changes something.
        self.set_primary_version(b)?;
        let warmup = self.certherd_deploy()?;
        if !warmup.ok() || !self.peers_on(n, b) {
            return Err(format!(
                "warm-up deploy to {n} peers failed: {}\n{}",
                warmup.why(),
                tail(&warmup.stdout, 12)
            ));
        }
        let mut next = a;
        let flip = |next: &mut u32| {
            let v = *next;
            *next = if v == a { b } else { a };
            v
        };
        for rep in 0..self.plan.reps {
            eprintln!("  rep {}/{}", rep + 1, self.plan.reps);
            for what in ["cold", "warm"] {
                let v = flip(&mut next);
                self.set_primary_version(v)?;
                if what == "cold" {
                    self.bed.close_control_masters();
                }
                let r = self.certherd_deploy();
                let ok = self.peers_on(n, v);
                self.results.record(&key_deploy(what, n), r, |_| ok);
            }
            if rep == 0 {
                // One more cold run, untimed, with the `/proc` sampler (see `crate::sampler`).
                let v = flip(&mut next);
                self.set_primary_version(v)?;
                self.bed.close_control_masters();
                let sampler = Sampler::start(self.ssh_marker());
                let r = self.certherd_deploy();
                let got = sampler.stop();
                let ok = self.peers_on(n, v);
                self.results
                    .record_sampled(&format!("sampled/deploy_cold/n{n}"), r, got, |_| ok);
            }
            let rsync_reps = if n > self.plan.rsync_full_max {
                self.plan.reps.min(2)
            } else {
                self.plan.reps
            };
            if rep < rsync_reps && n <= self.plan.rsync_max {
                let v = flip(&mut next);
                self.set_primary_version(v)?;
                let (script, peers) = self.rsync_script(n);
                let r = run(
                    Command::new("/bin/sh")
                        .arg("-c")
                        .arg(&script)
                        .env("PEERS", peers)
                        .env("SSH", self.plain_ssh().join(" "))
                        .env("SRC", self.bed.letsencrypt_dir(1))
                        .env("L", LINEAGE)
                        .env("V", v.to_string()),
                    None,
                    RUN_TIMEOUT,
                );
                let ok = self.peers_on(n, v);
                self.results.record(&key_deploy("rsync", n), r, |_| ok);
            }
        }
        Ok(())
    }
}
