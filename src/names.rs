//! Validated names that cross trust boundaries: ACME tokens, key authorizations, domains and
//! certbot lineage names. Parsing happens once, at the boundary; after that the rest of the code
//! cannot hold an invalid one, so no path or command is ever built from unchecked input.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::printable;

/// Longest token we accept. RFC 8555 tokens are 43 characters; 128 leaves room for other CAs.
pub const MAX_TOKEN_LEN: usize = 128;
/// Longest key authorization: token, a dot and a base64url SHA-256 thumbprint (43 characters).
pub const MAX_KEY_AUTHZ_LEN: usize = MAX_TOKEN_LEN + 1 + 64;

/// Why a value was refused. Carries a printable (escaped, shortened) copy of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {shown}: expected {expected}")]
pub struct NameError {
    /// What kind of value it was (`token`, `domain`, …).
    pub what: &'static str,
    /// The offending value, escaped and shortened so it is safe to print on one line.
    pub shown: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl NameError {
    fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        NameError {
            what,
            shown: printable(value),
            expected,
        }
    }
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An ACME HTTP-01 token: `^[A-Za-z0-9_-]{1,128}$`. Safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(String);
string_newtype!(Token);

impl Token {
    /// Validates a token.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > MAX_TOKEN_LEN || !is_base64url(s) {
            return Err(NameError::new(
                "token",
                s,
                "1 to 128 characters of A-Z a-z 0-9 _ -",
            ));
        }
        Ok(Token(s.to_owned()))
    }
}

/// The body a node must serve for a token: `TOKEN.THUMBPRINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuthorization(String);
string_newtype!(KeyAuthorization);

impl KeyAuthorization {
    /// Validates a key authorization on its own (`TOKEN.THUMBPRINT`, both base64url).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let expected = "TOKEN.THUMBPRINT, both parts of A-Z a-z 0-9 _ -";
        let Some((token, thumb)) = s.split_once('.') else {
            return Err(NameError::new("validation", s, expected));
        };
        if s.len() > MAX_KEY_AUTHZ_LEN
            || Token::parse(token).is_err()
            || thumb.is_empty()
            || !is_base64url(thumb)
        {
            return Err(NameError::new("validation", s, expected));
        }
        Ok(KeyAuthorization(s.to_owned()))
    }

    /// Validates a key authorization and that it belongs to `token`.
    pub fn for_token(token: &Token, s: &str) -> Result<Self, NameError> {
        let ka = Self::parse(s)?;
        if ka.token() != token.as_str() {
            return Err(NameError::new(
                "validation",
                s,
                "a value starting with the token and a dot",
            ));
        }
        Ok(ka)
    }

    /// The token part.
    pub fn token(&self) -> &str {
        self.0.split_once('.').map_or("", |(t, _)| t)
    }
}

/// A DNS name that HTTP-01 can validate: LDH labels, lower-cased, no wildcard, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);
string_newtype!(Domain);

impl Domain {
    /// Validates and lower-cases a domain name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let expected = "a DNS name like www.example.com (letters, digits, hyphens; no wildcard)";
        let lower = s.to_ascii_lowercase();
        let ok = !lower.is_empty()
            && lower.len() <= 253
            && lower.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(NameError::new("domain", s, expected));
        }
        Ok(Domain(lower))
    }
}

/// A certbot lineage name (`--cert-name`; by default the first domain, with `-NNNN` when that
/// is taken). certbot takes any file name there; certherd carries every name made of ASCII
/// letters of either case, digits, `.`, `_` and `-` that starts with a letter or a digit, at
/// most [`LINEAGE_MAX`] bytes (`renewal/NAME.conf` must fit a file name): `site_test` and
/// `Example.com` as well as every domain. Anything else is refused where it enters, with its
/// reason, never skipped in silence. Safe as a directory name and as an argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineageName(String);
string_newtype!(LineageName);

/// The longest lineage name: `NAME.conf` in certbot's `renewal/` still fits 255 bytes.
pub const LINEAGE_MAX: usize = 250;

impl LineageName {
    /// Validates a lineage name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let expected = "a certbot lineage name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 250 bytes (renewal/NAME.conf must fit a file name)";
        let ok = !s.is_empty()
            && s.len() <= LINEAGE_MAX
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(NameError::new("lineage", s, expected));
        }
        Ok(LineageName(s.to_owned()))
    }
}

/// Whether `s` is an `https://` URL made only of characters that need no quoting in certbot's
/// config format (no `#`, `,`, quotes or blanks). Checks `acme_servers` and
/// the `server` of a renewal config a standby receives.
pub fn is_acme_server_url(s: &str) -> bool {
    s.len() <= 512
        && s.strip_prefix("https://").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~:/%?=&+@".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(Token::parse("abc_DEF-123").is_ok());
        for bad in [
            "",
            "../../etc/passwd",
            "a/b",
            "x;rm -rf /",
            "a.b",
            "tok en",
            "é",
        ] {
            let err = Token::parse(bad).unwrap_err();
            assert_eq!(err.what, "token", "{bad}");
        }
        assert!(Token::parse(&"a".repeat(128)).is_ok());
        assert!(Token::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn long_values_are_shortened_and_escaped() {
        let err = Token::parse(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("10000 bytes"));
        let err = Token::parse("a\nb").unwrap_err().to_string();
        assert!(!err.contains('\n'));
        assert!(err.contains("\\n"));
    }

    #[test]
    fn key_authorizations() {
        let t = Token::parse("tok").unwrap();
        assert!(KeyAuthorization::for_token(&t, "tok.abc_-9").is_ok());
        assert!(KeyAuthorization::for_token(&t, "other.abc").is_err());
        assert!(KeyAuthorization::for_token(&t, "tok.").is_err());
        assert!(KeyAuthorization::for_token(&t, "tok.a b").is_err());
        assert!(KeyAuthorization::for_token(&t, "tok").is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(
            Domain::parse("WWW.Example.com").unwrap().as_str(),
            "www.example.com"
        );
        for bad in [
            "",
            "*.example.com",
            "a b.com",
            "a;b.com",
            "$(id).com",
            "example.com.",
            "-a.com",
            "a..b",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lineages() {
        for good in [
            "example.com",
            "example.com-0001",
            "site_test",
            "Example.com",
            "1.2.3.4",
        ] {
            assert!(LineageName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "..",
            "../x",
            "a/b",
            "",
            ".hidden",
            "-x",
            "_x",
            "a b",
            "a;b",
            "é.test",
            &"a".repeat(251),
        ] {
            assert!(LineageName::parse(bad).is_err(), "{bad}");
        }
    }
}
