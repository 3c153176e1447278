//! A real `influxd` (Debian's influxdb 1.x) standing in for Telegraf's listener: the same
//! `/write` line protocol, queryable afterwards. Started on a loopback address, stopped by PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Influx {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

impl Influx {
    /// Starts influxd with its data under `dir`, HTTP on `ip:8086`, and creates database `db`.
    pub fn start(dir: &Path, ip: &str, db: &str) -> Influx {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("influxdb.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"{ip}:8088\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [http]\n  bind-address = \"{ip}:8086\"\n  log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("influxd.log")).unwrap();
        let child = Command::new("/usr/bin/influxd")
            .arg("-config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(
                "influxd (Debian package influxdb) must be installed: run scripts/setup-debian.sh",
            );
        let mut influx = Influx {
            child,
            addr: format!("{ip}:8086"),
            dir: dir.into(),
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if influx
                .http("POST", &format!("/query?q=CREATE+DATABASE+{db}"), "")
                .is_ok_and(|(s, _)| s == 200)
            {
                break;
            }
            if let Ok(Some(status)) = influx.child.try_wait() {
                panic!(
                    "influxd exited with {status}: {}",
                    std::fs::read_to_string(dir.join("influxd.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < until,
                "influxd did not answer on {} within 20 s",
                influx.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        influx
    }

    /// The write URL certherd's `[alert] influx` takes.
    pub fn write_url(&self, db: &str) -> String {
        format!("http://{}/write?db={db}", self.addr)
    }

    /// Runs an InfluxQL query; returns the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let q: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (status, body) = self
            .http("GET", &format!("/query?db={db}&q={q}"), "")
            .expect("query influxd");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn http(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver: accepts POSTs on a loopback port and keeps their bodies.
pub struct Webhook {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Webhook {
    pub fn start(ip: &str) -> Webhook {
        let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = std::io::BufReader::new(&stream);
                let mut len = 0;
                let mut line = String::new();
                while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                keep.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Webhook { url, bodies }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}
