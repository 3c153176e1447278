//! A cheap look at which certificate a node serves, for the polls that wait for a reload to
//! take. openssl ([`super::served_serial`]) starts OpenSSL 3, about 35 ms of CPU a process, so
//! a wait that polled it every 20 ms kept a core busy for as long as it waited (the watch test
//! of tests/operate.rs: 720 openssl starts, 25 of its 43 s of CPU; tests/crash.rs: 3800), on a
//! 2-core machine that runs three test binaries at once. This handshake runs in the test
//! process (rustls, no process started) and costs a few milliseconds. It only says when asking
//! openssl is worth it: every served serial a test asserts is still openssl's.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::Bed;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

/// How long one probe may take: a node that is restarting answers nothing, and the caller polls
/// again.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The serial of the leaf certificate node `n` hands out on :443 for `sni`, lower-case hex
/// without leading zero bytes as `openssl x509 -serial` prints it (and `served_serial` returns
/// it); `None` when no handshake completed.
pub fn probe_serial(bed: &Bed, n: usize, sni: &str) -> Option<String> {
    let ip = IpAddr::V4(bed.ip(n));
    let mut sock = TcpStream::connect_timeout(&SocketAddr::new(ip, 443), PROBE_TIMEOUT).ok()?;
    sock.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    sock.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let name = ServerName::try_from(sni.to_owned()).ok()?;
    // The served check's own client config: any certificate accepted (the point is to see the
    // wrong one too), the handshake's signatures checked, no session resumed.
    let config = certherd::tls::client_config().ok()?;
    let mut conn = ClientConnection::new(config, name).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    let leaf = conn.peer_certificates()?.first()?.clone();
    // Say goodbye as s_client does, so the node's log shows no aborted handshake.
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    serial_hex(&leaf)
}

/// The serial of the first certificate in PEM text (what `openssl s_client` prints), as
/// [`probe_serial`] gives it; `None` when there is none.
pub fn pem_serial(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let begin = text.find("-----BEGIN CERTIFICATE-----")?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(text[begin..].as_bytes()).ok()?;
    serial_hex(&pem.contents)
}

/// `openssl x509 -serial`'s digits for a DER certificate: the INTEGER's content bytes without
/// the 0x00 DER puts before a high first byte, lower-cased.
fn serial_hex(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let raw = cert.tbs_certificate.raw_serial();
    let raw = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => raw,
    };
    Some(raw.iter().map(|b| format!("{b:02x}")).collect())
}
