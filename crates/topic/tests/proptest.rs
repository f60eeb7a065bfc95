//! Property test: the trie agrees with the reference matcher.

use exhook_topic::{FilterSet, filter_matches, validate_filter};
use proptest::prelude::*;

/// Levels filters are built from.
const FILTER_LEVELS: &[&str] = &["a", "b", "", "$x", "+", "#"];
/// Levels topic names are built from (no wildcards).
const TOPIC_LEVELS: &[&str] = &["a", "b", "", "$x"];
/// Topic levels that contain '+'/'#' as literal characters.
const ODD_TOPIC_LEVELS: &[&str] = &["a", "b", "", "$x", "+", "#", "a+", "#b"];

fn join(levels: &'static [&'static str], max_depth: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(levels), 1..=max_depth).prop_map(|v| v.join("/"))
}

fn filters() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(join(FILTER_LEVELS, 5).prop_filter("valid filter", |f| validate_filter(f).is_ok()), 0..12)
}

fn check(fs: &[String], topics: &[String]) -> Result<(), TestCaseError> {
    let set = FilterSet::from_filters(fs).expect("filters are valid");
    for t in topics {
        let expected = fs.iter().any(|f| filter_matches(f, t));
        prop_assert_eq!(set.matches(t), expected, "filters {:?}, topic {:?}", fs, t);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn trie_agrees_with_reference(
        fs in filters(),
        topics in prop::collection::vec(join(TOPIC_LEVELS, 6), 1..8),
    ) {
        check(&fs, &topics)?;
    }

    #[test]
    fn trie_agrees_with_reference_on_literal_wildcard_chars(
        fs in filters(),
        topics in prop::collection::vec(join(ODD_TOPIC_LEVELS, 6), 1..8),
    ) {
        check(&fs, &topics)?;
    }

    #[test]
    fn len_and_filters_are_deduplicated(fs in filters()) {
        let set = FilterSet::from_filters(&fs).expect("filters are valid");
        let mut expected: Vec<&String> = Vec::new();
        for f in &fs {
            if !expected.contains(&f) {
                expected.push(f);
            }
        }
        prop_assert_eq!(set.len(), expected.len());
        prop_assert!(set.filters().iter().eq(expected.into_iter()));
    }

    #[test]
    fn no_panics_on_arbitrary_input(filter in ".{0,40}", topic in ".{0,40}") {
        let _ = filter_matches(&filter, &topic);
        if let Ok(set) = FilterSet::from_filters([&filter]) {
            prop_assert_eq!(set.matches(&topic), filter_matches(&filter, &topic));
        }
    }
}
