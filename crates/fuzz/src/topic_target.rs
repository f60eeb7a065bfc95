//! `topic`: MQTT topic filters, the trie and the reference matcher.

use exhook_topic::{FilterSet, filter_matches, validate_filter};

/// `filter` with every `+` replaced by `fill` and a trailing `#` by `tail` (which may be
/// empty: `a/#` matches `a`). `fill` and `tail` hold no wildcard and no `$` at the start,
/// so the topic is one the filter must match.
pub(crate) fn instantiate(filter: &str, fill: &str, tail: &str) -> String {
    let mut levels: Vec<&str> = filter.split('/').map(|l| if l == "+" { fill } else { l }).collect();
    if levels.last() == Some(&"#") {
        levels.pop();
        if !tail.is_empty() || levels.is_empty() {
            levels.push(tail);
        }
    }
    levels.join("/")
}

/// A level made from `s`: no separators, wildcards or NUL, and not starting with `$`.
fn plain_level(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '/' | '+' | '#' | '\0' | '$')).take(16).collect()
}

pub(crate) fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<&str> = text.split('\n').collect();
    let topic = lines.pop().unwrap_or_default();
    let mut set = FilterSet::new();
    let mut valid = Vec::new();
    for f in &lines {
        let v = validate_filter(f);
        assert_eq!(set.insert(f), v.clone(), "insert and validate disagree on {f:?}");
        match v {
            Ok(()) => valid.push(*f),
            // An error message quotes at most a prefix of a long filter, but says something.
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let mut distinct = valid.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(set.len(), distinct.len(), "len counts distinct filters");
    let reference = valid.iter().any(|f| filter_matches(f, topic));
    assert_eq!(set.matches(topic), reference, "trie and reference disagree: filters {valid:?}, topic {topic:?}");

    let fill = plain_level(topic);
    for f in &valid {
        for tail in ["", fill.as_str(), "x/y"] {
            let t = instantiate(f, &fill, tail);
            // A `$` topic is only matched by filters spelling its first level.
            if t.starts_with('$') && f.starts_with(['+', '#']) {
                continue;
            }
            assert!(filter_matches(f, &t), "{f:?} does not match {t:?}, made from it");
            assert!(set.matches(&t), "the set holding {f:?} does not match {t:?}");
        }
    }
}
