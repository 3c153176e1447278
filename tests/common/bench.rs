//! What the `#[ignore]`d benchmark files share: sizes from the environment, medians.

use std::time::Duration;

/// `name`'s value as a number, else `default`; anything else fails the run naming it.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: expected a number"))
        })
        .unwrap_or(default)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
