//! Where one connection's time goes (plain OpenSSH variants, masters, mux sessions, the agent)
//! and start-up time.
use std::fs;
use std::process::Command;

use super::{front_ip, Bench};
use crate::baselines::{exit_master, master_args, mux_args, without_control};
use crate::measure::run;
use crate::plan::RUN_TIMEOUT;

impl Bench {
    pub(crate) fn anatomy(&mut self) {
        eprintln!("== anatomy of one connection (node 2)");
        let host = self.bed.ip(2).to_string();
        let front = front_ip(&self.bed, 2).to_string();
        let me = std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "certherd-bench".into());
        let fdpass = [
            "-o".to_owned(),
            format!("ProxyCommand={me} fdpass %h %p"),
            "-o".to_owned(),
            "ProxyUseFdpass=yes".to_owned(),
        ];
        let curve = [
            "-o".to_owned(),
            "KexAlgorithms=curve25519-sha256".to_owned(),
        ];
        let variants: Vec<(&str, Vec<String>, &str)> = vec![
            ("new", vec![], host.as_str()),
            ("new_curve25519", curve.to_vec(), host.as_str()),
            ("new_nodelay", fdpass.to_vec(), host.as_str()),
            (
                "new_curve25519_nodelay",
                [curve.to_vec(), fdpass.to_vec()].concat(),
                host.as_str(),
            ),
            ("new_via_proxy_0ms", vec![], front.as_str()),
        ];
        let cm = self.bed.root().join("bench-cm");
        let _ = fs::create_dir_all(&cm);
        let sock = cm.join("m");
        let agent_sock = cm.join("a");
        let forced_key = self.bed.ssh_identity();
        let hello = b"{\"op\":\"hello\",\"protocol\":1}\n";
        for _ in 0..self.plan.anatomy_reps {
            for (name, extra, target) in &variants {
                // ssh runs a ProxyCommand through $SHELL; bash takes a socket on stdin for
                // rshd and sources ~/.bashrc (root's runs pyenv here: +100–300 ms).
                let r = run(
                    Command::new("/usr/bin/ssh")
                        .env("SHELL", "/bin/sh")
                        .args(self.plain_ssh())
                        .args(extra)
                        .arg(target)
                        .arg("true"),
                    None,
                    RUN_TIMEOUT,
                );
                self.results.record(&format!("anatomy/{name}"), r, |_| true);
            }
            // A master, its first session, a later session, `-O check`, `-O exit`.
            let master = run(
                Command::new("/usr/bin/ssh")
                    .args(master_args(&self.plain_ssh(), &sock))
                    .arg(&host),
                None,
                RUN_TIMEOUT,
            );
            let up = matches!(&master, Ok(r) if r.ok());
            self.results.record("anatomy/master", master, |_| true);
            if up {
                for key in ["anatomy/mux_first", "anatomy/mux_later"] {
                    let r = run(
                        Command::new("/usr/bin/ssh")
                            .args(mux_args(&sock))
                            .arg("true"),
                        None,
                        RUN_TIMEOUT,
                    );
                    self.results.record(key, r, |_| true);
                }
                let r = run(
                    Command::new("/usr/bin/ssh")
                        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-S"])
                        .arg(&sock)
                        .args(["-O", "check", "x"]),
                    None,
                    RUN_TIMEOUT,
                );
                self.results.record("anatomy/mux_check", r, |_| true);
                exit_master(&sock);
            }
            // The agent over a warm master (the forced-command key), and locally.
            // The forced-command key logs in as the agent's account, as certherd does.
            let mut forced = self.bed.ssh_args();
            if let Some(i) = forced.iter().position(|a| a == "-i") {
                forced[i + 1] = forced_key.to_string_lossy().into_owned();
            }
            let master = run(
                Command::new("/usr/bin/ssh")
                    .args(master_args(&forced, &agent_sock))
                    .arg(&host),
                None,
                RUN_TIMEOUT,
            );
            let up = matches!(&master, Ok(r) if r.ok());
            self.results
                .record("anatomy/master_forced", master, |_| true);
            if up {
                for key in ["anatomy/agent_first", "anatomy/agent_over_mux"] {
                    let r = run(
                        Command::new("/usr/bin/ssh")
                            .args(mux_args(&agent_sock))
                            .args(["certherd", "agent"]),
                        Some(hello),
                        RUN_TIMEOUT,
                    );
                    self.results
                        .record(key, r, |r| r.stdout.contains("\"result\":\"hello\""));
                }
                exit_master(&agent_sock);
            }
            // The alternative: the agent as the master's own first session (ControlPersist
            // keeps the master in the background when the session ends).
            let session_sock = cm.join("s");
            let r = run(
                Command::new("/usr/bin/ssh")
                    .args(without_control(&forced))
                    .args(["-M", "-S"])
                    .arg(&session_sock)
                    .args(["-o", "ControlPersist=30"])
                    .arg(&host)
                    .args(["certherd", "agent"]),
                Some(hello),
                RUN_TIMEOUT,
            );
            self.results.record("anatomy/master_session_agent", r, |r| {
                r.stdout.contains("\"result\":\"hello\"")
            });
            exit_master(&session_sock);
            let r = run(
                Command::new(&self.certherd)
                    .arg("--config")
                    .arg(self.bed.config_path(2))
                    .arg("agent"),
                Some(hello),
                RUN_TIMEOUT,
            );
            self.results.record("anatomy/agent_local", r, |r| {
                r.stdout.contains("\"result\":\"hello\"")
            });
            let r = run(
                Command::new("/bin/bash").args(["-c", "true"]),
                None,
                RUN_TIMEOUT,
            );
            self.results.record("anatomy/bash_local", r, |_| true);
        }
    }

    pub(crate) fn startup(&mut self) {
        eprintln!("== start-up time");
        for _ in 0..self.plan.startup_reps {
            let r = run(
                Command::new(&self.certherd).arg("--version"),
                None,
                RUN_TIMEOUT,
            );
            self.results
                .record("startup/certherd", r, |r| r.stdout.starts_with("certherd"));
            let r = run(&mut Command::new("/bin/true"), None, RUN_TIMEOUT);
            self.results.record("startup/true", r, |_| true);
        }
    }

    // --- auth -----------------------------------------------------------------------------
}
