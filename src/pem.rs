//! Just enough X.509 for certherd: the leaf's DER from PEM, its SHA-256 fingerprint, serial and
//! not-after. A small DER walk instead of a full parser: we only read certificates that certbot
//! wrote or a node served, and any surprise is an error, never a panic.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Facts about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// notBefore as Unix seconds.
    pub not_before: i64,
    /// notAfter as Unix seconds.
    pub not_after: i64,
}

/// The first certificate in a PEM text.
pub fn first_cert_der(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// SHA-256 of a DER certificate, lower-case hex: the one fingerprint every report compares.
pub fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Facts about a DER certificate.
pub fn info(der: &[u8]) -> Option<CertInfo> {
    let (serial, not_before, not_after) = walk(der)?;
    Some(CertInfo {
        fingerprint: fingerprint(der),
        serial: hex(serial),
        not_before,
        not_after,
    })
}

/// Facts about the first certificate of a PEM text.
pub fn info_pem(pem: &str) -> Option<CertInfo> {
    info(&first_cert_der(pem)?)
}

/// The DNS names of a certificate's subjectAltName extension, in the certificate's order
/// (`*.example.com` as written). Parsed with x509-parser: these names decide what the served
/// check sends as SNI, so a malformed extension is `None`, never a guess. A certificate without
/// the extension has no names (CAs put every name there; the subject CN is not consulted).
pub fn dns_names(der: &[u8]) -> Option<Vec<String>> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()?;
    Some(
        san.map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some((*name).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default(),
    )
}

/// The IP addresses of a certificate's subjectAltName extension, in the certificate's order
/// (an IP-address certificate names no DNS name; its served check sends no SNI).
pub fn ip_addresses(der: &[u8]) -> Option<Vec<std::net::IpAddr>> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()?;
    Some(
        san.map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default(),
    )
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One DER element: (tag, content, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// (serial, notBefore, notAfter) of a DER certificate.
fn walk(der: &[u8]) -> Option<(&[u8], i64, i64)> {
    let (_, cert, _) = element(der)?;
    let (_, mut tbs, _) = element(cert)?;
    let (tag, content, rest) = element(tbs)?;
    if tag == 0xa0 {
        tbs = rest; // explicit version
    } else {
        let _ = content;
    }
    let (tag, serial, rest) = element(tbs)?;
    if tag != 0x02 {
        return None;
    }
    let (_, _sig_alg, rest) = element(rest)?;
    let (_, _issuer, rest) = element(rest)?;
    let (_, validity, _) = element(rest)?;
    let (before_tag, not_before, rest) = element(validity)?;
    let (tag, not_after, _) = element(rest)?;
    let serial = match serial {
        [0, tail @ ..] if !tail.is_empty() => tail,
        s => s,
    };
    Some((
        serial,
        parse_time(before_tag, std::str::from_utf8(not_before).ok()?)?,
        parse_time(tag, std::str::from_utf8(not_after).ok()?)?,
    ))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn parse_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let num = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day, h, m, sec) = (num(0)?, num(2)?, num(4)?, num(6)?, num(8)?);
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Why a certificate version was refused before anything was written (`install` verification).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// A file is not PEM, or holds a section of another type than expected.
    #[error("{file}: {why} (expected {expected})")]
    NotPem {
        /// Which of the four files.
        file: &'static str,
        /// What is wrong.
        why: String,
        /// What the file must hold.
        expected: &'static str,
    },
    /// `cert` is not the first certificate of `fullchain`.
    #[error("cert is not the first certificate of fullchain (expected fullchain = cert + chain)")]
    FullchainMismatch,
    /// The leaf cannot be parsed as X.509.
    #[error("cert: not an X.509 certificate: {0}")]
    BadCertificate(String),
    /// The private key is of a type or size this check cannot use.
    #[error("privkey: unsupported key: {0} (expected RSA or ECDSA P-256/P-384)")]
    UnsupportedKey(String),
    /// The private key is not the leaf certificate's key.
    #[error("privkey does not match the certificate's public key (expected the key of cert)")]
    KeyMismatch,
    /// The leaf's notAfter has passed.
    #[error("cert expired at {not_after} (Unix time; expected a certificate still valid)")]
    Expired {
        /// notAfter, Unix seconds.
        not_after: i64,
    },
}

/// Every PEM section of `text` in order; an error when a section is broken or there is none.
fn sections(
    file: &'static str,
    text: &str,
    expected: &'static str,
) -> Result<Vec<(rustls_pki_types::pem::SectionKind, Vec<u8>)>, PairError> {
    use rustls_pki_types::pem::SectionKind;
    let not_pem = |why: String| PairError::NotPem {
        file,
        why,
        expected,
    };
    let all = <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(format!("broken PEM: {e:?}")))?;
    if all.is_empty() {
        return Err(not_pem("no PEM section".into()));
    }
    Ok(all)
}

/// The DER certificates of a file that must hold only certificates (`exactly_one` for `cert`).
fn certificates(
    file: &'static str,
    text: &str,
    exactly_one: bool,
) -> Result<Vec<Vec<u8>>, PairError> {
    use rustls_pki_types::pem::SectionKind;
    let expected = if exactly_one {
        "one CERTIFICATE"
    } else {
        "CERTIFICATE sections only"
    };
    let mut ders = Vec::new();
    for (kind, der) in sections(file, text, expected)? {
        if kind != SectionKind::Certificate {
            return Err(PairError::NotPem {
                file,
                why: format!("holds a {kind:?} section"),
                expected,
            });
        }
        ders.push(der);
    }
    if exactly_one && ders.len() != 1 {
        return Err(PairError::NotPem {
            file,
            why: format!("holds {} certificates", ders.len()),
            expected,
        });
    }
    Ok(ders)
}

/// The SubjectPublicKeyInfo (DER) of a PEM private key, derived from the key itself.
fn key_spki(text: &str) -> Result<Vec<u8>, PairError> {
    use rustls_pki_types::pem::SectionKind;
    use rustls_pki_types::{
        PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    };
    let expected = "one PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY";
    let all = sections("privkey", text, expected)?;
    let [(kind, der)] = all.as_slice() else {
        return Err(PairError::NotPem {
            file: "privkey",
            why: format!("holds {} PEM sections", all.len()),
            expected,
        });
    };
    let key: PrivateKeyDer<'_> = match kind {
        SectionKind::PrivateKey => PrivatePkcs8KeyDer::from(der.as_slice()).into(),
        SectionKind::RsaPrivateKey => PrivatePkcs1KeyDer::from(der.as_slice()).into(),
        SectionKind::EcPrivateKey => PrivateSec1KeyDer::from(der.as_slice()).into(),
        other => {
            return Err(PairError::NotPem {
                file: "privkey",
                why: format!("holds a {other:?} section"),
                expected,
            })
        }
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| PairError::UnsupportedKey(e.to_string()))?;
    let spki = signer
        .public_key()
        .ok_or_else(|| PairError::UnsupportedKey("no public key derivable".into()))?;
    Ok(spki.as_ref().to_vec())
}

/// Verifies a version before `install` writes any of it: all four files are PEM of the right
/// type, `cert` is the first certificate of `fullchain`, the private key is the leaf's key (by
/// comparing the SubjectPublicKeyInfo derived from the key with the certificate's; RSA and ECDSA
/// P-256/P-384, what certbot makes) and the leaf has not expired at `now` (Unix seconds).
///
/// The certificate is parsed by `x509-parser` (fuzzed, widely used); the key's public half comes
/// from ring through rustls, the code that would later load the key for TLS anyway.
pub fn verify_pair(
    cert: &str,
    chain: &str,
    fullchain: &str,
    privkey: &str,
    now: i64,
) -> Result<(), PairError> {
    let leaf = certificates("cert", cert, true)?.remove(0);
    certificates("chain", chain, false)?;
    let full = certificates("fullchain", fullchain, false)?;
    if full.first() != Some(&leaf) {
        return Err(PairError::FullchainMismatch);
    }
    let (rest, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| PairError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PairError::BadCertificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    let not_after = parsed.validity().not_after.timestamp();
    if not_after < now {
        return Err(PairError::Expired { not_after });
    }
    if key_spki(privkey)? != parsed.public_key().raw {
        return Err(PairError::KeyMismatch);
    }
    Ok(())
}

/// Test support shared by this module's tests and the install tests in `lineage`.
#[cfg(test)]
pub(crate) mod testing {
    /// A fresh key and self-signed certificate made by openssl: (cert PEM, key PEM).
    pub(crate) fn pair(name: &str, newkey: &[&str]) -> (String, String) {
        let dir = crate::scratch::scratch(&format!("pem-{name}"));
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=site.test",
            ])
            .args(newkey)
            .arg("-keyout")
            .arg(dir.join("k.pem"))
            .arg("-out")
            .arg(dir.join("c.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        (read("c.pem"), read("k.pem"))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pair;
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time(0x17, "700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, "250101000000Z"), Some(1735689600));
        assert_eq!(parse_time(0x18, "20500101000000Z"), Some(2524608000));
        assert_eq!(parse_time(0x17, "garbage"), None);
    }

    fn verify(cert: &str, fullchain: &str, key: &str) -> Result<(), PairError> {
        verify_pair(cert, cert, fullchain, key, 1_700_000_000)
    }

    #[test]
    fn pairs_certbot_makes_verify() {
        for (name, newkey) in [
            (
                "p256",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"][..],
            ),
            (
                "p384",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"][..],
            ),
            ("rsa", &["-newkey", "rsa:2048"][..]),
        ] {
            let (cert, key) = pair(name, newkey);
            let full = format!("{cert}{cert}");
            assert_eq!(verify(&cert, &full, &key), Ok(()), "{name}");
        }
    }

    #[test]
    fn bad_pairs_are_refused() {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let (cert, key) = pair("a", &ec);
        let (other_cert, other_key) = pair("b", &ec);
        let full = format!("{cert}{other_cert}");
        assert_eq!(
            verify(&cert, &full, &other_key),
            Err(PairError::KeyMismatch)
        );
        let (_, rsa_key) = pair("c", &["-newkey", "rsa:2048"]);
        assert_eq!(verify(&cert, &full, &rsa_key), Err(PairError::KeyMismatch));
        assert_eq!(
            verify(&cert, &format!("{other_cert}{cert}"), &key),
            Err(PairError::FullchainMismatch)
        );
        for (c, f, k) in [
            ("not pem", full.as_str(), key.as_str()),
            (key.as_str(), full.as_str(), key.as_str()),
            (cert.as_str(), full.as_str(), cert.as_str()),
            (cert.as_str(), "", key.as_str()),
            (full.as_str(), full.as_str(), key.as_str()),
        ] {
            assert!(
                matches!(verify(c, f, k), Err(PairError::NotPem { .. })),
                "{:?}",
                verify(c, f, k)
            );
        }
        let later = verify_pair(&cert, &cert, &full, &key, 4_000_000_000);
        assert!(matches!(later, Err(PairError::Expired { .. })), "{later:?}");
        // A refusal never prints key material.
        let msg = verify(&cert, &full, &other_key).unwrap_err().to_string();
        assert!(!msg.contains("PRIVATE"), "{msg}");
    }

    #[test]
    fn garbage_is_none_not_panic() {
        assert!(info(&[]).is_none());
        assert!(info(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_none());
        assert!(info(&[0x30, 0x03, 0x30, 0x01]).is_none());
        assert!(info_pem("not pem").is_none());
    }
}
