//! Results: one record per run, medians per scenario and shape, ratios against the
//! alternatives, the targets, and the table, JSON and SVG chart written from them.

use std::fmt::Write as _;

use exhook_loadgen::LoadResult;
use exhook_loadgen::procstat::ProcUsage;
use exhook_loadgen::run::per_10k;
use serde::{Deserialize, Serialize};

use crate::scenarios::Shape;

/// One run of one scenario in one shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Scenario id.
    pub scenario: String,
    /// Scenario title.
    pub title: String,
    /// Load shape.
    pub shape: Shape,
    /// Round (1-based).
    pub round: u32,
    /// What was in between (`direct`, `nginx`, `haproxy`, `gateway`).
    pub middle: String,
    /// Why the run failed, or why its result is wrong (errors, no throughput, unexpected
    /// answers).
    pub error: Option<String>,
    /// What the load generator measured.
    pub result: Option<LoadResult>,
    /// Hook calls the providers answered in total (after queued deliveries settled).
    pub provider_calls: Option<u64>,
    /// Provider calls each operation should cause.
    pub fanout: u64,
}

impl RunRecord {
    fn usage(&self, name: &str) -> Option<&ProcUsage> {
        self.result.as_ref()?.watched.iter().find(|w| w.name == name)
    }
}

/// Medians over the rounds of one scenario in one shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario id.
    pub scenario: String,
    /// Scenario title.
    pub title: String,
    /// Load shape.
    pub shape: Option<Shape>,
    /// What was in between.
    pub middle: String,
    /// Runs.
    pub runs: usize,
    /// Runs that failed.
    pub failed_runs: usize,
    /// Errors over all runs (warm-up included).
    pub errors: u64,
    /// Operations per second (median).
    pub throughput: f64,
    /// Median latency, µs (median over rounds).
    pub p50_us: f64,
    /// p90, µs.
    pub p90_us: f64,
    /// p99, µs.
    pub p99_us: f64,
    /// p99.9, µs.
    pub p999_us: f64,
    /// Max, µs (max over rounds).
    pub max_us: f64,
    /// CPU seconds of the middle (gateway / proxy) per 10,000 operations.
    pub middle_cpu_per_10k: Option<f64>,
    /// Peak RSS of the middle, MiB (max over rounds).
    pub middle_rss_mib: Option<f64>,
    /// CPU seconds of the provider process per 10,000 operations.
    pub provider_cpu_per_10k: f64,
    /// CPU seconds of the load generator per 10,000 operations.
    pub loadgen_cpu_per_10k: f64,
    /// Provider calls / (operations sent × fan-out): 1.0 when every notification was
    /// delivered (queued deliveries may be dropped by full queues).
    pub delivered: Option<f64>,
    /// Cores' worth of CPU used by other processes on the machine during the runs (median):
    /// anything well above 0 means the numbers are skewed by other work.
    pub other_load_cores: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Medians per (scenario, shape), in first-run order.
pub fn summarize(records: &[RunRecord]) -> Vec<Summary> {
    let mut keys: Vec<(String, Shape)> = Vec::new();
    for r in records {
        let k = (r.scenario.clone(), r.shape);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(id, shape)| {
            let runs: Vec<&RunRecord> = records.iter().filter(|r| r.scenario == id && r.shape == shape).collect();
            let ok: Vec<(&RunRecord, &LoadResult)> =
                runs.iter().filter_map(|r| Some((*r, r.result.as_ref()?))).collect();
            let m = |f: &dyn Fn(&LoadResult) -> f64| median(ok.iter().map(|(_, l)| f(l)).collect());
            let middle = runs[0].middle.clone();
            let mid: Vec<&ProcUsage> = ok.iter().filter_map(|(r, _)| r.usage("middle")).collect();
            let delivered: Vec<f64> = ok
                .iter()
                .filter_map(|(r, l)| Some(r.provider_calls? as f64 / (l.total_calls.max(1) * r.fanout) as f64))
                .collect();
            Summary {
                scenario: id.clone(),
                title: runs[0].title.clone(),
                shape: Some(shape),
                middle: middle.clone(),
                runs: runs.len(),
                failed_runs: runs.iter().filter(|r| r.error.is_some()).count(),
                errors: ok.iter().map(|(_, l)| l.errors + l.warmup_errors).sum(),
                throughput: m(&|l| l.throughput),
                p50_us: m(&|l| l.latency.p50_us),
                p90_us: m(&|l| l.latency.p90_us),
                p99_us: m(&|l| l.latency.p99_us),
                p999_us: m(&|l| l.latency.p999_us),
                max_us: ok.iter().map(|(_, l)| l.latency.max_us).fold(0.0, f64::max),
                middle_cpu_per_10k: (!mid.is_empty()).then(|| {
                    median(
                        ok.iter().filter_map(|(r, l)| Some(per_10k(r.usage("middle")?.cpu_seconds, l.calls))).collect(),
                    )
                }),
                middle_rss_mib: (!mid.is_empty())
                    .then(|| mid.iter().map(|u| u.peak_rss_kib as f64 / 1024.0).fold(0.0, f64::max)),
                provider_cpu_per_10k: median(
                    ok.iter().filter_map(|(r, l)| Some(per_10k(r.usage("provider")?.cpu_seconds, l.calls))).collect(),
                ),
                loadgen_cpu_per_10k: m(&|l| per_10k(l.loadgen.cpu_seconds, l.calls)),
                delivered: (!delivered.is_empty()).then(|| median(delivered)),
                other_load_cores: m(&|l| l.other_load_cores),
            }
        })
        .collect()
}

/// A derived comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    /// What it compares, e.g. `C/A throughput`.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Unit (`x`, `µs`).
    pub unit: String,
}

/// One of the goals, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// The goal.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// Met, missed, or not measured in this run.
    pub met: Option<bool>,
}

fn find<'a>(s: &'a [Summary], id: &str, shape: Shape) -> Option<&'a Summary> {
    s.iter().find(|x| x.scenario == id && x.shape == Some(shape) && x.runs > x.failed_runs)
}

/// The ratios and differences the comparison is about.
pub fn ratios(s: &[Summary]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let mut push = |name: String, value: Option<f64>, unit: &str| {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            out.push(Ratio { name, value, unit: unit.into() });
        }
    };
    let tp = |id: &str| find(s, id, Shape::Throughput).map(|x| x.throughput).filter(|t| *t > 0.0);
    let p50 = |id: &str| find(s, id, Shape::Latency).map(|x| x.p50_us);
    let div = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let sub = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    for (a, b) in [
        ("C", "A"),
        ("C", "B"),
        ("C", "B'"),
        ("B", "A"),
        ("B'", "A"),
        ("CT", "AT"),
        ("CT", "C"),
        ("AT", "A"),
        ("D", "D0"),
        ("E", "E0"),
        ("F", "F0"),
        ("S", "S0"),
    ] {
        push(format!("{a}/{b} throughput"), div(tp(a), tp(b)), "x");
    }
    for (a, b) in [
        ("C", "A"),
        ("C", "B"),
        ("C", "B'"),
        ("B", "A"),
        ("B'", "A"),
        ("E", "E0"),
        ("S", "S0"),
        ("F", "F0"),
        ("F~", "F0~"),
    ] {
        push(format!("{a}-{b} p50 latency"), sub(p50(a), p50(b)), "µs");
    }
    push("D/(3×A) p50 latency".into(), div(p50("D"), p50("A").map(|a| 3.0 * a)), "x");
    push("D/D0 p50 latency".into(), div(p50("D"), p50("D0")), "x");
    push("(D-D0)/3 p50: gateway overhead per hop".into(), sub(p50("D"), p50("D0")).map(|d| d / 3.0), "µs");
    push("(D-C)/2 p50: cost of one more hop".into(), sub(p50("D"), p50("C")).map(|d| d / 2.0), "µs");
    push("F~-F p50: EMQX-visible cost of 2 ms providers".into(), sub(p50("F~"), p50("F")), "µs");
    out
}

/// The targets against this run.
pub fn targets(s: &[Summary]) -> Vec<Target> {
    let tp = |id: &str| find(s, id, Shape::Throughput).map(|x| x.throughput).filter(|t| *t > 0.0);
    let p50 = |id: &str| find(s, id, Shape::Latency).map(|x| x.p50_us);
    let mut out = Vec::new();
    let mut t = |goal: &str, measured: Option<(String, bool)>| {
        out.push(match measured {
            Some((m, ok)) => Target { goal: goal.into(), measured: m, met: Some(ok) },
            None => Target { goal: goal.into(), measured: "not measured".into(), met: None },
        })
    };
    let ratio = |a: &str, b: &str| Some(tp(a)? / tp(b)?);
    let cpu = |id: &str| find(s, id, Shape::Throughput).and_then(|x| x.middle_cpu_per_10k);
    let p99 = |id: &str| find(s, id, Shape::Latency).map(|x| x.p99_us);
    // Issue 11's targets (same run, default configuration).
    t("C throughput ≥ 1.0× haproxy (B')", ratio("C", "B'").map(|r| (format!("{r:.2}×"), r >= 1.0)));
    t("C throughput ≥ 2× nginx (B)", ratio("C", "B").map(|r| (format!("{r:.2}×"), r >= 2.0)));
    t(
        "C gateway CPU per 10k calls ≤ 1.25× haproxy's",
        (|| Some((cpu("C")?, cpu("B'")?)))()
            .map(|(c, h)| (format!("{:.2}× ({c:.3} s vs {h:.3} s)", c / h), c <= 1.25 * h)),
    );
    t(
        "C gateway CPU per call ≤ 1.5 X (X: the provider's own, scenario A)",
        (|| Some((cpu("C")?, find(s, "A", Shape::Throughput)?.provider_cpu_per_10k)))()
            .filter(|(_, x)| *x > 0.0)
            .map(|(c, x)| (format!("{:.2} X", c / x), c <= 1.5 * x)),
    );
    t(
        "C added p50, 1 in flight (C-A) ≤ haproxy's (B'-A)",
        (|| Some((p50("C")? - p50("A")?, p50("B'")? - p50("A")?)))()
            .map(|(c, h)| (format!("+{c:.1} µs vs +{h:.1} µs"), c <= h)),
    );
    t(
        "C p99, 1 in flight ≤ haproxy's",
        (|| Some((p99("C")?, p99("B'")?)))().map(|(c, h)| (format!("{c:.1} µs vs {h:.1} µs"), c <= h)),
    );
    t(
        "D ≤ 15 µs per extra hop ((D-C)/2, p50)",
        (|| Some((p50("D")? - p50("C")?) / 2.0))().map(|d| (format!("{d:.1} µs"), d <= 15.0)),
    );
    t(
        "F EMQX-visible notification latency independent of providers' (F~ vs F, p50)",
        (|| Some((p50("F~")?, p50("F")?, p50("F0~")?)))().map(|(slow, fast, nginx)| {
            (
                format!("{slow:.1} µs with 2 ms providers vs {fast:.1} µs with instant ones (nginx: {nginx:.1} µs)"),
                slow <= fast * 1.5 + 50.0,
            )
        }),
    );
    let rss = s
        .iter()
        .filter(|x| x.middle == "gateway")
        .filter_map(|x| x.middle_rss_mib)
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    t("gateway peak RSS ≤ 50 MiB (all scenarios)", rss.map(|r| (format!("{r:.1} MiB"), r <= 50.0)));
    out.push(Target {
        goal: "E topic matching ≤ 1 µs per message at 100,000 filters".into(),
        measured: "see the criterion benchmark `cargo bench -p exhook-benches --bench topic`".into(),
        met: None,
    });
    out
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"))
}

/// The table, ratios and targets as text.
pub fn table(s: &[Summary], ratios: &[Ratio], targets: &[Target], skipped: &[String]) -> String {
    let mut out = String::new();
    for shape in [Shape::Throughput, Shape::Latency] {
        let rows: Vec<&Summary> = s.iter().filter(|x| x.shape == Some(shape)).collect();
        if rows.is_empty() {
            continue;
        }
        let (c, i) = shape.load();
        let _ =
            writeln!(out, "\n== {shape} shape ({c} connection(s) × {i} in flight, closed loop; medians over rounds)");
        let _ = writeln!(
            out,
            "{:<4} {:<38} {:>10} {:>9} {:>9} {:>9} {:>6} {:>9} {:>8} {:>9} {:>6}",
            "id",
            "scenario",
            "calls/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "errors",
            "mid CPU",
            "mid RSS",
            "prov CPU",
            "deliv"
        );
        let _ = writeln!(
            out,
            "{:<4} {:<38} {:>10} {:>9} {:>9} {:>9} {:>6} {:>9} {:>8} {:>9} {:>6} {:>6}",
            "", "", "", "", "", "", "", "s/10k", "MiB", "s/10k", "", "cores"
        );
        for x in rows {
            let failed = if x.failed_runs > 0 {
                format!("  [{} of {} runs failed]", x.failed_runs, x.runs)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:<4} {:<38} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>9} {:>8} {:>9.3} {:>6} {:>6.2}{failed}",
                x.scenario,
                x.title,
                x.throughput,
                x.p50_us,
                x.p99_us,
                x.p999_us,
                x.errors,
                opt(x.middle_cpu_per_10k, 3),
                opt(x.middle_rss_mib, 1),
                x.provider_cpu_per_10k,
                x.delivered
                    .filter(|_| x.middle == "gateway" && x.scenario.starts_with('F'))
                    .map_or("-".into(), |d| format!("{:.0}%", d * 100.0)),
                x.other_load_cores,
            );
        }
    }
    let _ = writeln!(
        out,
        "\nmid = the gateway or proxy process (tree); prov = the provider process; deliv = provider calls / \
         (calls sent × fan-out); other = cores used by unrelated processes during the window (shared machine)."
    );
    let _ = writeln!(out, "\n== ratios");
    for r in ratios {
        let v = if r.unit == "x" { format!("{:.2}×", r.value) } else { format!("{:+.1} {}", r.value, r.unit) };
        let _ = writeln!(out, "  {:<48} {v}", r.name);
    }
    let _ = writeln!(out, "\n== targets");
    for t in targets {
        let mark = match t.met {
            Some(true) => "met   ",
            Some(false) => "MISSED",
            None => "  -   ",
        };
        let _ = writeln!(out, "  [{mark}] {:<62} {}", t.goal, t.measured);
    }
    for s in skipped {
        let _ = writeln!(out, "\nskipped: {s}");
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A two-panel SVG bar chart: throughput (throughput shape) and p50/p99 latency (latency
/// shape) per scenario.
pub fn svg(s: &[Summary], title: &str) -> String {
    let tput: Vec<&Summary> = s.iter().filter(|x| x.shape == Some(Shape::Throughput)).collect();
    let lat: Vec<&Summary> = s.iter().filter(|x| x.shape == Some(Shape::Latency)).collect();
    let (w, row, label_w, bar_w) = (980.0, 22.0, 330.0, 540.0);
    let panel_h = |n: usize| 40.0 + n as f64 * row;
    let height = 50.0 + panel_h(tput.len()) + 20.0 + panel_h(lat.len()) + 20.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    let mut y = 50.0;
    let color = |m: &str| match m {
        "gateway" => "#2b7bb9",
        "nginx" => "#e07b39",
        "haproxy" => "#8a5fb0",
        _ => "#6a9f58",
    };
    // Throughput panel.
    let max_t = tput.iter().map(|x| x.throughput).fold(1.0, f64::max);
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"{}\" font-weight=\"bold\">Throughput, calls/s (8 connections × 16 in flight)</text>",
        y + 14.0
    );
    y += 30.0;
    for x in &tput {
        let len = bar_w * x.throughput / max_t;
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{ty}\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{len:.1}\" height=\"{h}\" fill=\"{}\"/><text x=\"{tx:.1}\" y=\"{ty}\">{:.0}</text>",
            esc(&format!("{} {}", x.scenario, x.title)),
            color(&x.middle),
            x.throughput,
            ty = y + 14.0,
            h = row - 6.0,
            tx = label_w + len + 5.0,
        );
        y += row;
    }
    y += 30.0;
    let max_l = lat.iter().map(|x| x.p99_us).fold(1.0, f64::max);
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"{}\" font-weight=\"bold\">Latency, µs (1 connection × 1 in flight): p50 (dark) and p99 (light)</text>",
        y + 14.0
    );
    y += 30.0;
    for x in &lat {
        let l99 = bar_w * x.p99_us / max_l;
        let l50 = bar_w * x.p50_us / max_l;
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{ty}\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{l99:.1}\" height=\"{h}\" fill=\"{c}\" opacity=\"0.35\"/><rect x=\"{label_w}\" y=\"{y}\" width=\"{l50:.1}\" height=\"{h}\" fill=\"{c}\"/><text x=\"{tx:.1}\" y=\"{ty}\">{:.1} / {:.1}</text>",
            esc(&format!("{} {}", x.scenario, x.title)),
            x.p50_us,
            x.p99_us,
            c = color(&x.middle),
            ty = y + 14.0,
            h = row - 6.0,
            tx = label_w + l99 + 5.0,
        );
        y += row;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_ratios_and_chart() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let rec = |id: &str, shape, tput: f64, p50: f64| RunRecord {
            scenario: id.into(),
            title: id.into(),
            shape,
            round: 1,
            middle: "direct".into(),
            error: None,
            result: Some(LoadResult {
                throughput: tput,
                calls: 100,
                latency: exhook_loadgen::run::Latency { p50_us: p50, ..Default::default() },
                ..Default::default()
            }),
            provider_calls: None,
            fanout: 1,
        };
        let records = vec![
            rec("A", Shape::Throughput, 100.0, 1.0),
            rec("B'", Shape::Throughput, 70.0, 1.0),
            rec("C", Shape::Throughput, 80.0, 1.0),
            rec("A", Shape::Latency, 1.0, 50.0),
            rec("B'", Shape::Latency, 1.0, 90.0),
            rec("C", Shape::Latency, 1.0, 80.0),
        ];
        let s = summarize(&records);
        let r = ratios(&s);
        assert!(r.iter().any(|r| r.name == "C/A throughput" && (r.value - 0.8).abs() < 1e-9));
        assert!(r.iter().any(|r| r.name == "C-A p50 latency" && (r.value - 30.0).abs() < 1e-9));
        let t = targets(&s);
        // C ahead of haproxy (80 vs 70 calls/s); C adds 30 µs at p50 against haproxy's 40.
        assert_eq!(t[0].met, Some(true));
        assert_eq!(t[4].met, Some(true));
        assert_eq!(t[1].met, None, "no nginx in this run");
        assert!(table(&s, &r, &t, &[]).contains("C/A throughput"));
        assert!(svg(&s, "x").starts_with("<svg"));
    }
}
