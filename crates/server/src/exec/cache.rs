//! The providers' decision caches (`[providers.cache]`, rules in [`exhook_chain::cache`]):
//! built with each snapshot, so a new configuration starts them empty; emptied when their
//! provider is re-loaded; looked up where the valued chain would call the provider, so a hit
//! is a step that costs no call.

use std::sync::OnceLock;

use exhook_chain::cache::{CacheLimits, DecisionCache, DecisionKey, EvictError, Lookup};
use exhook_config::Config;
use exhook_hooks::{Hook, ValuedRequest};
use exhook_metrics::{CacheEviction, CacheLookup, Handles};
use exhook_proto::model::ValuedResponse;

use super::Runtime;

/// The hooks whose answers are cached.
pub(crate) const CACHED_HOOKS: [Hook; 2] = [Hook::ClientAuthenticate, Hook::ClientAuthorize];

/// Every provider's cache (`None`: not configured), with its series created at 0. (Calls
/// still running on the previous snapshot may set the entries gauge to their old cache's
/// count once more; the next change to the new cache corrects it.)
pub(super) fn caches(config: &Config, metrics: &Handles) -> Vec<Option<DecisionCache>> {
    config
        .providers
        .iter()
        .enumerate()
        .map(|(i, pc)| {
            let Some(c) = pc.cache else {
                metrics.forget_cache(i);
                return None;
            };
            metrics.declare_cache(i, &CACHED_HOOKS);
            let limits = CacheLimits { ttl: c.ttl, negative_ttl: c.negative_ttl, max_entries: c.max_entries };
            Some(DecisionCache::new(limits, secret()))
        })
        .collect()
}

/// The per-process key of the caches' digests: 32 bytes from the OS (`/dev/urandom`), mixed
/// with std's randomly seeded SipHash keys in case the device cannot be read. It never leaves
/// the process, so a digest says nothing about a password outside it.
fn secret() -> [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    *SECRET.get_or_init(|| {
        use std::hash::BuildHasher;
        use std::io::Read;
        let mut key = [0u8; 32];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = f.read_exact(&mut key);
        }
        let seeded = std::collections::hash_map::RandomState::new();
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            let mix = seeded.hash_one(i).to_be_bytes();
            for (k, m) in chunk.iter_mut().zip(mix) {
                *k ^= m;
            }
        }
        key
    })
}

impl Runtime {
    /// The key of `request` in provider `index`'s cache, if it has one and the hook is cached.
    pub(super) fn cache_key<R: ValuedRequest>(&self, index: usize, request: &R) -> Option<DecisionKey> {
        self.caches.get(index)?.as_ref()?.key_of(request)
    }

    /// Looks `key` up in provider `index`'s cache (emptied first if the provider was re-loaded
    /// since its entries were stored), counting the lookup and any eviction.
    pub(super) fn cache_lookup(&self, index: usize, hook: Hook, key: &DecisionKey) -> Option<ValuedResponse> {
        let cache = self.caches[index].as_ref()?;
        let dropped = cache.sync_generation(self.providers[index].load_count());
        if dropped > 0 {
            self.metrics.cache_evicted(index, CacheEviction::Invalidated, dropped);
            self.metrics.cache_entries(index, cache.len());
        }
        match cache.get(key, std::time::Instant::now()) {
            Lookup::Hit(response) => {
                self.metrics.cache_lookup(index, hook, CacheLookup::Hit);
                Some(response)
            }
            Lookup::Miss { expired } => {
                self.metrics.cache_lookup(index, hook, CacheLookup::Miss);
                if expired {
                    self.metrics.cache_evicted(index, CacheEviction::Expired, 1);
                    self.metrics.cache_entries(index, cache.len());
                }
                None
            }
        }
    }

    /// Stores provider `index`'s answer under `key`.
    pub(super) fn cache_store(&self, index: usize, key: &DecisionKey, response: &ValuedResponse) {
        let Some(cache) = self.caches[index].as_ref() else { return };
        let inserted = cache.insert(key, response, std::time::Instant::now());
        self.metrics.cache_evicted(index, CacheEviction::Capacity, inserted.evicted);
        if inserted.stored {
            self.metrics.cache_entries(index, cache.len());
        }
    }

    /// Empties provider `index`'s cache, or only `clientid`'s entries: how many were removed,
    /// `None` if it has no cache.
    fn evict_cached(&self, index: usize, clientid: Option<&str>) -> Option<usize> {
        let cache = self.caches.get(index)?.as_ref()?;
        let n = match clientid {
            Some(id) => cache.evict_client(id),
            None => cache.clear(),
        };
        self.metrics.cache_evicted(index, CacheEviction::Api, n);
        self.metrics.cache_entries(index, cache.len());
        Some(n)
    }
}

impl crate::Gateway {
    /// Removes cached decisions (the admin API's `DELETE /api/v1/cache`): of `provider` (every
    /// cached provider when `None`), only `clientid`'s when given. Returns how many were removed.
    pub fn evict_cached(&self, provider: Option<&str>, clientid: Option<&str>) -> Result<usize, EvictError> {
        let rt = self.shared.current();
        match provider {
            Some(name) => {
                let index = rt
                    .config
                    .providers
                    .iter()
                    .position(|p| p.name == name)
                    .ok_or_else(|| EvictError::UnknownProvider(name.to_owned()))?;
                rt.evict_cached(index, clientid).ok_or_else(|| EvictError::NoCache(name.to_owned()))
            }
            None => Ok((0..rt.providers.len()).filter_map(|i| rt.evict_cached(i, clientid)).sum()),
        }
    }

    /// Decisions cached now per provider that has a cache, in `[[providers]]` order.
    pub fn cache_entries(&self) -> Vec<(String, usize)> {
        let rt = self.shared.current();
        rt.caches
            .iter()
            .zip(&rt.config.providers)
            .filter_map(|(c, p)| c.as_ref().map(|c| (p.name.clone(), c.len())))
            .collect()
    }
}
