//! What certbot hands the hooks (`CERTBOT_DOMAIN`, `CERTBOT_TOKEN`, `CERTBOT_VALIDATION`, and
//! `RENEWED_LINEAGE`'s last component), through the same `Challenge::from_env` the hooks use
//! (both branches: the `--domain/--token/--validation` flags, and certbot's environment variables,
//! which must give the same answer), and the name parsers.
//!
//! Properties: an accepted token, domain or lineage is safe as a file or directory name (no `/`,
//! no NUL, not `.` or `..`; lineages never start with `-` or `.`); an accepted domain is lower case and parses to
//! itself; an accepted key authorization starts with the token and a dot; a refusal is one short
//! printable line.
#![no_main]

use certherd::certbot_env::{Challenge, ChallengeArgs};
use certherd::text::printable;
use certherd::names::{Domain, KeyAuthorization, LineageName, Token};
use libfuzzer_sys::fuzz_target;

fn safe_name(s: &str) {
    assert!(!s.is_empty() && s != "." && s != "..", "{s:?}");
    assert!(!s.contains('/') && !s.contains('\0'), "{s:?}");
}

fn one_line(message: &str) {
    assert!(
        !message.chars().any(char::is_control),
        "control character in {message:?}"
    );
    assert!(
        message.len() < 1024,
        "error echoes a long value whole: {} bytes",
        message.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\0');
    let (domain, token, validation) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );

    let need_validation = knob & 1 == 1;
    // Both branches of `from_env`: the flags, or certbot's environment variables (knob bit 1;
    // bit 2 uses CERTBOT_IDENTIFIER, the newer name, for the domain). They must agree.
    let flags = ChallengeArgs {
        domain: Some(domain.clone()),
        token: Some(token.clone()),
        validation: Some(validation.clone()),
    };
    let from_flags = Challenge::from_env(&flags, need_validation);
    for var in [
        "CERTBOT_DOMAIN",
        "CERTBOT_IDENTIFIER",
        "CERTBOT_TOKEN",
        "CERTBOT_VALIDATION",
    ] {
        std::env::remove_var(var);
    }
    let result = if knob & 2 == 2 && !validation.contains('\0') {
        // The first two parts were split at NUL; the environment cannot hold a NUL at all.
        let domain_var = if knob & 4 == 4 {
            "CERTBOT_IDENTIFIER"
        } else {
            "CERTBOT_DOMAIN"
        };
        std::env::set_var(domain_var, &domain);
        std::env::set_var("CERTBOT_TOKEN", &token);
        std::env::set_var("CERTBOT_VALIDATION", &validation);
        let from_env = Challenge::from_env(&ChallengeArgs::default(), need_validation);
        match (&from_env, &from_flags) {
            (Ok(e), Ok(f)) => {
                assert_eq!(e.domain, f.domain);
                assert_eq!(e.token, f.token);
                assert_eq!(
                    e.key_authorization.as_ref().map(|k| k.as_str()),
                    f.key_authorization.as_ref().map(|k| k.as_str())
                );
            }
            (Err(e), Err(f)) => assert_eq!(e.to_string(), f.to_string()),
            (e, f) => panic!("environment and flags disagree: {e:?} vs {f:?}"),
        }
        // Nothing set: refused, naming the variable certbot sets.
        for var in [domain_var, "CERTBOT_TOKEN", "CERTBOT_VALIDATION"] {
            std::env::remove_var(var);
        }
        let missing = Challenge::from_env(&ChallengeArgs::default(), need_validation)
            .expect_err("no flags, no environment");
        assert!(missing.to_string().contains("$CERTBOT_DOMAIN"), "{missing}");
        from_env
    } else {
        from_flags
    };
    match result {
        Ok(c) => {
            safe_name(c.token.as_str());
            assert!(!c.token.as_str().starts_with('.'));
            assert_eq!(c.domain.as_str(), c.domain.as_str().to_ascii_lowercase());
            assert_eq!(Domain::parse(c.domain.as_str()).unwrap(), c.domain);
            match c.key_authorization {
                Some(ka) => {
                    assert!(need_validation);
                    assert!(ka.as_str().starts_with(&format!("{}.", c.token)));
                    assert_eq!(ka.token(), c.token.as_str());
                }
                None => assert!(!need_validation),
            }
        }
        Err(e) => {
            let message = e.to_string();
            one_line(&message);
            assert_eq!(e.exit_code(), certherd::error::EXIT_USAGE, "{message}");
        }
    }

    for s in [&domain, &token, &validation] {
        match LineageName::parse(s) {
            Ok(l) => {
                safe_name(l.as_str());
                assert!(!l.as_str().starts_with('-') && !l.as_str().starts_with('.'));
                assert_eq!(LineageName::parse(l.as_str()).unwrap(), l);
            }
            Err(e) => one_line(&e.to_string()),
        }
        match Token::parse(s) {
            Ok(t) => safe_name(t.as_str()),
            Err(e) => one_line(&e.to_string()),
        }
        if let Ok(ka) = KeyAuthorization::parse(s) {
            assert!(Token::parse(ka.token()).is_ok());
        }
        let shown = printable(s);
        one_line(&shown);
    }
});
