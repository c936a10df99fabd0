//! Discrete-event simulation of 2–5 clients arbitrating one floor, and the
//! property tests that drive it. Each client is a whole
//! [`RoomMachine`](crate::room::RoomMachine) (group marker, consents and
//! floor, as the engine drives it), every member consenting to talk; the
//! floor's own state is read through `RoomMachine::floor` for the checks.
//!
//! Each client has its own clock offset (±300 ms), every directed link its
//! own base delay, and every message its own jitter, so messages reorder
//! (also within one talker's stream). A second link model reproduces what
//! was measured across a 1 s federation link: Synapse delivers in bursts
//! 2 s apart, latency 1.1–3.1 s. Messages go through the real wire format
//! (`ChunkHeader::to_content` → `ValidatedChunk::parse`). Timers are driven
//! through `poll_timeout`/`handle_timeout`. Properties checked:
//!
//! (a) every live client names the same holder (or none) from 2 × max link
//!     delay after the last claim, 1 × after the last release, and max delay
//!     + lease after a talker vanished, until the next such event. This is
//!     checked after every simulated event, which is stronger than "after
//!     messages settle"; when the simulation drains, the floor is free
//!     everywhere;
//! (b) the event stream of every client never has two talkers at once:
//!     `Holder` while transmitting is an error, a `Holder` while already
//!     playing someone may only switch to a lower claim, `TalkEnded` names
//!     the one being played, and only the played session's chunks get
//!     `Play`;
//! (c) a vanished talker is no longer the holder at any client `lease_ms`
//!     after its last message arrived there (tighter than lease + max delay
//!     after it vanished);
//! (d) a client never starts or keeps transmitting while it believes
//!     another client holds the floor;
//! (g) two clients transmit at once for at most one maximum link delay plus
//!     the clocks' skew (the later one stops when the earlier claim reaches
//!     it: it is never late there).
//!
//! With one adversarial member among the honest clients (a rogue that
//! consents like the others but sends crafted messages: claims back-dated
//! to just before the current holder's, sent to a subset of the clients and
//! kept alive; sessions chained without `end`; replays of its own earlier
//! messages), (b)–(d) still hold for every honest client, (a) holds among
//! the honest clients once an attack's effects are over, and:
//!
//! (e) an honest talker is never cut by a rogue claim sent more than
//!     [`COLLISION_WINDOW_MS`] after its press (an established talker keeps
//!     the floor), and an honest listener never switches from an honest
//!     talker to a rogue claim sent more than the window after that talker's
//!     claim reached it;
//! (f) no honest client holds the rogue as the holder for longer than
//!     `max_talk_ms + lease_ms` in one stretch (chained sessions included).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use super::*;
use crate::{
    room::{PressError, RoomEvent, RoomMachine},
    ChunkHeader, Consent, ConsentSet, DeviceId, RoomId, SessionId, UserId, ValidatedChunk,
    WalkieGroup,
};

/// Real time zero (ms since the epoch), far from 0 so skewed clocks stay
/// positive.
const REAL0: u64 = 1_700_000_000_000;
/// One audio message every 100 ms (5 frames of 20 ms).
const TICK_MS: u64 = 100;
/// Safety stop for a simulation.
const SIM_LIMIT_MS: u64 = 300_000;

#[derive(Clone, Debug)]
enum Links {
    /// Directed link base delays (`base[from][to]`) plus per-message jitter.
    Random { base: Vec<Vec<u64>>, jitter: u64 },
    /// Delivery at the next burst boundary (per-link phase) plus latency.
    Bursty {
        period: u64,
        latency: u64,
        phase: Vec<Vec<u64>>,
    },
}

impl Links {
    fn max_delay(&self) -> u64 {
        match self {
            Links::Random { base, jitter } => {
                base.iter().flatten().copied().max().unwrap_or(0) + jitter
            }
            Links::Bursty {
                period, latency, ..
            } => period + latency,
        }
    }
}

#[derive(Clone, Debug)]
struct Action {
    at: u64,
    client: usize,
    hold: u64,
    vanish: bool,
}

/// What the rogue (the last client, when present) does.
#[derive(Clone, Debug)]
enum Attack {
    /// At `at`, a claim whose `start_ts` is 1 ms before the current holder's
    /// (as the rogue sees it; its own clock otherwise), sent to the clients
    /// whose bit is set in `targets`, then kept alive every 500 ms for
    /// `hold` ms.
    BackDated { at: u64, targets: u32, hold: u64 },
    /// From `at`, a new session every `period` ms, `count` times, none ever
    /// ended, to everyone.
    Chain { at: u64, period: u64, count: u32 },
    /// At `at`, everything the rogue has sent so far, again, to everyone.
    Replay { at: u64 },
}

#[derive(Clone, Debug)]
struct Scenario {
    offsets: Vec<i64>,
    links: Links,
    cfg: FloorConfig,
    actions: Vec<Action>,
    seed: u64,
    /// With a rogue: it is the last client (no actions), doing these.
    attacks: Vec<Attack>,
}

enum Ev {
    Press(usize),
    Release(usize),
    Vanish(usize),
    Deliver {
        to: usize,
        from: usize,
        content: Value,
    },
    Timer {
        c: usize,
        generation: u64,
    },
    Tick {
        c: usize,
        session: SessionId,
    },
    CheckVanished {
        c: usize,
        claim: Claim,
    },
    Attack(Attack),
    /// A rogue session's next keep-alive (to `targets`), until `until`.
    RogueKeepAlive {
        session: SessionId,
        start_ts: u64,
        seq: u32,
        targets: u32,
        until: u64,
    },
}

struct Client {
    machine: RoomMachine,
    user: UserId,
    device: DeviceId,
    offset: i64,
    vanished: bool,
    timer_generation: u64,
    /// Model built from the event stream alone.
    transmitting: Option<SessionId>,
    /// Real time the current transmission started.
    transmitting_since: u64,
    playing: Option<Claim>,
}

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    deliveries: u64,
    plays: u64,
    starts: u64,
    busy: u64,
    lost: u64,
    switches: u64,
    lease_expiries: u64,
    vanish_checks: u64,
    agreement_checks: u64,
    agreed_on_holder: u64,
    cooling_down: u64,
    rogue_claims: u64,
    rogue_holds: u64,
    rogue_cuts: u64,
    rogue_ignored: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.deliveries += o.deliveries;
        self.plays += o.plays;
        self.starts += o.starts;
        self.busy += o.busy;
        self.lost += o.lost;
        self.switches += o.switches;
        self.lease_expiries += o.lease_expiries;
        self.vanish_checks += o.vanish_checks;
        self.agreement_checks += o.agreement_checks;
        self.agreed_on_holder += o.agreed_on_holder;
        self.cooling_down += o.cooling_down;
        self.rogue_claims += o.rogue_claims;
        self.rogue_holds += o.rogue_holds;
        self.rogue_cuts += o.rogue_cuts;
        self.rogue_ignored += o.rogue_ignored;
    }
}

struct Sim {
    room: RoomId,
    clients: Vec<Client>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    store: HashMap<u64, Ev>,
    next_id: u64,
    now: u64,
    rng: u64,
    links: Links,
    max_delay: u64,
    lease_ms: u64,
    check_agreement: bool,
    /// Agreement is required from this real time on (see `disturb`).
    quiet_until: u64,
    last_arrival: HashMap<(usize, usize), u64>,
    stats: Stats,
    /// The rogue's index, if there is one.
    rogue: Option<usize>,
    max_talk_ms: u64,
    /// Real time each rogue session's claim was sent.
    rogue_sent: HashMap<SessionId, u64>,
    /// Everything the rogue sent (for replays).
    rogue_log: Vec<Value>,
    rogue_sessions: u32,
    /// Real time each honest claim was first seen at each client, and each
    /// honest client's press time.
    first_seen: HashMap<(usize, SessionId), u64>,
    /// Per client: real time since which it has held the rogue as holder.
    rogue_held_since: HashMap<usize, u64>,
}

fn user_of(i: usize) -> UserId {
    // distinct servers: every link is a federation link
    UserId::parse(&format!("@user{i}:server{i}.example")).unwrap()
}

fn device_of(i: usize) -> DeviceId {
    DeviceId::parse(&format!("DEVICE{i}")).unwrap()
}

impl Sim {
    fn new(sc: &Scenario) -> Self {
        let room = RoomId::parse("!walkie:server0.example").unwrap();
        let group = WalkieGroup {
            lease_ms: sc.cfg.lease_ms,
            max_talk_ms: sc.cfg.max_talk_ms,
            ..WalkieGroup::default()
        };
        let mut consents = ConsentSet::new();
        let rogue = (!sc.attacks.is_empty()).then(|| sc.offsets.len() - 1);
        for i in 0..sc.offsets.len() {
            let grant = Consent::granted_for(None, true, REAL0);
            consents.insert(user_of(i), device_of(i), grant, REAL0);
        }
        let clients = sc
            .offsets
            .iter()
            .enumerate()
            .map(|(i, &offset)| {
                let mut n = 0u32;
                let source: SessionIdSource = Box::new(move || {
                    n += 1;
                    SessionId::parse(&format!("c{i}-session-{n:06}")).unwrap()
                });
                Client {
                    machine: RoomMachine::new(
                        room.clone(),
                        user_of(i),
                        device_of(i),
                        Some(group.clone()),
                        consents.clone(),
                        (0..sc.offsets.len()).map(user_of).collect(),
                        source,
                    ),
                    user: user_of(i),
                    device: device_of(i),
                    offset,
                    vanished: false,
                    timer_generation: 0,
                    transmitting: None,
                    transmitting_since: 0,
                    playing: None,
                }
            })
            .collect();
        let mut sim = Sim {
            room,
            clients,
            queue: BinaryHeap::new(),
            store: HashMap::new(),
            next_id: 0,
            now: REAL0,
            rng: sc.seed | 1,
            links: sc.links.clone(),
            max_delay: sc.links.max_delay(),
            lease_ms: sc.cfg.lease_ms,
            check_agreement: true,
            quiet_until: REAL0,
            last_arrival: HashMap::new(),
            stats: Stats::default(),
            rogue,
            max_talk_ms: sc.cfg.max_talk_ms,
            rogue_sent: HashMap::new(),
            rogue_log: Vec::new(),
            rogue_sessions: 0,
            first_seen: HashMap::new(),
            rogue_held_since: HashMap::new(),
        };
        for a in &sc.attacks {
            let at = match a {
                Attack::BackDated { at, .. } | Attack::Chain { at, .. } | Attack::Replay { at } => {
                    *at
                }
            };
            sim.schedule(REAL0 + at, Ev::Attack(a.clone()));
        }
        for a in sc.actions.iter().filter(|a| Some(a.client) != rogue) {
            sim.schedule(REAL0 + a.at, Ev::Press(a.client));
            let end = REAL0 + a.at + a.hold;
            if a.vanish {
                sim.schedule(end, Ev::Vanish(a.client));
            } else {
                sim.schedule(end, Ev::Release(a.client));
            }
        }
        sim
    }

    fn rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((at, id)));
        self.store.insert(id, ev);
    }

    fn local(&self, c: usize) -> u64 {
        (self.now as i64 + self.clients[c].offset) as u64
    }

    fn delay(&mut self, from: usize, to: usize) -> u64 {
        match &self.links {
            Links::Random { base, jitter } => {
                let (b, j) = (base[from][to], *jitter);
                b + self.rand() % (j + 1)
            }
            Links::Bursty {
                period,
                latency,
                phase,
            } => {
                let t = self.now + phase[from][to];
                let boundary = (t / period + 1) * period;
                boundary - t + latency
            }
        }
    }

    fn send(&mut self, from: usize, header: &ChunkHeader, frames: &[Vec<u8>]) {
        let content = header.to_content(&self.room, frames).unwrap();
        self.send_content(from, content, u32::MAX);
    }

    fn is_rogue(&self, c: usize) -> bool {
        self.rogue == Some(c)
    }

    /// Sends `content` from `from` to every client whose bit is in `targets`.
    fn send_content(&mut self, from: usize, content: Value, targets: u32) {
        for to in 0..self.clients.len() {
            if to == from || targets & (1 << to) == 0 {
                continue;
            }
            let at = self.now + self.delay(from, to);
            let last = self.last_arrival.entry((from, to)).or_insert(0);
            *last = (*last).max(at);
            self.schedule(
                at,
                Ev::Deliver {
                    to,
                    from,
                    content: content.clone(),
                },
            );
        }
    }

    /// Something changed the floor; every client must agree again once the
    /// news has reached all of them: `settle_ms` (one maximum link delay,
    /// plus the lease for a vanished talker) and 1 ms for same-time events.
    fn disturb(&mut self, settle_ms: u64) {
        self.quiet_until = self.quiet_until.max(self.now + settle_ms + 1);
    }

    /// Processes a client's outputs: events (checked against the model),
    /// messages, and its next timer. Returns the sessions whose audio the
    /// machine handed out for playing.
    fn drain(&mut self, c: usize) -> Vec<SessionId> {
        let mut played = Vec::new();
        while let Some(ev) = self.clients[c].machine.poll_event() {
            let cl = &mut self.clients[c];
            match ev {
                RoomEvent::TransmitStarted { session_id } => {
                    assert!(cl.playing.is_none(), "(d) client {c} starts over a holder");
                    assert!(cl.transmitting.is_none());
                    cl.transmitting = Some(session_id.clone());
                    cl.transmitting_since = self.now;
                    self.stats.starts += 1;
                    self.first_seen.insert((c, session_id.clone()), self.now);
                    // The claim reaches everyone within one delay; a loser
                    // that learns of it stops, and its `end` reaches
                    // everyone within a second delay. Until then a client
                    // whose winner already released may hold the loser.
                    self.disturb(2 * self.max_delay);
                    self.schedule(
                        self.now + TICK_MS,
                        Ev::Tick {
                            c,
                            session: session_id,
                        },
                    );
                }
                RoomEvent::TransmitStopped { session_id, reason } => {
                    assert_eq!(cl.transmitting.as_ref(), Some(&session_id));
                    if let StopReason::LostTo(w) = &reason {
                        if self.rogue.is_some_and(|r| w.user_id == user_of(r)) {
                            let sent = self.rogue_sent.get(&w.session_id).copied();
                            let pressed = self.first_seen.get(&(c, session_id.clone())).copied();
                            if let (Some(sent), Some(pressed)) = (sent, pressed) {
                                assert!(
                                    sent < pressed + COLLISION_WINDOW_MS,
                                    "(e) client {c}, pressed at {}, cut by a rogue claim sent at {}",
                                    pressed - REAL0,
                                    sent - REAL0
                                );
                            }
                            self.stats.rogue_cuts += 1;
                        }
                    }
                    cl.transmitting = None;
                    // A loser stopping changes no client's holder (they all
                    // hold the lower claim once it reached them), so it is
                    // not a disturbance.
                    if matches!(reason, StopReason::LostTo(_)) {
                        self.stats.lost += 1;
                    } else {
                        self.disturb(self.max_delay);
                    }
                }
                RoomEvent::TalkStarted { claim } => {
                    assert!(
                        cl.transmitting.is_none(),
                        "(b) client {c} plays {claim:?} while transmitting"
                    );
                    let rogue_claim = self.rogue.is_some_and(|r| claim.user_id == user_of(r));
                    if let (true, Some(p)) = (rogue_claim, &cl.playing) {
                        let sent = self.rogue_sent.get(&claim.session_id).copied();
                        let heard = self.first_seen.get(&(c, p.session_id.clone())).copied();
                        if let (Some(sent), Some(heard)) = (sent, heard) {
                            assert!(
                                sent < heard + COLLISION_WINDOW_MS,
                                "(e) client {c} switched from {p:?}, heard at {}, to a rogue claim sent at {}",
                                heard - REAL0,
                                sent - REAL0
                            );
                        }
                    }
                    assert!(claim.user_id != cl.user || claim.device_id != cl.device);
                    if let Some(p) = &cl.playing {
                        // A rogue claim that was already stale when it
                        // arrived is late against every other claim: a
                        // listener leaves it for a later, fresh one.
                        let from_rogue = self.rogue.is_some_and(|r| p.user_id == user_of(r));
                        assert!(
                            claim < *p || from_rogue,
                            "(b) client {c} switched from {p:?} to later {claim:?}"
                        );
                        self.stats.switches += 1;
                    }
                    cl.playing = Some(claim);
                }
                RoomEvent::Audio { session_id, .. } => played.push(session_id),
                RoomEvent::TalkEnded { claim, reason } => {
                    assert_eq!(cl.playing.as_ref(), Some(&claim), "(b) client {c}");
                    if reason == EndReason::LeaseExpired {
                        self.stats.lease_expiries += 1;
                    }
                    cl.playing = None;
                }
                RoomEvent::FloorFree => {
                    assert!(cl.playing.is_none() && cl.transmitting.is_none());
                }
            }
        }
        let now = self.local(c);
        while let Some(t) = self.clients[c].machine.poll_transmit(now) {
            // Everyone consents: addressed to every other member.
            assert_eq!(t.to.len(), self.clients.len() - 1);
            self.send(c, &t.header, &t.frames);
        }
        // the getters agree with the event stream
        let cl = &self.clients[c];
        let floor = cl.machine.floor();
        match floor.holder() {
            None => assert!(cl.playing.is_none() && cl.transmitting.is_none()),
            Some(h) if floor.holder_is_local() => {
                assert_eq!(cl.transmitting.as_ref(), Some(&h.session_id))
            }
            Some(h) => assert_eq!(cl.playing.as_ref(), Some(h)),
        }
        let rogue_holds = self
            .rogue
            .is_some_and(|r| floor.holder().is_some_and(|h| h.user_id == user_of(r)));
        if rogue_holds && !self.is_rogue(c) {
            let since = *self.rogue_held_since.entry(c).or_insert(self.now);
            assert!(
                self.now - since <= self.max_talk_ms + self.lease_ms,
                "(f) client {c} has held the rogue since {} (now {})",
                since - REAL0,
                self.now - REAL0
            );
        } else if self.rogue_held_since.remove(&c).is_some() {
            self.stats.rogue_holds += 1;
        }
        self.clients[c].timer_generation += 1;
        let generation = self.clients[c].timer_generation;
        if let Some(deadline) = self.clients[c].machine.poll_timeout() {
            let real = (deadline as i64 - self.clients[c].offset) as u64;
            self.schedule(real.max(self.now), Ev::Timer { c, generation });
        }
        played
    }

    fn step(&mut self, ev: Ev) {
        let live = |s: &Sim, c: usize| !s.clients[c].vanished;
        match ev {
            Ev::Press(c) if live(self, c) => {
                let now = self.local(c);
                match self.clients[c].machine.press(now) {
                    Ok(_) => {}
                    Err(PressError::Busy { holder }) => {
                        let cl = &self.clients[c];
                        assert!(holder.user_id != cl.user || holder.device_id != cl.device);
                        self.stats.busy += 1;
                    }
                    Err(PressError::CoolingDown { .. }) => self.stats.cooling_down += 1,
                    Err(e) => panic!("client {c}: press refused: {e}"),
                }
                self.drain(c);
            }
            Ev::Release(c) if live(self, c) => {
                let now = self.local(c);
                if let Some(session) = self.clients[c].transmitting.clone() {
                    self.clients[c].machine.release(&session, now);
                }
                self.drain(c);
            }
            Ev::Vanish(c) if live(self, c) => {
                self.disturb(self.max_delay + self.lease_ms);
                self.clients[c].vanished = true;
                if let Some(claim) = self.clients[c].machine.transmitting().cloned() {
                    let lease = self.clients[c].machine.floor().config().lease_ms;
                    for d in 0..self.clients.len() {
                        if d == c {
                            continue;
                        }
                        let last = self.last_arrival.get(&(c, d)).copied().unwrap_or(0);
                        let at = (last + lease + 1).max(self.now);
                        self.schedule(
                            at,
                            Ev::CheckVanished {
                                c: d,
                                claim: claim.clone(),
                            },
                        );
                    }
                }
            }
            Ev::Deliver { to, from, content } if live(self, to) => {
                self.stats.deliveries += 1;
                let chunk = ValidatedChunk::parse(
                    &content,
                    &self.clients[from].user,
                    &self.clients[from].device,
                )
                .unwrap();
                if !self.is_rogue(from) {
                    let sid = chunk.header().session_id.clone();
                    self.first_seen.entry((to, sid)).or_insert(self.now);
                }
                let before = self.clients[to].playing.clone();
                let holder_before = self.clients[to].machine.holder().cloned();
                let now = self.local(to);
                let _ = self.clients[to].machine.handle_chunk(chunk, now);
                if self.is_rogue(from)
                    && holder_before.is_some()
                    && self.clients[to].machine.holder() == holder_before.as_ref()
                {
                    self.stats.rogue_ignored += 1;
                }
                for sid in self.drain(to) {
                    self.stats.plays += 1;
                    let after = &self.clients[to].playing;
                    assert!(
                        before.iter().chain(after).any(|p| p.session_id == sid),
                        "(b) client {to} plays {sid} but plays {before:?}/{after:?}"
                    );
                }
            }
            Ev::Timer { c, generation }
                if live(self, c) && generation == self.clients[c].timer_generation =>
            {
                let now = self.local(c);
                self.clients[c].machine.handle_timeout(now);
                self.drain(c);
            }
            Ev::Tick { c, session } if live(self, c) => {
                let still = self.clients[c]
                    .machine
                    .transmitting()
                    .is_some_and(|cl| cl.session_id == session);
                if !still {
                    return;
                }
                let now = self.local(c);
                let sent = self.clients[c].machine.send_audio(
                    &session,
                    vec![vec![0x55; 60]; 5],
                    now - TICK_MS,
                    now,
                );
                if sent.is_ok() {
                    let cl = &self.clients[c];
                    assert!(
                        cl.machine.floor().holder_is_local() && cl.playing.is_none(),
                        "(d) client {c} transmits while {:?} holds",
                        cl.machine.holder()
                    );
                    self.schedule(self.now + TICK_MS, Ev::Tick { c, session });
                }
                self.drain(c);
            }
            Ev::Attack(attack) => self.attack(attack),
            Ev::RogueKeepAlive {
                session,
                start_ts,
                seq,
                targets,
                until,
            } => {
                let r = self.rogue.expect("a rogue");
                let header = ChunkHeader {
                    session_id: session.clone(),
                    seq,
                    start_ts,
                    ts: self.local(r).max(start_ts),
                    end: false,
                };
                self.rogue_send(&header, targets);
                if self.now + 500 < until {
                    self.schedule(
                        self.now + 500,
                        Ev::RogueKeepAlive {
                            session,
                            start_ts,
                            seq: seq + 1,
                            targets,
                            until,
                        },
                    );
                }
            }
            Ev::CheckVanished { c, claim } if live(self, c) => {
                self.stats.vanish_checks += 1;
                let f = self.clients[c].machine.floor();
                assert_ne!(f.holder(), Some(&claim), "(c) client {c} still holds");
                assert!(
                    f.remote.iter().all(|r| r.claim != claim),
                    "(c) client {c} still tracks vanished {claim:?}"
                );
            }
            _ => {}
        }
    }

    /// The rogue sends `header` (no frames) to `targets`, and logs it.
    fn rogue_send(&mut self, header: &ChunkHeader, targets: u32) {
        let r = self.rogue.expect("a rogue");
        let content = header.to_content(&self.room, &[]).unwrap();
        self.rogue_log.push(content.clone());
        self.send_content(r, content, targets);
    }

    /// A new rogue session claimed at `start_ts`, kept alive to `targets`
    /// for `hold` ms.
    fn rogue_claim(&mut self, start_ts: u64, targets: u32, hold: u64) {
        let r = self.rogue.expect("a rogue");
        self.rogue_sessions += 1;
        let session =
            SessionId::parse(&format!("rogue-session-{:06}", self.rogue_sessions)).unwrap();
        let header = ChunkHeader {
            session_id: session.clone(),
            seq: 0,
            start_ts,
            ts: self.local(r).max(start_ts),
            end: false,
        };
        self.rogue_sent.insert(session.clone(), self.now);
        self.stats.rogue_claims += 1;
        self.rogue_send(&header, targets);
        self.schedule(
            self.now + 500,
            Ev::RogueKeepAlive {
                session,
                start_ts,
                seq: 1,
                targets,
                until: self.now + hold,
            },
        );
    }

    fn attack(&mut self, attack: Attack) {
        let Some(r) = self.rogue else { return };
        // Honest clients may disagree until the attack's messages are over
        // and their leases (or the hold cap) ended them everywhere.
        let settle = |hold: u64, s: &Sim| hold + s.lease_ms + 2 * s.max_delay;
        match attack {
            Attack::BackDated { targets, hold, .. } => {
                let now = self.local(r);
                let start_ts = self.clients[r]
                    .machine
                    .holder()
                    .map_or(now, |h| h.start_ts.saturating_sub(1));
                self.disturb(settle(hold, self));
                self.rogue_claim(start_ts, targets, hold);
            }
            Attack::Chain { at, period, count } => {
                self.disturb(settle(period, self));
                let now = self.local(r);
                self.rogue_claim(now, u32::MAX, period);
                if count > 1 {
                    self.schedule(
                        self.now + period,
                        Ev::Attack(Attack::Chain {
                            at: at + period,
                            period,
                            count: count - 1,
                        }),
                    );
                }
            }
            Attack::Replay { .. } => {
                self.disturb(settle(MAX_AGE_MS, self));
                for content in self.rogue_log.clone() {
                    self.send_content(r, content, u32::MAX);
                }
            }
        }
    }

    /// (g) Two honest clients transmit at once only until the later one
    /// learns of the earlier claim: at most one maximum link delay plus
    /// the clocks' skew (600 ms) and a tick.
    fn check_overlap(&self) {
        if !self.check_agreement {
            return;
        }
        let since: Vec<u64> = self
            .clients
            .iter()
            .enumerate()
            .filter(|(i, c)| c.transmitting.is_some() && !c.vanished && Some(*i) != self.rogue)
            .map(|(_, c)| c.transmitting_since)
            .collect();
        if since.len() < 2 {
            return;
        }
        let overlap = self.now - since.iter().copied().max().unwrap_or(self.now);
        assert!(
            overlap <= self.max_delay + 600 + TICK_MS,
            "(g) {} clients have transmitted together for {overlap} ms (max delay {})",
            since.len(),
            self.max_delay
        );
    }

    fn check_agreement(&mut self) {
        let rogue = self.rogue;
        let views: Vec<Option<SessionId>> = self
            .clients
            .iter()
            .enumerate()
            .filter(|(i, c)| !c.vanished && Some(*i) != rogue)
            .map(|(_, c)| c)
            .map(|c| c.machine.holder().map(|h| h.session_id.clone()))
            .collect();
        self.stats.agreement_checks += 1;
        if views.first().is_some_and(Option::is_some) {
            self.stats.agreed_on_holder += 1;
        }
        assert!(
            views.windows(2).all(|w| w[0] == w[1]),
            "(a) disagreement at {} (should agree from {}): {views:?}",
            self.now - REAL0,
            self.quiet_until - REAL0
        );
    }

    fn run(mut self) -> Stats {
        while let Some(Reverse((at, id))) = self.queue.pop() {
            assert!(at >= self.now, "time went backwards");
            assert!(at < REAL0 + SIM_LIMIT_MS, "simulation did not settle");
            self.now = at;
            let Some(ev) = self.store.remove(&id) else {
                continue;
            };
            self.step(ev);
            self.check_overlap();
            if self.check_agreement && self.now >= self.quiet_until {
                self.check_agreement();
            }
        }
        // drained: everything delivered, every talk over
        for (i, c) in self.clients.iter().enumerate().filter(|(_, c)| !c.vanished) {
            assert!(
                c.machine.holder().is_none(),
                "(a) client {i} not free at the end"
            );
            let f = c.machine.floor();
            assert!(f.remote.is_empty() && !f.is_transmitting());
        }
        self.stats
    }
}

fn actions(n: usize) -> impl Strategy<Value = Vec<Action>> {
    let one = (
        0u64..20_000,
        0..n,
        20u64..5_000,
        prop::bool::weighted(0.15),
        proptest::option::weighted(0.4, (0..n, 0u64..=20, 20u64..5_000)),
    );
    prop::collection::vec(one, 1..10).prop_map(|v| {
        let mut out = Vec::new();
        for (at, client, hold, vanish, twin) in v {
            out.push(Action {
                at,
                client,
                hold,
                vanish,
            });
            // a near-simultaneous press by another (or the same) client
            if let Some((other, dt, hold2)) = twin {
                out.push(Action {
                    at: at + dt,
                    client: other,
                    hold: hold2,
                    vanish: false,
                });
            }
        }
        out
    })
}

fn random_links_scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5).prop_flat_map(|n| {
        (
            prop::collection::vec(-300i64..=300, n),
            prop::collection::vec(prop::collection::vec(0u64..=800, n), n),
            prop_oneof![Just(1_000u64), Just(3_000u64)],
            prop_oneof![Just(2_000u64), Just(60_000u64)],
            actions(n),
            any::<u64>(),
        )
            .prop_map(
                |(offsets, base, lease_ms, max_talk_ms, actions, seed)| Scenario {
                    offsets,
                    links: Links::Random { base, jitter: 200 },
                    cfg: FloorConfig {
                        lease_ms,
                        max_talk_ms,
                    },
                    actions,
                    seed,
                    attacks: Vec::new(),
                },
            )
    })
}

fn bursty_links_scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5).prop_flat_map(|n| {
        (
            prop::collection::vec(-300i64..=300, n),
            prop::collection::vec(prop::collection::vec(0u64..2_000, n), n),
            actions(n),
            any::<u64>(),
        )
            .prop_map(|(offsets, phase, actions, seed)| Scenario {
                offsets,
                links: Links::Bursty {
                    period: 2_000,
                    latency: 1_100,
                    phase,
                },
                cfg: FloorConfig::default(),
                actions,
                seed,
                attacks: Vec::new(),
            })
    })
}

fn attacks(honest: usize) -> impl Strategy<Value = Vec<Attack>> {
    let all = (1u32 << honest) - 1;
    let one =
        prop_oneof![
            (0u64..20_000, 1..=all, 200u64..8_000)
                .prop_map(|(at, targets, hold)| Attack::BackDated { at, targets, hold }),
            (0u64..20_000, 200u64..1_500, 2u32..15).prop_map(|(at, period, count)| Attack::Chain {
                at,
                period,
                count
            }),
            (0u64..25_000).prop_map(|at| Attack::Replay { at }),
        ];
    prop::collection::vec(one, 1..5)
}

/// 2–5 honest clients and a rogue (the last client) on random links.
fn adversarial_scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5).prop_flat_map(|honest| {
        let n = honest + 1;
        (
            prop::collection::vec(-300i64..=300, n),
            prop::collection::vec(prop::collection::vec(0u64..=800, n), n),
            prop_oneof![Just(1_000u64), Just(3_000u64)],
            prop_oneof![Just(2_000u64), Just(60_000u64)],
            actions(honest),
            attacks(honest),
            any::<u64>(),
        )
            .prop_map(
                |(offsets, base, lease_ms, max_talk_ms, actions, attacks, seed)| Scenario {
                    offsets,
                    links: Links::Random { base, jitter: 200 },
                    cfg: FloorConfig {
                        lease_ms,
                        max_talk_ms,
                    },
                    actions,
                    seed,
                    attacks,
                },
            )
    })
}

/// The same across slow federation (bursts 2 s apart, 1.1–3.1 s latency).
fn adversarial_bursty_scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5).prop_flat_map(|honest| {
        let n = honest + 1;
        (
            prop::collection::vec(-300i64..=300, n),
            prop::collection::vec(prop::collection::vec(0u64..2_000, n), n),
            actions(honest),
            attacks(honest),
            any::<u64>(),
        )
            .prop_map(|(offsets, phase, actions, attacks, seed)| Scenario {
                offsets,
                links: Links::Bursty {
                    period: 2_000,
                    latency: 1_100,
                    phase,
                },
                cfg: FloorConfig::default(),
                actions,
                seed,
                attacks,
            })
    })
}

/// Case count: `default`, or `WALKIE_SIM_CASES` for a longer soak.
fn cases(default: u32) -> u32 {
    std::env::var("WALKIE_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(Config { cases: cases(512), ..Config::default() })]

    /// (a)–(d) with per-link delays 0–1000 ms, jitter and reordering.
    #[test]
    fn floor_properties_random_links(sc in random_links_scenario()) {
        Sim::new(&sc).run();
    }
}

proptest! {
    #![proptest_config(Config { cases: cases(256), ..Config::default() })]

    /// (a)–(d) across slow federation: bursts every 2 s, 1.1–3.1 s latency,
    /// with the default lease.
    #[test]
    fn floor_properties_bursty_federation(sc in bursty_links_scenario()) {
        Sim::new(&sc).run();
    }
}

proptest! {
    #![proptest_config(Config { cases: cases(512), ..Config::default() })]

    /// (a)–(f) with one rogue among 2–5 honest clients, random links.
    #[test]
    fn floor_properties_with_a_rogue_member(sc in adversarial_scenario()) {
        Sim::new(&sc).run();
    }
}

proptest! {
    #![proptest_config(Config { cases: cases(256), ..Config::default() })]

    /// (a)–(f) with one rogue, across slow federation.
    #[test]
    fn floor_properties_with_a_rogue_member_bursty_federation(sc in adversarial_bursty_scenario()) {
        Sim::new(&sc).run();
    }
}

/// The adversarial runs are not vacuous: rogue claims are made, ignored by
/// established talkers and listeners, cut talkers only inside the window,
/// and holds end. Prints the totals (`cargo test -- --nocapture`).
#[test]
fn adversarial_simulation_covers_the_attacks() {
    let mut total = Stats::default();
    let mut runner = TestRunner::deterministic();
    for _ in 0..200 {
        let tree = adversarial_scenario().new_tree(&mut runner).unwrap();
        total.add(&Sim::new(&tree.current()).run());
    }
    println!("200 adversarial scenarios: {total:?}");
    assert!(total.rogue_claims > 0, "no rogue claims");
    assert!(total.rogue_ignored > 0, "no rogue message ignored");
    assert!(total.rogue_holds > 0, "the rogue never held the floor");
    assert!(total.cooling_down + total.busy > 0, "no refused press");
}

/// The properties above are not vacuous: the generated scenarios really
/// exercise collisions, switches, busy presses, lease expiry and vanished
/// talkers. Prints the totals (`cargo test -- --nocapture`).
#[test]
fn simulation_covers_the_interesting_cases() {
    let mut total = Stats::default();
    let mut runner = TestRunner::deterministic();
    for _ in 0..200 {
        let tree = random_links_scenario().new_tree(&mut runner).unwrap();
        total.add(&Sim::new(&tree.current()).run());
    }
    println!("200 random-link scenarios: {total:?}");
    assert!(total.lost > 0, "no lost claims");
    assert!(total.switches > 0, "no switches");
    assert!(total.busy > 0, "no busy presses");
    assert!(total.lease_expiries > 0, "no lease expiries");
    assert!(total.vanish_checks > 0, "no vanished talkers");
    assert!(total.agreed_on_holder > 0, "never agreed on a live holder");
}

/// Two presses 10 ms apart across 1 s links: one talker everywhere within
/// one one-way delay of the later claim (DESIGN target). Client 2 hears the
/// loser's claim first (its link is faster) and must switch to the winner.
#[test]
fn two_presses_10ms_apart_resolve_within_one_way_delay() {
    let mut base = vec![vec![1_000; 3]; 3];
    base[1][2] = 300;
    let sc = Scenario {
        offsets: vec![0, 0, 0],
        links: Links::Random { base, jitter: 0 },
        cfg: FloorConfig::default(),
        actions: vec![
            Action {
                at: 0,
                client: 0,
                hold: 4_000,
                vanish: false,
            },
            Action {
                at: 10,
                client: 1,
                hold: 4_000,
                vanish: false,
            },
        ],
        seed: 1,
        attacks: Vec::new(),
    };
    let mut sim = Sim::new(&sc);
    while let Some(Reverse((at, id))) = sim.queue.pop() {
        if at > REAL0 + 1_010 + 1 {
            sim.queue.push(Reverse((at, id)));
            break;
        }
        sim.now = at;
        if let Some(ev) = sim.store.remove(&id) {
            sim.step(ev);
        }
    }
    for c in &sim.clients {
        let h = c.machine.holder().unwrap();
        assert_eq!(h.user_id, user_of(0));
    }
    assert!(sim.clients[1].machine.transmitting().is_none());
    assert_eq!(sim.stats.switches, 1, "client 2 switched from the loser");
}

/// Why the default lease is 3 s: with a 1.5 s lease, bursty federation
/// delivery (2 s apart) makes listeners drop a talker that is still talking.
#[test]
fn short_lease_breaks_under_bursty_federation() {
    let sc = Scenario {
        offsets: vec![0, 0],
        links: Links::Bursty {
            period: 2_000,
            latency: 1_100,
            phase: vec![vec![0; 2]; 2],
        },
        cfg: FloorConfig {
            lease_ms: 1_500,
            max_talk_ms: 60_000,
        },
        actions: vec![Action {
            at: 0,
            client: 0,
            hold: 8_000,
            vanish: false,
        }],
        seed: 1,
        attacks: Vec::new(),
    };
    let mut sim = Sim::new(&sc);
    sim.check_agreement = false; // (a) fails here, which is the point
    let stats = sim.run();
    assert!(stats.lease_expiries > 0);
    let sc = Scenario {
        cfg: FloorConfig::default(),
        ..sc
    };
    assert_eq!(Sim::new(&sc).run().lease_expiries, 0);
}
