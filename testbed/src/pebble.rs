//! The CA: pebble (ACME server) and pebble-challtestsrv (its DNS, managed over HTTP).

use crate::BedError;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::proc::{run_ok, Daemon};

pub(crate) const PEBBLE: &str = "/usr/bin/pebble";
pub(crate) const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
pub(crate) const ACME_PORT: u16 = 14000;
pub(crate) const PEBBLE_MGMT_PORT: u16 = 15000;
pub(crate) const DNS_PORT: u16 = 8053;
pub(crate) const CHALL_MGMT_PORT: u16 = 8055;

pub(crate) struct CaPaths {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub config: PathBuf,
}

pub(crate) fn paths(root: &Path) -> CaPaths {
    let dir = root.join("ca");
    CaPaths {
        ca_pem: dir.join("ca.pem"),
        config: dir.join("pebble-config.json"),
        dir,
    }
}

/// Writes a small CA (EC P-256), a leaf for `IP:<ip>` signed by it, and pebble's config.
pub(crate) fn prepare(root: &Path, ip: Ipv4Addr) -> Result<CaPaths, BedError> {
    let p = paths(root);
    fs::create_dir_all(&p.dir).map_err(BedError::io("mkdir", &p.dir))?;
    let t = Duration::from_secs(20);
    let d = &p.dir;
    let ca_key = d.join("ca.key");
    let leaf_key = d.join("pebble.key");
    let leaf_csr = d.join("pebble.csr");
    let leaf_pem = d.join("pebble.pem");
    let ext = d.join("leaf.ext");
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "3650",
                "-subj",
                "/CN=certherd test bed CA",
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&p.ca_pem),
        t,
    )?;
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", "/CN=pebble"])
            .arg("-keyout")
            .arg(&leaf_key)
            .arg("-out")
            .arg(&leaf_csr),
        t,
    )?;
    fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n\
             subjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid\n\
             subjectAltName=IP:{ip},DNS:localhost\n"
        ),
    )
    .map_err(BedError::io("write", &ext))?;
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "825", "-set_serial", "2"])
            .arg("-in")
            .arg(&leaf_csr)
            .arg("-CA")
            .arg(&p.ca_pem)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&leaf_pem),
        t,
    )?;
    let cfg = serde_json::json!({
        "pebble": {
            "listenAddress": format!("{ip}:{ACME_PORT}"),
            "managementListenAddress": format!("{ip}:{PEBBLE_MGMT_PORT}"),
            "certificate": leaf_pem,
            "privateKey": leaf_key,
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    fs::write(&p.config, serde_json::to_vec_pretty(&cfg).expect("json"))
        .map_err(BedError::io("write", &p.config))?;
    Ok(p)
}

pub(crate) fn spawn_challtestsrv(root: &Path, ip: Ipv4Addr) -> Result<Daemon, BedError> {
    let p = paths(root);
    Daemon::spawn(
        "pebble-challtestsrv",
        Command::new(CHALLTESTSRV)
            .arg("-dns01")
            .arg(format!("{ip}:{DNS_PORT}"))
            .arg("-management")
            .arg(format!("{ip}:{CHALL_MGMT_PORT}"))
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .arg("-defaultIPv4")
            .arg(ip.to_string())
            .args(["-defaultIPv6", ""])
            .current_dir(&p.dir),
        &p.dir.join("challtestsrv.log"),
    )
}

pub(crate) fn spawn_pebble(root: &Path, ip: Ipv4Addr) -> Result<Daemon, BedError> {
    let p = paths(root);
    Daemon::spawn(
        "pebble",
        Command::new(PEBBLE)
            .arg("-config")
            .arg(&p.config)
            .arg("-dnsserver")
            .arg(format!("{ip}:{DNS_PORT}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .current_dir(&p.dir),
        &p.dir.join("pebble.log"),
    )
}

/// One HTTP/1.0 POST with a JSON body to challtestsrv's management API; Ok on 2xx.
pub(crate) fn mgmt_post(
    ip: Ipv4Addr,
    path: &str,
    body: &serde_json::Value,
) -> Result<(), BedError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(ip, CHALL_MGMT_PORT));
    let body = body.to_string();
    let what = format!("POST http://{addr}{path} {body}");
    let t = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, t)
        .map_err(|e| BedError::Setup(format!("{what}: connect: {e}")))?;
    let _ = s.set_read_timeout(Some(t));
    let _ = s.set_write_timeout(Some(t));
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| BedError::Setup(format!("{what}: write: {e}")))?;
    let mut resp = Vec::new();
    let deadline = Instant::now() + t;
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(BedError::Setup(format!("{what}: read: {e}"))),
        }
        if Instant::now() > deadline || resp.len() > 1 << 20 {
            break;
        }
    }
    let resp = String::from_utf8_lossy(&resp);
    let status_line = resp.lines().next().unwrap_or("");
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(BedError::Setup(format!(
            "{what}: unexpected answer {:?}",
            resp.trim()
        )))
    }
}
