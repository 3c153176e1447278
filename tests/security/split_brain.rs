//! Helpers for the split-brain tests (Guarantee 2): a peer's own version N of site.test, made
//! as the agent's account with openssl the way its own certbot would have (both sides renewed
//! during a VRRP split brain), and the checks that no version name ever pairs a certificate with
//! a key that is not its own, and that the peer's own key is still on disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::LINEAGE;
use crate::common::exec::Nodes;
use crate::common::*;

/// Makes node `n`'s own version `v` of site.test as the agent's account (a fresh P-256 key and
/// a self-signed certificate, certbot's layout and modes), points its live links at it and
/// reloads its nginx: the node renewed on its own and serves it. Returns the key's PEM.
pub fn peer_own_version(bed: &Bed, n: usize, v: u32) -> String {
    let le = bed.letsencrypt_dir(n);
    let script = format!(
        "set -e\n\
         cd '{archive}'\n\
         umask 022\n\
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
           -subj /CN={LINEAGE} -addext subjectAltName=DNS:{LINEAGE} \
           -keyout privkey{v}.pem -out cert{v}.pem 2>/dev/null\n\
         chmod 600 privkey{v}.pem\n\
         cp cert{v}.pem chain{v}.pem\n\
         cat cert{v}.pem cert{v}.pem > fullchain{v}.pem\n\
         cd '{live}'\n\
         for k in cert chain fullchain privkey; do\n\
           ln -s ../../archive/{LINEAGE}/${{k}}{v}.pem .${{k}}.own-tmp\n\
           mv -T .${{k}}.own-tmp ${{k}}.pem\n\
         done\n",
        archive = le.join("archive").join(LINEAGE).display(),
        live = le.join("live").join(LINEAGE).display(),
    );
    let mut own = Command::new("sh");
    own.arg("-c").arg(&script);
    bed.as_agent(&mut own);
    bed.node(n).command(own).run();
    reload_nginx(bed, n);
    std::fs::read_to_string(le.join(format!("archive/{LINEAGE}/privkey{v}.pem"))).unwrap()
}

/// The public key in a certificate (first of the file) or a private key, as openssl prints it.
fn public_key(path: &Path, is_key: bool) -> String {
    let args: &[&str] = if is_key {
        &["pkey", "-pubout", "-in"]
    } else {
        &["x509", "-noout", "-pubkey", "-in"]
    };
    let out = Command::new("openssl")
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every directory that holds numbered versions of site.test on node `n`: the archive dir and
/// each `split-brain-*` directory in it.
fn version_dirs(bed: &Bed, n: usize) -> Vec<PathBuf> {
    let archive = bed.letsencrypt_dir(n).join("archive").join(LINEAGE);
    let mut dirs = vec![archive.clone()];
    for e in std::fs::read_dir(&archive).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("split-brain-") {
            dirs.push(e.path());
        }
    }
    dirs
}

/// Asserts that on node `n` no name pairs a certificate with a key that is not its own: for
/// every version N in the archive dir (and in every kept split-brain dir) where `certN.pem` or
/// `fullchainN.pem` and `privkeyN.pem` both exist, and for the live links unless an install is
/// marked pending, the key is the certificate's (openssl, independently of certherd). Returns
/// how many pairs it checked.
pub fn assert_no_mismatched_pair(bed: &Bed, n: usize, context: &str) -> usize {
    let mut checked = 0;
    let mut pairs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for dir in version_dirs(bed, n) {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(v) = name
                .strip_prefix("privkey")
                .and_then(|s| s.strip_suffix(".pem"))
            else {
                continue;
            };
            for cert in ["cert", "fullchain"] {
                pairs.push((dir.join(format!("{cert}{v}.pem")), e.path()));
            }
        }
    }
    // The live links move one by one (rename each), so between the first and the last they
    // are mixed by design: that is what the pending marker says, and nothing reloads until they
    // agree. Without a marker they must pair.
    let live = bed.letsencrypt_dir(n).join("live").join(LINEAGE);
    if !live.join(".certherd-pending").exists() {
        for cert in ["cert.pem", "fullchain.pem"] {
            pairs.push((live.join(cert), live.join("privkey.pem")));
        }
    }
    for (cert, key) in pairs {
        // Resolved through the links: a name that is missing (or a link to nothing) pairs
        // nothing.
        if !cert.exists() || !key.exists() {
            continue;
        }
        let (c, k) = (public_key(&cert, false), public_key(&key, true));
        assert!(
            c.contains("PUBLIC KEY") && c == k,
            "{context}: node {n}: {} and {} are not a pair",
            cert.display(),
            key.display()
        );
        checked += 1;
    }
    checked
}

/// Asserts node `n` still holds `key` (its own version's private key, byte for byte) under
/// version `v`'s key name in the archive dir or in a kept split-brain dir; returns where.
pub fn assert_key_kept(bed: &Bed, n: usize, v: u32, key: &str, context: &str) -> PathBuf {
    version_dirs(bed, n)
        .into_iter()
        .map(|d| d.join(format!("privkey{v}.pem")))
        .find(|p| std::fs::read_to_string(p).is_ok_and(|k| k == key))
        .unwrap_or_else(|| panic!("{context}: node {n} lost its own key of version {v}"))
}

/// certherd's staged files (`.certN.pem.certherd-staged`) under `dir`.
pub fn staged_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .ends_with(".certherd-staged")
            {
                out.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

/// The highest N of a `certN.pem` directly in node `n`'s archive dir: what its certbot counts
/// from (it names its next version N+1).
pub fn certbot_max_version(bed: &Bed, n: usize) -> Option<u32> {
    std::fs::read_dir(bed.letsencrypt_dir(n).join("archive").join(LINEAGE))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("cert")?
                .strip_suffix(".pem")?
                .parse()
                .ok()
        })
        .max()
}
