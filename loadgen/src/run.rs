//! `loadgen run`: for each target (and its bare counterpart with `--bare`),
//! set up (connections, catalog discovery, shoppers), then run every step of
//! the plan, watching memory, and gather the report.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::bare::BareChild;
use crate::catalog::{Catalog, discover_rest};
use crate::cli::{RunOptions, Target};
use crate::engine::{EngineConfig, StepSpec, Workload, run_step};
use crate::grpc::{GrpcPool, GrpcTarget};
use crate::report::{self, PlanReport, RunReport, SetupReport, TargetReport};
use crate::rest::{BaseUrl, RestClient};
use crate::rss::{RssWatcher, pid_files};
use crate::scenarios::checkout::CheckoutJourney;
use crate::scenarios::mix::Mix;
use crate::scenarios::{self, RequestTable};
use crate::shoppers::Shoppers;

const GRPC_CONNECTIONS: usize = 4;
const REST_CONNECTIONS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Real,
    Bare,
}

/// A workload ready to run, and what keeps it alive.
struct Prepared {
    workload: Arc<dyn Workload>,
    url: String,
    connections: usize,
    setup: SetupReport,
    /// Keeps shoppers' tokens fresh while the target runs.
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(refresher) = self.refresher.take() {
            refresher.abort();
        }
    }
}

/// Arrivals the whole plan offers (Poisson: on average).
fn planned_arrivals(options: &RunOptions) -> u64 {
    let span = options.warmup + options.duration;
    options
        .targets
        .iter()
        .map(|plan| {
            let arrivals: f64 = options
                .rates_of(plan)
                .iter()
                .map(|r| r * span.as_secs_f64())
                .sum();
            let runs = if options.bare && plan.target.has_bare() {
                2.0
            } else {
                1.0
            };
            arrivals * runs
        })
        .sum::<f64>()
        .round() as u64
}

pub async fn run(options: &RunOptions, command: Vec<String>) -> anyhow::Result<RunReport> {
    let planned = planned_arrivals(options);
    if planned > options.max_requests {
        bail!(
            "the plan offers {planned} arrivals, above --max-requests {}: shorten it or raise the limit",
            options.max_requests
        );
    }
    let started_at = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let watcher = RssWatcher::start()?;
    let bare = if options.bare && options.targets.iter().any(|t| t.target.has_bare()) {
        Some(BareChild::spawn(options.workers).await?)
    } else {
        None
    };
    let lanes = options.workers * 2;
    let config = EngineConfig {
        lanes,
        max_in_flight: options.max_in_flight,
        seed: options.seed,
        budget: Arc::new(AtomicU64::new(options.max_requests)),
    };
    let run_tag = format!(
        "{}-{}",
        chrono::Utc::now().timestamp_millis(),
        std::process::id()
    );
    let mut targets = Vec::new();
    let result = async {
        for plan in &options.targets {
            let target = &plan.target;
            let mut systems = vec![System::Real];
            if let (Some(_), true) = (&bare, target.has_bare()) {
                systems.push(System::Bare);
            } else if options.bare {
                eprintln!(
                    "loadgen: {}: no bare reference for this target",
                    target.name()
                );
            }
            for system in systems {
                let (http_url, grpc_url) = match (&bare, system) {
                    (Some(bare), System::Bare) => (
                        format!("http://{}", bare.http),
                        format!("http://{}", bare.grpc),
                    ),
                    _ => (options.http_url.clone(), options.grpc_url.clone()),
                };
                let system_name = match system {
                    System::Real => "real",
                    System::Bare => "bare",
                };
                eprintln!("loadgen: {} ({system_name}): setting up", target.name());
                let prepared = prepare(*target, options, &http_url, &grpc_url, &run_tag)
                    .await
                    .with_context(|| format!("setting up {}", target.name()))?;
                eprintln!(
                    "loadgen: {} ({system_name}): {} products, {} shoppers ready in {:.1} s",
                    target.name(),
                    prepared.setup.products,
                    prepared.setup.shoppers,
                    prepared.setup.seconds
                );
                let mut steps = Vec::new();
                for (index, rate) in options.rates_of(plan).iter().enumerate() {
                    let spec = StepSpec {
                        rate: *rate,
                        warmup: options.warmup,
                        duration: options.duration,
                        arrivals: options.arrivals,
                    };
                    watcher.begin_step(&watched(options, bare.as_ref()));
                    let outcome =
                        run_step(Arc::clone(&prepared.workload), spec, &config, index as u64)
                            .await?;
                    let step = report::step_report(&spec, &outcome, watcher.end_step());
                    progress(target.name(), system_name, &step);
                    steps.push(step);
                }
                targets.push(TargetReport {
                    target: target.name().to_owned(),
                    system: system_name,
                    url: prepared.url.clone(),
                    connections: prepared.connections,
                    setup: prepared.setup.clone(),
                    steps,
                });
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Some(bare) = bare {
        bare.stop().await;
    }
    result?;
    let vs_bare = report::ratios(&targets);
    Ok(RunReport {
        tool: "loadgen",
        version: env!("CARGO_PKG_VERSION"),
        started_at,
        command,
        plan: PlanReport {
            rates: options.rates.clone(),
            warmup_s: options.warmup.as_secs_f64(),
            duration_s: options.duration.as_secs_f64(),
            arrivals: report::arrivals_name(options.arrivals),
            max_in_flight: options.max_in_flight,
            timeout_s: options.timeout.as_secs_f64(),
            workers: options.workers,
            lanes,
            seed: options.seed,
        },
        targets,
        vs_bare,
    })
}

/// Processes whose memory is reported: the pid folders (read anew each step,
/// a restarted service has a new pid), `--watch`, the bare child, loadgen.
fn watched(options: &RunOptions, bare: Option<&BareChild>) -> Vec<(String, u32)> {
    let mut processes: Vec<(String, u32)> = options
        .watch_dirs
        .iter()
        .flat_map(|dir| pid_files(dir))
        .collect();
    processes.extend(options.watch.iter().cloned());
    if let Some(bare) = bare {
        processes.push(("loadgen-bare".to_owned(), bare.pid));
    }
    processes.push(("loadgen".to_owned(), std::process::id()));
    processes
}

fn progress(target: &str, system: &str, step: &report::StepReport) {
    let Some(total) = &step.total else {
        return;
    };
    let p99 = total.latency_ok.as_ref().map_or(f64::NAN, |l| l.p99_ms);
    eprintln!(
        "loadgen: {target} ({system}) {:.0}/s: goodput {:.0}/s, errors {:.2} %, p99 {p99:.2} ms{}",
        step.rate,
        total.goodput_per_s,
        total.error_ratio * 100.0,
        if step.truncated {
            " (cut short by --max-requests)"
        } else {
            ""
        }
    );
}

async fn prepare(
    target: Target,
    options: &RunOptions,
    http_url: &str,
    grpc_url: &str,
    run_tag: &str,
) -> anyhow::Result<Prepared> {
    let started = Instant::now();
    if let Target::Grpc(method) = target {
        let connections = options.connections.unwrap_or(GRPC_CONNECTIONS);
        let pool = GrpcPool::connect(
            grpc_url,
            connections,
            options.streams,
            options.timeout,
            options.allow_remote,
        )
        .await?;
        let catalog = pool.discover(options.products).await?;
        return Ok(Prepared {
            workload: Arc::new(GrpcTarget::new(pool, method, &catalog, options.seed)),
            url: grpc_url.to_owned(),
            connections,
            setup: setup_report(started, &catalog, 0),
            refresher: None,
        });
    }
    let connections = options.connections.unwrap_or(REST_CONNECTIONS);
    let base = BaseUrl::resolve(http_url, options.allow_remote).await?;
    let rest = RestClient::connect(&base, connections, options.timeout).await?;
    let catalog = discover_rest(&rest, options.products).await?;
    let rest_arc = Arc::new(rest.clone());
    let seed = options.seed;
    let (cart_users, checkout_users) = match target {
        Target::Cart => (options.users, 0),
        Target::Shopper => (0, options.users),
        Target::Mix => match (options.mix.cart > 0, options.mix.checkout > 0) {
            (true, true) => {
                let cart = (options.users / 4).max(1);
                (cart, options.users.saturating_sub(cart).max(1))
            }
            (true, false) => (options.users, 0),
            (false, true) => (0, options.users),
            (false, false) => (0, 0),
        },
        _ => (0, 0),
    };
    let shoppers = if cart_users + checkout_users > 0 {
        Some(Shoppers::prepare(&rest, cart_users, checkout_users).await?)
    } else {
        None
    };
    let refresher = shoppers.as_ref().map(|s| s.spawn_refresher(rest.clone()));
    let journey = |shoppers: &Arc<Shoppers>| {
        CheckoutJourney::new(
            Arc::clone(&rest_arc),
            &catalog,
            Arc::clone(shoppers),
            options.order_timeout,
            run_tag.to_owned(),
        )
    };
    let required = || shoppers.as_ref().context("no shoppers were prepared");
    let workload: Arc<dyn Workload> = match target {
        Target::RestProduct => Arc::new(scenarios::product_page(Arc::clone(&rest_arc), &catalog)?),
        Target::Browse => Arc::new(scenarios::browse(Arc::clone(&rest_arc), &catalog)?),
        Target::Search => Arc::new(scenarios::search(Arc::clone(&rest_arc), &catalog, seed)?),
        Target::Cart => Arc::new(scenarios::cart(
            Arc::clone(&rest_arc),
            &catalog,
            Arc::clone(required()?),
        )?),
        Target::Shopper => Arc::new(journey(required()?)?),
        Target::Mix => {
            let mix = options.mix;
            let mut parts: Vec<(&str, u32, Arc<dyn Workload>)> = vec![
                (
                    "browse",
                    mix.browse,
                    Arc::new(scenarios::browse(Arc::clone(&rest_arc), &catalog)?),
                ),
                (
                    "search",
                    mix.search,
                    Arc::new(scenarios::search(Arc::clone(&rest_arc), &catalog, seed)?),
                ),
            ];
            if let Some(shoppers) = &shoppers {
                if mix.cart > 0 {
                    let cart: RequestTable =
                        scenarios::cart(Arc::clone(&rest_arc), &catalog, Arc::clone(shoppers))?;
                    parts.push(("cart", mix.cart, Arc::new(cart)));
                }
                if mix.checkout > 0 {
                    parts.push(("checkout", mix.checkout, Arc::new(journey(shoppers)?)));
                }
            }
            Arc::new(Mix::new(parts)?)
        }
        Target::Grpc(_) => bail!("not a REST target"),
    };
    Ok(Prepared {
        workload,
        url: base.url,
        connections,
        setup: setup_report(started, &catalog, shoppers.as_ref().map_or(0, |s| s.len())),
        refresher,
    })
}

fn setup_report(started: Instant, catalog: &Catalog, shoppers: usize) -> SetupReport {
    SetupReport {
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        products: catalog.products.len(),
        categories: catalog.categories.len(),
        shoppers,
    }
}

/// Writes `--json` / `--markdown` and prints the Markdown.
pub fn write_outputs(options: &RunOptions, report: &RunReport) -> anyhow::Result<()> {
    let markdown = report::markdown(report);
    print!("{markdown}");
    if let Some(path) = &options.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &options.json {
        let json = serde_json::to_vec_pretty(report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
