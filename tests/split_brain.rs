//! Guarantee 2 of docs/GUARANTEES.md: an archive version already on a node is never
//! overwritten. Both sides renewed during a split brain: the primary made its version 2 and
//! node 2 its own version 2 (another key, made as the agent's account the way node 2's certbot
//! would have, and served by node 2). On the real bed (sshd, the agent as its account, nginx
//! through sudo):
//! - `deploy` refuses node 2 as a split brain, in the table (`SPLIT-BRAIN`), on stderr and in the
//!   JSON (`install`/`error_kind` `split_brain`, the error naming the node, the lineage and both
//!   leaf fingerprints), and changes nothing on node 2: its files, links and what it serves;
//! - `sync` resolves it without anyone editing files: node 2 keeps its own version whole under
//!   `archive/site.test/split-brain-2-…/`, takes the primary's as version 2, the JSON names what
//!   was kept, every node is consistent on version 2, and no name pairs a certificate with a key
//!   that is not its own;
//! - the numbering stays the primary's: node 2's certbot would count from 2, like the primary's,
//!   and the primary's next version 3 deploys to every node without a clash.
//!
//! The crash walk of the resolution is in tests/crash.rs.

mod common;
mod security;

use common::*;
use security::split_brain::*;
use security::*;

/// SHA-256 of node `n`'s archive `cert{v}.pem`, lower-case hex as certherd prints it (read with
/// openssl, independently of certherd).
fn leaf_fingerprint(bed: &Bed, n: usize, v: u32) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(
            bed.letsencrypt_dir(n)
                .join(format!("archive/{LINEAGE}/cert{v}.pem")),
        )
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    line.rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// Every file under node `n`'s letsencrypt dir with its bytes and every link with its target.
fn snapshot(bed: &Bed, n: usize) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![bed.letsencrypt_dir(n)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_symlink() {
                out.push((
                    p.clone(),
                    format!("-> {:?}", std::fs::read_link(&p).unwrap()),
                ));
            } else if !p.ends_with(".certherd.lock") {
                out.push((p.clone(), format!("{:?}", std::fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

fn node_row<'a>(report: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    report["nodes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["node"] == node))
        .unwrap_or_else(|| panic!("no row for {node}: {report}"))
}

#[test]
fn a_split_brain_is_named_by_deploy_and_resolved_by_sync_keeping_both_keys() {
    let bed = tls_bed(3);
    new_version(&bed, 2);
    let own_key = peer_own_version(&bed, 2, 2);
    let own_serial = installed_serial(&bed, 2, LINEAGE);
    let (primary_fp, own_fp) = (leaf_fingerprint(&bed, 1, 2), leaf_fingerprint(&bed, 2, 2));
    assert_ne!(primary_fp, own_fp);
    let before = snapshot(&bed, 2);

    // deploy: refused on node 2, named, nothing changed there; the others take version 2.
    let ran = bed
        .node(1)
        .certherd(["deploy", "--lineage", LINEAGE, "--format", "json"])
        .expect_status(1)
        .stderr_has(["node2", LINEAGE, "split brain", &primary_fp, &own_fp])
        .run();
    let report: serde_json::Value = ran.json();
    let row = node_row(&report, "node2");
    assert_eq!(row["install"], "split_brain", "{row}");
    assert_eq!(row["error_kind"], "split_brain", "{row}");
    assert_eq!(row["ok"], false, "{row}");
    let error = row["error"].as_str().unwrap_or_default();
    for word in ["split brain", &primary_fp, &own_fp] {
        assert!(
            error.contains(word),
            "the JSON error does not say {word:?}: {row}"
        );
    }
    assert_eq!(
        snapshot(&bed, 2),
        before,
        "the refused deploy changed node 2's files"
    );
    assert_eq!(served_serial(&bed, 2, LINEAGE), own_serial);
    assert_no_mismatched_pair(&bed, 2, "after deploy");
    assert_consistent(&bed, 3, 2, "deploy: node 3");

    // The table says it too, in the node's row.
    let ran = bed
        .node(1)
        .certherd(["deploy", "--lineage", LINEAGE])
        .expect_status(1)
        .run();
    ran.ensure(
        ran.stdout()
            .lines()
            .any(|l| l.starts_with("node2") && l.contains("SPLIT-BRAIN")),
        "node2's row says SPLIT-BRAIN",
    );
    assert_eq!(
        snapshot(&bed, 2),
        before,
        "the second deploy changed node 2's files"
    );

    // sync: resolved, both keys kept, one consistent version everywhere.
    let ran = bed
        .node(1)
        .certherd(["sync", "--format", "json"])
        .stderr_has(["split brain"])
        .run();
    let report: serde_json::Value = ran.json();
    let row = node_row(&report["lineages"][0], "node2");
    assert_eq!(row["install"], "ok", "{row}");
    let resolved = &row["split_brain"];
    assert_eq!(resolved["version"], 2, "{row}");
    assert_eq!(resolved["ours"], own_fp.as_str(), "{row}");
    assert_eq!(resolved["theirs"], primary_fp.as_str(), "{row}");
    let kept = resolved["kept"].as_str().unwrap_or_default().to_owned();
    assert!(
        kept.starts_with(&format!("archive/{LINEAGE}/split-brain-2-")),
        "{row}"
    );
    assert_all_consistent(&bed, &[2, 2, 2], "after sync");
    assert_eq!(served_serial(&bed, 2, LINEAGE), serial_of(&bed, 2));
    let key_at = assert_key_kept(&bed, 2, 2, &own_key, "after sync");
    assert_eq!(
        key_at,
        bed.letsencrypt_dir(2).join(&kept).join("privkey2.pem")
    );
    let kept_cert = std::fs::read(bed.letsencrypt_dir(2).join(&kept).join("cert2.pem")).unwrap();
    let own_cert = before
        .iter()
        .find(|(p, _)| p.ends_with(format!("archive/{LINEAGE}/cert2.pem")))
        .map(|(_, c)| c.clone())
        .unwrap();
    assert_eq!(
        format!("{kept_cert:?}"),
        own_cert,
        "node 2's own certificate kept whole"
    );
    assert!(assert_no_mismatched_pair(&bed, 2, "after sync") >= 4);
    assert!(staged_files(&bed.letsencrypt_dir(2)).is_empty());
    assert_eq!(
        certbot_max_version(&bed, 2),
        Some(2),
        "node 2's certbot counts from 2"
    );
    bed.node(1).certherd(["status", "--format", "json"]).run();

    // The primary's next version goes everywhere without a clash; what node 2 kept stays.
    new_version(&bed, 3);
    // deploy of 3.
    bed.node(1).certherd(["deploy", "--lineage", LINEAGE]).run();
    assert_all_consistent(&bed, &[3, 3, 3], "after the next renewal");
    assert_key_kept(&bed, 2, 2, &own_key, "after the next renewal");
    assert_eq!(certbot_max_version(&bed, 2), certbot_max_version(&bed, 1));
}
