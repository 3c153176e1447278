//! The primary's side of the channel: whatever a (compromised, broken) peer sends back is cut
//! into lines by the same size-limited readers and decoded as a `Response`.
//!
//! Properties: the sync and the async line readers agree on every input and every buffer size
//! (the primary uses the async one, the agent the sync one); no line is longer than the limit or
//! contains a newline; the lines read are exactly the input's, whole and in order (compared in
//! full, not as a prefix), also for lines at the real 1 MiB limit ± 128 bytes; a decoded answer
//! re-encodes to one line and decodes to itself.
#![no_main]

use std::io::BufReader;

use certherd::wire::{
    read_line_limited, read_line_limited_async, LineError, Response, MAX_RESPONSE_LINE,
};
use libfuzzer_sys::fuzz_target;

/// Small on purpose: the fuzzer reaches "longer than the limit" and chunk boundaries quickly.
const LIMIT: usize = 64;

#[derive(Debug, PartialEq)]
enum Read {
    Line(Vec<u8>),
    TooLong,
}

fn sync_lines(data: &[u8], capacity: usize) -> Vec<Read> {
    sync_lines_limit(data, capacity, LIMIT)
}

fn sync_lines_limit(data: &[u8], capacity: usize, limit: usize) -> Vec<Read> {
    let mut reader = BufReader::with_capacity(capacity, data);
    let mut out = Vec::new();
    loop {
        match read_line_limited(&mut reader, limit) {
            Ok(Some(line)) => out.push(Read::Line(line)),
            Ok(None) => return out,
            Err(LineError::TooLong(n)) => {
                assert_eq!(n, limit);
                out.push(Read::TooLong);
                return out;
            }
            Err(LineError::Io(e)) => panic!("a slice cannot fail: {e}"),
        }
    }
}

fn async_lines(data: &[u8], capacity: usize) -> Vec<Read> {
    async_lines_limit(data, capacity, LIMIT)
}

fn async_lines_limit(data: &[u8], capacity: usize, limit: usize) -> Vec<Read> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    });
    rt.block_on(async {
        let mut reader = tokio::io::BufReader::with_capacity(capacity, data);
        let mut out = Vec::new();
        loop {
            match read_line_limited_async(&mut reader, limit).await {
                Ok(Some(line)) => out.push(Read::Line(line)),
                Ok(None) => return out,
                Err(LineError::TooLong(_)) => {
                    out.push(Read::TooLong);
                    return out;
                }
                Err(LineError::Io(e)) => panic!("a slice cannot fail: {e}"),
            }
        }
    })
}

/// The lines read are the input's, whole: without a refusal, every line plus its newline is
/// exactly the input (a last line may lack its newline); after `TooLong`, the lines before it are
/// the input's beginning and the next line of the input really is longer than `limit`. No line is
/// over the limit or holds a newline.
fn check_lines(data: &[u8], reference: &[Read], limit: usize) {
    let mut consumed = Vec::new();
    for read in reference {
        if let Read::Line(line) = read {
            assert!(line.len() <= limit, "line over the limit");
            assert!(!line.contains(&b'\n'), "line contains a newline");
            consumed.extend_from_slice(line);
            consumed.push(b'\n');
        }
    }
    match reference.last() {
        Some(Read::TooLong) => {
            assert!(data.starts_with(&consumed), "lines before the refusal are not the input");
            let rest = &data[consumed.len()..];
            let next = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            assert!(next > limit, "a {next}-byte line refused (limit {limit})");
        }
        _ => {
            let mut whole = data.to_vec();
            if whole.last().is_some_and(|&b| b != b'\n') {
                whole.push(b'\n');
            }
            assert_eq!(consumed, whole, "lines are not the input");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the buffer sizes, the rest is what the peer sent.
    let Some((&knob, data)) = data.split_first() else {
        return;
    };
    let small = 1 + (knob & 0x0f) as usize;
    let reference = sync_lines(data, 64 * 1024);
    assert_eq!(
        sync_lines(data, small),
        reference,
        "sync reader depends on buffer size"
    );
    assert_eq!(
        async_lines(data, small),
        reference,
        "async reader disagrees"
    );
    assert_eq!(
        async_lines(data, 64 * 1024),
        reference,
        "async reader disagrees"
    );

    check_lines(data, &reference, LIMIT);

    // The real limit: a line of MAX_RESPONSE_LINE + d bytes (d from the knob and the first data
    // byte, -128..=127) made of the input repeated, which libFuzzer's mutations would take very
    // long to grow: read whole up to the limit, refused above it, by both readers alike.
    if knob & 0x80 != 0 {
        let d = data.first().map_or(0, |&b| b as i8 as isize);
        let len = (MAX_RESPONSE_LINE as isize + d) as usize;
        let pattern: Vec<u8> = data.iter().copied().filter(|&b| b != b'\n').collect();
        let mut big: Vec<u8> = if pattern.is_empty() {
            vec![b'x'; len]
        } else {
            pattern.iter().copied().cycle().take(len).collect()
        };
        big.extend_from_slice(b"\n{\"result\":\"done\"}\n");
        let reference = sync_lines_limit(&big, 64 * 1024, MAX_RESPONSE_LINE);
        let expected_first = if len <= MAX_RESPONSE_LINE {
            Read::Line(big[..len].to_vec())
        } else {
            Read::TooLong
        };
        assert_eq!(reference.first(), Some(&expected_first), "a {len}-byte line");
        let capacity = 4096 * (1 + (knob & 0x0f) as usize);
        assert_eq!(sync_lines_limit(&big, capacity, MAX_RESPONSE_LINE), reference);
        assert_eq!(async_lines_limit(&big, capacity, MAX_RESPONSE_LINE), reference);
        check_lines(&big, &reference, MAX_RESPONSE_LINE);
    }

    // Every line, whole, as the primary decodes it (the real limit is larger; parsing is the same).
    for line in data.split(|&b| b == b'\n') {
        if let Ok(response) = serde_json::from_slice::<Response>(line) {
            let text = serde_json::to_string(&response).expect("encodes");
            assert!(!text.contains('\n'));
            let back: Response = serde_json::from_str(&text).expect("decodes");
            assert_eq!(back, response, "response does not round-trip");
        }
    }
});
