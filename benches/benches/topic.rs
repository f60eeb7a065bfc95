//! Topic-filter matching (`exhook_topic::FilterSet::matches`) against 10, 1,000 and 100,000
//! registered filters, for topics 2, 5 and 10 levels deep, matching and not matching. The
//! trie's cost should grow with topic depth, not with the number of filters.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use exhook_loadgen::provider::bench_filters;
use exhook_topic::FilterSet;

/// A topic of `depth` levels: `bench/raw/c17/l3/…`.
fn topic(depth: usize) -> String {
    let mut levels = vec!["bench".to_owned(), "raw".to_owned(), "c17".to_owned()];
    levels.extend((3..depth).map(|i| format!("l{i}")));
    levels.truncate(depth);
    levels.join("/")
}

/// The filter matching `topic(depth)` at its full depth (`+` for the client level, when there
/// is one), so a hit walks every level and a miss on the last level does too.
fn deep_filter(depth: usize) -> String {
    let t = topic(depth);
    let mut levels: Vec<&str> = t.split('/').collect();
    if levels.len() > 2 {
        levels[2] = "+";
    }
    levels.join("/")
}

fn bench_topic(c: &mut Criterion) {
    let depths = [2usize, 5, 10];
    let mut group = c.benchmark_group("topic_match");
    for n in [10usize, 1_000, 100_000] {
        let matching: Vec<String> = depths.iter().map(|&d| deep_filter(d)).collect();
        let set = FilterSet::from_filters(bench_filters(n, &matching)).expect("valid filters");
        assert_eq!(set.len(), n);
        for d in depths {
            let hit = topic(d);
            let miss = format!("{hit}-x");
            assert!(set.matches(&hit), "{hit}");
            assert!(!set.matches(&miss), "{miss}");
            group.bench_with_input(BenchmarkId::new(format!("hit_{n}_filters"), d), &hit, |b, t| {
                b.iter(|| black_box(set.matches(black_box(t))))
            });
            group.bench_with_input(BenchmarkId::new(format!("miss_{n}_filters"), d), &miss, |b, t| {
                b.iter(|| black_box(set.matches(black_box(t))))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = bench_topic
}
criterion_main!(benches);
