//! Correctness with 100,000 filters (no timing assertions).

use exhook_topic::FilterSet;

#[test]
fn hundred_thousand_filters() {
    let mut filters: Vec<String> = Vec::with_capacity(100_000);
    for i in 0..99_990 {
        filters.push(match i % 3 {
            0 | 1 => format!("dev/{i}/temp"),
            _ => format!("site/{}/+/alarm", i % 100),
        });
    }
    for i in 0..10 {
        filters.push(format!("fleet/{i}/#"));
    }
    let set = FilterSet::from_filters(&filters).unwrap();
    // "site/{i%100}/+/alarm" collapses to 100 distinct filters.
    assert_eq!(set.len(), 66_660 + 100 + 10);
    assert_eq!(set.filters()[0], "dev/0/temp");
    assert_eq!(set.filters()[2], "site/2/+/alarm");

    for (topic, expected) in [
        ("dev/0/temp", true),
        ("dev/99988/temp", true),
        ("dev/2/temp", false), // 2 % 3 == 2 → a site filter, not a dev one
        ("dev/99990/temp", false),
        ("dev/1/temp/x", false),
        ("dev/1", false),
        ("dev/1/hum", false),
        ("site/2/room/alarm", true),
        ("site/99/x/alarm", true),
        ("site/0//alarm", true),
        ("site/100/x/alarm", false),
        ("site/2/alarm", false),
        ("site/2/a/b/alarm", false),
        ("fleet/3", true),
        ("fleet/9/truck/1/gps", true),
        ("fleet/10/truck", false),
        ("$SYS/dev/0/temp", false),
        ("other", false),
        ("", false),
    ] {
        assert_eq!(set.matches(topic), expected, "{topic:?}");
    }

    let mut with_hash = set.clone();
    with_hash.insert("#").unwrap();
    assert!(with_hash.matches("other"));
    assert!(!with_hash.matches("$SYS/dev/0/temp"));
    with_hash.insert("$SYS/#").unwrap();
    assert!(with_hash.matches("$SYS/dev/0/temp"));
}
