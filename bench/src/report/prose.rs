//! The figures the report's prose quotes (findings from the anatomy of one connection, proposals
//! for certherd): differences and medians of this run, set as template values. A finding whose
//! figures were not measured is left out; a proposal shows a dash instead.

use super::fmt_s;
use super::template::Values;
use crate::measure::{key_auth, Results};

/// Sets every figure `bench/report-template.md` quotes under "Findings" and "What would make
/// certherd faster".
pub(crate) fn figures(r: &Results, v: &mut Values) {
    let g = |k: &str| r.median(&format!("anatomy/{k}"));
    let diff = |a: Option<f64>, b: Option<f64>| Some(fmt_s(a? - b?));
    let f = |x: Option<f64>| x.map(fmt_s);
    let dash = |x: Option<String>| x.unwrap_or_else(|| "–".to_owned());

    // Findings: a line is printed only when both of its figures exist.
    let both = |a: Option<f64>, b: Option<f64>| a.and(b).map(|_| ());
    let kex = both(g("new"), g("new_curve25519"));
    v.opt("kex_cost", kex.and(diff(g("new"), g("new_curve25519"))));
    v.opt("kex_new", kex.and(f(g("new"))));
    v.opt("kex_curve", kex.and(f(g("new_curve25519"))));
    let nagle = both(g("new_curve25519"), g("new_curve25519_nodelay"));
    v.opt(
        "nagle_client",
        nagle.and(diff(g("new_curve25519"), g("new_curve25519_nodelay"))),
    );
    v.opt("nagle_curve", nagle.and(f(g("new_curve25519"))));
    v.opt("nagle_both", nagle.and(f(g("new_curve25519_nodelay"))));
    v.set(
        "nagle_default_kex",
        diff(g("new"), g("new_nodelay"))
            .map(|d| {
                format!(" ({d} with the default kex, where the CPU-bound kex hides part of it)")
            })
            .unwrap_or_default(),
    );
    let server = both(g("mux_first"), g("mux_later"));
    v.opt(
        "nagle_server",
        server.and(diff(g("mux_first"), g("mux_later"))),
    );
    v.opt("mux_first", server.and(f(g("mux_first"))));
    v.opt("mux_later", server.and(f(g("mux_later"))));
    let over = both(g("mux_later"), g("agent_over_mux"));
    v.opt("over_mux_true", over.and(f(g("mux_later"))));
    v.opt("over_mux_agent", over.and(f(g("agent_over_mux"))));
    v.opt(
        "over_mux_agent_first",
        over.map(|()| dash(f(g("agent_first")))),
    );
    v.opt("proxy_overhead", diff(g("new_via_proxy_0ms"), g("new")));

    // Proposals: always printed, a dash for what was not measured.
    v.set(
        "p1_saving",
        dash(diff(g("new_curve25519"), g("new_curve25519_nodelay"))),
    );
    v.set("p1_curve", dash(f(g("new_curve25519"))));
    v.set("p1_nodelay", dash(f(g("new_curve25519_nodelay"))));
    v.set("p2_saving", dash(diff(g("new"), g("new_curve25519"))));
    v.set("p2_new", dash(f(g("new"))));
    v.set("p2_curve", dash(f(g("new_curve25519"))));
    v.set("p3_session", dash(f(g("master_session_agent"))));
    v.set("p3_master", dash(f(g("master_forced"))));
    v.set("p3_agent", dash(f(g("agent_first"))));
    v.set(
        "p3_sum",
        dash(
            g("master_forced")
                .zip(g("agent_first"))
                .map(|(a, b)| fmt_s(a + b)),
        ),
    );
    v.set("p3_stall", dash(diff(g("mux_first"), g("mux_later"))));
    v.set("p3_mux_first", dash(f(g("mux_first"))));
    v.set("p3_mux_later", dash(f(g("mux_later"))));
    v.set("p4_warm", dash(f(r.median(&key_auth("warm", 1, 20)))));
    v.set("p5_check", dash(f(g("mux_check"))));
    v.set("p6_agent", dash(f(g("agent_over_mux"))));
    v.set("p7_hook_end", dash(f(r.median("renew/hook_end"))));
    v.set("p7_serving", dash(f(r.median("renew/serving"))));
}
