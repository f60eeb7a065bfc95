//! The hook list the gateway gives EMQX in `LoadedResponse`: pure, from the tenant's chains
//! and its providers' registrations.
//!
//! EMQX 5.0–5.8 never call `OnProviderLoaded` again after a successful load, so the list must
//! not shrink because a provider happened to be down: every hook with a non-empty explicit
//! chain is listed, plus every hook a tenant provider registered when last loaded. Topic
//! filters are the union of the providers' filters, widened to all topics (an empty list)
//! when any contributing provider has none or is not loaded (its filters are unknown).

use std::sync::Arc;

use exhook_config::TenantConfig;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{HookSpec, LoadedResponse};
use exhook_upstream::Registration;

/// The `LoadedResponse` for a caller of `caller`'s package (hook names in its spelling).
/// `registrations` is indexed like `[[providers]]`.
pub fn loaded_response(
    tenant: &TenantConfig,
    registrations: &[Option<Arc<Registration>>],
    caller: Version,
) -> LoadedResponse {
    let mut hooks = Vec::new();
    for hook in Hook::hookpoints() {
        let chain = tenant.chain(hook);
        let explicit = tenant.explicit.contains(hook);
        // Whether to list it, and whether its topics are "all".
        let mut listed = explicit && !chain.is_empty();
        let mut all_topics = false;
        let mut topics: Vec<String> = Vec::new();
        let mut contributors = 0;
        for &i in chain {
            match registrations.get(i).and_then(|r| r.as_deref()) {
                None if explicit => all_topics = true,
                None => {}
                Some(reg) if reg.hooks.contains(hook) => {
                    listed = true;
                    contributors += 1;
                    match reg.filters(hook) {
                        None => all_topics = true,
                        Some(set) => {
                            for f in set.filters() {
                                if !topics.contains(f) {
                                    topics.push(f.clone());
                                }
                            }
                        }
                    }
                }
                Some(_) => {}
            }
        }
        if !listed {
            continue;
        }
        let Some(name) = hook.hookpoint(caller) else { continue };
        // An explicit chain none of whose providers registered the hook: unknown filters.
        if !hook.is_message_hook() || all_topics || contributors == 0 {
            topics.clear();
        }
        hooks.push(HookSpec { name: name.to_owned(), topics });
    }
    LoadedResponse { hooks }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use exhook_config::Config;
    use exhook_proto::model::HookSpec;

    use super::*;

    fn reg(version: Version, specs: &[(&str, &[&str])]) -> Option<Arc<Registration>> {
        let hooks = specs
            .iter()
            .map(|(n, t)| HookSpec { name: n.to_string(), topics: t.iter().map(|s| s.to_string()).collect() })
            .collect();
        Some(Arc::new(Registration::from_response(version, &LoadedResponse { hooks })))
    }

    fn config(chains: &str) -> Config {
        let text = format!(
            "[[providers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n[[providers]]\nname = \"b\"\nurl = \"http://127.0.0.1:2\"\n{chains}"
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn names(r: &LoadedResponse) -> Vec<(String, Vec<String>)> {
        r.hooks.iter().map(|h| (h.name.clone(), h.topics.clone())).collect()
    }

    #[test]
    fn union_of_registrations_in_caller_spelling() {
        let c = config("");
        let regs = vec![
            reg(Version::V3, &[("client.authorize", &[]), ("message.publish", &["a/#"])]),
            reg(Version::V1, &[("session.takeovered", &[]), ("message.publish", &["b/+", "a/#"])]),
        ];
        let v1 = loaded_response(&c.tenants[0], &regs, Version::V1);
        assert_eq!(
            names(&v1),
            vec![
                ("client.check_acl".into(), vec![]),
                ("session.takeovered".into(), vec![]),
                ("message.publish".into(), vec!["a/#".into(), "b/+".into()]),
            ]
        );
        let v3 = loaded_response(&c.tenants[0], &regs, Version::V3);
        assert_eq!(v3.hooks[0].name, "client.authorize");
        assert_eq!(v3.hooks[1].name, "session.takenover");
    }

    #[test]
    fn no_filter_means_all_topics() {
        let c = config("");
        let regs =
            vec![reg(Version::V3, &[("message.publish", &["a/#"])]), reg(Version::V3, &[("message.publish", &[])])];
        assert_eq!(
            names(&loaded_response(&c.tenants[0], &regs, Version::V3)),
            vec![("message.publish".into(), vec![])]
        );
    }

    #[test]
    fn explicit_chains_are_listed_even_when_down() {
        let c = config(
            "[chains]\n\"client.authenticate\" = [\"a\"]\n\"message.publish\" = [\"a\", \"b\"]\n\"message.acked\" = []\n",
        );
        // Nobody loaded: the explicit chains still appear (all topics); the empty one does not.
        let none = vec![None, None];
        assert_eq!(
            names(&loaded_response(&c.tenants[0], &none, Version::V2)),
            vec![("client.authenticate".into(), vec![]), ("message.publish".into(), vec![])]
        );
        // Both loaded with filters: the union; `b` down: all topics again.
        let both =
            vec![reg(Version::V3, &[("message.publish", &["x"])]), reg(Version::V3, &[("message.publish", &["y"])])];
        assert_eq!(
            names(&loaded_response(&c.tenants[0], &both, Version::V3))[1],
            ("message.publish".into(), vec!["x".into(), "y".into()])
        );
        let one = vec![both[0].clone(), None];
        assert_eq!(names(&loaded_response(&c.tenants[0], &one, Version::V3))[1], ("message.publish".into(), vec![]));
        // A registered hook outside the explicit chain's providers does not widen it.
        let c2 = config("[chains]\n\"message.publish\" = [\"a\"]\n");
        let regs =
            vec![reg(Version::V3, &[("message.publish", &["x"])]), reg(Version::V3, &[("message.publish", &[])])];
        assert_eq!(
            names(&loaded_response(&c2.tenants[0], &regs, Version::V3)),
            vec![("message.publish".into(), vec!["x".into()])]
        );
    }

    #[test]
    fn tenant_sees_only_its_providers() {
        let c = config("[[tenants]]\nname = \"t\"\ncluster_names = [\"c\"]\nproviders = [\"b\"]\n");
        let regs = vec![reg(Version::V3, &[("client.connect", &[])]), reg(Version::V3, &[("client.connected", &[])])];
        assert_eq!(
            names(&loaded_response(&c.tenants[1], &regs, Version::V3)),
            vec![("client.connected".into(), vec![])]
        );
        // With tenants the default tenant owns nothing it does not name.
        assert!(loaded_response(&c.tenants[0], &regs, Version::V3).hooks.is_empty());
        let c = config(
            "[default_tenant]\nproviders = [\"a\"]\n[[tenants]]\nname = \"t\"\ncluster_names = [\"c\"]\nproviders = [\"b\"]\n",
        );
        assert_eq!(names(&loaded_response(&c.tenants[0], &regs, Version::V3)), vec![("client.connect".into(), vec![])]);
    }
}
