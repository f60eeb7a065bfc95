use std::sync::Arc;

use exhook_hooks::{Hook, HookSet, Version};
use exhook_proto::model::LoadedResponse;
use exhook_topic::{FilterSet, validate_filter};

/// What a provider registered in its last successful `OnProviderLoaded`.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The package the provider answered in.
    pub version: Version,
    /// The hooks it registered.
    pub hooks: HookSet,
    /// Topic filters per `message.*` hook (indexed by [`Hook::index`]); `None` = all topics.
    /// Hooks registered with the same list share one set: providers usually send one list
    /// for all four `message.*` hooks, and a set costs ~300 bytes per filter (measured with
    /// 1,000 filters: 1.2 MiB per provider before sharing, a quarter after).
    filters: Vec<Option<Arc<FilterSet>>>,
    /// Names it registered that are not hookpoints (ignored; EMQX would reject the load).
    pub unknown: Vec<String>,
    /// Filters that are not valid MQTT topic filters (ignored).
    pub invalid_filters: Vec<String>,
}

impl Registration {
    /// Reads a `LoadedResponse`. Hook names of any EMQX line are accepted (`client.check_acl`
    /// and `client.authorize` alike); a hook listed twice gets the union of its topics.
    pub fn from_response(version: Version, response: &LoadedResponse) -> Registration {
        let mut hooks = HookSet::EMPTY;
        // The topics each message.* hook registered, in order (a hook listed twice: the union).
        let mut topics: Vec<Option<Vec<&str>>> = vec![None; Hook::ALL.len()];
        let mut all_topics = HookSet::EMPTY;
        let mut unknown = Vec::new();
        // Every invalid filter a message.* hook was sent with, in order (also for a hook that
        // ends up taking all topics): what the provider got wrong, whatever the set kept.
        let mut invalid_filters = Vec::new();
        for spec in &response.hooks {
            if spec.name.is_empty() {
                continue; // EMQX skips a HookSpec without a name
            }
            let Some(hook) = Hook::from_hookpoint(&spec.name) else {
                unknown.push(spec.name.clone());
                continue;
            };
            hooks.insert(hook);
            if !hook.is_message_hook() {
                continue; // EMQX keeps topics only for message.* hooks
            }
            if spec.topics.is_empty() {
                all_topics.insert(hook);
                continue;
            }
            invalid_filters.extend(spec.topics.iter().filter(|t| validate_filter(t).is_err()).cloned());
            topics[hook.index()].get_or_insert_with(Vec::new).extend(spec.topics.iter().map(String::as_str));
        }
        for hook in all_topics.iter() {
            topics[hook.index()] = None;
        }
        let mut filters: Vec<Option<Arc<FilterSet>>> = vec![None; Hook::ALL.len()];
        for i in 0..topics.len() {
            let Some(list) = &topics[i] else { continue };
            let same = (0..i).find(|&j| topics[j].as_ref() == Some(list));
            filters[i] = Some(match same.and_then(|j| filters[j].clone()) {
                Some(shared) => shared,
                None => {
                    let mut set = FilterSet::new();
                    for t in list {
                        // An invalid filter is left out (and listed in `invalid_filters` above).
                        let _ = set.insert(t);
                    }
                    Arc::new(set)
                }
            });
        }
        Registration { version, hooks, filters, unknown, invalid_filters }
    }

    /// True if the provider registered `hook` and, for `message.*` hooks, one of its filters
    /// matches `topic`.
    pub fn wants(&self, hook: Hook, topic: Option<&str>) -> bool {
        if !self.hooks.contains(hook) {
            return false;
        }
        match (&self.filters[hook.index()], topic) {
            (Some(set), Some(t)) => set.matches(t),
            _ => true,
        }
    }

    /// True if both registered the same hooks with the same filters.
    pub fn same_as(&self, other: &Registration) -> bool {
        self.version == other.version
            && self.hooks == other.hooks
            && self.filters.iter().zip(&other.filters).all(|(a, b)| match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => a.filters() == b.filters(),
                _ => false,
            })
    }

    /// The topic filters of a `message.*` hook (`None` = all topics).
    pub fn filters(&self, hook: Hook) -> Option<&FilterSet> {
        self.filters[hook.index()].as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exhook_proto::model::HookSpec;

    fn spec(name: &str, topics: &[&str]) -> HookSpec {
        HookSpec { name: name.into(), topics: topics.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn reads_hooks_filters_and_aliases() {
        let r = Registration::from_response(
            Version::V1,
            &LoadedResponse {
                hooks: vec![
                    spec("client.check_acl", &[]),
                    spec("message.publish", &["a/#", "b/+"]),
                    spec("message.delivered", &["x"]),
                    spec("message.delivered", &[]),
                    spec("client.connect", &["ignored/for/non-message/hooks"]),
                    spec("", &[]),
                    spec("client.bogus", &[]),
                    spec("message.acked", &["bad/#/filter"]),
                ],
            },
        );
        assert!(r.hooks.contains(Hook::ClientAuthorize));
        assert!(r.wants(Hook::MessagePublish, Some("a/b/c")));
        assert!(r.wants(Hook::MessagePublish, Some("b/1")));
        assert!(!r.wants(Hook::MessagePublish, Some("c")));
        assert!(r.wants(Hook::MessageDelivered, Some("anything")), "an empty topic list means all topics");
        assert!(r.wants(Hook::ClientConnect, None));
        assert!(!r.wants(Hook::SessionCreated, None));
        assert!(!r.wants(Hook::MessageAcked, Some("bad/x/filter")));
        assert_eq!(r.unknown, vec!["client.bogus".to_string()]);
        assert_eq!(r.invalid_filters, vec!["bad/#/filter".to_string()]);
    }

    #[test]
    fn hooks_with_the_same_topics_share_one_filter_set() {
        let list = ["a/#", "b/+"];
        let r = Registration::from_response(
            Version::V3,
            &LoadedResponse {
                hooks: vec![
                    spec("message.publish", &list),
                    spec("message.delivered", &list),
                    spec("message.acked", &["other"]),
                ],
            },
        );
        let (p, d, a) = (
            r.filters[Hook::MessagePublish.index()].as_ref().unwrap(),
            r.filters[Hook::MessageDelivered.index()].as_ref().unwrap(),
            r.filters[Hook::MessageAcked.index()].as_ref().unwrap(),
        );
        assert!(Arc::ptr_eq(p, d), "the same list: one set");
        assert!(!Arc::ptr_eq(p, a));
        assert!(r.wants(Hook::MessageDelivered, Some("b/1")) && !r.wants(Hook::MessageAcked, Some("b/1")));
    }
}
