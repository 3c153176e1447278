//! doctor's check of this node's certbot renewal configs against what the CA still does:
//! Let's Encrypt turned OCSP off in 2025 and refuses orders for the OCSP Must-Staple extension,
//! so a lineage issued with `--must-staple` (`must_staple = True` in its renewal config) can no
//! longer renew there. Nobody would notice until the certificate expires: certbot logs the
//! refusal, Let's Encrypt sends no expiry mail any more.

use std::path::Path;

use super::finding::{Finding, Verdict};

/// The ACME servers of Let's Encrypt (production and staging) name this host.
const LETS_ENCRYPT: &str = ".api.letsencrypt.org/";

/// At most this many renewal configs are read (1,000 lineages and more fit).
const MAX_CONFS: usize = 20_000;

/// One FAIL per renewal config that asks Let's Encrypt for Must-Staple; nothing when none does
/// (or the directory cannot be read: the directory checks report that).
pub fn check(letsencrypt_dir: &Path) -> Vec<Finding> {
    let dir = letsencrypt_dir.join("renewal");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut confs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .take(MAX_CONFS)
        .collect();
    confs.sort();
    confs
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            must_staple_at_lets_encrypt(&text).then(|| Finding {
                what: format!("renewal config {}", path.display()),
                verdict: Verdict::Fail(
                    "must_staple = True: Let's Encrypt ended OCSP in 2025 and refuses Must-Staple orders, so this lineage can no longer renew".into(),
                    format!(
                        "delete the must_staple line: sed -i '/^must_staple *=/d' {} (then `certbot renew --cert-name {} --dry-run`)",
                        path.display(),
                        path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default()
                    ),
                ),
            })
        })
        .collect()
}

/// Every lineage whose renewal config asks for an ACME profile: (lineage, profile), sorted.
pub fn profiles(letsencrypt_dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(letsencrypt_dir.join("renewal")) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .take(MAX_CONFS)
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let lineage = path.file_stem()?.to_string_lossy().into_owned();
            profile_of(&text).map(|p| (lineage, p))
        })
        .collect();
    found.sort();
    found
}

/// The profile a renewal config asks for (`required_profile` before `preferred_profile`).
fn profile_of(conf: &str) -> Option<String> {
    ["required_profile", "preferred_profile"]
        .iter()
        .find_map(|key| {
            conf.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                let v = v.trim();
                (k.trim() == *key && !v.is_empty() && v != "None").then(|| v.to_owned())
            })
        })
}

/// Whether a renewal config asks for Must-Staple from a Let's Encrypt server.
fn must_staple_at_lets_encrypt(conf: &str) -> bool {
    let value = |key: &str| {
        conf.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    let staple = value("must_staple").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let server = value("server").unwrap_or_default();
    staple && server.contains(LETS_ENCRYPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LE: &str = "https://acme-v02.api.letsencrypt.org/directory";

    #[test]
    fn the_profile_a_renewal_config_asks_for_is_read() {
        let conf =
            |extra: &str| format!("version = 5.8.0\n[renewalparams]\nserver = {LE}\n{extra}");
        assert_eq!(profile_of(&conf("")), None);
        assert_eq!(profile_of(&conf("preferred_profile = None\n")), None);
        assert_eq!(
            profile_of(&conf("preferred_profile = shortlived\n")).as_deref(),
            Some("shortlived")
        );
        assert_eq!(
            profile_of(&conf(
                "preferred_profile = classic\nrequired_profile = tlsserver\n"
            ))
            .as_deref(),
            Some("tlsserver")
        );
    }

    #[test]
    fn must_staple_at_lets_encrypt_is_found_and_nowhere_else() {
        let conf = |staple: &str, server: &str| {
            format!("version = 2.1.0\n[renewalparams]\nserver = {server}\nmust_staple = {staple}\n")
        };
        assert!(must_staple_at_lets_encrypt(&conf("True", LE)));
        assert!(must_staple_at_lets_encrypt(&conf(
            "True",
            "https://acme-staging-v02.api.letsencrypt.org/directory"
        )));
        assert!(!must_staple_at_lets_encrypt(&conf("False", LE)));
        assert!(!must_staple_at_lets_encrypt(&conf(
            "True",
            "https://acme.example.net/dir"
        )));
        assert!(!must_staple_at_lets_encrypt(&format!(
            "[renewalparams]\nserver = {LE}\n"
        )));
    }

    #[test]
    fn each_renewal_config_asking_for_it_is_a_failure_with_the_fix() {
        let root = crate::scratch::scratch("staple");
        std::fs::create_dir_all(root.join("renewal")).unwrap();
        let write = |name: &str, staple: &str| {
            std::fs::write(
                root.join("renewal").join(name),
                format!("[renewalparams]\nserver = {LE}\nmust_staple = {staple}\n"),
            )
            .unwrap()
        };
        write("a.test.conf", "True");
        write("b.test.conf", "False");
        write("c.test.conf.bak", "True");
        let found = check(&root);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].what.ends_with("renewal/a.test.conf"), "{found:?}");
        match &found[0].verdict {
            Verdict::Fail(why, fix) => {
                assert!(why.contains("refuses Must-Staple"), "{why}");
                assert!(fix.contains("--cert-name a.test"), "{fix}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check(&root.join("missing")).is_empty());
    }

    /// No shipped snippet turns OCSP stapling on: Let's Encrypt certificates carry no OCSP
    /// address any more, so nginx would only log errors for it.
    #[test]
    fn no_shipped_snippet_staples_ocsp() {
        let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
        let mut stack = vec![contrib];
        let mut read = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(text) = std::fs::read_to_string(&path) {
                    read += 1;
                    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                        let l = line.to_ascii_lowercase();
                        assert!(
                            !l.contains("ssl_stapling") && !l.contains("sslusestapling"),
                            "{}: {line}",
                            path.display()
                        );
                    }
                }
            }
        }
        assert!(read > 5, "read only {read} files under contrib/");
    }
}
