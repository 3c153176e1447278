//! The hand-made baselines people use today, run against the same bed: a sequential and a
//! parallel `ssh` loop for a token, an `rsync` + `ssh` script for a certificate, and plain
//! OpenSSH invocations (masters, mux sessions) for the anatomy of one connection. They log in
//! with a second key that has no forced command (`Bed::enable_plain_login`).
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::measure::{run, Run};
use crate::plan::{RUN_TIMEOUT, THUMBPRINT};
use crate::scenarios::{Bench, CONNECT_TIMEOUT};

impl Bench {
    pub(crate) fn plain_ssh(&self) -> Vec<String> {
        let mut args = self.bed.ssh_args();
        if let Some(i) = args.iter().position(|a| a == "-i") {
            args[i + 1] = self.plain_key.to_string_lossy().into_owned();
        }
        // The plain key is root's; the bed's default login is the agent's account.
        if let Some(i) = args.iter().position(|a| a == "-l") {
            args[i + 1] = "root".into();
        }
        // The same connect timeout as certherd's configs here: with the bed's 5 s, one `ssh` of
        // the parallel loop at 100 peers and 20 ms timed out on the loaded machine.
        for a in args.iter_mut().filter(|a| a.starts_with("ConnectTimeout=")) {
            *a = format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs());
        }
        args
    }

    pub(crate) fn baseline_token(
        &mut self,
        script: &str,
        n: usize,
        via_proxy: bool,
    ) -> (Result<Run, String>, String, String) {
        let token = self.next_token("loop");
        let ka = format!("{token}.{THUMBPRINT}");
        let file = self.bed.root().join("bench-token");
        let _ = fs::write(&file, &ka);
        let r = run(
            Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .env("PEERS", self.peers_list_tokens(n, via_proxy))
                .env("SSH", self.plain_ssh().join(" "))
                .env("TOKEN", &token)
                .env("TOKENFILE", &file),
            None,
            RUN_TIMEOUT,
        );
        (r, token, ka)
    }

    pub(crate) fn rsync_script(&self, n: usize) -> (String, String) {
        const SCRIPT: &str = r#"set -e
for p in $PEERS; do
  host=${p%%=*}; rest=${p#*=}; le=${rest%%=*}; conf=${rest#*=}
  rsync -a -e "ssh $SSH" "$SRC/archive/$L/" "$host:$le/archive/$L/"
  for k in cert chain fullchain privkey; do
    ssh $SSH "$host" "rm -f $le/live/$L/$k.pem && ln -s ../../archive/$L/$k$V.pem $le/live/$L/$k.pem"
  done
  ssh $SSH "$host" "/usr/sbin/nginx -t -q -c $conf"
  ssh $SSH "$host" "/usr/sbin/nginx -s reload -c $conf"
done"#;
        let peers = (2..=n + 1)
            .map(|i| {
                format!(
                    "{}={}={}",
                    self.bed.ip(i),
                    self.bed.letsencrypt_dir(i).display(),
                    self.bed.nginx_conf(i).display()
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        (SCRIPT.to_owned(), peers)
    }
}

pub(crate) fn master_args(base: &[String], sock: &Path) -> Vec<String> {
    let mut args = without_control(base);
    args.extend([
        "-M".into(),
        "-f".into(),
        "-N".into(),
        "-S".into(),
        sock.to_string_lossy().into_owned(),
        "-o".into(),
        "ControlPersist=30".into(),
    ]);
    args
}

/// `base` without its `-o ControlMaster=…` and `-o ControlPath=…` pairs.
pub(crate) fn without_control(base: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < base.len() {
        let control = base[i] == "-o"
            && base
                .get(i + 1)
                .is_some_and(|v| v.starts_with("ControlMaster=") || v.starts_with("ControlPath="));
        if control {
            i += 2;
        } else {
            out.push(base[i].clone());
            i += 1;
        }
    }
    out
}

pub(crate) fn mux_args(sock: &Path) -> Vec<String> {
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-T".into(),
        "-S".into(),
        sock.to_string_lossy().into_owned(),
        "x".into(),
    ]
}

pub(crate) fn exit_master(sock: &Path) {
    let _ = run(
        Command::new("/usr/bin/ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-S"])
            .arg(sock)
            .args(["-O", "exit", "x"]),
        None,
        Duration::from_secs(5),
    );
}
