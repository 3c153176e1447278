//! The config parser: any text either parses into a config that passed validation, or is refused
//! with an error that names the file. Neither path may panic (e.g. slicing the text at an error
//! span), and a config that parsed must be usable by every command without panicking.
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
            let commands = config.commands();
            assert_eq!(commands.test, config.reload.test);
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
