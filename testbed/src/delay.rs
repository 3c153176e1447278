//! A delay proxy for the test bed: the kernel's netem is not available on the machines we run on,
//! so a small user-space TCP forwarder stands in front of each node and adds a one-way delay.
//!
//! [`DelayProxy::start`] listens on every `(listen, target)` pair; each accepted connection gets
//! its own upstream connection and four threads (a reader and a writer per direction). A reader
//! stamps each chunk it reads with `arrival + delay` and hands it to the writer, which holds it
//! until that instant: chunks are pipelined, never serialised behind each other's delay, so a
//! bulk transfer sees latency, not a bandwidth cap. A round trip costs `2 × delay`.
//!
//! The TCP handshake is modelled too: the client's `connect()` returns at once (the kernel
//! answers for the listener), so the proxy opens the upstream connection only `3 × delay` later
//! — SYN, SYN-ACK and ACK, i.e. when a real server would have accepted — and whatever the client
//! sends before then waits. The server's first bytes (the SSH banner) thus reach the client
//! `2 RTT` after it called `connect`, as on a real network.
//!
//! The delay can be changed while connections are open ([`DelayProxy::set_delay`]); it applies
//! to chunks read after the change. Only loopback addresses; every thread ends when the proxy is
//! dropped (listeners woken, every socket shut down, bounded joins).

use crate::BedError;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the proxy waits for the upstream server to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read per chunk.
const CHUNK: usize = 64 * 1024;
/// How long `Drop` waits for the proxy's threads.
const JOIN_TIMEOUT: Duration = Duration::from_secs(3);

struct Shared {
    /// One-way delay in microseconds.
    delay_us: AtomicU64,
    stop: AtomicBool,
    /// Every socket of every live connection (both ends), to shut down on stop.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Connections accepted so far (for tests and reports).
    accepted: AtomicU64,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    fn track(&self, s: &TcpStream) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let clone = s.try_clone().ok()?;
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, clone);
        Some(id)
    }

    fn untrack(&self, id: u64) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        if let Ok(h) = std::thread::Builder::new()
            .name(name.into())
            .stack_size(128 * 1024)
            .spawn(f)
        {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            threads.retain(|t| !t.is_finished());
            threads.push(h);
        }
    }
}

/// A running set of delaying forwarders. Dropping it stops them.
pub struct DelayProxy {
    shared: Arc<Shared>,
    listeners: Vec<SocketAddr>,
    acceptors: Vec<JoinHandle<()>>,
}

impl DelayProxy {
    /// Listens on every `listen` address and forwards each connection to its `target`, adding
    /// `one_way` in each direction. Fails (and stops what it started) when an address is busy
    /// or not a loopback address.
    pub fn start(pairs: &[(SocketAddr, SocketAddr)], one_way: Duration) -> Result<Self, BedError> {
        let shared = Arc::new(Shared {
            delay_us: AtomicU64::new(one_way.as_micros() as u64),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let mut proxy = DelayProxy {
            shared,
            listeners: Vec::new(),
            acceptors: Vec::new(),
        };
        for &(listen, target) in pairs {
            if !listen.ip().is_loopback() || !target.ip().is_loopback() {
                return Err(BedError::Setup(format!(
                    "delay proxy: only loopback addresses ({listen} -> {target})"
                )));
            }
            let listener = TcpListener::bind(listen).map_err(|e| {
                BedError::Setup(format!("delay proxy: cannot listen on {listen}: {e}"))
            })?;
            let shared = proxy.shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("delay-accept-{listen}"))
                .spawn(move || accept_loop(listener, target, shared))
                .map_err(|e| BedError::Setup(format!("delay proxy: cannot start a thread: {e}")))?;
            proxy.listeners.push(listen);
            proxy.acceptors.push(h);
        }
        Ok(proxy)
    }

    /// Changes the one-way delay for chunks read from now on.
    pub fn set_delay(&self, one_way: Duration) {
        self.shared
            .delay_us
            .store(one_way.as_micros() as u64, Ordering::Relaxed);
    }

    /// The current one-way delay.
    pub fn delay(&self) -> Duration {
        self.shared.delay()
    }

    /// Connections accepted so far, on all listeners.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Live proxied connections (each counts its two sockets once).
    pub fn live_connections(&self) -> usize {
        self.shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            / 2
    }

    /// Shuts down every proxied connection (the listeners stay), e.g. to make sure no
    /// connection from an earlier measurement survives into the next.
    pub fn reset_connections(&self) {
        let socks: Vec<TcpStream> = self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in socks {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake every blocking accept().
        for addr in &self.listeners {
            let _ = TcpStream::connect_timeout(addr, Duration::from_millis(200));
        }
        self.reset_connections();
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let mut all: Vec<JoinHandle<()>> = self.acceptors.drain(..).collect();
        all.extend(
            self.shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..),
        );
        for h in all {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
            // A thread still running after the deadline is left detached: it holds only a
            // socket that is already shut down and ends at its next read or write.
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((client, _)) = accepted else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        shared.spawn("delay-conn", move || connection(client, target, s));
    }
}

/// What a reader hands its writer.
enum Msg {
    Data(Instant, Vec<u8>),
    Eof(Instant),
}

fn connection(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let accepted_at = Instant::now();
    let _ = client.set_nodelay(true);
    let Some(client_id) = shared.track(&client) else {
        return;
    };
    // Client -> server: start reading (and stamping) at once, deliver once connected.
    let (up_tx, up_rx) = mpsc::channel::<Msg>();
    let Ok(client_reader) = client.try_clone() else {
        shared.untrack(client_id);
        return;
    };
    {
        let s = shared.clone();
        shared.spawn("delay-read-up", move || reader(client_reader, up_tx, s));
    }
    // The TCP handshake a real network would have cost: SYN, SYN-ACK, ACK.
    let handshake = shared.delay() * 3;
    sleep_until(accepted_at + handshake, &shared);
    let server = match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(s) if !shared.stop.load(Ordering::SeqCst) => s,
        _ => {
            let _ = client.shutdown(Shutdown::Both);
            shared.untrack(client_id);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let Some(server_id) = shared.track(&server) else {
        let _ = client.shutdown(Shutdown::Both);
        shared.untrack(client_id);
        return;
    };
    let (down_tx, down_rx) = mpsc::channel::<Msg>();
    let (Ok(server_reader), Ok(server_writer), Ok(client_writer)) =
        (server.try_clone(), server.try_clone(), client.try_clone())
    else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        shared.untrack(client_id);
        shared.untrack(server_id);
        return;
    };
    {
        let s = shared.clone();
        shared.spawn("delay-read-down", move || reader(server_reader, down_tx, s));
    }
    // Whichever direction finishes last closes both sockets and forgets them.
    let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let finish = {
        let (client, server) = (client, server);
        move |shared: &Shared, remaining: &std::sync::atomic::AtomicUsize| {
            if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                shared.untrack(client_id);
                shared.untrack(server_id);
            }
        }
    };
    let finish = Arc::new(finish);
    {
        let (s, r, f) = (shared.clone(), remaining.clone(), finish.clone());
        shared.spawn("delay-write-down", move || {
            writer(down_rx, client_writer, &s);
            f(&s, &r);
        });
    }
    // This thread writes client -> server.
    writer(up_rx, server_writer, &shared);
    finish(&shared, &remaining);
}

fn reader(mut from: TcpStream, to: mpsc::Sender<Msg>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.send(Msg::Eof(Instant::now() + shared.delay()));
                return;
            }
            Ok(n) => {
                let due = Instant::now() + shared.delay();
                if to.send(Msg::Data(due, buf[..n].to_vec())).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
}

fn writer(from: mpsc::Receiver<Msg>, mut to: TcpStream, shared: &Shared) {
    loop {
        match from.recv() {
            Ok(Msg::Data(due, data)) => {
                sleep_until(due, shared);
                if to.write_all(&data).is_err() {
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
            }
            Ok(Msg::Eof(due)) => {
                sleep_until(due, shared);
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

fn sleep_until(t: Instant, shared: &Shared) {
    loop {
        let now = Instant::now();
        if now >= t || shared.stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_loopback() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn echo_round_trip_costs_two_delays() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let listen = free_loopback();
        let proxy = DelayProxy::start(&[(listen, target)], Duration::from_millis(25)).unwrap();
        let mut c = TcpStream::connect(listen).unwrap();
        c.set_nodelay(true).unwrap();
        // The first exchange pays the modelled handshake (the upstream connection opens 3
        // one-way delays after the accept) plus the way back: ≥ 100 ms. Lower bounds only: a
        // loaded machine may be slower, never faster.
        let t = Instant::now();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        let first = t.elapsed();
        assert_eq!(&buf, b"ping");
        assert!(first >= Duration::from_millis(95), "{first:?}");
        // Later exchanges: one round trip, ≥ 50 ms.
        let t = Instant::now();
        c.write_all(b"pong").unwrap();
        c.read_exact(&mut buf).unwrap();
        let rtt = t.elapsed();
        assert_eq!(&buf, b"pong");
        assert!(rtt >= Duration::from_millis(50), "{rtt:?}");
        // The delay can change on a live connection.
        proxy.set_delay(Duration::ZERO);
        c.write_all(b"zero").unwrap();
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"zero");
        assert_eq!(proxy.accepted(), 1);
        drop(c);
        drop(proxy);
    }

    #[test]
    fn refuses_non_loopback() {
        let target = free_loopback();
        let r = DelayProxy::start(
            &[("0.0.0.0:0".parse().unwrap(), target)],
            Duration::from_millis(1),
        );
        assert!(r.is_err());
    }
}
