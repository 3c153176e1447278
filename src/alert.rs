//! Alerts: a JSON POST to each webhook and InfluxDB line protocol to the Telegraf listener.
//! certbot exits 0 even when a deploy hook fails (certbot issue #8528), so this may be the only
//! signal a user gets: each delivery is retried (bounded), and an undeliverable alert is logged
//! but never changes the command's exit code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::AlertConfig;
use crate::text::{influx_string, influx_tag as tag};

const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// One node's part of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct NodeAlert {
    /// Node name.
    pub node: String,
    /// Whether the node serves the new certificate.
    pub ok: bool,
    /// Whether a failure here fails the deploy.
    pub required: bool,
    /// Version installed before.
    pub before: Option<u32>,
    /// Version installed now.
    pub version: Option<u32>,
    /// Wall time on this node.
    pub duration_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A deploy or sync, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct DeployAlert {
    /// `deploy` or `sync`.
    pub event: &'static str,
    /// Every required node serves the new certificate.
    pub ok: bool,
    /// The node that ran certherd.
    pub from: String,
    /// certbot lineage.
    pub lineage: String,
    /// Archive version deployed.
    pub version: u32,
    /// Certificate expiry (Unix seconds).
    pub not_after: Option<i64>,
    /// Per node.
    pub nodes: Vec<NodeAlert>,
    /// One human line (Slack/Mattermost-style webhooks show this).
    pub text: String,
}

impl DeployAlert {
    /// Builds the alert and its human line.
    pub fn new(
        event: &'static str,
        from: String,
        lineage: String,
        version: u32,
        not_after: Option<i64>,
        nodes: Vec<NodeAlert>,
    ) -> Self {
        let failed: Vec<String> = nodes
            .iter()
            .filter(|n| !n.ok)
            .map(|n| format!("{} ({})", n.node, n.error.as_deref().unwrap_or("failed")))
            .collect();
        let ok = nodes.iter().all(|n| n.ok || !n.required);
        let text = if failed.is_empty() {
            format!(
                "certherd {event} on {from}: {lineage} version {version} served by all {} nodes",
                nodes.len()
            )
        } else {
            format!(
                "certherd {event} on {from}: {lineage} version {version} FAILED on {}",
                failed.join("; ")
            )
        };
        DeployAlert {
            event,
            ok,
            from,
            lineage,
            version,
            not_after,
            nodes,
            text,
        }
    }

    /// InfluxDB line protocol: one point per node.
    pub fn influx_lines(&self, now_ns: u128) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "certherd_deploy,event={},lineage={},node={},from={} ok={},version={}i,duration_ms={}i",
                tag(self.event),
                tag(&self.lineage),
                tag(&n.node),
                tag(&self.from),
                n.ok,
                n.version.unwrap_or(0),
                n.duration_ms
            ));
            if let Some(t) = self.not_after {
                out.push_str(&format!(",not_after={t}i"));
            }
            if let Some(e) = &n.error {
                out.push_str(&format!(",error=\"{}\"", influx_string(e)));
            }
            out.push_str(&format!(" {now_ns}\n"));
        }
        out
    }
}

/// Sends the alert when it failed, or always with `on_success`.
pub async fn send(config: &AlertConfig, alert: &DeployAlert) {
    if alert.ok && !config.on_success {
        return;
    }
    let client = match reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            crate::error!("alert not sent: cannot build HTTP client: {e}");
            return;
        }
    };
    let body = serde_json::to_vec(alert).unwrap_or_default();
    for url in &config.webhook {
        deliver(&client, url, "application/json", body.clone()).await;
    }
    if let Some(url) = &config.influx {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        deliver(
            &client,
            url,
            "text/plain; charset=utf-8",
            alert.influx_lines(now).into_bytes(),
        )
        .await;
    }
}

async fn deliver(client: &reqwest::Client, url: &str, content_type: &str, body: Vec<u8>) {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match client
            .post(url)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                crate::verbose!("alert delivered to {url}");
                return;
            }
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * attempt as u64)).await;
        }
    }
    crate::error!("alert to {url} not delivered after {ATTEMPTS} attempts: {last}");
}
