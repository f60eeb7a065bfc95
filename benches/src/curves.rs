//! Issue 11's cost curves as a table and a chart: for each curve (payload bytes, EMQX
//! connections, chain length, topic filters, provider connections) and each point, the
//! gateway against its floor (the load generator calling the providers directly) measured in
//! the same run.
//!
//! The figure that should stay flat is the gateway's CPU per provider call relative to the
//! provider's own (the `× X` column: X is the provider process's CPU per call at that point,
//! so the ratio does not grow with bytes a provider must handle too); memory is the gateway's peak
//! RSS, from which the per-connection figures are derived.

use std::fmt::Write as _;

use crate::report::Summary;
use crate::scenarios::{CurvePoint, Scenario};

/// One point: the gateway's summary and its floor's.
#[derive(Debug, Clone)]
pub struct Point<'a> {
    /// The curve and x.
    pub at: CurvePoint,
    /// The point's label (`16KiB`, `512`, …).
    pub label: String,
    /// The gateway run.
    pub gateway: &'a Summary,
    /// The direct run.
    pub direct: &'a Summary,
}

impl Point<'_> {
    /// The gateway's CPU per provider call over the provider's own CPU per call (X), at this
    /// point: both per operation divided by the calls an operation makes, which cancels.
    pub fn cpu_multiple_of_x(&self) -> Option<f64> {
        let x = self.gateway.provider_cpu_per_10k;
        let g = self.gateway.middle_cpu_per_10k?;
        (x > 0.0).then(|| g / x)
    }
}

/// Pairs the summaries of `scenarios` (as returned by [`crate::scenarios::curves`]) into
/// points, curve by curve, in order.
pub fn points<'a>(scenarios: &[Scenario], summaries: &'a [Summary]) -> Vec<Point<'a>> {
    let find = |id: &str| summaries.iter().find(|s| s.scenario == id);
    let mut out = Vec::new();
    for sc in scenarios.iter().filter(|s| s.id.ends_with(":gateway")) {
        let Some(at) = sc.curve else { continue };
        let direct_id = sc.id.replace(":gateway", ":direct");
        let (Some(gateway), Some(direct)) = (find(sc.id), find(&direct_id)) else { continue };
        let label = sc.id.split(':').nth(1).unwrap_or_default().to_owned();
        out.push(Point { at, label, gateway, direct });
    }
    out
}

/// The curves as text, one block per curve.
pub fn table(points: &[Point<'_>]) -> String {
    let mut out = String::new();
    let mut current = "";
    for p in points {
        if p.at.curve != current {
            current = p.at.curve;
            let _ = writeln!(out, "\n== curve: {current}");
            let _ = writeln!(
                out,
                "{:<10} {:>11} {:>11} {:>7} {:>10} {:>10} {:>9} {:>9} {:>9}",
                "point", "direct/s", "gateway/s", "ratio", "gw p50 µs", "gw s/10k", "× X", "gw MiB", "other"
            );
        }
        let ratio = if p.direct.throughput > 0.0 { p.gateway.throughput / p.direct.throughput } else { 0.0 };
        let _ = writeln!(
            out,
            "{:<10} {:>11.0} {:>11.0} {:>6.2}× {:>10.1} {:>10} {:>9} {:>9} {:>9.2}",
            p.label,
            p.direct.throughput,
            p.gateway.throughput,
            ratio,
            p.gateway.p50_us,
            p.gateway.middle_cpu_per_10k.map_or("-".to_owned(), |c| format!("{c:.3}")),
            p.cpu_multiple_of_x().map_or("-".to_owned(), |m| format!("{m:.2}")),
            p.gateway.middle_rss_mib.map_or("-".to_owned(), |m| format!("{m:.1}")),
            p.gateway.other_load_cores.max(p.direct.other_load_cores),
        );
    }
    if let Some(line) = memory_per_connection(points) {
        let _ = writeln!(out, "\n{line}");
    }
    out.push_str(
        "\n× X = the gateway's CPU per provider call over the provider process's own (one HTTP/2 server side,\n\
         decode, encode); other = cores used by unrelated processes during the runs (shared machine).\n",
    );
    out
}

/// Memory per EMQX connection and per provider connection, from the peak RSS at the ends of
/// the `connections` and `provider-connections` curves.
pub fn memory_per_connection(points: &[Point<'_>]) -> Option<String> {
    let ends = |curve: &str| {
        let on: Vec<&Point<'_>> = points.iter().filter(|p| p.at.curve == curve).collect();
        let (a, b) = (on.first()?, on.last()?);
        let per = (b.gateway.middle_rss_mib? - a.gateway.middle_rss_mib?) * 1024.0 / (b.at.x - a.at.x).max(1) as f64;
        Some((per, a.at.x, b.at.x))
    };
    let emqx = ends("connections");
    let provider = ends("provider-connections");
    if emqx.is_none() && provider.is_none() {
        return None;
    }
    let fmt = |e: Option<(f64, u64, u64)>| {
        e.map_or("-".to_owned(), |(per, a, b)| format!("{per:.1} KiB (peak RSS, {a} → {b} connections)"))
    };
    Some(format!("memory per EMQX connection: {}; per provider connection: {}", fmt(emqx), fmt(provider)))
}

/// The curves as an SVG: per curve, the gateway's CPU per call as a multiple of X (left) and
/// its throughput relative to the direct floor (right), against the point labels.
pub fn svg(points: &[Point<'_>], title: &str) -> String {
    let mut curves: Vec<&str> = Vec::new();
    for p in points {
        if !curves.contains(&p.at.curve) {
            curves.push(p.at.curve);
        }
    }
    let (w, panel_h, panel_w, left) = (980.0, 150.0, 420.0, 60.0);
    let height = 50.0 + curves.len() as f64 * (panel_h + 40.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    let mut y0 = 50.0;
    for curve in curves {
        let on: Vec<&Point<'_>> = points.iter().filter(|p| p.at.curve == curve).collect();
        let series: [(&str, Vec<f64>, f64); 2] = [
            (
                "gateway CPU per provider call, × X",
                on.iter().map(|p| p.cpu_multiple_of_x().unwrap_or(0.0)).collect(),
                0.0,
            ),
            (
                "gateway / direct throughput",
                on.iter()
                    .map(|p| if p.direct.throughput > 0.0 { p.gateway.throughput / p.direct.throughput } else { 0.0 })
                    .collect(),
                panel_w + 60.0,
            ),
        ];
        for (name, values, dx) in series {
            let x0 = left + dx;
            let max = values.iter().copied().fold(1.0_f64, f64::max) * 1.15;
            let _ = writeln!(
                out,
                "<text x=\"{x0}\" y=\"{}\" font-weight=\"bold\">{}: {}</text>\n<line x1=\"{x0}\" y1=\"{b}\" x2=\"{}\" y2=\"{b}\" stroke=\"#999\"/><line x1=\"{x0}\" y1=\"{}\" x2=\"{x0}\" y2=\"{b}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max:.1}</text><text x=\"{}\" y=\"{b}\" text-anchor=\"end\">0</text>",
                y0 + 14.0,
                esc(curve),
                esc(name),
                x0 + panel_w,
                y0 + 24.0,
                x0 - 4.0,
                y0 + 34.0,
                x0 - 4.0,
                b = y0 + 24.0 + panel_h,
            );
            let step = if on.len() > 1 { panel_w / (on.len() - 1) as f64 } else { 0.0 };
            let pos = |i: usize, v: f64| {
                (x0 + 20.0 + i as f64 * (step - 40.0 / on.len().max(1) as f64), y0 + 24.0 + panel_h * (1.0 - v / max))
            };
            let path: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let (x, y) = pos(i, *v);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"#2b7bb9\" stroke-width=\"2\"/>",
                path.join(" ")
            );
            for (i, (v, p)) in values.iter().zip(&on).enumerate() {
                let (x, y) = pos(i, *v);
                let _ = writeln!(
                    out,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"#2b7bb9\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.2}</text><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    y - 6.0,
                    y0 + 38.0 + panel_h,
                    esc(&p.label)
                );
            }
        }
        y0 += panel_h + 40.0;
    }
    out.push_str("</svg>\n");
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
