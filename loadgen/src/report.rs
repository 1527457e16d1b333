//! The results: JSON-serialisable records of every step, target and kind, and
//! their Markdown rendering (the tables docs/benchmarks.md quotes).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::{StepOutcome, StepSpec};
use crate::schedule::Arrivals;
use crate::stats::{KindStats, LatencySummary};

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub command: Vec<String>,
    pub plan: PlanReport,
    pub targets: Vec<TargetReport>,
    /// Real over bare, per target with a bare counterpart and step.
    pub vs_bare: Vec<RatioRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    /// Steps of the targets that have none of their own (each target's
    /// steps are in its report).
    pub rates: Vec<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub arrivals: &'static str,
    pub max_in_flight: usize,
    pub timeout_s: f64,
    pub workers: usize,
    pub lanes: usize,
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SetupReport {
    pub seconds: f64,
    pub products: usize,
    pub categories: usize,
    pub shoppers: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub target: String,
    /// `real` or `bare`.
    pub system: &'static str,
    pub url: String,
    pub connections: usize,
    pub setup: SetupReport,
    pub steps: Vec<StepReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub rate: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Warm-up, window and drain.
    pub elapsed_s: f64,
    /// `--max-requests` ran out: fewer arrivals than planned.
    pub truncated: bool,
    /// Every request kind together (journeys not counted twice).
    pub total: Option<KindReport>,
    pub kinds: Vec<KindReport>,
    /// Dispatch − intended start of measured arrivals: loadgen's own lateness.
    pub lag: Option<LatencySummary>,
    /// Peak VmRSS during the step, MiB, by process name.
    pub peak_rss_mib: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    pub kind: String,
    pub journey: bool,
    pub offered: u64,
    pub sent: u64,
    pub ok: u64,
    pub ok_in_window: u64,
    pub failed: u64,
    /// Failures by label (`http_503`, `grpc_unavailable`, `timeout`,
    /// `transport`, `client_overflow`, …).
    pub errors: BTreeMap<String, u64>,
    pub offered_per_s: f64,
    pub sent_per_s: f64,
    /// Successful responses completed within the window, per second.
    pub goodput_per_s: f64,
    /// Failures over offered.
    pub error_ratio: f64,
    /// Latency of successful requests, from intended start.
    pub latency_ok: Option<LatencySummary>,
    /// Latency of everything sent (failures included, client refusals not).
    pub latency_all: Option<LatencySummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RatioRow {
    pub target: String,
    pub rate: f64,
    pub goodput_real_per_s: f64,
    pub goodput_bare_per_s: f64,
    pub goodput_ratio: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub p999_ratio: Option<f64>,
}

impl KindReport {
    fn of(name: &str, journey: bool, stats: &KindStats, window_s: f64) -> Self {
        let failed = stats.offered - stats.ok;
        let per_s = |n: u64| {
            if window_s > 0.0 {
                n as f64 / window_s
            } else {
                0.0
            }
        };
        Self {
            kind: name.to_owned(),
            journey,
            offered: stats.offered,
            sent: stats.sent,
            ok: stats.ok,
            ok_in_window: stats.ok_in_window,
            failed,
            errors: stats
                .failures
                .iter()
                .map(|(failure, count)| (failure.label(), *count))
                .collect(),
            offered_per_s: per_s(stats.offered),
            sent_per_s: per_s(stats.sent),
            goodput_per_s: per_s(stats.ok_in_window),
            error_ratio: if stats.offered > 0 {
                failed as f64 / stats.offered as f64
            } else {
                0.0
            },
            latency_ok: LatencySummary::of(&stats.ok_latency),
            latency_all: LatencySummary::of(&stats.all_latency),
        }
    }
}

/// The record of one step.
pub fn step_report(
    spec: &StepSpec,
    outcome: &StepOutcome,
    rss_kib: BTreeMap<String, u64>,
) -> StepReport {
    let window_s = spec.duration.as_secs_f64();
    let kinds = outcome
        .kinds
        .iter()
        .zip(&outcome.stats.kinds)
        .filter_map(|(kind, stats)| {
            stats
                .as_ref()
                .map(|s| KindReport::of(&kind.name, kind.journey, s, window_s))
        })
        .collect();
    StepReport {
        rate: spec.rate,
        warmup_s: spec.warmup.as_secs_f64(),
        duration_s: window_s,
        elapsed_s: outcome.elapsed.as_secs_f64(),
        truncated: outcome.truncated,
        total: outcome
            .stats
            .requests_total(&outcome.kinds)
            .map(|t| KindReport::of("all requests", false, &t, window_s)),
        kinds,
        lag: LatencySummary::of(&outcome.stats.lag),
        peak_rss_mib: rss_kib
            .into_iter()
            .map(|(name, kib)| (name, (kib as f64 / 1024.0 * 10.0).round() / 10.0))
            .collect(),
    }
}

/// Real/bare ratios for every target measured both ways.
pub fn ratios(targets: &[TargetReport]) -> Vec<RatioRow> {
    let mut rows = Vec::new();
    for real in targets.iter().filter(|t| t.system == "real") {
        let Some(bare) = targets
            .iter()
            .find(|t| t.system == "bare" && t.target == real.target)
        else {
            continue;
        };
        for (r, b) in real.steps.iter().zip(&bare.steps) {
            let (Some(rt), Some(bt)) = (&r.total, &b.total) else {
                continue;
            };
            let ratio = |x: f64, y: f64| (y > 0.0).then(|| x / y);
            let latency = |pick: fn(&LatencySummary) -> f64| match (&rt.latency_ok, &bt.latency_ok)
            {
                (Some(x), Some(y)) => ratio(pick(x), pick(y)),
                _ => None,
            };
            rows.push(RatioRow {
                target: real.target.clone(),
                rate: r.rate,
                goodput_real_per_s: rt.goodput_per_s,
                goodput_bare_per_s: bt.goodput_per_s,
                goodput_ratio: ratio(rt.goodput_per_s, bt.goodput_per_s),
                p50_ratio: latency(|l| l.p50_ms),
                p99_ratio: latency(|l| l.p99_ms),
                p999_ratio: latency(|l| l.p999_ms),
            });
        }
    }
    rows
}

pub fn arrivals_name(arrivals: Arrivals) -> &'static str {
    match arrivals {
        Arrivals::Constant => "constant",
        Arrivals::Poisson => "poisson",
    }
}

/// `12,345` (rates above 100/s as whole numbers), `7.5` below.
fn count(value: f64) -> String {
    if value < 100.0 && value.fract().abs() > 1e-9 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.42 ms`, `12.3 ms`, `456 ms`, `1.23 s`.
fn millis(ms: f64) -> String {
    match ms {
        ms if ms < 10.0 => format!("{ms:.2} ms"),
        ms if ms < 100.0 => format!("{ms:.1} ms"),
        ms if ms < 1000.0 => format!("{ms:.0} ms"),
        ms => format!("{:.2} s", ms / 1000.0),
    }
}

fn errors_cell(kind: &KindReport) -> String {
    if kind.failed == 0 {
        return "—".to_owned();
    }
    let mut errors: Vec<_> = kind.errors.iter().collect();
    errors.sort_by(|a, b| b.1.cmp(a.1));
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|(label, n)| format!("{label} {}", count(**n as f64)))
        .collect();
    let more = if errors.len() > 3 { " …" } else { "" };
    format!(
        "{:.1} %: {}{more}",
        kind.error_ratio * 100.0,
        shown.join(", ")
    )
}

fn latency_cells(latency: Option<&LatencySummary>) -> [String; 5] {
    match latency {
        Some(l) => [l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms].map(millis),
        None => std::array::from_fn(|_| "—".to_owned()),
    }
}

fn kind_row(out: &mut String, rate: &str, kind: &KindReport, lag: &str) {
    let [p50, p90, p99, p999, max] = latency_cells(kind.latency_ok.as_ref());
    let p99_all = kind
        .latency_all
        .as_ref()
        .map_or_else(|| "—".to_owned(), |l| millis(l.p99_ms));
    let _ = writeln!(
        out,
        "| {rate} | {} | {} | {} | {} | {} | {p50} | {p90} | {p99} | {p999} | {max} | {p99_all} | {lag} |",
        kind.kind,
        count(kind.offered_per_s),
        count(kind.sent_per_s),
        count(kind.goodput_per_s),
        errors_cell(kind),
    );
}

/// The whole report as Markdown.
pub fn markdown(report: &RunReport) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    let _ = writeln!(out, "## loadgen run, {}\n", report.started_at);
    let _ = writeln!(
        out,
        "Each step {} s measured after a {} s warm-up at the same rate; {} arrivals; \
         at most {} in flight; timeout {} s; {} loadgen threads.\n",
        plan.duration_s,
        plan.warmup_s,
        plan.arrivals,
        count(plan.max_in_flight as f64),
        plan.timeout_s,
        plan.workers,
    );
    for target in &report.targets {
        let _ = writeln!(
            out,
            "### {} — {} ({}, {} connections)\n",
            target.target, target.system, target.url, target.connections
        );
        if target.setup.shoppers > 0 {
            let _ = writeln!(
                out,
                "{} products discovered, {} signed-in shoppers.\n",
                target.setup.products, target.setup.shoppers
            );
        }
        let _ = writeln!(
            out,
            "| rate/s | kind | offered/s | sent/s | goodput/s | errors | p50 | p90 | p99 | p99.9 | max | p99 all | lag p99 |"
        );
        let _ = writeln!(
            out,
            "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for step in &target.steps {
            let rate = format!(
                "{}{}",
                count(step.rate),
                if step.truncated { " (cut)" } else { "" }
            );
            let lag = step
                .lag
                .as_ref()
                .map_or_else(|| "—".to_owned(), |l| millis(l.p99_ms));
            let several = step.kinds.len() > 1;
            if let Some(total) = &step.total {
                let mut total = total.clone();
                total.kind = match step.kinds.as_slice() {
                    [only] if !several => only.kind.clone(),
                    _ => "**all requests**".to_owned(),
                };
                kind_row(&mut out, &rate, &total, &lag);
            }
            if several || step.kinds.iter().any(|k| k.journey) {
                for kind in &step.kinds {
                    kind_row(&mut out, "", kind, "");
                }
            }
        }
        let names: Vec<&String> = {
            let mut names: Vec<&String> = target
                .steps
                .iter()
                .flat_map(|s| s.peak_rss_mib.keys())
                .collect();
            names.sort();
            names.dedup();
            names
        };
        if !names.is_empty() {
            let _ = writeln!(out, "\nPeak RSS (MiB) during each step:\n");
            let header: Vec<String> = target
                .steps
                .iter()
                .map(|s| format!("{}/s", count(s.rate)))
                .collect();
            let _ = writeln!(out, "| process | {} |", header.join(" | "));
            let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len()));
            for name in names {
                let cells: Vec<String> = target
                    .steps
                    .iter()
                    .map(|s| {
                        s.peak_rss_mib
                            .get(name)
                            .map_or_else(|| "—".to_owned(), |mib| format!("{mib:.1}"))
                    })
                    .collect();
                let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
            }
        }
        out.push('\n');
    }
    if !report.vs_bare.is_empty() {
        let _ = writeln!(
            out,
            "### Real over bare (the same plan against loadgen's trivial axum/tonic server)\n"
        );
        let _ = writeln!(
            out,
            "| target | rate/s | goodput real | goodput bare | goodput real/bare | p50 real/bare | p99 real/bare | p99.9 real/bare |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let ratio = |r: Option<f64>| r.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        for row in &report.vs_bare {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.target,
                count(row.rate),
                count(row.goodput_real_per_s),
                count(row.goodput_bare_per_s),
                ratio(row.goodput_ratio),
                ratio(row.p50_ratio),
                ratio(row.p99_ratio),
                ratio(row.p999_ratio),
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(12_345.4), "12,345");
        assert_eq!(count(500.0), "500");
        assert_eq!(count(7.5), "7.5");
        assert_eq!(count(1_000_000.0), "1,000,000");
        assert_eq!(millis(0.4234), "0.42 ms");
        assert_eq!(millis(12.34), "12.3 ms");
        assert_eq!(millis(456.7), "457 ms");
        assert_eq!(millis(1234.0), "1.23 s");
    }
}
