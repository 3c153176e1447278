//! What a node actually serves: a TLS handshake with SNI to its HTTPS address, returning the
//! leaf certificate. No verification — we compare fingerprints ourselves, and the point is to
//! see the certificate even when it is the wrong one.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate; we only look at it.
#[derive(Debug)]
struct LookOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for LookOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why no leaf certificate came back. Typed so that the served check can tell what waiting may
/// fix (a node still reloading: nothing listens, no answer yet) from what it cannot (a name
/// that is no valid SNI, a TLS alert such as `unrecognized_name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The name is no DNS name a client may send as SNI; nothing was sent.
    #[error("{name:?} cannot be sent as SNI (expected a DNS name)")]
    BadName {
        /// The name, escaped.
        name: String,
    },
    /// TCP connect failed (nothing listens: nginx stopped or restarting).
    #[error("connect {addr}: {reason}")]
    Connect {
        /// Where.
        addr: String,
        /// The OS error.
        reason: String,
    },
    /// The server refused the handshake with a fatal alert (`unrecognized_name`: no server
    /// block answers the name and the default one rejects unknown names).
    #[error("TLS handshake with {addr}: the server answered with the alert {alert}")]
    Alert {
        /// Where.
        addr: String,
        /// The alert's name.
        alert: String,
    },
    /// Any other handshake failure (connection reset mid-handshake, protocol error).
    #[error("TLS handshake with {addr}: {reason}")]
    Handshake {
        /// Where.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The handshake finished without a certificate.
    #[error("{addr} sent no certificate")]
    NoCertificate {
        /// Where.
        addr: String,
    },
    /// No answer in time.
    #[error("{addr}: no TLS answer within {timeout:?}")]
    Timeout {
        /// Where.
        addr: String,
        /// How long we waited.
        timeout: Duration,
    },
}

impl TlsError {
    /// Whether the same handshake can succeed later without anyone changing the server's
    /// configuration: true for "nothing answered (yet)", false for a refusal the server made
    /// on purpose or a name we will never send.
    pub fn may_change_by_waiting(&self) -> bool {
        matches!(
            self,
            TlsError::Connect { .. } | TlsError::Handshake { .. } | TlsError::Timeout { .. }
        )
    }
}

/// `name` as a server name we may send as SNI: a DNS name (IDNs in their `xn--` form), not an
/// IP address, not a wildcard, without the trailing dot RFC 6066 forbids in SNI.
pub fn sni_name(name: &str) -> Option<ServerName<'static>> {
    if name.parse::<std::net::IpAddr>().is_ok() || !name.is_ascii() || name.ends_with('.') {
        return None;
    }
    rustls::pki_types::DnsName::try_from(name.to_owned())
        .ok()
        .map(ServerName::DnsName)
}

/// The server name for a check of `name`: a DNS name (sent as SNI), or an IP address, which
/// TLS never carries as SNI (RFC 6066): rustls then sends no SNI at all, as a client reaching
/// an IP-address certificate (Let's Encrypt's `shortlived` profile) does.
pub fn server_name(name: &str) -> Option<ServerName<'static>> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ServerName::IpAddress(ip.into())),
        Err(_) => sni_name(name),
    }
}

/// The DER leaf certificate served at `addr` for `sni` (no SNI when it is an IP address),
/// within `timeout`.
pub async fn served_leaf(addr: &str, sni: &str, timeout: Duration) -> Result<Vec<u8>, TlsError> {
    let name = server_name(sni).ok_or_else(|| TlsError::BadName {
        name: crate::text::printable(sni),
    })?;
    let config = client_config().map_err(|reason| TlsError::Handshake {
        addr: addr.to_owned(),
        reason,
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| TlsError::Connect {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| handshake_error(addr, &e))?;
        let (_, session) = tls.get_ref();
        session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| TlsError::NoCertificate {
                addr: addr.to_owned(),
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(TlsError::Timeout {
                addr: addr.to_owned(),
                timeout,
            })
        })
}

/// The one client config every check shares: building it (the provider's suites, the
/// verifier) for each of 11,000 handshakes of a `status` was work and memory for nothing.
///
/// It never resumes a session: a resumed TLS 1.2 handshake carries no certificate, and rustls
/// then reports the one of the session it resumed. Nodes of one pool often share their ticket
/// key, and nginx keeps its session cache across a reload, so a check would see another node's
/// certificate, or the one a node served before its reload: a canary passing on the old pair.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LookOnly(provider)))
                .with_no_client_auth();
            config.resumption = rustls::client::Resumption::disabled();
            Ok(Arc::new(config))
        })
        .clone()
}

/// tokio-rustls wraps rustls' error in an `io::Error`: unwrap it to see whether the server
/// sent an alert.
fn handshake_error(addr: &str, e: &std::io::Error) -> TlsError {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(alert)) => TlsError::Alert {
            addr: addr.to_owned(),
            alert: alert_name(*alert),
        },
        _ => TlsError::Handshake {
            addr: addr.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// `UnrecognisedName` → `unrecognized_name`, the spelling of RFC 8446 and of nginx's logs.
fn alert_name(alert: rustls::AlertDescription) -> String {
    match alert {
        rustls::AlertDescription::UnrecognisedName => "unrecognized_name".into(),
        other => {
            let debug = format!("{other:?}");
            let mut out = String::new();
            for (i, c) in debug.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IP address is a server name rustls sends no SNI for; a DNS name is sent as SNI.
    #[test]
    fn an_ip_address_is_checked_without_sni() {
        assert!(matches!(
            server_name("127.0.1.2"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("2001:db8::1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("site.test"),
            Some(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name").is_none());
    }

    #[test]
    fn sni_names() {
        assert!(sni_name("a.wild.test").is_some());
        assert!(sni_name("xn--bcher-kva.test").is_some());
        assert!(sni_name("*.wild.test").is_none());
        assert!(sni_name("bücher.test").is_none());
        assert!(sni_name("127.0.0.1").is_none());
        assert!(sni_name("::1").is_none());
        assert!(sni_name("").is_none());
        assert!(sni_name("a b.test").is_none());
        assert!(sni_name("site.test.").is_none());
    }

    /// Two servers share their TLS 1.2 ticket key (as the nodes of a pool often do) and serve
    /// different certificates for the same name: each check sees the one its own server sends,
    /// also the second, which would accept the first one's ticket.
    #[tokio::test]
    async fn a_check_never_resumes_a_session() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;
        use tokio::io::AsyncWriteExt;

        let ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let (mut addrs, mut leaves) = (Vec::new(), Vec::new());
        for tag in ["a", "b"] {
            let (cert, key) = crate::pem::testing::pair(
                &format!("resume-{tag}"),
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            );
            let der = crate::pem::first_cert_der(&cert).unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![CertificateDer::from(der.clone())], key)
                .unwrap();
            config.ticketer = ticketer.clone();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap().to_string());
            leaves.push(der);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(mut tls) = acceptor.accept(tcp).await {
                            let _ = tls.shutdown().await;
                        }
                    });
                }
            });
        }
        let t = Duration::from_secs(10);
        for (i, server) in [0, 1, 0, 1].into_iter().enumerate() {
            let leaf = served_leaf(&addrs[server], "site.test", t).await.unwrap();
            assert!(
                leaf == leaves[server],
                "check {i}: server {server}'s certificate expected, got the other's"
            );
        }
    }

    #[test]
    fn what_waiting_can_fix() {
        let addr = "127.0.0.1:443".to_owned();
        assert!(!TlsError::BadName { name: "*.x".into() }.may_change_by_waiting());
        assert!(!TlsError::Alert {
            addr: addr.clone(),
            alert: alert_name(rustls::AlertDescription::UnrecognisedName),
        }
        .may_change_by_waiting());
        assert!(!TlsError::NoCertificate { addr: addr.clone() }.may_change_by_waiting());
        assert!(TlsError::Connect {
            addr: addr.clone(),
            reason: "refused".into()
        }
        .may_change_by_waiting());
        assert!(TlsError::Timeout {
            addr,
            timeout: Duration::from_secs(3)
        }
        .may_change_by_waiting());
        assert_eq!(
            alert_name(rustls::AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
    }
}
