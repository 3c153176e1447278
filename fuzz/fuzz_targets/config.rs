//! The config parser: any text either parses into a config that passed validation, or is refused
//! with an error that names the file. Neither path may panic (e.g. slicing the text at an error
//! span), and a config that parsed must be usable by every command without panicking and hold
//! what validation promises: no empty program, no host starting with `-`, concurrency >= 1,
//! `[ssh] kex_algorithms` non-empty names of `[A-Za-z0-9.@_-]` starting with a letter or digit.
#![no_main]

use std::path::Path;

use certherd::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/fuzz/certherd.toml")) {
        Ok(config) => {
            let _ = config.node_name();
            // Properties validation must have enforced (each fails if its check is dropped;
            // `commands()` merely copies fields, so comparing with it could never fail).
            if let Some(kex) = &config.ssh.kex_algorithms {
                assert!(!kex.is_empty(), "empty kex_algorithms accepted");
                for name in kex {
                    assert!(
                        name.starts_with(|c: char| c.is_ascii_alphanumeric())
                            && name
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c)),
                        "kex name {name:?} would reach ssh's -o KexAlgorithms= (list modifiers, \
                         commas, spaces or option text)"
                    );
                }
            }
            assert!(
                config.ssh.concurrency >= 1,
                "validation let concurrency 0 through"
            );
            for peer in config.managed_peers() {
                assert!(
                    !peer.host.is_empty() && !peer.host.starts_with('-'),
                    "ssh option injection through host {:?}",
                    peer.host
                );
                let _ = (peer.http_addr(), peer.https_addr());
            }
            for argv in [&config.reload.test, &config.reload.reload] {
                assert!(argv.first().is_none_or(|p| !p.is_empty()));
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("/fuzz/certherd.toml"),
                "error does not name the file: {message}"
            );
            assert_eq!(e.exit_code(), certherd::error::EXIT_USAGE, "{message}");
        }
    }
});
