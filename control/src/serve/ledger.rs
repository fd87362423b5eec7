//! Who holds a port's connection slots, and whom to close to make room for a newcomer. Pure: no
//! I/O, and the clock is an argument, so every decision is a unit test.
//!
//! A connection first *handshakes*: it holds one of `max_handshakes` slots, of which its address
//! may hold at most `max_handshakes_per_address`. Once its certificate has been verified it is
//! *authenticated* and holds one of `max_connections` slots instead. The two budgets are never
//! shared, so connections that never finish a handshake cannot take the place of a client that
//! did; and each budget, when full, makes room by closing the connection that matters least
//! rather than turning the newcomer away (see [`Ledger::arrive`] and [`Ledger::authenticated`]).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Connections in their TLS handshake.
    pub max_handshakes: usize,
    /// Of those, how many may come from one IP address (see [`source`]).
    pub max_handshakes_per_address: usize,
    /// Authenticated connections.
    pub max_connections: usize,
}

/// Names a connection for as long as the ledger knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

/// A connection closed to make room: the handle it was registered with, to close it by, and its
/// address, for the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Evicted<T> {
    pub address: IpAddr,
    pub handle: T,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<T> {
    /// Start its handshake, after closing `evicted` (if any), whose slot it takes.
    Admitted { id: ConnectionId, evicted: Option<Evicted<T>> },
    /// Close it at once: `in_progress` handshakes from its address are going already.
    Refused { in_progress: usize },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Authentication<T> {
    /// Serve it, after closing `evicted` (if any), whose slot it takes.
    Admitted { evicted: Option<Evicted<T>> },
    /// Close it: every authenticated connection is in the middle of a request.
    Full,
    /// Close it: it was evicted during its handshake to make room for another.
    Gone,
}

pub struct Ledger<T> {
    budget: Budget,
    next_id: u64,
    connections: HashMap<ConnectionId, Connection<T>>,
    /// Handshakes in progress, by [`source`], oldest first.
    handshakes: HashMap<IpAddr, BTreeSet<(Instant, ConnectionId)>>,
    handshaking: usize,
    /// Authenticated connections with no request in flight, least recently active first.
    idle: BTreeSet<(Instant, ConnectionId)>,
    authenticated: usize,
}

struct Connection<T> {
    address: IpAddr,
    state: State,
    handle: T,
}

#[derive(Clone, Copy)]
enum State {
    Handshaking {
        since: Instant,
    },
    /// `idle_since` means something only when `requests` is 0.
    Authenticated {
        requests: usize,
        idle_since: Instant,
    },
}

impl<T> Ledger<T> {
    /// A budget of 0 would refuse everyone; each is taken as at least 1.
    pub fn new(budget: Budget) -> Self {
        Self {
            budget: Budget {
                max_handshakes: budget.max_handshakes.max(1),
                max_handshakes_per_address: budget.max_handshakes_per_address.max(1),
                max_connections: budget.max_connections.max(1),
            },
            next_id: 0,
            connections: HashMap::new(),
            handshakes: HashMap::new(),
            handshaking: 0,
            idle: BTreeSet::new(),
            authenticated: 0,
        }
    }

    /// A connection from `address` was accepted; `handle` is how to close it later.
    ///
    /// Its address at its limit: it is refused, so that one address cannot hold more. Every
    /// handshake slot taken: the oldest handshake of the address holding the most is closed to
    /// make room. Refusing the newcomer instead would let anyone who renews a few hundred
    /// connections every `--handshake-timeout` lock every new client out; a real handshake takes
    /// a few round trips, so the oldest is the likeliest to be one that never finishes, and
    /// taking it from the address with the most means a flood pays for itself: a client
    /// handshaking alone from its own address is closed only once every address holds just one.
    pub fn arrive(&mut self, address: IpAddr, now: Instant, handle: T) -> Arrival<T> {
        let in_progress = self.handshakes.get(&source(address)).map_or(0, BTreeSet::len);
        if in_progress >= self.budget.max_handshakes_per_address {
            return Arrival::Refused { in_progress };
        }
        let evicted = if self.handshaking >= self.budget.max_handshakes {
            self.handshake_to_close().and_then(|victim| self.remove(victim))
        } else {
            None
        };
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        let state = State::Handshaking { since: now };
        self.connections.insert(id, Connection { address, state, handle });
        self.handshakes.entry(source(address)).or_default().insert((now, id));
        self.handshaking += 1;
        Arrival::Admitted { id, evicted }
    }

    /// `id` completed its handshake and moves to the authenticated budget.
    ///
    /// If that is full, the least recently active idle connection is closed to make room: a
    /// client with a certificate is then always served, unless every slot is in the middle of
    /// a request, and an idle keep-alive connection costs its client only a new handshake on
    /// its next call. Closing the newcomer instead would let a pool of idle connections — a
    /// client that leaks them, say — lock every other client out until they time out.
    pub fn authenticated(&mut self, id: ConnectionId, now: Instant) -> Authentication<T> {
        let Some(connection) = self.connections.get(&id) else { return Authentication::Gone };
        let (address, state) = (connection.address, connection.state);
        let State::Handshaking { since } = state else {
            return Authentication::Admitted { evicted: None }; // told twice: nothing changes
        };
        self.forget_handshake(address, since, id);
        let evicted = if self.authenticated >= self.budget.max_connections {
            match self.idle.first() {
                Some(&(_, victim)) => self.remove(victim),
                None => {
                    self.connections.remove(&id);
                    return Authentication::Full;
                }
            }
        } else {
            None
        };
        self.set_state(id, State::Authenticated { requests: 0, idle_since: now });
        self.idle.insert((now, id));
        self.authenticated += 1;
        Authentication::Admitted { evicted }
    }

    /// `id` started serving a request: it is not idle until the request is finished.
    pub fn request_started(&mut self, id: ConnectionId) {
        let Some(State::Authenticated { requests, idle_since }) = self.state(id) else { return };
        if requests == 0 {
            self.idle.remove(&(idle_since, id));
        }
        self.set_state(id, State::Authenticated { requests: requests + 1, idle_since });
    }

    /// `id` finished a request at `now`.
    pub fn request_finished(&mut self, id: ConnectionId, now: Instant) {
        let Some(State::Authenticated { requests, idle_since }) = self.state(id) else { return };
        let requests = requests.saturating_sub(1);
        let idle_since = if requests == 0 { now } else { idle_since };
        if requests == 0 {
            self.idle.insert((now, id));
        }
        self.set_state(id, State::Authenticated { requests, idle_since });
    }

    /// `id` is closed, whatever the reason; its slot is free. Harmless if it was evicted.
    pub fn closed(&mut self, id: ConnectionId) {
        self.remove(id);
    }

    /// The oldest handshake of the address with the most in progress (of two with as many,
    /// the one whose oldest is older).
    fn handshake_to_close(&self) -> Option<ConnectionId> {
        let candidates = self.handshakes.values().filter_map(|handshakes| {
            handshakes.first().map(|&(since, id)| (handshakes.len(), Reverse((since, id))))
        });
        candidates.max().map(|(_, Reverse((_, id)))| id)
    }

    fn remove(&mut self, id: ConnectionId) -> Option<Evicted<T>> {
        let connection = self.connections.remove(&id)?;
        match connection.state {
            State::Handshaking { since } => self.forget_handshake(connection.address, since, id),
            State::Authenticated { requests, idle_since } => {
                if requests == 0 {
                    self.idle.remove(&(idle_since, id));
                }
                self.authenticated -= 1;
            }
        }
        Some(Evicted { address: connection.address, handle: connection.handle })
    }

    fn forget_handshake(&mut self, address: IpAddr, since: Instant, id: ConnectionId) {
        let source = source(address);
        if let Some(handshakes) = self.handshakes.get_mut(&source) {
            if handshakes.remove(&(since, id)) {
                self.handshaking -= 1;
            }
            if handshakes.is_empty() {
                self.handshakes.remove(&source);
            }
        }
    }

    fn state(&self, id: ConnectionId) -> Option<State> {
        self.connections.get(&id).map(|connection| connection.state)
    }

    fn set_state(&mut self, id: ConnectionId, state: State) {
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.state = state;
        }
    }
}

/// Whom a per-address limit counts a connection against: its IPv4 address (an IPv4 client on a
/// dual-stack port included), or its IPv6 address's /64, since one host usually holds a whole
/// /64 and may pick any address in it.
fn source(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
impl<T> Ledger<T> {
    fn handshaking(&self) -> usize {
        self.handshaking
    }

    fn authenticated_count(&self) -> usize {
        self.authenticated
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BUDGET: Budget =
        Budget { max_handshakes: 4, max_handshakes_per_address: 3, max_connections: 2 };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// A ledger and a clock that moves a millisecond per call.
    struct Scene {
        ledger: Ledger<&'static str>,
        start: Instant,
        ticks: u32,
    }

    impl Scene {
        fn new(budget: Budget) -> Self {
            Self { ledger: Ledger::new(budget), start: Instant::now(), ticks: 0 }
        }

        fn now(&mut self) -> Instant {
            self.ticks += 1;
            self.start + Duration::from_millis(self.ticks.into())
        }

        fn arrive(&mut self, address: IpAddr, name: &'static str) -> Arrival<&'static str> {
            let now = self.now();
            self.ledger.arrive(address, now, name)
        }

        /// Arrives, expecting room without closing anyone.
        fn admit(&mut self, address: IpAddr, name: &'static str) -> ConnectionId {
            match self.arrive(address, name) {
                Arrival::Admitted { id, evicted: None } => id,
                other => panic!("{name} from {address}: {other:?}"),
            }
        }

        fn authenticate(&mut self, id: ConnectionId) -> Authentication<&'static str> {
            let now = self.now();
            self.ledger.authenticated(id, now)
        }

        /// Arrives and authenticates, expecting room without closing anyone.
        fn client(&mut self, address: IpAddr, name: &'static str) -> ConnectionId {
            let id = self.admit(address, name);
            assert_eq!(self.authenticate(id), Authentication::Admitted { evicted: None });
            id
        }
    }

    fn closing(address: IpAddr, handle: &'static str) -> Option<Evicted<&'static str>> {
        Some(Evicted { address, handle })
    }

    #[test]
    fn an_address_with_its_limit_of_handshakes_going_is_refused_while_others_are_admitted() {
        let mut scene = Scene::new(BUDGET);
        for name in ["a1", "a2", "a3"] {
            scene.admit(ip(1), name);
        }
        assert_eq!(scene.arrive(ip(1), "a4"), Arrival::Refused { in_progress: 3 });
        scene.admit(ip(2), "b1");
        assert_eq!(scene.ledger.handshaking(), 4);
    }

    #[test]
    fn an_address_may_handshake_again_once_one_of_its_handshakes_is_over() {
        let mut scene = Scene::new(BUDGET);
        let first = scene.admit(ip(1), "a1");
        let second = scene.admit(ip(1), "a2");
        scene.admit(ip(1), "a3");
        scene.ledger.closed(first); // failed or timed out
        assert!(matches!(scene.authenticate(second), Authentication::Admitted { .. }));
        scene.admit(ip(1), "a4");
        scene.admit(ip(1), "a5");
        assert_eq!(scene.arrive(ip(1), "a6"), Arrival::Refused { in_progress: 3 });
    }

    #[test]
    fn when_every_handshake_slot_is_taken_the_oldest_handshake_of_the_busiest_address_goes() {
        let mut scene = Scene::new(BUDGET);
        scene.admit(ip(1), "lone client");
        scene.admit(ip(2), "flood 1");
        scene.admit(ip(2), "flood 2");
        scene.admit(ip(3), "other flood 1");
        let Arrival::Admitted { evicted, .. } = scene.arrive(ip(4), "newcomer") else { panic!() };
        assert_eq!(evicted, closing(ip(2), "flood 1"));
        assert_eq!(scene.ledger.handshaking(), 4);
    }

    #[test]
    fn of_addresses_with_as_many_handshakes_the_one_whose_oldest_is_older_loses_it() {
        let mut scene = Scene::new(BUDGET);
        scene.admit(ip(1), "a1");
        scene.admit(ip(2), "b1");
        scene.admit(ip(2), "b2");
        scene.admit(ip(1), "a2");
        let Arrival::Admitted { evicted, .. } = scene.arrive(ip(3), "c1") else { panic!() };
        assert_eq!(evicted, closing(ip(1), "a1"));
    }

    #[test]
    fn a_newcomer_from_the_busiest_address_takes_the_place_of_its_own_oldest_handshake() {
        let mut scene = Scene::new(BUDGET);
        scene.admit(ip(1), "lone client");
        scene.admit(ip(2), "flood 1");
        scene.admit(ip(2), "flood 2");
        scene.admit(ip(3), "other");
        let Arrival::Admitted { evicted, .. } = scene.arrive(ip(2), "flood 3") else { panic!() };
        assert_eq!(evicted, closing(ip(2), "flood 1"));
    }

    #[test]
    fn a_handshake_evicted_to_make_room_is_gone_when_it_completes() {
        let mut scene = Scene::new(Budget { max_handshakes: 1, ..BUDGET });
        let slow = scene.admit(ip(1), "slow");
        assert!(matches!(scene.arrive(ip(2), "newcomer"), Arrival::Admitted { .. }));
        assert_eq!(scene.authenticate(slow), Authentication::Gone);
        scene.ledger.closed(slow); // its task ends: harmless
        assert_eq!(scene.ledger.handshaking(), 1);
    }

    #[test]
    fn an_authenticated_connection_frees_its_handshake_slot() {
        let mut scene = Scene::new(Budget { max_handshakes: 1, ..BUDGET });
        scene.client(ip(1), "first");
        assert_eq!((scene.ledger.handshaking(), scene.ledger.authenticated_count()), (0, 1));
        scene.admit(ip(1), "second"); // no eviction: the slot is free
    }

    #[test]
    fn when_every_authenticated_slot_is_taken_the_least_recently_active_idle_one_makes_room() {
        let mut scene = Scene::new(BUDGET);
        let old = scene.client(ip(1), "idle since long ago");
        let recent = scene.client(ip(2), "idle since a moment ago");
        // `old` serves a request after `recent` was last active: `recent` is now the staler.
        scene.ledger.request_started(old);
        let now = scene.now();
        scene.ledger.request_finished(old, now);
        let newcomer = scene.admit(ip(3), "newcomer");
        let made_room =
            Authentication::Admitted { evicted: closing(ip(2), "idle since a moment ago") };
        assert_eq!(scene.authenticate(newcomer), made_room);
        assert_eq!(scene.ledger.authenticated_count(), 2);
        scene.ledger.closed(recent); // its task ends: harmless
        assert_eq!(scene.ledger.authenticated_count(), 2);
    }

    #[test]
    fn a_connection_serving_a_request_is_never_closed_to_make_room() {
        let mut scene = Scene::new(BUDGET);
        let busy = scene.client(ip(1), "long poll");
        scene.client(ip(2), "idle");
        scene.ledger.request_started(busy);
        let newcomer = scene.admit(ip(3), "newcomer");
        let made_room = Authentication::Admitted { evicted: closing(ip(2), "idle") };
        assert_eq!(scene.authenticate(newcomer), made_room);
        scene.ledger.request_started(newcomer);
        let another = scene.admit(ip(4), "another");
        assert_eq!(scene.authenticate(another), Authentication::Full);
        assert_eq!(scene.ledger.authenticated_count(), 2);
        assert_eq!(scene.ledger.handshaking(), 0, "the refused one holds no slot either");
    }

    #[test]
    fn a_connection_is_idle_only_once_all_its_requests_are_finished() {
        let mut scene = Scene::new(BUDGET);
        let pipelined = scene.client(ip(1), "two requests");
        scene.client(ip(2), "idle");
        scene.ledger.request_started(pipelined);
        scene.ledger.request_started(pipelined);
        let now = scene.now();
        scene.ledger.request_finished(pipelined, now);
        let newcomer = scene.admit(ip(3), "newcomer");
        let made_room = Authentication::Admitted { evicted: closing(ip(2), "idle") };
        assert_eq!(scene.authenticate(newcomer), made_room);
        scene.ledger.request_started(newcomer);
        let another = scene.admit(ip(4), "another");
        assert_eq!(scene.authenticate(another), Authentication::Full);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_an_ipv4_client_as_its_address_on_either_stack() {
        let mut scene = Scene::new(BUDGET);
        for address in ["2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:abcd::3"] {
            scene.admit(address.parse().unwrap(), "one host");
        }
        let refused = scene.arrive("2001:db8:0:1:ffff::9".parse().unwrap(), "same /64");
        assert_eq!(refused, Arrival::Refused { in_progress: 3 });
        let mut scene = Scene::new(BUDGET);
        scene.admit(ip(1), "v4");
        scene.admit("::ffff:10.0.0.1".parse().unwrap(), "v4 on a dual-stack port");
        scene.admit(ip(1), "v4 again");
        assert_eq!(scene.arrive(ip(1), "one more"), Arrival::Refused { in_progress: 3 });
    }

    #[test]
    fn a_budget_of_zero_is_taken_as_one() {
        let mut scene = Scene::new(Budget {
            max_handshakes: 0,
            max_handshakes_per_address: 0,
            max_connections: 0,
        });
        scene.client(ip(1), "served");
    }
}
