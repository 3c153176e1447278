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
    /// notAfter as Unix seconds.
    pub not_after: i64,
}

/// The first certificate in a PEM text.
pub fn first_cert_der(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// Facts about a DER certificate.
pub fn info(der: &[u8]) -> Option<CertInfo> {
    let (serial, not_after) = walk(der)?;
    Some(CertInfo {
        fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()),
        serial: hex(serial),
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

fn walk(der: &[u8]) -> Option<(&[u8], i64)> {
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
    let (_, _not_before, rest) = element(validity)?;
    let (tag, not_after, _) = element(rest)?;
    let serial = match serial {
        [0, tail @ ..] if !tail.is_empty() => tail,
        s => s,
    };
    Some((
        serial,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time(0x17, "700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, "250101000000Z"), Some(1735689600));
        assert_eq!(parse_time(0x18, "20500101000000Z"), Some(2524608000));
        assert_eq!(parse_time(0x17, "garbage"), None);
    }

    #[test]
    fn garbage_is_none_not_panic() {
        assert!(info(&[]).is_none());
        assert!(info(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_none());
        assert!(info(&[0x30, 0x03, 0x30, 0x01]).is_none());
        assert!(info_pem("not pem").is_none());
    }
}
