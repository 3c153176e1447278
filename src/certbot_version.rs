//! Which certbot a node has (`certbot --version`), and what it can do with ACME profiles:
//! `issue` refuses a profile its certbot cannot ask for, and `doctor` fails a standby whose
//! certbot would drop the primary's profile when it renews after a failover.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// certbot 4.0 asks the CA for a profile (`--preferred-profile`, `--required-profile`).
pub const PROFILE_SINCE: (u32, u32) = (4, 0);
/// certbot 4.1 stores the profile in the renewal config and renews with it.
pub const PROFILE_KEPT_SINCE: (u32, u32) = (4, 1);

/// `certbot --version` is a Python start-up: seconds on a slow machine, never this long.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A certbot's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertbotVersion {
    /// (major, minor).
    pub major_minor: (u32, u32),
    /// As it printed it, e.g. `2.1.0`.
    pub text: String,
}

impl CertbotVersion {
    /// Reads `certbot X.Y.Z` out of what `certbot --version` printed.
    pub fn parse(printed: &str) -> Option<CertbotVersion> {
        let text = printed
            .split_whitespace()
            .skip_while(|w| *w != "certbot")
            .nth(1)?
            .to_owned();
        let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
        let (major, minor) = (parts.next().flatten()?, parts.next().flatten()?);
        Some(CertbotVersion {
            major_minor: (major, minor),
            text,
        })
    }

    /// Runs `argv --version` (argv from this node's own config or flags, never a request),
    /// bounded in time.
    pub fn query(argv: &[String]) -> Result<CertbotVersion, String> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| "no certbot command configured".to_owned())?;
        let mut child = Command::new(program)
            .args(args)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {program} --version: {e}"))?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() < TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{program} --version did not answer within {}",
                        humantime::format_duration(TIMEOUT)
                    ));
                }
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("cannot read {program} --version: {e}"))?;
        let printed = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        CertbotVersion::parse(&printed).ok_or_else(|| {
            format!(
                "{program} --version answered {:?}: expected `certbot X.Y.Z`",
                crate::text::one_line(&printed, 200)
            )
        })
    }

    /// Whether this certbot renews with the profile stored in a renewal config.
    pub fn keeps_profiles(&self) -> bool {
        self.major_minor >= PROFILE_KEPT_SINCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_certbot_prints_and_nothing_else() {
        let v = CertbotVersion::parse("certbot 2.1.0\n").unwrap();
        assert_eq!((v.major_minor, v.text.as_str()), ((2, 1), "2.1.0"));
        assert!(!v.keeps_profiles());
        assert!(CertbotVersion::parse("certbot 4.1.1")
            .unwrap()
            .keeps_profiles());
        assert!(!CertbotVersion::parse("certbot 4.0.0")
            .unwrap()
            .keeps_profiles());
        assert!(CertbotVersion::parse("certbot 5.8.0")
            .unwrap()
            .keeps_profiles());
        assert_eq!(CertbotVersion::parse("python: not found"), None);
        assert_eq!(CertbotVersion::parse("certbot x.y"), None);
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let e = CertbotVersion::query(&["/nonexistent/certbot".into()]).unwrap_err();
        assert!(e.contains("/nonexistent/certbot --version"), "{e}");
    }
}
