//! The self-check: fetch `http://DOMAIN/.well-known/acme-challenge/TOKEN` through each node's own
//! address, the way the CA would, and compare the body with the key authorization.
//!
//! Like Let's Encrypt: at most 10 redirects, only http/https on ports 80/443, the body compared
//! after trimming whitespace, bodies read only up to a small limit. A redirect that points back
//! at the domain stays pinned to the node being checked, because the CA's perspective that
//! reached this node would resolve the same name again and may well land on it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Url;

use crate::names::{Domain, KeyAuthorization, Token};

/// Let's Encrypt follows at most this many redirects.
pub const MAX_REDIRECTS: usize = 10;
/// Bytes of body we read; a correct answer is under 200.
const MAX_BODY: usize = 4096;
/// One HTTP attempt may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A node as the self-check sees it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Node name for messages.
    pub node: String,
    /// `host:port` of its HTTP listener.
    pub http: String,
    /// `host:port` of its HTTPS listener (for redirects to https).
    pub https: String,
    /// A failure on an optional node only warns.
    pub optional: bool,
}

/// Why a node could not be reached, classified from the typed error where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// Nothing listens on the port (the connection was refused).
    Refused,
    /// An `https` URL (after a redirect) that did not work.
    Tls,
    /// Anything else: resolution, a timeout, a broken body.
    Other,
}

impl CheckFailure {
    fn unreachable(cause: NoAnswer, message: String) -> Self {
        CheckFailure::Unreachable { cause, message }
    }
}

/// Whether an error or one of its sources is a refused TCP connection.
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Why a node did not answer with the key authorization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// TCP or TLS failed.
    #[error("unreachable: {message}")]
    Unreachable {
        /// What failed, decided where the error was seen.
        cause: NoAnswer,
        /// The URL, address and error chain.
        message: String,
    },
    /// A status other than 200 (404: token missing or location wrong; 403: permissions).
    #[error("HTTP {status} from {url}{}", hint(*status))]
    Status {
        /// HTTP status.
        status: u16,
        /// The URL that answered.
        url: String,
    },
    /// 200, but not the key authorization (another vhost or site answered).
    #[error("wrong body from {url}: got {got}, expected the key authorization")]
    WrongBody {
        /// The URL that answered.
        url: String,
        /// What it served, shortened.
        got: String,
    },
    /// The redirects came back to a URL already visited: every URL of the chain, in order,
    /// the repeated one last (a ring's hops name every node in it).
    #[error("redirect loop: {}", .0.join(" -> "))]
    RedirectLoop(Vec<String>),
    /// More than [`MAX_REDIRECTS`].
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    /// A redirect the CA would refuse (other scheme or port, unparsable Location).
    #[error("redirect the CA would refuse: {0}")]
    BadRedirect(String),
}

fn hint(status: u16) -> &'static str {
    match status {
        404 => " (token not there: webroot or acme location wrong, or the token never arrived)",
        403 => " (forbidden: the web server cannot read the token file or directory)",
        _ => "",
    }
}

/// One challenge to check on every node.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Host header and URL host.
    pub domain: Domain,
    /// Path component.
    pub token: Token,
    /// Expected body.
    pub key_authorization: KeyAuthorization,
}

/// A node's verdict for one expectation.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Which node.
    pub target: Target,
    /// Which name.
    pub domain: Domain,
    /// `Ok` or the last failure before the deadline.
    pub result: Result<(), CheckFailure>,
    /// From the first fetch to the verdict (retries and back-off included).
    pub elapsed: Duration,
    /// Fetches made (1 when the first one passed).
    pub attempts: u32,
}

/// Checks every (node, expectation) pair concurrently, each retrying until it passes or
/// `deadline` passes. The retry loop is bounded by the deadline; attempts back off to 1 s.
pub async fn check_all(
    targets: &[Target],
    expectations: &[Expectation],
    deadline: Duration,
) -> Vec<Verdict> {
    let pairs = targets
        .iter()
        .flat_map(|t| expectations.iter().map(move |e| (t.clone(), e.clone())))
        .collect();
    check_pairs(pairs, deadline).await
}

/// [`check_all`] for the given (node, expectation) pairs only, verdicts in the same order.
pub async fn check_pairs(pairs: Vec<(Target, Expectation)>, deadline: Duration) -> Vec<Verdict> {
    let until = Instant::now() + deadline;
    let mut tasks = tokio::task::JoinSet::new();
    let count = pairs.len();
    for (i, (target, exp)) in pairs.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut delay = Duration::from_millis(50);
            let started = Instant::now();
            let mut attempts = 0;
            loop {
                let result = fetch(&target, &exp).await;
                attempts += 1;
                if result.is_ok() || Instant::now() + delay >= until {
                    return (
                        i,
                        Verdict {
                            target,
                            domain: exp.domain,
                            result,
                            elapsed: started.elapsed(),
                            attempts,
                        },
                    );
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        });
    }
    let mut verdicts = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(v) = joined {
            verdicts.push(v);
        }
    }
    verdicts.sort_by_key(|(i, _)| *i);
    verdicts.into_iter().map(|(_, v)| v).collect()
}

/// One attempt: GET through the node, following redirects like the CA.
pub async fn fetch(target: &Target, exp: &Expectation) -> Result<(), CheckFailure> {
    fetch_over(target, exp, None).await
}

/// A client for the hops pinned to one node's HTTP address that keeps its connection open
/// between requests (HTTP/1.1 keep-alive): the warm holder's, so that a later check costs the
/// request's round trip, not a TCP connect as well. One idle connection at most.
pub fn kept_client() -> Result<reqwest::Client, CheckFailure> {
    base_client()
        .pool_max_idle_per_host(1)
        .http1_only()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| CheckFailure::unreachable(NoAnswer::Other, e.to_string()))
}

/// [`fetch`], with the hops that go to the node's own HTTP address sent over `kept` (from
/// [`kept_client`]) when given: to the node's address, with the domain as `Host`, which is
/// what a request to the domain pinned to that address sends. Other hops as in [`fetch`].
pub async fn fetch_over(
    target: &Target,
    exp: &Expectation,
    kept: Option<&reqwest::Client>,
) -> Result<(), CheckFailure> {
    let domain = exp.domain.as_str();
    let mut url = Url::parse(&format!(
        "http://{domain}/.well-known/acme-challenge/{}",
        exp.token
    ))
    .map_err(|e| CheckFailure::BadRedirect(e.to_string()))?;
    let mut seen = HashSet::new();
    let mut hops = Vec::new();
    for _ in 0..=MAX_REDIRECTS {
        hops.push(url.to_string());
        if !seen.insert(url.to_string()) {
            return Err(CheckFailure::RedirectLoop(hops));
        }
        let pinned_http = url.scheme() == "http" && url.host_str() == Some(domain);
        let response = match kept {
            Some(kept) if pinned_http => direct(kept, &url, target, domain).await?,
            _ => {
                let client = client_for(&url, target, domain).await?;
                request(&client, &url, target, domain).await?
            }
        };
        let response = response.send().await.map_err(|e| {
            let cause = if connection_refused(&e) {
                NoAnswer::Refused
            } else if url.scheme() == "https" {
                NoAnswer::Tls
            } else {
                NoAnswer::Other
            };
            CheckFailure::unreachable(
                cause,
                format!(
                    "{} ({}): {}",
                    url,
                    pinned_addr(&url, target, domain),
                    error_chain(&e)
                ),
            )
        })?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    CheckFailure::BadRedirect(format!(
                        "HTTP {} from {url} without Location",
                        status.as_u16()
                    ))
                })?;
            let next = url
                .join(location)
                .map_err(|e| CheckFailure::BadRedirect(format!("Location {location:?}: {e}")))?;
            if !matches!(next.scheme(), "http" | "https")
                || !matches!(next.port(), None | Some(80) | Some(443))
            {
                return Err(CheckFailure::BadRedirect(format!(
                    "{next} (only http/https on ports 80/443)"
                )));
            }
            url = next;
            continue;
        }
        if status.as_u16() != 200 {
            return Err(CheckFailure::Status {
                status: status.as_u16(),
                url: url.to_string(),
            });
        }
        let body = read_limited(response)
            .await
            .map_err(|e| CheckFailure::unreachable(NoAnswer::Other, format!("{url}: {e}")))?;
        let text = String::from_utf8_lossy(&body);
        return if text.trim() == exp.key_authorization.as_str() {
            Ok(())
        } else {
            Err(CheckFailure::WrongBody {
                url: url.to_string(),
                got: crate::text::printable(text.trim()),
            })
        };
    }
    Err(CheckFailure::TooManyRedirects)
}

fn pinned_addr(url: &Url, target: &Target, domain: &str) -> String {
    match (url.host_str() == Some(domain), url.scheme()) {
        (true, "https") => target.https.clone(),
        (true, _) => target.http.clone(),
        _ => url.host_str().unwrap_or("?").to_owned(),
    }
}

/// The request for one hop. An IP-address identifier (RFC 8738) cannot be pinned by name
/// resolution: the request goes to the node's own address with the identifier as `Host`, as
/// the CA's would reach whichever node holds that address (a VIP moves between them).
async fn request(
    client: &reqwest::Client,
    url: &Url,
    target: &Target,
    domain: &str,
) -> Result<reqwest::RequestBuilder, CheckFailure> {
    if url.host_str() != Some(domain) || domain.parse::<std::net::IpAddr>().is_err() {
        return Ok(client.get(url.clone()));
    }
    direct(client, url, target, domain).await
}

/// The request for a hop pinned to the node, sent to the node's own address with the domain
/// as `Host` (the same request line and header as a request to the domain resolved there).
async fn direct(
    client: &reqwest::Client,
    url: &Url,
    target: &Target,
    domain: &str,
) -> Result<reqwest::RequestBuilder, CheckFailure> {
    let node = resolve_first(&pinned_addr(url, target, domain)).await?;
    let mut direct = url.clone();
    let _ = direct.set_ip_host(node.ip());
    let _ = direct.set_port(Some(node.port()));
    Ok(client
        .get(direct)
        .header(reqwest::header::HOST, url.host_str().unwrap_or(domain)))
}

/// A client for one hop: the domain pinned to the node's address for that scheme; certificates
/// not verified, as the CA does not verify them on HTTP-01 redirects either.
async fn client_for(
    url: &Url,
    target: &Target,
    domain: &str,
) -> Result<reqwest::Client, CheckFailure> {
    let mut builder = base_client();
    if url.host_str() == Some(domain) {
        let addr = pinned_addr(url, target, domain);
        builder = builder.resolve(domain, resolve_first(&addr).await?);
    }
    builder
        .build()
        .map_err(|e| CheckFailure::unreachable(NoAnswer::Other, e.to_string()))
}

/// Opens `kept`'s connection to the node's HTTP address before the first check needs it: one
/// request for the challenge path of `token`, with no `Host` of a domain, whatever it answers.
/// The connection is keyed by the address, as in [`fetch_over`], so that check reuses it.
pub async fn open_kept(
    kept: &reqwest::Client,
    target: &Target,
    token: &Token,
) -> Result<(), CheckFailure> {
    let node = resolve_first(&target.http).await?;
    let url = format!("http://{node}/.well-known/acme-challenge/{token}");
    let response = kept
        .get(&url)
        .send()
        .await
        .map_err(|e| CheckFailure::unreachable(NoAnswer::Other, format!("{url}: {e}")))?;
    // Read to the end: only a finished response gives its connection back for the next one.
    read_limited(response)
        .await
        .map(|_| ())
        .map_err(|e| CheckFailure::unreachable(NoAnswer::Other, format!("{url}: {e}")))
}

/// What every self-check client shares: no redirects of its own (the loop follows them like the
/// CA), no proxy, a bounded attempt.
fn base_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!(
            "certherd/",
            env!("CARGO_PKG_VERSION"),
            " self-check"
        ))
}

/// Like the CA, use the first address the name resolves to.
async fn resolve_first(addr: &str) -> Result<SocketAddr, CheckFailure> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| CheckFailure::unreachable(NoAnswer::Other, format!("cannot resolve {addr}")))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_BODY {
            body.truncate(MAX_BODY);
            break;
        }
    }
    Ok(body)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed port is told apart by the error's type (doctor's "port closed"), not its text.
    #[tokio::test]
    async fn a_closed_port_is_refused_by_type() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let target = Target {
            node: "n".into(),
            http: addr.clone(),
            https: addr,
            optional: false,
        };
        let token = Token::parse("tok").unwrap();
        let exp = Expectation {
            domain: Domain::parse("example.com").unwrap(),
            key_authorization: KeyAuthorization::for_token(&token, "tok.x").unwrap(),
            token,
        };
        let err = fetch(&target, &exp).await.unwrap_err();
        assert!(
            matches!(
                err,
                CheckFailure::Unreachable {
                    cause: NoAnswer::Refused,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
