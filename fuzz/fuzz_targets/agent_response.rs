//! The primary's side of the channel: whatever a (compromised, broken) peer sends back is cut
//! into lines by the same size-limited readers and decoded as a `Response`.
//!
//! Properties: the sync and the async line readers agree on every input and every buffer size
//! (the primary uses the async one, the agent the sync one); no line is longer than the limit or
//! contains a newline; the lines read are exactly the input's, in order; a decoded answer
//! re-encodes to one line and decodes to itself.
#![no_main]

use std::io::BufReader;

use certherd::wire::{read_line_limited, read_line_limited_async, LineError, Response};
use libfuzzer_sys::fuzz_target;

/// Small on purpose: the fuzzer reaches "longer than the limit" and chunk boundaries quickly.
const LIMIT: usize = 64;

#[derive(Debug, PartialEq)]
enum Read {
    Line(Vec<u8>),
    TooLong,
}

fn sync_lines(data: &[u8], capacity: usize) -> Vec<Read> {
    let mut reader = BufReader::with_capacity(capacity, data);
    let mut out = Vec::new();
    loop {
        match read_line_limited(&mut reader, LIMIT) {
            Ok(Some(line)) => out.push(Read::Line(line)),
            Ok(None) => return out,
            Err(LineError::TooLong(n)) => {
                assert_eq!(n, LIMIT);
                out.push(Read::TooLong);
                return out;
            }
            Err(LineError::Io(e)) => panic!("a slice cannot fail: {e}"),
        }
    }
}

fn async_lines(data: &[u8], capacity: usize) -> Vec<Read> {
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
            match read_line_limited_async(&mut reader, LIMIT).await {
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

    let mut consumed = Vec::new();
    for read in &reference {
        if let Read::Line(line) = read {
            assert!(line.len() <= LIMIT, "line over the limit");
            assert!(!line.contains(&b'\n'), "line contains a newline");
            consumed.extend_from_slice(line);
            consumed.push(b'\n');
        }
    }
    // What was read is the input's prefix, line by line (the last line may lack its newline).
    let n = consumed.len().min(data.len());
    assert_eq!(&consumed[..n], &data[..n], "lines are not the input");

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
