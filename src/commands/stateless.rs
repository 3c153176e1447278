//! `certherd stateless`: the ACME account thumbprint (RFC 7638) from certbot's account key, and
//! the nginx snippet that answers any token with `TOKEN.THUMBPRINT` — so no token has to travel.
//! With `mode = "stateless"` in the config, `auth` then only self-checks.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result, EXIT_OK};

/// RFC 7638 thumbprint of a JWK (RSA or EC): SHA-256 over the required members in
/// lexicographic order, no whitespace, base64url without padding.
pub fn thumbprint(jwk: &serde_json::Value) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(|v| v.as_str());
    let canonical = match s("kty")? {
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s("crv")?, s("x")?),
        _ => return None,
    };
    Some(base64url(
        ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref(),
    ))
}

/// base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// certbot's account key files under `<letsencrypt_dir>/accounts/<server>/<id>/private_key.json`.
pub fn account_keys(letsencrypt_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && depth < 8 {
                walk(&path, depth + 1, out);
            } else if path.file_name().is_some_and(|n| n == "private_key.json") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&letsencrypt_dir.join("accounts"), 0, &mut out);
    out.sort();
    out
}

/// The nginx location that answers every token statelessly.
pub fn nginx_snippet(thumbprint: &str) -> String {
    format!(
        "location ~ \"^/\\.well-known/acme-challenge/([-_a-zA-Z0-9]+)$\" {{\n    default_type text/plain;\n    return 200 \"$1.{thumbprint}\";\n}}\n"
    )
}

/// Prints the thumbprint and snippet of every certbot account on this node.
pub fn run(config: &Config) -> Result<i32> {
    let keys = account_keys(&config.letsencrypt_dir);
    if keys.is_empty() {
        return Err(Error::Input(format!(
            "no certbot account under {}: expected accounts/<server>/<id>/private_key.json (run certbot register first)",
            config.letsencrypt_dir.join("accounts").display()
        )));
    }
    for key in keys {
        let text = std::fs::read_to_string(&key).map_err(|e| Error::io("cannot read", &key, e))?;
        let jwk: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::Failed(format!(
                "{}: not a JWK: {}",
                key.display(),
                e.classify_name()
            ))
        })?;
        let thumb = thumbprint(&jwk).ok_or_else(|| {
            Error::Failed(format!(
                "{}: unsupported key type (expected RSA, EC or OKP)",
                key.display()
            ))
        })?;
        let account = key.parent().unwrap_or(Path::new(""));
        println!("# account {}", account.display());
        println!("# thumbprint: {thumb}");
        print!("{}", nginx_snippet(&thumb));
    }
    Ok(EXIT_OK)
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    // Never echo the file's content: it is a private key.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example() {
        // The RSA example of RFC 7638, section 3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn base64url_lengths() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
