//! Counting what a push costs each node: its config tests (through a wrapper of the node's own
//! `[reload] test`, since `nginx -t` logs nowhere) and its reloads (from the node's own nginx
//! error log at `notice` level: the master's "signal 1 (SIGHUP) received" line). Used by the
//! batch tests (`tests/batch.rs`) and the one-reload-per-run tests (`tests/coalesce.rs`).

use certherd_testbed::Bed;

use super::{edit_config, reload_nginx};

/// Every node logs reloads at notice level, and its `[reload] test` appends a line to
/// `tests.log` before running the same `sudo -n nginx -t` as before.
pub fn count_tests_and_reloads(bed: &Bed, nodes: usize) {
    for n in 1..=nodes {
        let conf = bed.nginx_conf(n);
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(&conf, text.replace("error.log warn;", "error.log notice;")).unwrap();
        reload_nginx(bed, n);
        let log = tests_log(bed, n);
        std::fs::write(&log, "").unwrap();
        bed.chown_to_agent(&log).unwrap();
        let argv = format!(
            r#"test = ["sudo", "-n", "/usr/sbin/nginx", "-t", "-q", "-c", "{}"]"#,
            conf.display()
        );
        let wrapped = format!(
            r#"test = ["/bin/sh", "-c", "echo t >> {} && exec sudo -n /usr/sbin/nginx -t -q -c {}"]"#,
            log.display(),
            conf.display()
        );
        edit_config(bed, n, &argv, &wrapped);
    }
}

fn tests_log(bed: &Bed, n: usize) -> std::path::PathBuf {
    bed.node_dir(n).join("tests.log")
}

/// (config tests, reloads) of node `n` so far.
pub fn counts(bed: &Bed, n: usize) -> (usize, usize) {
    let tests = std::fs::read_to_string(tests_log(bed, n))
        .unwrap_or_default()
        .lines()
        .count();
    let error_log = bed.nginx_conf(n).with_file_name("error.log");
    let reloads = std::fs::read_to_string(&error_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("(SIGHUP) received"))
        .count();
    (tests, reloads)
}

/// Makes every config test of node `n` (counted, see [`count_tests_and_reloads`]) take `secs`
/// seconds longer, as `nginx -t` does on a node with thousands of vhosts.
pub fn slow_tests(bed: &Bed, n: usize, secs: u32) {
    let log = tests_log(bed, n);
    edit_config(
        bed,
        n,
        &format!("echo t >> {}", log.display()),
        &format!("sleep {secs} && echo t >> {}", log.display()),
    );
}
