//! The agent's whole request path, as `certherd agent` runs it: bytes from the SSH channel are cut
//! into size-limited lines, each line is parsed and carried out by a real `Agent` whose webroot
//! and letsencrypt dir are a scratch directory (no [reload] commands), and each answer is encoded.
//!
//! Properties checked on every input, beyond "never panics":
//! - every answer encodes to one JSON line that decodes to the same answer;
//! - a refused request (too_large, malformed, unknown_op, invalid) changes nothing on disk;
//! - nothing is ever created outside `webroot/.well-known/acme-challenge/` and `letsencrypt/`;
//! - after `installed`, all four live links name the version, the live key matches the live
//!   certificate (no install of a pair whose key does not match), and a private key that is a
//!   file has mode 0600; no temp file is left behind by a finished request;
//! - lines up to the 1 MiB limit are read whole, longer ones are refused as too_large and
//!   change nothing (inputs starting with `\xffBIG` are expanded to lines at the limit ± 1 KiB);
//! - no renewal config written (the scratch node is a standby) contains a hook other than the
//!   node's own certherd, or a path outside its letsencrypt dir.
#![no_main]

use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use certherd::agent::Agent;
use certherd::wire::{
    parse_request, read_line_limited, ErrorKind, LineError, Request, Response, MAX_REQUEST_LINE,
};
use libfuzzer_sys::fuzz_target;

/// The scratch node: its directory and its config. The agent itself is made anew for every
/// input (one input, one SSH session: what it staged ends with it, as in `certherd agent`).
struct Bed {
    root: PathBuf,
    config: certherd::Config,
}

fn bed() -> &'static Bed {
    static BED: OnceLock<Bed> = OnceLock::new();
    BED.get_or_init(|| {
        // tmpfs when there is one: installs fsync every file, which on a disk costs most of the
        // time of an execution.
        let base = match std::path::Path::new("/dev/shm") {
            shm if shm.is_dir() => shm.to_owned(),
            _ => std::env::temp_dir(),
        };
        // libFuzzer ends with exit(), so earlier runs' scratch nodes are swept here instead.
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("certherd-fuzz-agent-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let root = base.join(format!("certherd-fuzz-agent-{}", std::process::id()));
        let config = format!(
            "name = \"fuzz\"\nstandby = true\nwebroot = \"{w}\"\nletsencrypt_dir = \"{l}\"\n",
            w = root.join("webroot").display(),
            l = root.join("letsencrypt").display(),
        );
        let config = certherd::Config::parse(&config, Path::new("fuzz.toml"))
            .expect("the fuzz bed's config parses");
        Bed { config, root }
    })
}

/// Every path under `dir` with its type, mode and content (or link target).
fn snapshot(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_symlink() {
        out.insert(
            dir.into(),
            format!("link {:?}", std::fs::read_link(dir).ok()),
        );
    } else if meta.is_dir() {
        out.insert(dir.into(), format!("dir {mode:o}"));
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            snapshot(&e.path(), out);
        }
    } else {
        out.insert(
            dir.into(),
            format!("file {mode:o} {:?}", std::fs::read(dir).ok()),
        );
    }
}

fn check_answer(
    bed: &Bed,
    request: Option<&Request>,
    response: &Response,
    before: &BTreeMap<PathBuf, String>,
) {
    let text = serde_json::to_string(response).expect("every answer encodes");
    assert!(!text.contains('\n'), "an answer must be one line: {text}");
    let back: Response = serde_json::from_str(&text).expect("every answer decodes");
    assert_eq!(&back, response, "answer does not round-trip");

    let mut after = BTreeMap::new();
    snapshot(&bed.root, &mut after);
    match response {
        Response::Error { kind, .. }
            if matches!(
                kind,
                ErrorKind::TooLarge
                    | ErrorKind::Malformed
                    | ErrorKind::UnknownOp
                    | ErrorKind::Invalid
            ) =>
        {
            assert_eq!(&after, before, "a refused request ({kind:?}) changed files");
        }
        Response::Installed(certherd::wire::Installed { after: v, .. }) => {
            let Some(Request::Install { lineage, .. }) = request else {
                panic!("`installed` answers an install request, not {request:?}");
            };
            let live = bed.root.join("letsencrypt/live").join(lineage.as_str());
            for kind in ["cert", "chain", "fullchain", "privkey"] {
                let link = live.join(format!("{kind}.pem"));
                let target = std::fs::read_link(&link).expect("live entries are symlinks");
                assert_eq!(
                    target,
                    PathBuf::from(format!("../../archive/{lineage}/{kind}{v}.pem")),
                    "{}",
                    link.display()
                );
            }
            let read = |k: &str| std::fs::read_to_string(live.join(format!("{k}.pem"))).unwrap();
            assert_eq!(
                certherd::pem::verify_pair(
                    &read("cert"),
                    &read("chain"),
                    &read("fullchain"),
                    &read("privkey"),
                    i64::MIN
                ),
                Ok(()),
                "installed a pair that does not verify"
            );
        }
        _ => {}
    }
    check_renewal_configs(bed, &after);
    for (path, what) in &after {
        let rel = path.strip_prefix(&bed.root).unwrap();
        let allowed = rel.starts_with("letsencrypt")
            || rel.starts_with("webroot")
                && (rel == Path::new("webroot/.well-known")
                    || rel.starts_with("webroot/.well-known/acme-challenge"));
        assert!(
            allowed || rel.as_os_str().is_empty() || rel == Path::new("webroot"),
            "created outside its place: {}",
            rel.display()
        );
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        assert!(
            !name.contains("certherd-tmp") && !name.contains("certherd-staged"),
            "temp or staged file left behind: {}",
            rel.display()
        );
        if name.starts_with("privkey") && what.starts_with("file") {
            assert!(
                what.starts_with("file 600 "),
                "private key {} is {what:.12}",
                rel.display()
            );
        }
    }
}

/// Every written renewal config: hooks are the node's own certherd, paths are below its
/// letsencrypt dir (`server` is a URL from its own `acme_servers`).
fn check_renewal_configs(bed: &Bed, after: &BTreeMap<PathBuf, String>) {
    let root = bed.root.join("letsencrypt");
    let exe = std::env::current_exe().unwrap();
    let own_hook = format!(
        "{} --config {} ",
        exe.display(),
        std::path::absolute("fuzz.toml").unwrap().display()
    );
    for path in after.keys().filter(|p| p.starts_with(root.join("renewal"))) {
        let Ok(conf) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in conf.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if key.contains("hook") {
                assert!(value.starts_with(&own_hook), "foreign hook in {}: {line}", path.display());
            } else if key != "server" && value.contains('/') {
                assert!(
                    value.starts_with(&format!("{}/", root.display())),
                    "path outside the letsencrypt dir in {}: {line}",
                    path.display()
                );
            }
        }
    }
}

/// Inputs that start with this are expanded into a line near the real 1 MiB limit, which
/// libFuzzer's mutations alone would take very long to reach (see [`expand`]).
const BIG: &[u8] = b"\xffBIG";

/// `BIG`, two bytes of a signed offset d, then a template `PREFIX \0 SUFFIX [\n REST]`: the
/// first line becomes PREFIX, then `a` padding, then SUFFIX, exactly `MAX_REQUEST_LINE + d`
/// bytes long (d in -1024..=1023), followed by REST. With d <= 0 the line must be read and
/// answered; with d > 0 it must be refused as too_large, changing nothing.
fn expand(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let rest = data.strip_prefix(BIG)?;
    let (&[hi, lo], rest) = rest.split_first_chunk::<2>()?;
    let d = (i16::from_be_bytes([hi, lo]) % 1024) as isize;
    let (first, tail) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, &[][..]),
    };
    let (prefix, suffix) = match first.iter().position(|&b| b == 0) {
        Some(i) => (&first[..i], &first[i + 1..]),
        None => (first, &[][..]),
    };
    let len = (MAX_REQUEST_LINE as isize + d) as usize;
    let pad = len.checked_sub(prefix.len() + suffix.len())?;
    let mut line = Vec::with_capacity(len + tail.len());
    line.extend_from_slice(prefix);
    line.resize(prefix.len() + pad, b'a');
    line.extend_from_slice(suffix);
    line.extend_from_slice(tail);
    Some((line, len))
}

fuzz_target!(|data: &[u8]| {
    let bed = bed();
    let agent = Agent::new(&bed.config);
    // A fresh node for every input, so a crash always reproduces from its input alone.
    let _ = std::fs::remove_dir_all(&bed.root);
    std::fs::create_dir_all(bed.root.join("webroot")).unwrap();
    std::fs::create_dir_all(bed.root.join("letsencrypt")).unwrap();

    let expanded = expand(data);
    let (data, first_len) = match &expanded {
        Some((line, len)) => (&line[..], Some(*len)),
        None => (data, None),
    };
    // Exactly what Agent::serve does with stdin, minus the process around it.
    let mut input = BufReader::with_capacity(64 * 1024, data);
    let mut consumed = 0;
    let mut first = true;
    loop {
        let mut before = BTreeMap::new();
        snapshot(&bed.root, &mut before);
        let read = read_line_limited(&mut input, MAX_REQUEST_LINE);
        if let (true, Some(len)) = (first, first_len) {
            // The generated line sits on the boundary: read whole up to the limit, refused above.
            match &read {
                Ok(Some(line)) => assert!(len <= MAX_REQUEST_LINE && line.len() == len),
                Err(LineError::TooLong(_)) => assert!(len > MAX_REQUEST_LINE),
                other => panic!("a {len}-byte line read as {:?}", other.as_ref().map(|l| l.as_ref().map(Vec::len))),
            }
        }
        first = false;
        match read {
            Ok(None) => break,
            Ok(Some(line)) => {
                consumed += line.len() + 1;
                let response = agent.handle_line(&line);
                let request = parse_request(&line).ok();
                check_answer(bed, request.as_ref(), &response, &before);
            }
            Err(LineError::TooLong(limit)) => {
                // What serve answers before it hangs up; the line really was over the limit.
                let rest = &data[consumed.min(data.len())..];
                let line_len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                assert!(line_len > limit, "a {line_len}-byte line refused as too long");
                let response = Response::error(
                    ErrorKind::TooLarge,
                    format!("request line longer than {limit} bytes refused"),
                );
                check_answer(bed, None, &response, &before);
                break;
            }
            Err(LineError::Io(e)) => panic!("reading a slice cannot fail: {e}"),
        }
    }
});
