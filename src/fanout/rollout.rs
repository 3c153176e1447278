//! Two phases across the fleet, and canaries (issue 19 item 4): the gate every peer session of a
//! batch push ([`super::batch`]) waits at between its `stage`s and its `commit`.
//!
//! Each peer session first tells the gate how many lineages its agent holds staged at once
//! (`hello`'s `max_staged`; 256 for an agent that does not say); the push goes in rounds of the
//! smallest such limit at the gate (1,000 lineages: one round, where every agent is current).
//! Each peer session stages its share of a round, then reports to the gate what it staged and
//! why the rest did not. The gate decides once every peer has reported (or given up, or said
//! nothing for the SSH request timeout): a lineage that a *required* peer could not stage is
//! committed nowhere — every peer that staged it discards it, and this node does not reload for
//! it — so a node that cannot take the files never leaves the fleet split between versions.
//! Optional peers never block.
//!
//! With canaries (`sync --canary N`, `[rollout] canary`), the first N peers at the gate (config
//! order) commit first; the gate then asks each over TLS ([`crate::served`]) whether it serves
//! the new version of every lineage it switched. Only then do the other peers and this node
//! commit. A canary that fails its commit or its check stops the rollout: every other peer
//! discards what it staged (the node keeps its old pair), this node does not reload, and every
//! later round is discarded too; the rows name the canary and why.
//!
//! An agent older than batches (no `commit`) installs each lineage on its own as before: it
//! waits at no gate, is never a canary and blocks nothing.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::plan::{bounded, checks_at_once, Planned, SERVE_DEADLINE};
use crate::config::{Config, Peer};
use crate::lineage::batch::MAX_STAGED;
use crate::served::{self, Served};

/// How a batch push switches the fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Peers that switch first and must serve the new version before the others switch; 0:
    /// none. More than the peers at the gate: every one of them, then this node.
    pub canary: usize,
}

impl Rollout {
    /// The config's own rule (`[rollout]`).
    pub fn of(config: &Config) -> Self {
        Rollout {
            canary: config.rollout.canary,
        }
    }
}

/// The rounds of a push of `count` lineages: plan indices, `size` at a time (the round size
/// the gate agreed on), so that no peer ever holds more staged than its agent accepts.
pub(super) fn rounds(count: usize, size: usize) -> Vec<Range<usize>> {
    let size = size.max(1);
    (0..count)
        .step_by(size)
        .map(|start| start..(start + size).min(count))
        .collect()
}

/// What one peer did with its share of a round; commit results for the canary check.
pub(super) type CommitSummary = Vec<(usize, Result<bool, String>)>;

/// The gate's answer to one peer for one round.
#[derive(Debug, Default)]
pub(super) struct Decision {
    /// Plans to switch now.
    pub commit: Vec<usize>,
    /// Plans staged there that go nowhere, with the row's reason.
    pub discard: Vec<(usize, String)>,
    /// A canary sends its commit results back here.
    pub committed: Option<oneshot::Sender<CommitSummary>>,
}

impl Decision {
    /// The gate is gone without an answer (the push ended): nothing staged is switched.
    fn abandoned(staged: &[usize]) -> Self {
        let why = "not switched: the fleet-wide gate ended without a decision".to_owned();
        Decision {
            discard: staged.iter().map(|&i| (i, why.clone())).collect(),
            ..Decision::default()
        }
    }
}

/// A peer's report for one round.
struct Report {
    round: usize,
    staged: Vec<usize>,
    /// Plans that did not stage there, with why.
    failed: HashMap<usize, String>,
    reply: oneshot::Sender<Decision>,
}

enum Event {
    /// One stage answered: the peer is alive (the gate's silence bound starts again).
    Progress,
    /// How many lineages the peer's agent holds staged at once.
    Limit(usize, usize),
    /// An agent without batches: it installs on its own and waits at no gate.
    Ungated(usize),
    /// The peer will report no more (session failed or over), with why.
    Gone(usize, String),
    Staged(usize, Report),
}

/// A peer session's place at the gate. Dropping it tells the gate the peer is gone.
pub(super) struct Seat {
    peer: usize,
    tx: mpsc::UnboundedSender<Event>,
    /// The round size, once the gate agreed on it.
    size: watch::Receiver<Option<usize>>,
    gone: bool,
}

impl Seat {
    /// Tells the gate that this peer's agent holds at most `max_staged` lineages staged, and
    /// waits for the round size the whole push keeps to (never more than `max_staged`). A gate
    /// that ended without deciding gets no stage from this peer worth switching: its reports
    /// will find the gate gone.
    pub async fn round_size(&mut self, max_staged: usize) -> usize {
        let max_staged = max_staged.clamp(1, MAX_STAGED);
        let _ = self.tx.send(Event::Limit(self.peer, max_staged));
        match self.size.wait_for(Option::is_some).await {
            Ok(size) => size.map_or(max_staged, |s| s.min(max_staged)),
            Err(_) => max_staged,
        }
    }

    /// One stage answered.
    pub fn progress(&self) {
        let _ = self.tx.send(Event::Progress);
    }

    /// This peer's agent has no batches (see the module docs).
    pub fn ungated(&self) {
        let _ = self.tx.send(Event::Ungated(self.peer));
    }

    /// The session failed: no more reports, for this reason.
    pub fn gone(&mut self, why: String) {
        if !self.gone {
            self.gone = true;
            let _ = self.tx.send(Event::Gone(self.peer, why));
        }
    }

    /// Reports what this peer staged in `round` and waits for the gate's decision.
    pub async fn report(
        &self,
        round: usize,
        staged: &[usize],
        failed: HashMap<usize, String>,
    ) -> Decision {
        let (reply, answer) = oneshot::channel();
        let report = Report {
            round,
            staged: staged.to_vec(),
            failed,
            reply,
        };
        if self.tx.send(Event::Staged(self.peer, report)).is_err() {
            return Decision::abandoned(staged);
        }
        answer.await.unwrap_or_else(|_| Decision::abandoned(staged))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.gone("its session ended".into());
    }
}

/// Where a peer stands at the gate.
#[derive(Default)]
struct Standing {
    ungated: bool,
    gone: Option<String>,
}

/// The fleet-wide gate of one push (see the module docs).
pub(super) struct Gate {
    rx: mpsc::UnboundedReceiver<Event>,
    tx: Option<mpsc::UnboundedSender<Event>>,
    /// The round size, for every seat, once agreed.
    size: watch::Sender<Option<usize>>,
    peers: Vec<Peer>,
    /// Per peer (same order): the plans it receives.
    receives: Vec<Vec<usize>>,
    standing: Vec<Standing>,
    /// Longest silence of the whole fleet while the gate waits for reports.
    silence: Duration,
    rollout: Rollout,
    /// Set by the first canary failure: every later lineage is discarded with it.
    stopped: Option<String>,
}

/// What the gate decided for this node: plans it must not switch, with the row's reason.
pub(super) type Blocked = HashMap<usize, String>;

impl Gate {
    pub fn new(
        peers: &[Peer],
        receives: Vec<Vec<usize>>,
        silence: Duration,
        rollout: Rollout,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Gate {
            rx,
            tx: Some(tx),
            size: watch::Sender::new(None),
            standing: peers.iter().map(|_| Standing::default()).collect(),
            peers: peers.to_vec(),
            receives,
            silence,
            rollout,
            stopped: None,
        }
    }

    /// The seat of peer `name` (None: not at this gate).
    pub fn seat(&self, name: &str) -> Option<Seat> {
        let peer = self.peers.iter().position(|p| p.name == name)?;
        Some(Seat {
            peer,
            tx: self.tx.clone()?,
            size: self.size.subscribe(),
            gone: false,
        })
    }

    /// Tells the gate, from outside any session, that `name` never reached its agent.
    pub fn teller(&self) -> impl Fn(&Peer, &crate::ssh::PeerError) + Clone + Send + Sync + 'static {
        let tx = self.tx.clone();
        let names: Arc<Vec<String>> = Arc::new(self.peers.iter().map(|p| p.name.clone()).collect());
        move |peer, e| {
            if let (Some(tx), Some(i)) = (&tx, names.iter().position(|n| *n == peer.name)) {
                let _ = tx.send(Event::Gone(i, e.to_string()));
            }
        }
    }

    /// Runs every round; returns what this node must not switch.
    pub async fn run(mut self, plans: Arc<Vec<Planned>>) -> Blocked {
        // Only seats and tellers keep the channel open from here.
        self.tx = None;
        let mut blocked = Blocked::new();
        let size = self.round_size().await;
        for (round, range) in rounds(plans.len(), size).into_iter().enumerate() {
            let reports = self.collect(round).await;
            let mut held = self.blocked(&range, &reports);
            self.decide(reports, &held, &plans).await;
            // A canary failed in this round: this node does not switch any of it either.
            if let Some(stop) = &self.stopped {
                for i in range {
                    held.entry(i)
                        .or_insert_with(|| format!("not switched: {stop}"));
                }
            }
            blocked.extend(held);
        }
        if let Some(why) = &self.stopped {
            crate::warn!("{why}");
        }
        blocked
    }

    /// The round size of this push, told to every seat: the smallest staging limit the peers at
    /// the gate announced, once each has announced one, gone ungated or gone, or the fleet was
    /// silent for the bound (a silent peer is given up on, as in a round).
    async fn round_size(&mut self) -> usize {
        let mut limits: Vec<Option<usize>> = self.peers.iter().map(|_| None).collect();
        let mut deadline = Instant::now() + self.silence;
        while let Some(event) = self
            .next_event(&mut deadline, |p| limits[p].is_some())
            .await
        {
            match event {
                Event::Limit(p, n) => limits[p] = Some(n),
                Event::Ungated(p) => self.standing[p].ungated = true,
                Event::Gone(p, why) => {
                    self.standing[p].gone.get_or_insert(why);
                }
                // No seat reports before it has its round size: nothing to answer yet.
                Event::Progress | Event::Staged(..) => {}
            }
        }
        let size = limits
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(MAX_STAGED)
            .clamp(1, MAX_STAGED);
        self.size.send_replace(Some(size));
        size
    }

    /// The next event while some peer at the gate has not `answered` (and is neither ungated
    /// nor gone); None once none is left, or once the fleet said nothing until `deadline`: then
    /// every peer still waited for is gone, silent. Each event moves the deadline on.
    async fn next_event(
        &mut self,
        deadline: &mut Instant,
        answered: impl Fn(usize) -> bool,
    ) -> Option<Event> {
        let waiting = (0..self.peers.len())
            .any(|p| !answered(p) && !self.standing[p].ungated && self.standing[p].gone.is_none());
        if !waiting {
            return None;
        }
        match tokio::time::timeout_at(*deadline, self.rx.recv()).await {
            Ok(Some(event)) => {
                *deadline = Instant::now() + self.silence;
                Some(event)
            }
            Ok(None) | Err(_) => {
                let why = format!(
                    "no word at the fleet-wide gate within {:?} (the SSH request timeout)",
                    self.silence
                );
                for (p, s) in self.standing.iter_mut().enumerate() {
                    if !answered(p) && !s.ungated && s.gone.is_none() {
                        s.gone = Some(why.clone());
                    }
                }
                None
            }
        }
    }

    /// Every peer's report for `round`, or its absence: gone, ungated, or silent too long.
    async fn collect(&mut self, round: usize) -> Vec<Option<Report>> {
        let mut reports: Vec<Option<Report>> = self.peers.iter().map(|_| None).collect();
        let mut deadline = Instant::now() + self.silence;
        loop {
            let answered: Vec<bool> = reports.iter().map(Option::is_some).collect();
            let Some(event) = self.next_event(&mut deadline, |p| answered[p]).await else {
                return reports;
            };
            match event {
                Event::Progress | Event::Limit(..) => {}
                Event::Ungated(p) => self.standing[p].ungated = true,
                Event::Gone(p, why) => {
                    self.standing[p].gone.get_or_insert(why);
                }
                // A report of a round already decided (its peer was given up on): dropped, so
                // that peer discards what it staged.
                Event::Staged(p, report)
                    if report.round == round && self.standing[p].gone.is_none() =>
                {
                    reports[p] = Some(report)
                }
                Event::Staged(..) => {}
            }
        }
    }

    /// The plans of `range` that some required peer at the gate could not stage (or, once the
    /// rollout stopped, all of them), each with its row's reason.
    fn blocked(&self, range: &Range<usize>, reports: &[Option<Report>]) -> Blocked {
        let mut held = Blocked::new();
        if let Some(stop) = &self.stopped {
            held.extend(range.clone().map(|i| (i, format!("not switched: {stop}"))));
            return held;
        }
        for (p, peer) in self.peers.iter().enumerate() {
            let standing = &self.standing[p];
            if peer.optional || standing.ungated {
                continue;
            }
            for &i in self.receives[p].iter().filter(|i| range.contains(i)) {
                let why = match (&standing.gone, &reports[p]) {
                    (Some(gone), _) => gone.clone(),
                    (None, Some(r)) if r.staged.contains(&i) => continue,
                    (None, Some(r)) => r
                        .failed
                        .get(&i)
                        .cloned()
                        .unwrap_or_else(|| "it was not staged".into()),
                    (None, None) => "no report at the gate".into(),
                };
                held.entry(i).or_insert_with(|| {
                    format!("not switched: {} could not stage it: {why}", peer.name)
                });
            }
        }
        held
    }

    /// Sends each peer its decision: canaries first and checked, then the others.
    async fn decide(&mut self, reports: Vec<Option<Report>>, held: &Blocked, plans: &[Planned]) {
        let mut canaries = Vec::new();
        let mut rest = Vec::new();
        for (p, report) in reports.into_iter().enumerate() {
            let Some(report) = report else { continue };
            if self.standing[p].gone.is_some() {
                continue;
            }
            let (commit, discard): (Vec<usize>, Vec<usize>) =
                report.staged.iter().partition(|i| !held.contains_key(i));
            let decision = Decision {
                commit,
                discard: discard.into_iter().map(|i| (i, held[&i].clone())).collect(),
                committed: None,
            };
            if canaries.len() < self.rollout.canary {
                canaries.push((p, report.reply, decision));
            } else {
                rest.push((report.reply, decision));
            }
        }
        if let Some(stop) = self.canaries(canaries, plans).await {
            let why = format!("not switched: {stop}");
            for (_, decision) in rest.iter_mut() {
                let commit = std::mem::take(&mut decision.commit);
                decision
                    .discard
                    .extend(commit.into_iter().map(|i| (i, why.clone())));
            }
            self.stopped = Some(stop);
        }
        for (reply, decision) in rest {
            let _ = reply.send(decision);
        }
    }

    /// Commits on the canaries, then checks what each serves; the reason the rollout stops, if
    /// it does.
    async fn canaries(
        &self,
        canaries: Vec<(usize, oneshot::Sender<Decision>, Decision)>,
        plans: &[Planned],
    ) -> Option<String> {
        let mut waiting = Vec::new();
        for (p, reply, mut decision) in canaries {
            let (tx, rx) = oneshot::channel();
            decision.committed = Some(tx);
            let _ = reply.send(decision);
            waiting.push((p, rx));
        }
        let mut failures = Vec::new();
        let mut checks = Vec::new();
        for (p, rx) in waiting {
            let name = &self.peers[p].name;
            match rx.await {
                Err(_) => failures.push(format!(
                    "{name}: its session ended before its commit answered"
                )),
                Ok(summary) => {
                    for (i, result) in summary {
                        match result {
                            Err(why) => failures
                                .push(format!("{name} did not switch {}: {why}", plans[i].lineage)),
                            Ok(true) => checks.push((p, i)),
                            Ok(false) => {}
                        }
                    }
                }
            }
        }
        if failures.is_empty() && !checks.is_empty() {
            let jobs = checks
                .iter()
                .map(|&(p, i)| {
                    (
                        self.peers[p].https_addr(),
                        plans[i].sni.clone(),
                        plans[i].versions.clone(),
                    )
                })
                .collect();
            let nodes = checks
                .iter()
                .map(|&(p, _)| p)
                .collect::<std::collections::BTreeSet<_>>();
            let served = bounded(
                jobs,
                checks_at_once(nodes.len()),
                |(addr, sni, versions)| async move {
                    served::check(&addr, sni.as_deref(), &versions, SERVE_DEADLINE).await
                },
            )
            .await;
            for ((p, i), check) in checks.into_iter().zip(served) {
                let verdict = match check.map(|c| c.served) {
                    Some(Served::New | Served::NoHttps) => continue,
                    Some(Served::None { error }) => format!("no certificate: {error}"),
                    Some(other) => other.word().to_owned(),
                    None => "the check did not finish".into(),
                };
                failures.push(format!(
                    "{} does not serve the new {} over TLS ({verdict})",
                    self.peers[p].name, plans[i].lineage
                ));
            }
        }
        let first = failures.first()?;
        let more = match failures.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(format!("rollout stopped: canary {first}{more}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, optional: bool) -> Peer {
        toml::from_str(&format!(
            "name = \"{name}\"\nhost = \"h\"\noptional = {optional}"
        ))
        .unwrap()
    }

    /// A gate of peers that each receive plans 0, 1 and 2, with its own sender closed (only
    /// the seats speak), and those seats.
    fn gate_with(peers: &[Peer], silence: Duration) -> (Gate, Vec<Seat>) {
        let mut gate = Gate::new(
            peers,
            vec![vec![0, 1, 2]; peers.len()],
            silence,
            Rollout::default(),
        );
        let seats = peers.iter().map(|p| gate.seat(&p.name).unwrap()).collect();
        gate.tx = None;
        (gate, seats)
    }

    /// The peer of `seat` reports, in the background, plans 0..3 staged except `failed`.
    fn report(seat: Seat, failed: &[usize]) -> tokio::task::JoinHandle<Decision> {
        let staged: Vec<usize> = (0..3).filter(|i| !failed.contains(i)).collect();
        let failed = failed.iter().map(|&i| (i, "refused".to_owned())).collect();
        tokio::spawn(async move { seat.report(0, &staged, failed).await })
    }

    /// Only a required peer that could not stage a plan holds it back; an optional one never
    /// does. The reason names the node.
    #[tokio::test]
    async fn only_required_peers_hold_a_lineage_back() {
        let peers = [peer("n2", false), peer("n3", true), peer("n4", false)];
        let (mut gate, seats) = gate_with(&peers, Duration::from_secs(30));
        let mut seats = seats.into_iter();
        let _n2 = report(seats.next().unwrap(), &[]);
        let _n3 = report(seats.next().unwrap(), &[0]);
        let _n4 = report(seats.next().unwrap(), &[1]);
        let reports = gate.collect(0).await;
        let held = gate.blocked(&(0..3), &reports);
        assert_eq!(
            held.keys().copied().collect::<Vec<_>>(),
            vec![1],
            "{held:?}"
        );
        assert_eq!(held[&1], "not switched: n4 could not stage it: refused");
    }

    /// A required peer that says nothing holds every plan back once the fleet was silent for
    /// the bound, and a peer whose session ended holds them back at once.
    #[tokio::test]
    async fn a_silent_or_gone_required_peer_holds_everything_back() {
        let peers = [peer("n2", false), peer("n3", false)];
        let (mut gate, seats) = gate_with(&peers, Duration::from_millis(200));
        let mut seats = seats.into_iter();
        let _n2 = report(seats.next().unwrap(), &[]);
        let _silent = seats.next().unwrap();
        let started = Instant::now();
        let reports = gate.collect(0).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        let held = gate.blocked(&(0..3), &reports);
        assert_eq!(held.len(), 3, "{held:?}");
        assert!(held[&0].contains("n3 could not stage it: no word at the fleet-wide gate"));

        let (mut gate, seats) = gate_with(&peers, Duration::from_secs(30));
        let mut seats = seats.into_iter();
        let _n2 = report(seats.next().unwrap(), &[]);
        drop(seats.next());
        let reports = gate.collect(0).await;
        let held = gate.blocked(&(0..3), &reports);
        assert!(
            held[&2].contains("n3 could not stage it: its session ended"),
            "{held:?}"
        );
    }

    /// Rounds cover every plan once, none larger than the agreed size.
    #[test]
    fn rounds_cover_every_plan_within_the_staging_limit() {
        assert!(rounds(0, 256).is_empty());
        assert_eq!(rounds(3, 256), vec![0..3]);
        assert_eq!(rounds(1000, MAX_STAGED), vec![0..1000]);
        assert_eq!(rounds(513, 256), vec![0..256, 256..512, 512..513]);
        assert_eq!(rounds(2, 0), vec![0..1, 1..2]);
    }

    /// The push goes in rounds of the smallest limit any peer announced; a peer that never
    /// announces one (silent, an agent without batches, gone) does not hold the others, and
    /// every seat learns the same size.
    #[tokio::test]
    async fn the_round_size_is_the_smallest_limit_at_the_gate() {
        let peers = [peer("n2", false), peer("n3", true), peer("n4", false)];
        let (mut gate, seats) = gate_with(&peers, Duration::from_secs(30));
        let mut seats = seats.into_iter();
        let (mut n2, mut n3, n4) = (
            seats.next().unwrap(),
            seats.next().unwrap(),
            seats.next().unwrap(),
        );
        let a = tokio::spawn(async move { n2.round_size(MAX_STAGED).await });
        let b = tokio::spawn(async move { n3.round_size(256).await });
        n4.ungated();
        assert_eq!(gate.round_size().await, 256);
        assert_eq!((a.await.unwrap(), b.await.unwrap()), (256, 256));

        // One peer silent: the others' smallest, once the bound is over.
        let (mut gate, seats) = gate_with(&peers[..2], Duration::from_millis(200));
        let mut seats = seats.into_iter();
        let mut n2 = seats.next().unwrap();
        let _silent = seats.next().unwrap();
        let a = tokio::spawn(async move { n2.round_size(700).await });
        assert_eq!(gate.round_size().await, 700);
        assert_eq!(a.await.unwrap(), 700);
        assert!(gate.standing[1].gone.is_some());
    }
}
