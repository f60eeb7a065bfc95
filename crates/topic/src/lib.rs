//! MQTT topic filter validation and matching for the ExHook gateway.
//!
//! EMQX ExHook providers register topic filters for the `message.*` hooks;
//! for every message the gateway has to decide whether any of a provider's
//! filters matches the message topic. [`FilterSet`] stores the filters in a
//! trie keyed by topic level, so a query costs O(topic depth) rather than
//! O(number of filters), and it does not allocate.
//!
//! Matching follows EMQX's `emqx_topic:match/2`:
//!
//! * levels are separated by `/`, and empty levels are real levels
//!   (`"a//b"` has three levels, `"/a"` and `"a/"` have two);
//! * `+` matches exactly one level, including an empty one;
//! * `#` matches its parent level and any number of further levels
//!   (`"a/#"` matches `"a"`, `"a/b"` and `"a/b/c"`);
//! * a topic whose first level starts with `$` is not matched by a filter
//!   whose first level is `+` or `#`, only by filters spelling that level
//!   literally (`"$SYS/#"`).
//!
//! Shared subscriptions (`$share/...`) get no special treatment here; the
//! caller strips the prefix.
//!
//! ```
//! use exhook_topic::{FilterSet, filter_matches};
//!
//! let set = FilterSet::from_filters(["dev/+/temp", "fleet/#", "$SYS/#"])?;
//! assert!(set.matches("dev/1/temp"));
//! assert!(set.matches("fleet"));
//! assert!(set.matches("$SYS/broker/uptime"));
//! assert!(!set.matches("dev/1/hum"));
//! assert!(!filter_matches("#", "$SYS/broker/uptime"));
//! # Ok::<(), exhook_topic::FilterError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;

/// Maximum length of a topic filter in bytes (MQTT UTF-8 string limit).
const MAX_FILTER_LEN: usize = 65_535;

/// How many bytes of an over-long filter an error message shows.
const TOO_LONG_PREFIX: usize = 64;

/// Why a topic filter was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The filter is the empty string.
    #[error("invalid topic filter \"\": filter is empty")]
    Empty,
    /// The filter is longer than 65535 bytes.
    #[error(
        "invalid topic filter {:?}...: {} bytes exceeds the 65535-byte limit",
        prefix(.filter),
        .filter.len()
    )]
    TooLong {
        /// The offending filter.
        filter: String,
    },
    /// The filter contains a NUL character.
    #[error("invalid topic filter {filter:?}: contains a NUL character")]
    NulChar {
        /// The offending filter.
        filter: String,
    },
    /// `#` is not the whole last level of the filter.
    #[error("invalid topic filter {filter:?}: '#' must be the whole last level")]
    MisplacedMultiLevel {
        /// The offending filter.
        filter: String,
    },
    /// `+` is not a whole level of the filter.
    #[error("invalid topic filter {filter:?}: '+' must be a whole level")]
    MisplacedSingleLevel {
        /// The offending filter.
        filter: String,
    },
}

/// The first bytes of `s` (cut on a char boundary), for error messages.
fn prefix(s: &str) -> &str {
    let mut end = s.len().min(TOO_LONG_PREFIX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Validates one MQTT topic filter (MQTT 3.1.1/5 rules: non-empty, at most
/// 65535 bytes, no NUL, `#` only as the whole last level, `+` only as a
/// whole level).
pub fn validate_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    if filter.len() > MAX_FILTER_LEN {
        return Err(FilterError::TooLong { filter: filter.to_owned() });
    }
    if filter.contains('\0') {
        return Err(FilterError::NulChar { filter: filter.to_owned() });
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(FilterError::MisplacedMultiLevel { filter: filter.to_owned() });
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::MisplacedSingleLevel { filter: filter.to_owned() });
        }
    }
    Ok(())
}

/// True if `filter` matches `topic` (MQTT rules, as EMQX's
/// `emqx_topic:match/2`; see the crate docs).
///
/// This is the reference implementation by level-by-level comparison, used
/// by tests and for single checks. A filter that fails [`validate_filter`]
/// matches nothing. `+` and `#` characters in `topic` are literal
/// characters.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if validate_filter(filter).is_err() {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    if topic.starts_with('$') && matches!(filter_levels.clone().next(), Some("+" | "#")) {
        return false;
    }
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (None, None) => return true,
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            _ => return false,
        }
    }
}

/// One trie node; the root is `nodes[0]`. A node at depth `d` stands for
/// the filter prefix made of its `d` levels.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Children for literal levels (never `"+"` or `"#"`).
    children: HashMap<Box<str>, usize>,
    /// Child for a `+` level.
    plus: Option<usize>,
    /// A filter ends in `#` right below this node.
    hash: bool,
    /// A filter ends exactly at this node.
    terminal: bool,
    /// Parent node (the root points to itself).
    parent: usize,
    /// This node is its parent's `+` child (else a literal child).
    via_plus: bool,
}

/// A set of topic filters stored as a trie. Cheap to query; built once.
///
/// [`FilterSet::matches`] costs O(topic depth) for typical filter sets,
/// independent of how many filters the set holds, and never allocates.
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    /// Trie arena; empty until the first insert, then `nodes[0]` is the root.
    nodes: Vec<Node>,
    /// Distinct filters in insertion order.
    filters: Vec<String>,
}

impl FilterSet {
    /// Creates an empty set, which matches nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a filter after validating it. Duplicate inserts are fine
    /// (set semantics).
    pub fn insert(&mut self, filter: &str) -> Result<(), FilterError> {
        validate_filter(filter)?;
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut cur = 0;
        let mut levels = filter.split('/');
        // A filter ending in `#` is recorded on the node of its parent level.
        let ends_in_hash = loop {
            match levels.next() {
                None => break false,
                // Validation guarantees `#` is the last level.
                Some("#") => break true,
                Some("+") => {
                    cur = match self.nodes[cur].plus {
                        Some(child) => child,
                        None => {
                            let child = self.push_node(cur, true);
                            self.nodes[cur].plus = Some(child);
                            child
                        }
                    };
                }
                Some(level) => {
                    cur = match self.nodes[cur].children.get(level) {
                        Some(&child) => child,
                        None => {
                            let child = self.push_node(cur, false);
                            self.nodes[cur].children.insert(level.into(), child);
                            child
                        }
                    };
                }
            }
        };
        let node = &mut self.nodes[cur];
        let flag = if ends_in_hash { &mut node.hash } else { &mut node.terminal };
        if !*flag {
            *flag = true;
            self.filters.push(filter.to_owned());
        }
        Ok(())
    }

    /// Appends a fresh node below `parent` and returns its index.
    fn push_node(&mut self, parent: usize, via_plus: bool) -> usize {
        self.nodes.push(Node { parent, via_plus, ..Node::default() });
        self.nodes.len() - 1
    }

    /// Builds a set from filters, failing on the first invalid one.
    pub fn from_filters<I, S>(filters: I) -> Result<Self, FilterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Self::new();
        for filter in filters {
            set.insert(filter.as_ref())?;
        }
        Ok(set)
    }

    /// Number of distinct filters.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// True if the set holds no filters.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// True if any filter in the set matches `topic`. Does not allocate.
    ///
    /// `topic` is a topic name; `+` and `#` characters in it are treated as
    /// literal characters.
    pub fn matches(&self, topic: &str) -> bool {
        if self.nodes.is_empty() {
            return false;
        }
        // Wildcards in the first filter level don't match `$` topics.
        let dollar = topic.starts_with('$');
        // Depth-first search over the trie guided by the topic, literal child
        // before `+` child. Instead of a stack it backtracks through parent
        // links, recovering topic positions by scanning backwards, so it
        // needs neither allocation nor recursion (filters may be 65535
        // levels deep).
        //
        // Invariant: `cur` is a node at depth `d`, and `next` is the byte
        // offset where topic level `d` starts, or `None` if the topic has
        // only `d` levels.
        let mut cur = 0;
        let mut next = Some(0);
        loop {
            // Descend from `cur` as far as possible.
            let node = &self.nodes[cur];
            let wildcards_ok = cur != 0 || !dollar;
            if node.hash && wildcards_ok {
                return true;
            }
            match next {
                None if node.terminal => return true,
                None => {}
                Some(start) => {
                    let (level, after) = split_level(topic, start);
                    if let Some(&child) = node.children.get(level) {
                        cur = child;
                        next = after;
                        continue;
                    }
                    if let Some(child) = node.plus
                        && wildcards_ok
                    {
                        cur = child;
                        next = after;
                        continue;
                    }
                }
            }
            // Dead end: climb until an untried `+` sibling turns up.
            loop {
                if cur == 0 {
                    return false;
                }
                let node = &self.nodes[cur];
                let start = level_start_before(topic, next);
                next = Some(start);
                cur = node.parent;
                if !node.via_plus
                    && let Some(child) = self.nodes[cur].plus
                    && (cur != 0 || !dollar)
                {
                    cur = child;
                    next = split_level(topic, start).1;
                    break;
                }
            }
        }
    }

    /// The distinct filters, in insertion order (the gateway reports them
    /// to EMQX).
    pub fn filters(&self) -> &[String] {
        &self.filters
    }
}

/// Splits off the topic level starting at byte `start`: returns the level
/// and the start of the following level, if any.
fn split_level(topic: &str, start: usize) -> (&str, Option<usize>) {
    let rest = topic.get(start..).unwrap_or_default();
    match rest.split_once('/') {
        Some((level, tail)) => (level, Some(topic.len() - tail.len())),
        None => (rest, None),
    }
}

/// Start of the topic level preceding the position `next` (as in
/// [`FilterSet::matches`]): `next` is the start of the following level, or
/// `None` if the wanted level is the last one.
fn level_start_before(topic: &str, next: Option<usize>) -> usize {
    let end = match next {
        // `start - 1` is the '/' ending the wanted level.
        Some(start) => start.saturating_sub(1),
        None => topic.len(),
    };
    topic.get(..end).unwrap_or_default().rfind('/').map_or(0, |slash| slash + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (filter, topic, expected match)
    const CASES: &[(&str, &str, bool)] = &[
        // Literal filters.
        ("a", "a", true),
        ("a", "b", false),
        ("a/b", "a/b", true),
        ("a/b", "a", false),
        ("a", "a/b", false),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        // Empty levels are real levels.
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/b", "a//b", false),
        ("/a", "/a", true),
        ("/a", "a", false),
        ("a", "/a", false),
        ("a/", "a/", true),
        ("a/", "a", false),
        ("a", "a/", false),
        ("/", "/", true),
        ("/", "", false),
        // '+' matches exactly one level, including an empty one.
        ("+", "a", true),
        ("+", "", true),
        ("+", "a/b", false),
        ("+", "/", false),
        ("+/+", "a/b", true),
        ("+/+", "/", true),
        ("+/+", "/a", true),
        ("+/+", "a/", true),
        ("+/+", "a", false),
        ("+/+", "a/b/c", false),
        ("a/+", "a/b", true),
        ("a/+", "a/", true),
        ("a/+", "a", false),
        ("a/+", "a/b/c", false),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a//c", true),
        ("a/+/c", "a/b/d", false),
        ("+/b", "a/b", true),
        ("+/b", "/b", true),
        // '#' matches the parent level and any number of further levels.
        ("#", "a", true),
        ("#", "a/b/c", true),
        ("#", "/", true),
        ("#", "", true),
        ("#", "//", true),
        ("a/#", "a", true),
        ("a/#", "a/", true),
        ("a/#", "a/b", true),
        ("a/#", "a/b/c", true),
        ("a/#", "b", false),
        ("a/#", "ab", false),
        ("a/#", "b/a", false),
        ("a/b/#", "a", false),
        ("a/b/#", "a/b", true),
        ("/#", "/", true),
        ("/#", "", true),
        ("/#", "/a/b", true),
        ("/#", "a", false),
        ("a/+/#", "a/b", true),
        ("a/+/#", "a/b/c/d", true),
        ("a/+/#", "a", false),
        ("a/+/#", "b/c", false),
        ("+/#", "a", true),
        ("+/#", "a/b/c", true),
        ("+/+/#", "a", false),
        ("+/+/#", "a/b", true),
        // '$' topics are not matched by leading wildcards.
        ("#", "$SYS", false),
        ("#", "$SYS/broker", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/a", false),
        ("+/a", "$SYS/a", false),
        ("+/+", "$SYS/a", false),
        ("$SYS/#", "$SYS/a", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/+", "$SYS/a", true),
        ("$SYS/a", "$SYS/a", true),
        ("$SYS/#", "SYS/a", false),
        ("$SYS/#", "$SYS2/a", false),
        // Only the first level matters for the '$' rule.
        ("a/+", "a/$x", true),
        ("a/#", "a/$x", true),
        ("+/+", "a/$x", true),
        ("#", "a/$x", true),
        ("+", "x$", true),
        // '+' and '#' in topics are literal characters.
        ("+", "+", true),
        ("#", "#", true),
        ("a/+", "a/#", true),
        ("a/b", "a/+", false),
        ("a", "+", false),
        ("a/#", "a/+/#", true),
        // Shared subscriptions are not special here.
        ("$share/g/a", "$share/g/a", true),
        ("$share/g/a", "a", false),
        // Non-ASCII levels.
        ("é/+", "é/ü", true),
        ("é/+", "e/ü", false),
    ];

    #[test]
    fn filter_matches_table() {
        for &(filter, topic, expected) in CASES {
            assert_eq!(filter_matches(filter, topic), expected, "filter_matches({filter:?}, {topic:?})");
        }
    }

    #[test]
    fn single_filter_set_table() {
        for &(filter, topic, expected) in CASES {
            let set = FilterSet::from_filters([filter]).unwrap();
            assert_eq!(set.matches(topic), expected, "FilterSet[{filter:?}].matches({topic:?})");
        }
    }

    #[test]
    fn combined_set_agrees_with_reference() {
        let filters: Vec<&str> = CASES.iter().map(|c| c.0).collect();
        let topics: Vec<&str> = CASES.iter().map(|c| c.1).collect();
        // Every suffix of the filter list, so combinations differ.
        for skip in 0..filters.len() {
            let fs = &filters[skip..];
            let set = FilterSet::from_filters(fs).unwrap();
            for topic in &topics {
                let expected = fs.iter().any(|f| filter_matches(f, topic));
                assert_eq!(set.matches(topic), expected, "{fs:?} vs {topic:?}");
            }
        }
    }

    #[test]
    fn backtracks_from_literal_to_plus() {
        let set = FilterSet::from_filters(["a/b/c", "+/b/d", "a/+/e", "a/b/+/f"]).unwrap();
        assert!(set.matches("a/b/c"));
        assert!(set.matches("a/b/d"));
        assert!(set.matches("a/x/e"));
        assert!(set.matches("a/b/e"));
        assert!(set.matches("a/b/x/f"));
        assert!(set.matches("x/b/d"));
        assert!(!set.matches("a/b/x"));
        assert!(!set.matches("a/b/x/g"));
        assert!(!set.matches("a/b"));
        assert!(!set.matches("$a/b/d"));
    }

    #[test]
    fn validate_accepts() {
        for filter in ["#", "+", "/", "a", "a//b", "+/+/#", "a/#", "a/+/b", "/#", "+/", "//", "$SYS/#", "a b", "é"] {
            assert_eq!(validate_filter(filter), Ok(()), "{filter:?}");
        }
        assert_eq!(validate_filter(&"a".repeat(MAX_FILTER_LEN)), Ok(()));
        assert_eq!(validate_filter(&"/".repeat(MAX_FILTER_LEN)), Ok(()));
    }

    #[test]
    fn validate_rejects() {
        let multi = |f: &str| FilterError::MisplacedMultiLevel { filter: f.into() };
        let single = |f: &str| FilterError::MisplacedSingleLevel { filter: f.into() };
        assert_eq!(validate_filter(""), Err(FilterError::Empty));
        for filter in ["a/#/b", "a#", "#a", "a/b#", "#/", "#/#", "##", "+#", "#+"] {
            assert_eq!(validate_filter(filter), Err(multi(filter)), "{filter:?}");
        }
        for filter in ["a/b+", "+a", "a+/b", "++", "a/+b/c"] {
            assert_eq!(validate_filter(filter), Err(single(filter)), "{filter:?}");
        }
        assert_eq!(validate_filter("a/\0"), Err(FilterError::NulChar { filter: "a/\0".into() }));
        let long = "a".repeat(MAX_FILTER_LEN + 1);
        assert_eq!(validate_filter(&long), Err(FilterError::TooLong { filter: long.clone() }));
    }

    #[test]
    fn error_messages_name_the_filter() {
        let msg = |f: &str| validate_filter(f).unwrap_err().to_string();
        assert!(msg("a/#/b").contains("\"a/#/b\""));
        assert!(msg("a/b+").contains("\"a/b+\""));
        assert!(msg("x\0y").contains("\"x\\0y\""));
        assert!(msg("").contains("empty"));
        let long = format!("{}{}", "é".repeat(40), "b".repeat(MAX_FILTER_LEN));
        let long_msg = msg(&long);
        assert!(long_msg.contains(&"é".repeat(32)), "{long_msg}");
        assert!(long_msg.len() < 200, "{long_msg}");
    }

    #[test]
    fn invalid_filters_match_nothing() {
        assert!(!filter_matches("a/#/b", "a/x/b"));
        assert!(!filter_matches("a+", "a+"));
        assert!(!filter_matches("", ""));
    }

    #[test]
    fn insert_set_semantics() {
        let mut set = FilterSet::new();
        assert!(set.is_empty());
        assert!(!set.matches("a"));
        assert!(!set.matches(""));
        for filter in ["a/#", "a", "a/#", "+", "a", "#", "a/+", "#", "a/"] {
            set.insert(filter).unwrap();
        }
        assert_eq!(set.len(), 6);
        assert_eq!(set.filters(), ["a/#", "a", "+", "#", "a/+", "a/"]);
        assert!(!set.is_empty());
    }

    #[test]
    fn insert_rejects_invalid_and_keeps_set() {
        let mut set = FilterSet::from_filters(["a/b"]).unwrap();
        assert_eq!(set.insert("a/#/b"), Err(FilterError::MisplacedMultiLevel { filter: "a/#/b".into() }));
        assert_eq!(set.filters(), ["a/b"]);
        assert!(!set.matches("a/x/b"));
        assert!(set.matches("a/b"));
    }

    #[test]
    fn from_filters_fails_on_first_invalid() {
        let err = FilterSet::from_filters(["a", "b+", "c#"]).unwrap_err();
        assert_eq!(err, FilterError::MisplacedSingleLevel { filter: "b+".into() });
        let owned: Vec<String> = vec!["x/+".into(), "y".into()];
        let set = FilterSet::from_filters(&owned).unwrap();
        assert!(set.matches("x/1"));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn default_and_clone() {
        let set = FilterSet::default();
        assert!(!set.matches("a"));
        assert_eq!(set.len(), 0);
        let set = FilterSet::from_filters(["a/+"]).unwrap();
        let copy = set.clone();
        assert!(copy.matches("a/b"));
    }

    #[test]
    fn deep_topics_and_filters_do_not_overflow() {
        let deep_topic = "/".repeat(200_000);
        let deep_filter = "+/".repeat(MAX_FILTER_LEN / 2) + "#";
        let literal_deep = "/".repeat(MAX_FILTER_LEN);
        let set = FilterSet::from_filters([deep_filter.as_str(), literal_deep.as_str()]).unwrap();
        assert!(set.matches(&deep_topic));
        assert!(set.matches(&literal_deep));
        assert!(!set.matches("a/b"));
        assert_eq!(set.matches(&deep_topic), filter_matches(&deep_filter, &deep_topic));
        // Forces a full-depth descent along the literal path and a climb
        // all the way back to the root.
        let set = FilterSet::from_filters([literal_deep.as_str(), "x"]).unwrap();
        assert!(!set.matches(&("/".repeat(MAX_FILTER_LEN - 1) + "z")));
        assert!(!set.matches(&deep_topic));
        assert!(set.matches("x"));
    }
}
