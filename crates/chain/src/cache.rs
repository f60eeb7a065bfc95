//! The decision cache of one provider (`[providers.cache]`): its `client.authenticate` and
//! `client.authorize` answers reused for a while instead of calling it. Pure: time is passed
//! in, the secret key is given by the caller, nothing here does I/O.
//!
//! The rules:
//! * **Key**: everything the provider's decision could depend on in the request, hashed with
//!   HMAC-SHA-256 under a per-process secret. `client.authenticate`: clientid, username,
//!   password, peerhost and the `result` EMQX (or an earlier provider) passed in;
//!   `client.authorize`: clientid, username, action (publish/subscribe), topic and `result`.
//!   The entry holds only the 32-byte digest — never the password or any other string, and
//!   the secret makes the digest useless for guessing passwords offline. `peerport` is left
//!   out: it changes with every connection and would make every login a miss.
//! * **Value**: the provider's answer (`CONTINUE`, `STOP_AND_RETURN` or `IGNORE` with its
//!   bool); failures are never cached. A `false` value (not authenticated, deny) lives
//!   `negative_ttl`, anything else `ttl`.
//! * **Bounds**: at most `max_entries` entries over [`SHARDS`] shards (a lock each). A full
//!   shard evicts its oldest insertion first (with one TTL for all entries, the one closest to
//!   expiring); an expired entry is removed when it is looked up.
//! * **Invalidation**: [`DecisionCache::sync_generation`] empties the cache when the provider
//!   was re-loaded since; a new configuration builds new caches. [`DecisionCache::evict_client`]
//!   and [`DecisionCache::clear`] serve the admin API.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use exhook_chain::cache::{CacheLimits, DecisionCache, Lookup};
//! use exhook_proto::model::{ClientAuthenticateRequest, ClientInfo, ValuedResponse};
//! use exhook_proto::model::valued_response::{ResponsedType, Value};
//! let limits = CacheLimits { ttl: Duration::from_secs(30), negative_ttl: Duration::from_secs(5), max_entries: 1000 };
//! let cache = DecisionCache::new(limits, [7; 32]);
//! let request = ClientAuthenticateRequest {
//!     clientinfo: Some(ClientInfo { clientid: "c1".into(), password: "pw".into(), ..Default::default() }),
//!     ..Default::default()
//! };
//! let key = cache.key_of(&request).unwrap();
//! let now = Instant::now();
//! assert!(matches!(cache.get(&key, now), Lookup::Miss { expired: false }));
//! let answer = ValuedResponse { r#type: ResponsedType::StopAndReturn as i32, value: Some(Value::BoolResult(true)) };
//! cache.insert(&key, &answer, now);
//! assert_eq!(cache.get(&key, now + Duration::from_secs(29)), Lookup::Hit(answer));
//! assert_eq!(cache.get(&key, now + Duration::from_secs(31)), Lookup::Miss { expired: true });
//! ```

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use exhook_proto::model::valued_response::Value;
use exhook_proto::model::{ClientAuthenticateRequest, ClientAuthorizeRequest, ClientInfo, ValuedResponse};
use sha2::{Digest, Sha256};

/// Shards of one cache: enough that concurrent logins rarely meet on a lock.
pub const SHARDS: usize = 16;

/// A cache's bounds and lifetimes (`[providers.cache]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// How long an answer is reused.
    pub ttl: Duration,
    /// How long a `false` answer is reused.
    pub negative_ttl: Duration,
    /// Entries at most.
    pub max_entries: usize,
}

/// A request's cache key: the keyed digest of its deciding fields, and a keyed hash of its
/// clientid alone (to evict one client's entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    digest: [u8; 32],
    client: u64,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A live answer: use it instead of calling the provider.
    Hit(ValuedResponse),
    /// Nothing usable; `expired` when an entry was there but too old (it was removed).
    Miss {
        /// An expired entry was removed.
        expired: bool,
    },
}

/// What an insertion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inserted {
    /// Entries evicted to make room (0 or 1).
    pub evicted: usize,
    /// False when the answer is not cacheable (no bool value of a known type).
    pub stored: bool,
}

/// A cached answer: the response type and its bool, nothing else.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: i32,
    value: Option<bool>,
    expires: Instant,
    client: u64,
    /// Matches the order record that inserted it (older records of the key are stale).
    seq: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<[u8; 32], Entry>,
    /// Insertion order: (key, seq); a record whose seq no longer matches its entry is stale.
    order: VecDeque<([u8; 32], u64)>,
    next_seq: u64,
    capacity: usize,
}

impl Shard {
    /// Removes the oldest live insertion; true if one was removed.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
                return true;
            }
        }
        false
    }

    /// Drops stale order records once they outnumber the entries (re-inserted keys leave
    /// one each): the order queue stays within twice the shard's capacity.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.capacity.max(1) {
            let map = &self.map;
            self.order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }
}

/// One provider's decision cache.
#[derive(Debug)]
pub struct DecisionCache {
    limits: CacheLimits,
    secret: [u8; 32],
    shards: Box<[Mutex<Shard>]>,
    len: AtomicUsize,
    /// The provider's load count the entries were answered under.
    generation: AtomicU64,
}

impl DecisionCache {
    /// An empty cache; `secret` keys every digest (use one random key per process).
    pub fn new(limits: CacheLimits, secret: [u8; 32]) -> DecisionCache {
        let max = limits.max_entries.max(1);
        let n = SHARDS.min(max);
        let shards = (0..n)
            .map(|i| Mutex::new(Shard { capacity: max / n + usize::from(i < max % n), ..Shard::default() }))
            .collect();
        DecisionCache { limits, secret, shards, len: AtomicUsize::new(0), generation: AtomicU64::new(0) }
    }

    /// Its limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of a `client.authenticate` or `client.authorize` request; `None` for any other
    /// request (those are never cached).
    pub fn key_of(&self, request: &dyn Any) -> Option<DecisionKey> {
        let mut mac = Hmac::new(&self.secret);
        let info = if let Some(r) = request.downcast_ref::<ClientAuthenticateRequest>() {
            mac.field(b"authenticate");
            let info = r.clientinfo.as_ref();
            let password = info.map_or("", |c| c.password.as_str());
            mac.client(info);
            mac.field(password.as_bytes());
            mac.field(info.map_or("", |c| c.peerhost.as_str()).as_bytes());
            mac.field(&[u8::from(r.result)]);
            info
        } else if let Some(r) = request.downcast_ref::<ClientAuthorizeRequest>() {
            mac.field(b"authorize");
            let info = r.clientinfo.as_ref();
            mac.client(info);
            mac.field(&r.r#type.to_be_bytes());
            mac.field(r.topic.as_bytes());
            mac.field(&[u8::from(r.result)]);
            info
        } else {
            return None;
        };
        let clientid = info.map_or("", |c| c.clientid.as_str());
        Some(DecisionKey { digest: mac.finish(), client: self.client_hash(clientid) })
    }

    fn client_hash(&self, clientid: &str) -> u64 {
        let mut mac = Hmac::new(&self.secret);
        mac.field(b"clientid");
        mac.field(clientid.as_bytes());
        let d = mac.finish();
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }

    fn shard(&self, key: &DecisionKey) -> &Mutex<Shard> {
        &self.shards[usize::from(key.digest[0]) % self.shards.len()]
    }

    fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a half-written entry (each operation is
        // one map call); go on with the data.
        shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live answer for `key` at `now`; an expired one is removed.
    pub fn get(&self, key: &DecisionKey, now: Instant) -> Lookup {
        let mut shard = Self::lock(self.shard(key));
        match shard.map.get(&key.digest) {
            None => Lookup::Miss { expired: false },
            Some(e) if e.expires <= now => {
                shard.map.remove(&key.digest);
                self.len.fetch_sub(1, Ordering::Relaxed);
                Lookup::Miss { expired: true }
            }
            Some(e) => Lookup::Hit(ValuedResponse { r#type: e.kind, value: e.value.map(Value::BoolResult) }),
        }
    }

    /// Stores the provider's answer for `key` at `now` (replacing an older one); a full shard
    /// evicts its oldest entry first.
    pub fn insert(&self, key: &DecisionKey, response: &ValuedResponse, now: Instant) -> Inserted {
        let value = match &response.value {
            None => None,
            Some(Value::BoolResult(b)) => Some(*b),
            Some(Value::Message(_)) => return Inserted::default(),
        };
        let ttl = if value == Some(false) { self.limits.negative_ttl } else { self.limits.ttl };
        let mut shard = Self::lock(self.shard(key));
        let mut evicted = 0;
        if !shard.map.contains_key(&key.digest) {
            if shard.map.len() >= shard.capacity && shard.evict_oldest() {
                evicted = 1;
            } else {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        let seq = shard.next_seq;
        shard.next_seq += 1;
        let entry = Entry { kind: response.r#type, value, expires: now + ttl, client: key.client, seq };
        shard.map.insert(key.digest, entry);
        shard.order.push_back((key.digest, seq));
        shard.compact();
        Inserted { evicted, stored: true }
    }

    /// Removes every entry of `clientid`; returns how many.
    pub fn evict_client(&self, clientid: &str) -> usize {
        let client = self.client_hash(clientid);
        self.remove_where(|e| e.client == client)
    }

    /// Removes every entry; returns how many.
    pub fn clear(&self) -> usize {
        self.remove_where(|_| true)
    }

    fn remove_where(&self, doomed: impl Fn(&Entry) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = Self::lock(shard);
            let before = shard.map.len();
            shard.map.retain(|_, e| !doomed(e));
            removed += before - shard.map.len();
            shard.compact();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Empties the cache if the provider's load count moved on since the entries were stored
    /// (it was re-loaded: its registration, and maybe its rules, changed). Returns how many
    /// entries were dropped. Costs one atomic load when nothing changed.
    pub fn sync_generation(&self, generation: u64) -> usize {
        let seen = self.generation.load(Ordering::Acquire);
        if seen == generation {
            return 0;
        }
        if self.generation.compare_exchange(seen, generation, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.clear()
        } else {
            0
        }
    }
}

/// Why a request to remove cached decisions (the admin API's `DELETE /api/v1/cache`) could
/// not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictError {
    /// No provider of that name is configured.
    UnknownProvider(String),
    /// The provider has no `[providers.cache]`.
    NoCache(String),
}

impl std::fmt::Display for EvictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvictError::UnknownProvider(p) => write!(f, "no provider {p:?} is configured"),
            EvictError::NoCache(p) => write!(f, "provider {p:?} has no decision cache ([providers.cache])"),
        }
    }
}

impl std::error::Error for EvictError {}

/// HMAC-SHA-256 over length-prefixed fields (so `("ab", "c")` and `("a", "bc")` differ).
struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    fn new(key: &[u8; 32]) -> Hmac {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let mut inner = Sha256::new();
        inner.update(ipad);
        let mut outer = Sha256::new();
        outer.update(opad);
        Hmac { inner, outer }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.inner.update((bytes.len() as u64).to_be_bytes());
        self.inner.update(bytes);
    }

    /// The client's identity: clientid and username.
    fn client(&mut self, info: Option<&ClientInfo>) {
        self.field(info.map_or("", |c| c.clientid.as_str()).as_bytes());
        self.field(info.map_or("", |c| c.username.as_str()).as_bytes());
    }

    fn finish(self) -> [u8; 32] {
        let Hmac { inner, mut outer } = self;
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exhook_proto::model::MessagePublishRequest;
    use exhook_proto::model::valued_response::ResponsedType;

    const SECRET: [u8; 32] = [42; 32];

    fn limits(max_entries: usize) -> CacheLimits {
        CacheLimits { ttl: Duration::from_secs(30), negative_ttl: Duration::from_secs(5), max_entries }
    }

    fn authn(clientid: &str, username: &str, password: &str, peerhost: &str) -> ClientAuthenticateRequest {
        ClientAuthenticateRequest {
            clientinfo: Some(ClientInfo {
                clientid: clientid.into(),
                username: username.into(),
                password: password.into(),
                peerhost: peerhost.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn allow() -> ValuedResponse {
        ValuedResponse { r#type: ResponsedType::StopAndReturn as i32, value: Some(Value::BoolResult(true)) }
    }

    fn deny() -> ValuedResponse {
        ValuedResponse { r#type: ResponsedType::StopAndReturn as i32, value: Some(Value::BoolResult(false)) }
    }

    #[test]
    fn the_key_covers_every_deciding_field() {
        let c = DecisionCache::new(limits(10), SECRET);
        let base = c.key_of(&authn("c1", "u", "pw", "10.0.0.1")).unwrap();
        for other in [
            authn("c2", "u", "pw", "10.0.0.1"),
            authn("c1", "v", "pw", "10.0.0.1"),
            authn("c1", "u", "pw2", "10.0.0.1"),
            authn("c1", "u", "pw", "10.0.0.2"),
            authn("c1u", "", "pw", "10.0.0.1"), // field boundaries are part of the key
        ] {
            assert_ne!(c.key_of(&other).unwrap().digest, base.digest, "{other:?}");
        }
        let mut passed_in = authn("c1", "u", "pw", "10.0.0.1");
        passed_in.result = true;
        assert_ne!(c.key_of(&passed_in).unwrap().digest, base.digest);
        // The connection's port is not part of it.
        let mut other_port = authn("c1", "u", "pw", "10.0.0.1");
        other_port.clientinfo.as_mut().unwrap().peerport = 51000;
        assert_eq!(c.key_of(&other_port).unwrap(), base);
        // Authorize: action and topic count.
        let az = |kind: i32, topic: &str| ClientAuthorizeRequest {
            clientinfo: Some(ClientInfo { clientid: "c1".into(), username: "u".into(), ..Default::default() }),
            r#type: kind,
            topic: topic.into(),
            ..Default::default()
        };
        let k = c.key_of(&az(0, "a/b")).unwrap();
        assert_ne!(k, c.key_of(&az(1, "a/b")).unwrap());
        assert_ne!(k, c.key_of(&az(0, "a/c")).unwrap());
        assert_eq!(k.client, base.client, "one client's entries share the client hash");
        // Other hooks are never cached.
        assert!(c.key_of(&MessagePublishRequest::default()).is_none());
        // Another process (another secret) has other digests: they say nothing offline.
        let other = DecisionCache::new(limits(10), [1; 32]);
        assert_ne!(other.key_of(&authn("c1", "u", "pw", "10.0.0.1")).unwrap(), base);
    }

    #[test]
    fn the_password_is_never_stored() {
        let c = DecisionCache::new(limits(10), SECRET);
        let password = "hunter2-very-secret";
        let key = c.key_of(&authn("c1", "u", password, "h")).unwrap();
        c.insert(&key, &allow(), Instant::now());
        let dump = format!("{c:?} {key:?}");
        assert!(!dump.contains(password) && !dump.contains("hunter2"), "{dump}");
    }

    #[test]
    fn negative_answers_live_negative_ttl() {
        let c = DecisionCache::new(limits(10), SECRET);
        let (yes, no) = (c.key_of(&authn("a", "", "", "")).unwrap(), c.key_of(&authn("b", "", "", "")).unwrap());
        let t0 = Instant::now();
        c.insert(&yes, &allow(), t0);
        c.insert(&no, &deny(), t0);
        let t6 = t0 + Duration::from_secs(6);
        assert_eq!(c.get(&yes, t6), Lookup::Hit(allow()));
        assert_eq!(c.get(&no, t6), Lookup::Miss { expired: true });
        assert_eq!(c.get(&no, t6), Lookup::Miss { expired: false }, "removed on the expired lookup");
        assert_eq!(c.len(), 1);
        // IGNORE (no value) is an answer too; a Message is not cacheable.
        let ignore = ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None };
        assert!(c.insert(&no, &ignore, t6).stored);
        assert_eq!(c.get(&no, t6), Lookup::Hit(ignore));
        let msg = ValuedResponse { r#type: 0, value: Some(Value::Message(Default::default())) };
        assert!(!c.insert(&no, &msg, t6).stored);
    }

    #[test]
    fn bounded_by_max_entries_oldest_first() {
        let c = DecisionCache::new(limits(SHARDS * 2), SECRET);
        let t0 = Instant::now();
        let keys: Vec<DecisionKey> =
            (0..2000).map(|i| c.key_of(&authn(&format!("c{i}"), "", "", "")).unwrap()).collect();
        let mut evicted = 0;
        for (i, k) in keys.iter().enumerate() {
            evicted += c.insert(k, &allow(), t0 + Duration::from_millis(i as u64)).evicted;
            assert!(c.len() <= SHARDS * 2);
        }
        assert_eq!(c.len(), SHARDS * 2);
        assert_eq!(evicted, 2000 - SHARDS * 2);
        // The newest survive, the oldest went first.
        let now = t0 + Duration::from_secs(2);
        assert_eq!(c.get(&keys[1999], now), Lookup::Hit(allow()));
        assert_eq!(c.get(&keys[0], now), Lookup::Miss { expired: false });
        // Re-inserting one key over and over keeps the order queue bounded.
        for _ in 0..10_000 {
            c.insert(&keys[1999], &allow(), now);
        }
        for s in c.shards.iter() {
            let s = s.lock().unwrap();
            assert!(s.order.len() <= 2 * s.capacity + 1, "{} records for {}", s.order.len(), s.capacity);
        }
        assert_eq!(c.len(), SHARDS * 2);
        // A tiny cache (fewer entries than shards) still holds exactly max_entries.
        let tiny = DecisionCache::new(limits(3), SECRET);
        for k in &keys[..100] {
            tiny.insert(k, &allow(), now);
        }
        assert_eq!(tiny.len(), 3);
    }

    #[test]
    fn eviction_by_client_clear_and_generation() {
        let c = DecisionCache::new(limits(100), SECRET);
        let now = Instant::now();
        for (id, pw) in [("a", "1"), ("a", "2"), ("b", "1")] {
            c.insert(&c.key_of(&authn(id, "", pw, "")).unwrap(), &allow(), now);
        }
        assert_eq!(c.evict_client("a"), 2);
        assert_eq!(c.evict_client("a"), 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.sync_generation(0), 0, "same load count: kept");
        assert_eq!(c.sync_generation(1), 1, "re-loaded: emptied");
        assert_eq!(c.sync_generation(1), 0);
        c.insert(&c.key_of(&authn("x", "", "", "")).unwrap(), &allow(), now);
        assert_eq!(c.clear(), 1);
        assert!(c.is_empty());
    }
}
