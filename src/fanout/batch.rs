//! The batch push behind `sync` (issue 19): work by node, not by lineage. Each peer gets ONE
//! agent session carrying every lineage it receives — `stage` one by one (the files read from
//! disk as they go out: memory does not grow with the number of lineages), then one `commit`
//! per round (as many lineages as every agent at the gate holds staged: 1,024 where all are
//! current, 256 beside an older one): one config test and one reload on that node, however
//! many lineages. This node tests and reloads once when it does not serve them all yet. The
//! served checks then run concurrently after one settle window, not one per lineage.
//!
//! Between the stages and the commits every session waits at the fleet-wide gate
//! ([`super::rollout`]): a lineage a required peer could not stage is switched nowhere, and
//! canaries switch and are checked before the rest of the fleet.
//!
//! An agent that does not announce [`BATCH_OP`] in `hello` (an older certherd) gets one
//! `install` per lineage over the same session, as before (outside the gate).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::certs::{Deployment, Install, InstallFailure, StandbyFailure};
use super::plan::{bounded, checks_at_once, plan, Planned, SERVE_DEADLINE};
use super::rollout::{rounds, Blocked, CommitSummary, Gate, Rollout, Seat};
use super::NodeResult;
use crate::config::{Config, Peer};
use crate::error::Result;
use crate::lineage::batch::LEGACY_MAX_STAGED;
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::served::{self, Check, Served};
use crate::ssh::{AgentChannel, PeerError};
use crate::wire::{
    Announced, CommitOutcome, ErrorKind, Installed, Request, Response, BATCH_OP, DISCARD_OP,
};

/// How many request timeouts a commit that says `working` may take in all: enough for every
/// config test its halving search may run ([`crate::lineage::batch::MAX_TESTS`], 40), the
/// tests before and after it and the reload, each within one.
const COMMIT_BOUND: u32 = crate::lineage::batch::MAX_TESTS as u32 + 4;

/// One peer's answer per lineage it receives: plan index → installed, or why not.
type PeerResults = Vec<(usize, std::result::Result<Installed, InstallFailure>)>;

/// Pushes every lineage in `lineages` to every peer that receives it (see the module docs) and
/// returns one [`Deployment`] per lineage, rows as a per-lineage push gives them. The config's
/// own rollout rule (`[rollout]`: canaries) applies, and a split brain is resolved, as `sync`
/// does.
pub async fn push_all(config: &Config, lineages: &[LineageName]) -> Result<Vec<Deployment>> {
    push_with(config, lineages, Rollout::of(config), true).await
}

/// [`push_all`], where `resolve_split_brain` false refuses a split brain on that node instead
/// (named as `split_brain`, nothing written: what a deploy does, see docs/GUARANTEES.md 2).
pub async fn push_all_with(
    config: &Config,
    lineages: &[LineageName],
    resolve_split_brain: bool,
) -> Result<Vec<Deployment>> {
    push_with(config, lineages, Rollout::of(config), resolve_split_brain).await
}

/// [`push_all_with`] with its rollout rule given (`sync --canary N`).
pub async fn push_with(
    config: &Config,
    lineages: &[LineageName],
    rollout: Rollout,
    resolve_split_brain: bool,
) -> Result<Vec<Deployment>> {
    let layout = Layout::new(&config.letsencrypt_dir);
    let plans: Arc<Vec<Planned>> = Arc::new(
        lineages
            .iter()
            .map(|l| plan(&layout, l))
            .collect::<Result<_>>()?,
    );
    // Who gets what: the peers whose `lineages` list admits each one, in config order.
    let mut receiving: Vec<(Peer, Vec<usize>)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        for peer in config.peers_receiving(p.lineage.as_str()) {
            match receiving.iter_mut().find(|(q, _)| q.name == peer.name) {
                Some((_, list)) => list.push(i),
                None => receiving.push((peer.clone(), vec![i])),
            }
        }
    }
    let peers: Vec<Peer> = receiving.iter().map(|(p, _)| p.clone()).collect();
    let mine: Arc<HashMap<String, Vec<usize>>> = Arc::new(
        receiving
            .into_iter()
            .map(|(p, list)| (p.name, list))
            .collect(),
    );
    let receives = peers
        .iter()
        .map(|p| mine.get(&p.name).cloned().unwrap_or_default())
        .collect();
    let gate = Gate::new(&peers, receives, config.ssh.request_timeout, rollout);
    // Every session waits at the gate with the others: all must be open at once, whatever
    // `[ssh] concurrency` says (a peer queued behind one that waits would never come).
    let mut ssh = config.ssh.clone();
    ssh.concurrency = ssh.concurrency.max(peers.len());
    let remote = {
        let (plans, root, config_path) = (
            plans.clone(),
            config.letsencrypt_dir.clone(),
            config.path.clone(),
        );
        let seats: Arc<std::sync::Mutex<HashMap<String, Seat>>> = Arc::new(std::sync::Mutex::new(
            peers
                .iter()
                .filter_map(|p| Some((p.name.clone(), gate.seat(&p.name)?)))
                .collect(),
        ));
        let teller = gate.teller();
        let work = move |peer: Peer, agent, announced| {
            let list = mine.get(&peer.name).cloned().unwrap_or_default();
            let seat = seats.lock().ok().and_then(|mut s| s.remove(&peer.name));
            let (plans, root, config_path) = (plans.clone(), root.clone(), config_path.clone());
            async move {
                let work = PeerWork {
                    resolve_split_brain,
                    plans: &plans,
                    layout: Layout::new(&root),
                    root: &root,
                    config_path: &config_path,
                };
                work.run(peer, agent, announced, list, seat).await
            }
        };
        crate::fleet::sessions_telling(&ssh, &peers, work, teller)
    };
    // This node switches (reloads) once the gate has decided: after the canaries, never for a
    // lineage the fleet does not take.
    let local = async {
        let blocked = gate.run(plans.clone()).await;
        this_node(config, plans.clone(), blocked).await
    };
    let (remote, (local, local_elapsed)) = tokio::join!(remote, local);
    crate::crashpoint!("primary-after-installs");

    let mut deployments: Vec<Deployment> = plans
        .iter()
        .zip(local)
        .map(|(p, result)| Deployment {
            lineage: p.lineage.clone(),
            version: p.version,
            not_after: p.not_after,
            rows: vec![NodeResult {
                node: config.node_name(),
                optional: false,
                https: config.https.clone(),
                result: install_row(Some(p.version), result.map(|c| (c, None))),
                elapsed: local_elapsed,
                ssh: None,
            }],
        })
        .collect();
    for outcome in remote {
        let list = match outcome.result {
            Ok(results) => results,
            // The session failed as a whole: every lineage of that peer, with its reason.
            Err(e) => plans_of(&outcome.peer, &plans, config)
                .into_iter()
                .map(|i| (i, Err(InstallFailure::Peer(clone_peer_error(&e)))))
                .collect(),
        };
        for (i, result) in list {
            deployments[i].rows.push(NodeResult {
                node: outcome.peer.name.clone(),
                optional: outcome.peer.optional,
                https: outcome.peer.https_addr(),
                result: install_row(None, result.map(|inst| (inst.changed, Some(inst)))),
                elapsed: outcome.elapsed,
                ssh: Some(outcome.ssh.clone()),
            });
        }
    }
    // Peers in config order within each lineage (sessions end in any order).
    for d in &mut deployments {
        let order = |name: &str| peers.iter().position(|p| p.name == name).unwrap_or(0);
        d.rows[1..].sort_by_key(|r| order(&r.node));
    }
    check_served(&mut deployments, &plans).await;
    Ok(deployments)
}

/// The lineages a peer receives (for a session that failed before it answered any).
fn plans_of(peer: &Peer, plans: &[Planned], config: &Config) -> Vec<usize> {
    plans
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            config
                .peers_receiving(p.lineage.as_str())
                .any(|q| q.name == peer.name)
        })
        .map(|(i, _)| i)
        .collect()
}

/// PeerError is not Clone (it may hold an io error); the same class with the same words.
fn clone_peer_error(e: &PeerError) -> PeerError {
    match e {
        PeerError::Refused { kind, message } => PeerError::Refused {
            kind: *kind,
            message: message.clone(),
        },
        other => PeerError::Agent(other.to_string()),
    }
}

/// A row's install part before its served check.
fn install_row(
    version: Option<u32>,
    result: std::result::Result<(bool, Option<Installed>), InstallFailure>,
) -> Install {
    let (before, after, split_brain, install) = match result {
        Ok((changed, Some(i))) => (i.before, Some(i.after), i.split_brain, Ok(changed)),
        Ok((changed, None)) => (version, version, None, Ok(changed)),
        Err(e) => (None, None, None, Err(e)),
    };
    Install {
        before,
        after,
        install,
        split_brain,
        served: Check {
            name: None,
            served: Served::None {
                error: "not checked".into(),
            },
            fingerprint: None,
            not_after: None,
        },
    }
}

/// One round of one peer's session at the gate.
struct Round<'a> {
    agent: &'a mut AgentChannel,
    seat: &'a Seat,
    round: usize,
    /// The agent announced `discard`.
    discard: bool,
    /// The agent says `working` during a long commit.
    progress: bool,
}

/// One peer's session: its lineages staged and committed in chunks, or installed one by one
/// on an older agent; standbys then get each lineage's renewal config.
struct PeerWork<'a> {
    resolve_split_brain: bool,
    plans: &'a [Planned],
    layout: Layout,
    root: &'a std::path::Path,
    config_path: &'a std::path::Path,
}

impl PeerWork<'_> {
    async fn run(
        &self,
        peer: Peer,
        mut agent: AgentChannel,
        announced: Announced,
        list: Vec<usize>,
        seat: Option<Seat>,
    ) -> std::result::Result<PeerResults, PeerError> {
        let batch = announced.has(BATCH_OP);
        let discard = announced.has(DISCARD_OP);
        let mut out = PeerResults::with_capacity(list.len());
        match seat {
            Some(mut seat) if batch => {
                let max_staged = announced
                    .max_staged
                    .map_or(LEGACY_MAX_STAGED, |n| n as usize);
                let size = seat.round_size(max_staged).await;
                for (round, range) in rounds(self.plans.len(), size).into_iter().enumerate() {
                    let share: Vec<usize> =
                        list.iter().copied().filter(|i| range.contains(i)).collect();
                    let step = Round {
                        agent: &mut agent,
                        seat: &seat,
                        round,
                        discard,
                        progress: announced.commit_progress,
                    };
                    if let Err(e) = self.stage_and_commit(step, &share, &mut out).await {
                        seat.gone(e.to_string());
                        return Err(e);
                    }
                }
            }
            seat => {
                if let Some(seat) = &seat {
                    seat.ungated();
                }
                for chunk in list.chunks(LEGACY_MAX_STAGED) {
                    self.install_each(&mut agent, chunk, &mut out).await?;
                }
            }
        }
        if peer.standby {
            self.copy_renewals(&peer, &mut agent, &mut out).await?;
        }
        tokio::spawn(agent.close());
        Ok(out)
    }

    /// The files of plan `i`'s version, read here; a version that cannot be read is that
    /// lineage's failure on this node (None), and the others go on.
    fn read_files(&self, i: usize, out: &mut PeerResults) -> Option<crate::wire::LineageFiles> {
        let p = &self.plans[i];
        match self.layout.read_version(&p.lineage, p.version) {
            Ok(files) => Some(files),
            Err(e) => {
                out.push((i, Err(InstallFailure::Source(e.to_string()))));
                None
            }
        }
    }

    /// `stage` each lineage of the round's share, wait at the gate, then one `discard` of what
    /// the fleet does not take and one `commit` of what it does.
    async fn stage_and_commit(
        &self,
        step: Round<'_>,
        share: &[usize],
        out: &mut PeerResults,
    ) -> std::result::Result<(), PeerError> {
        let Round {
            agent,
            seat,
            round,
            discard,
            progress,
        } = step;
        let mut staged = Vec::with_capacity(share.len());
        let mut failed = HashMap::new();
        for &i in share {
            let p = &self.plans[i];
            let files = match self.layout.read_version(&p.lineage, p.version) {
                Ok(files) => files,
                Err(e) => {
                    failed.insert(i, e.to_string());
                    out.push((i, Err(InstallFailure::Source(e.to_string()))));
                    continue;
                }
            };
            let request = Request::Stage {
                lineage: p.lineage.clone(),
                version: p.version,
                files,
                resolve_split_brain: self.resolve_split_brain,
            };
            let failure = match agent.request(&request).await {
                Ok(Response::Staged { .. }) => {
                    staged.push(i);
                    seat.progress();
                    continue;
                }
                Ok(other) => unexpected(&other),
                Err(e @ PeerError::Refused { .. }) => InstallFailure::Peer(e),
                Err(e) => return Err(e),
            };
            seat.progress();
            failed.insert(i, failure.to_string());
            out.push((i, Err(failure)));
        }
        let decision = seat.report(round, &staged, failed).await;
        if !decision.discard.is_empty() {
            if discard {
                let request = Request::Discard {
                    lineages: decision
                        .discard
                        .iter()
                        .map(|(i, _)| self.plans[*i].lineage.clone())
                        .collect(),
                };
                // A refusal changes nothing for the rows: no link moved there.
                if let Err(e @ PeerError::Refused { .. }) = agent.request(&request).await {
                    crate::warn!("discard: {e}");
                }
            }
            for (i, why) in decision.discard {
                out.push((i, Err(InstallFailure::Peer(PeerError::Agent(why)))));
            }
        }
        let results = self.commit(agent, &decision.commit, progress).await;
        if let Some(tx) = decision.committed {
            let summary: CommitSummary = match &results {
                Ok(results) => results
                    .iter()
                    .map(|(i, r)| {
                        (
                            *i,
                            r.as_ref()
                                .map(|inst| inst.changed)
                                .map_err(|e| e.to_string()),
                        )
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            if results.is_ok() {
                let _ = tx.send(summary);
            }
        }
        out.extend(results?);
        Ok(())
    }

    /// One `commit` of `list` (staged in this session): each lineage's result. With
    /// `progress` the agent says `working` while it tests, searches and reloads, and the
    /// commit may take [`COMMIT_BOUND`] request timeouts in all.
    async fn commit(
        &self,
        agent: &mut AgentChannel,
        list: &[usize],
        progress: bool,
    ) -> std::result::Result<PeerResults, PeerError> {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let request = Request::Commit {
            lineages: list
                .iter()
                .map(|&i| self.plans[i].lineage.clone())
                .collect(),
            progress,
        };
        let answer = if progress {
            agent.send(&request).await?;
            let bound = agent.request_timeout().saturating_mul(COMMIT_BOUND);
            agent.receive_working(bound).await?
        } else {
            agent.request(&request).await?
        };
        let answers = match answer {
            Response::Committed { lineages } => lineages,
            other => {
                let e = unexpected(&other).to_string();
                return Ok(list
                    .iter()
                    .map(|&i| (i, Err(InstallFailure::UnexpectedAnswer(e.clone()))))
                    .collect());
            }
        };
        Ok(list
            .iter()
            .map(|&i| {
                let name = &self.plans[i].lineage;
                let result = match answers.iter().find(|c| &c.lineage == name) {
                    Some(c) => match &c.outcome {
                        CommitOutcome::Installed(inst) => Ok(inst.clone()),
                        CommitOutcome::Error { kind, message } => {
                            Err(InstallFailure::Peer(PeerError::Refused {
                                kind: *kind,
                                message: crate::text::one_line(message, 2000),
                            }))
                        }
                    },
                    None => Err(InstallFailure::UnexpectedAnswer(format!(
                        "commit answered nothing for {name}"
                    ))),
                };
                (i, result)
            })
            .collect())
    }

    /// An agent without `commit`: one `install` per lineage, as before batches (a split brain
    /// asked again, resolving it, as `sync` does).
    async fn install_each(
        &self,
        agent: &mut AgentChannel,
        chunk: &[usize],
        out: &mut PeerResults,
    ) -> std::result::Result<(), PeerError> {
        for &i in chunk {
            let p = &self.plans[i];
            let Some(files) = self.read_files(i, out) else {
                continue;
            };
            let mut request = Request::Install {
                lineage: p.lineage.clone(),
                version: p.version,
                files,
                resolve_split_brain: false,
            };
            let mut answer = agent.request(&request).await;
            if let (
                Err(PeerError::Refused {
                    kind: ErrorKind::SplitBrain,
                    ..
                }),
                Request::Install {
                    resolve_split_brain,
                    ..
                },
            ) = (&answer, &mut request)
            {
                if !self.resolve_split_brain {
                    out.push((
                        i,
                        Err(InstallFailure::Peer(clone_peer_error(
                            answer.as_ref().unwrap_err(),
                        ))),
                    ));
                    continue;
                }
                *resolve_split_brain = true;
                answer = agent.request(&request).await;
            }
            match answer {
                Ok(Response::Installed(inst)) => out.push((i, Ok(inst))),
                Ok(other) => out.push((i, Err(unexpected(&other)))),
                Err(e @ PeerError::Refused { .. }) => out.push((i, Err(InstallFailure::Peer(e)))),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A standby also gets the renewal config of each lineage it took (see `crate::standby`).
    async fn copy_renewals(
        &self,
        peer: &Peer,
        agent: &mut AgentChannel,
        out: &mut PeerResults,
    ) -> std::result::Result<(), PeerError> {
        for (i, result) in out.iter_mut() {
            if result.is_err() {
                continue;
            }
            let lineage = &self.plans[*i].lineage;
            let why = match crate::standby::read(self.root, self.config_path, lineage) {
                Ok(bundle) => {
                    let request = Request::PutRenewal {
                        lineage: lineage.clone(),
                        bundle,
                    };
                    let answer = match agent.request(&request).await {
                        Err(e @ PeerError::Refused { .. }) => Err(e),
                        Err(e) => return Err(e),
                        Ok(r) => Ok(vec![r]),
                    };
                    super::certs::standby_failure(&peer.name, &answer)
                }
                Err(e) => Some(StandbyFailure::NotCopied(e.to_string())),
            };
            if let Some(why) = why {
                *result = Err(InstallFailure::from(why));
            }
        }
        Ok(())
    }
}

fn unexpected(r: &Response) -> InstallFailure {
    InstallFailure::UnexpectedAnswer(crate::text::one_line(&format!("{r:?}"), 200))
}

/// This node: certbot's files here are the source. When it does not serve every lineage the
/// fleet takes yet (one quick handshake each), ONE config test and ONE reload; then each
/// lineage's own `[[deploy]]` actions. A lineage the gate `blocked` gets neither: its row says
/// why (certbot's links here already name it; a reload for another lineage would serve it).
/// One result per plan.
async fn this_node(
    config: &Config,
    plans: Arc<Vec<Planned>>,
    blocked: Blocked,
) -> (Vec<std::result::Result<bool, InstallFailure>>, Duration) {
    let start = Instant::now();
    let count = plans.len();
    let serving = {
        let addr = config.https.clone();
        let checks = plans
            .iter()
            .map(|p| (addr.clone(), p.sni.clone(), p.versions.clone()));
        bounded(
            checks.collect(),
            checks_at_once(1),
            |(addr, sni, versions)| async move {
                served::check(&addr, sni.as_deref(), &versions, Duration::ZERO)
                    .await
                    .served
                    == Served::New
            },
        )
        .await
        .into_iter()
        .map(|s| s.unwrap_or(false))
        .collect::<Vec<_>>()
    };
    let commands = config.commands();
    let actions = config.deploy.clone();
    let root = config.letsencrypt_dir.clone();
    let needed = serving
        .iter()
        .enumerate()
        .any(|(i, s)| !s && !blocked.contains_key(&i));
    let result = tokio::task::spawn_blocking(move || {
        let reload = if needed {
            crate::crashpoint!("primary-before-test");
            commands.test().and_then(|()| {
                crate::crashpoint!("primary-before-reload");
                commands.reload()
            })
        } else {
            Ok(())
        };
        let layout = Layout::new(&root);
        plans
            .iter()
            .zip(&serving)
            .enumerate()
            .map(|(i, (p, serving))| {
                if let Some(why) = blocked.get(&i) {
                    return Err(InstallFailure::Peer(PeerError::Agent(why.clone())));
                }
                let reloaded = !serving;
                if reloaded {
                    if let Err(e) = &reload {
                        return Err(InstallFailure::Local(e.clone()));
                    }
                }
                if actions.is_empty() {
                    return Ok(reloaded);
                }
                let files = layout
                    .read_version(&p.lineage, p.version)
                    .map_err(|e| InstallFailure::Source(e.to_string()))?;
                let acted = crate::actions::run(
                    &actions,
                    &crate::actions::Deployed {
                        lineage: &p.lineage,
                        fullchain: &files.fullchain,
                        privkey: &files.privkey,
                        installed: reloaded,
                        live_dir: &layout.live_dir(&p.lineage),
                        timeout: commands.timeout,
                    },
                )?;
                Ok(reloaded || acted)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let results = match result {
        Ok(results) => results,
        Err(e) => {
            let why = e.to_string();
            (0..count)
                .map(|_| Err(InstallFailure::Source(why.clone())))
                .collect()
        }
    };
    (results, start.elapsed())
}

/// Every row of every lineage asked what it serves, [`checks_at_once`] at a time (lineage by
/// lineage, so every node in turn), with ONE settle window for the whole batch, not one per
/// lineage: every node answered its commit (its reload returned) before this runs, and nginx's
/// old workers may take new connections for ~100 ms after that, so the first handshakes wait
/// [`served::CONFIRM_AFTER`] once. An answer that is not the new version is asked again once the
/// shared window ([`served::SETTLE`] from the start) is over; a node that does not answer at all
/// gets the full check and its deadline.
async fn check_served(deployments: &mut [Deployment], plans: &[Planned]) {
    tokio::time::sleep(served::CONFIRM_AFTER).await;
    let settled_at = tokio::time::Instant::now() + served::SETTLE;
    let mut jobs = Vec::new();
    for (d, p) in deployments.iter().zip(plans) {
        for row in &d.rows {
            let wait = if row.result.install.is_ok() {
                SERVE_DEADLINE
            } else {
                Duration::ZERO
            };
            jobs.push((row.https.clone(), p.sni.clone(), p.versions.clone(), wait));
        }
    }
    let nodes = deployments.first().map_or(1, |d| d.rows.len());
    let results = bounded(
        jobs,
        checks_at_once(nodes),
        move |(addr, sni, versions, wait)| async move {
            let began = Instant::now();
            let first = served::check(&addr, sni.as_deref(), &versions, Duration::ZERO).await;
            let check = match first.served {
                _ if wait.is_zero() => first,
                Served::New => first,
                // No answer (restarting, refused): the full check, bounded by the deadline.
                Served::None { .. } => served::check(&addr, sni.as_deref(), &versions, wait).await,
                // Another certificate: the verdict once the batch's one settle window is over.
                _ => {
                    tokio::time::sleep_until(settled_at).await;
                    served::check(&addr, sni.as_deref(), &versions, Duration::ZERO).await
                }
            };
            (check, began.elapsed())
        },
    )
    .await;
    let mut results = results.into_iter();
    for d in deployments.iter_mut() {
        for row in d.rows.iter_mut() {
            if let Some(Some((check, took))) = results.next() {
                row.result.served = check;
                row.elapsed += took;
            }
        }
    }
}
