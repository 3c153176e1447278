//! The primary treats agent responses as hostile too (SECURITY.md, "a malicious or broken
//! agent"): node 2's forced command is swapped for a script that answers with an oversized line,
//! garbage, an endless stream, a trickle, silence, a lie or forged log lines. Every case must end
//! within its deadline with exit 1, name node2 and the cause on one line, not panic, not echo the
//! flood, and leave the honest nodes' work done.
//!
//! Proves Guarantees 2, 3 and 5 of docs/GUARANTEES.md (the list there names each test).

mod common;
mod security;

use std::time::{Duration, Instant};

use common::*;
use security::*;

/// The hello answer of a real agent of this protocol.
const HELLO: &str = r#"{"result":"hello","agent_version":"0.1.0","protocol":1,"node":"node2","ops":["hello","put_token","remove_token","install"]}"#;

struct Case {
    name: &'static str,
    /// Shell script run by sshd instead of `certherd agent`.
    script: String,
    /// What stderr must say about node2.
    expect: &'static str,
}

/// Runs `run` (timed) and checks it failed node2 within `limit`: exit 1, one line naming node2
/// with `expect`, no panic, no echo of the peer's flood, nothing the peer forged. Every check
/// names the case (the transcript alone would show only its token).
fn check_bounded(name: &str, run: Exec<'_>, limit: Duration, expect: &str) {
    let start = Instant::now();
    let ran = run.any_status().run();
    let took = start.elapsed();
    let err = ran.stderr();
    ran.ensure(ran.code() == Some(1), format!("{name}: exit status 1"));
    ran.ensure(
        took < limit,
        format!("{name}: took {took:?} (limit {limit:?})"),
    );
    ran.ensure(
        err.lines()
            .any(|l| l.contains("node2") && l.contains(expect)),
        format!("{name}: expected a line naming node2 with {expect:?}"),
    );
    ran.ensure(!err.contains("panicked"), format!("{name}: panicked"));
    ran.ensure(
        err.len() < 4096 && ran.output.stdout.len() < 4096,
        format!(
            "{name}: the peer's flood was echoed ({} bytes of stderr)",
            err.len()
        ),
    );
    ran.ensure(
        !err.contains('\u{1b}') && !err.lines().any(|l| l.starts_with("FORGED")),
        format!("{name}: the peer controls the primary's terminal or log lines"),
    );
}

/// `auth` against a hostile node 2 (request timeout 3 s): each case fails node2 on one line within
/// its deadline while nodes 1 and 3 get the token.
#[test]
fn auth_survives_hostile_agent_answers() {
    let bed = bed(3, false);
    set_request_timeout(&bed, 1, "3s");
    let drain = "exec cat >/dev/null";
    let cases = [
        Case {
            name: "oversized line (2 MiB)",
            script: format!("head -c 2097152 /dev/zero | tr '\\0' x; echo; {drain}"),
            expect: "longer than 1048576 bytes",
        },
        Case {
            name: "endless line",
            script: "exec tr '\\0' x </dev/zero".into(),
            expect: "longer than 1048576 bytes",
        },
        Case {
            name: "endless lines (yes)",
            script: "exec yes".into(),
            expect: "bad response",
        },
        Case {
            name: "garbage",
            script: format!("printf 'HTTP/1.1 200 OK\\r\\n\\r\\n\\000\\377\\n'; {drain}"),
            expect: "bad response",
        },
        Case {
            name: "silence (stalled peer)",
            script: "exec sleep 30".into(),
            expect: "timed out after 3s",
        },
        Case {
            name: "trickle (a byte a second, never a newline)",
            script: "while :; do printf ' ' || exit; sleep 1; done".into(),
            expect: "timed out after 3s",
        },
        Case {
            name: "wrong answer to hello",
            script: format!("read l; printf '%s\\n' '{{\"result\":\"done\",\"changed\":true}}'; {drain}"),
            expect: "expected hello",
        },
        Case {
            name: "another protocol",
            script: format!(
                "read l; printf '%s\\n' '{}'; {drain}",
                HELLO.replace("\"protocol\":1", "\"protocol\":99")
            ),
            expect: "protocol 99",
        },
        Case {
            name: "hangs up at once",
            script: "exit 0".into(),
            expect: "closed the connection without answering",
        },
        Case {
            name: "forged log lines and terminal escapes in an error",
            script: format!(
                "read l; printf '%s\\n' '{HELLO}'; read l; printf '%s\\n' '{{\"result\":\"error\",\"kind\":\"io\",\"message\":\"disk\\nFORGED node3: ok\\u001b[2J\\r\"}}'; {drain}"
            ),
            expect: "disk",
        },
        Case {
            name: "claims the token is written, writes nothing",
            script: format!(
                "read l; printf '%s\\n' '{HELLO}'; read l; printf '%s\\n' '{{\"result\":\"done\",\"changed\":true}}'; {drain}"
            ),
            expect: "self-check",
        },
    ];
    let mut original = None;
    for (i, case) in cases.iter().enumerate() {
        let line = force_command(&bed, 2, &format!("case{i}"), &case.script);
        original.get_or_insert(line);
        let token = format!("hostile{i}");
        let validation = format!("{token}.thumb");

        check_bounded(
            case.name,
            bed.node(1).auth("site.test", &token, &validation),
            Duration::from_secs(25),
            case.expect,
        );
        for n in [1, 3] {
            assert!(
                has_token(&bed, n, &token, &validation),
                "{}: node {n}",
                case.name
            );
        }
        assert!(!has_token(&bed, 2, &token, &validation), "{}", case.name);
    }

    // The real agent back: nothing was lost, auth works again.
    restore_forced_command(&bed, 2, original.as_deref().unwrap());
    bed.node(1)
        .auth("site.test", "honest", "honest.thumb")
        .expect_status(0)
        .run();
}

/// `deploy` against a node 2 that answers hello correctly and then misbehaves during the
/// install: stalls, floods, or claims success without installing anything. Each time deploy
/// exits 1 within its deadline naming node2; node 3 is on version 2; node 2 still serves version
/// 1 (the served-certificate check catches the lie). The real agent back, `sync` catches node 2 up.
#[test]
fn deploy_survives_hostile_agent_answers() {
    let bed = tls_bed(3);
    set_request_timeout(&bed, 1, "3s");
    new_version(&bed, 2);
    let drain = "exec cat >/dev/null";
    let cases = [
        Case {
            name: "stalls during install",
            script: format!("read l; printf '%s\\n' '{HELLO}'; read l; exec sleep 30"),
            expect: "timed out after 3s",
        },
        Case {
            name: "oversized answer to install",
            script: format!(
                "read l; printf '%s\\n' '{HELLO}'; read l; head -c 2097152 /dev/zero | tr '\\0' x; echo; {drain}"
            ),
            expect: "longer than 1048576 bytes",
        },
        Case {
            name: "claims installed, installs nothing",
            script: format!(
                "read l; printf '%s\\n' '{HELLO}'; read l; printf '%s\\n' '{{\"result\":\"installed\",\"before\":1,\"after\":2,\"changed\":true}}'; {drain}"
            ),
            expect: "still serves another certificate",
        },
    ];
    let mut original = None;
    for (i, case) in cases.iter().enumerate() {
        let line = force_command(&bed, 2, &format!("deploy{i}"), &case.script);
        original.get_or_insert(line);

        check_bounded(
            case.name,
            bed.node(1).certherd(["deploy", "--lineage", LINEAGE]),
            Duration::from_secs(30),
            case.expect,
        );
        // Settled past nginx's reload overlap: node 3 just reloaded, and node 2 must still
        // serve version 1 once any reload it should not have had would show.
        let (v1, v2) = (serial_of(&bed, 1), serial_of(&bed, 2));
        assert_eq!(settled_serial(&bed, 3, LINEAGE, &v2), v2, "{}", case.name);
        assert_eq!(settled_serial(&bed, 2, LINEAGE, &v1), v1, "{}", case.name);
        assert_consistent(&bed, 2, 1, case.name);
    }

    restore_forced_command(&bed, 2, original.as_deref().unwrap());
    bed.node(1).certherd(["sync"]).expect_status(0).run();
    assert_consistent(&bed, 2, 2, "after sync");
    let v2 = serial_of(&bed, 2);
    assert_eq!(settled_serial(&bed, 2, LINEAGE, &v2), v2);
}
