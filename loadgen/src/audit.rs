//! `loadgen audit`: the invariant checker of the fault suite (issue #21).
//! After a run under load with services, PostgreSQL, Redis and the broker
//! killed along the way, it reads every service's own database
//! (`shop_<service><suffix>`) and checks that the books balance: every order
//! settled, money captured exactly for what was sold, stock held and sold
//! exactly for the right orders, every outbox drained and every event applied
//! once by its consumers. Everything downstream is asynchronous (sagas retry,
//! outboxes relay, consumers lag), so failing checks are run again every
//! [`RECHECK_EVERY`] until they all hold or `--settle` runs out. Queries across
//! two databases fetch from each and compare here (no dblink).
//!
//! One module per area: [`orders`], [`money`], [`stock`], [`outboxes`],
//! [`consumers`]; each invariant is one function returning its findings.

mod consumers;
mod databases;
mod facts;
mod money;
mod orders;
mod outboxes;
mod stock;
mod summary;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use uuid::Uuid;

use crate::cli::AuditOptions;
use databases::Databases;
pub use summary::Summary;

/// How often failing checks run again while they settle.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);
/// Findings printed per invariant; the JSON keeps more.
const PRINTED_PER_INVARIANT: usize = 10;
const JSON_PER_INVARIANT: usize = 200;

/// One rule the databases must satisfy once everything has settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    OrdersTerminal,
    Money,
    PaymentLedger,
    StockReserved,
    Reservations,
    StockLog,
    StockSold,
    Outboxes,
    Purchases,
    Notifications,
    ProductStock,
}

impl Invariant {
    pub const ALL: [Self; 11] = [
        Self::OrdersTerminal,
        Self::Money,
        Self::PaymentLedger,
        Self::StockReserved,
        Self::Reservations,
        Self::StockLog,
        Self::StockSold,
        Self::Outboxes,
        Self::Purchases,
        Self::Notifications,
        Self::ProductStock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::OrdersTerminal => "orders-terminal",
            Self::Money => "money",
            Self::PaymentLedger => "payment-ledger",
            Self::StockReserved => "stock-reserved",
            Self::Reservations => "reservations",
            Self::StockLog => "stock-log",
            Self::StockSold => "stock-sold",
            Self::Outboxes => "outboxes",
            Self::Purchases => "purchases",
            Self::Notifications => "notifications",
            Self::ProductStock => "product-stock",
        }
    }

    /// The rule in one line.
    pub fn rule(self) -> &'static str {
        match self {
            Self::OrdersTerminal => "every order is terminal and its saga done",
            Self::Money => {
                "per order, captured - refunded is the total if confirmed, else 0; \
                 no open payment, none for an unknown order"
            }
            Self::PaymentLedger => "svc-order's payment ledger agrees with every payment",
            Self::StockReserved => "reserved stock is what the live reservations hold",
            Self::Reservations => {
                "a sold order has its lines committed; no other order holds or took stock"
            }
            Self::StockLog => "stock levels are what the stock_changes log says",
            Self::StockSold => "units committed per SKU are the sold orders' units",
            Self::Outboxes => "every outbox row is published",
            Self::Purchases => "svc-recommendation recorded each sold order's lines once",
            Self::Notifications => "one notification per channel per order event",
            Self::ProductStock => "svc-product's availability is inventory's",
        }
    }
}

/// One way the databases break an invariant: what it is about, what was
/// expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub invariant: Invariant,
    /// The ids it is about, e.g. "order 0190… (failed)" or "sku ABC-1".
    pub subject: String,
    pub expected: String,
    pub found: String,
}

impl Finding {
    pub fn new(
        invariant: Invariant,
        subject: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self {
            invariant,
            subject: subject.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}

/// One invariant's outcome in the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct InvariantReport {
    pub name: &'static str,
    pub rule: &'static str,
    pub holds: bool,
    /// All findings, of which `findings` lists the first few hundred.
    pub count: usize,
    pub findings: Vec<Finding>,
}

/// What `--json` writes.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub passed: bool,
    /// Checks run (the first and every recheck).
    pub checks: u32,
    /// From the start (connecting included) to the end of the last check:
    /// the time the books took to settle when `passed`.
    pub seconds: f64,
    pub db_suffix: String,
    pub invariants: Vec<InvariantReport>,
    pub summary: Summary,
}

/// Runs the checks until they hold or `--settle` runs out; prints the
/// outcome, writes the JSON, and fails when an invariant does not hold.
pub async fn main(options: &AuditOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + options.settle;
    let databases = Databases::connect(&options.database_url, &options.db_suffix, deadline).await?;
    // The demo purchase history svc-recommendation seeds itself: orders that
    // never went through svc-order, told apart by their (deterministic) ids.
    let demo_orders: HashSet<Uuid> = shopmesh_demo::demo_orders()
        .into_iter()
        .map(|order| order.id)
        .collect();
    let mut checks = 0;
    let mut last_failing: Option<Vec<Invariant>> = None;
    let findings = loop {
        checks += 1;
        let outcome = check_all(&databases, &demo_orders).await;
        let out_of_time = Instant::now() >= deadline;
        match outcome {
            Ok(findings) if findings.is_empty() || out_of_time => break findings,
            Ok(findings) => {
                let failing = failing(&findings);
                if last_failing.as_ref() != Some(&failing) {
                    let names: Vec<&str> = failing.iter().map(|i| i.name()).collect();
                    eprintln!(
                        "audit: check {checks}: {} ({}); rechecking every {}s for up to {:.0}s",
                        counted(findings.len() as u64, "finding"),
                        names.join(", "),
                        RECHECK_EVERY.as_secs(),
                        deadline.saturating_duration_since(started).as_secs_f64(),
                    );
                    last_failing = Some(failing);
                }
            }
            Err(err) if out_of_time => return Err(err.context("the databases could not be read")),
            Err(err) => eprintln!("audit: check {checks} could not read the databases: {err:#}"),
        }
        tokio::time::sleep(RECHECK_EVERY.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let summary = summary::summarize(&databases, &demo_orders).await?;
    let report = AuditReport {
        passed: findings.is_empty(),
        checks,
        seconds,
        db_suffix: options.db_suffix.clone(),
        invariants: invariant_reports(&findings),
        summary,
    };
    print!("{}", render(&report, &findings));
    if let Some(path) = &options.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.passed {
        bail!(
            "audit failed: {} of {} invariants do not hold after {seconds:.1}s",
            failing(&findings).len(),
            Invariant::ALL.len()
        );
    }
    Ok(())
}

/// One full pass over every invariant.
async fn check_all(dbs: &Databases, demo_orders: &HashSet<Uuid>) -> anyhow::Result<Vec<Finding>> {
    let orders = facts::orders(&dbs.order).await?;
    let payments = facts::payments(&dbs.payment).await?;
    let mut findings = orders::orders_terminal(&dbs.order).await?;
    findings.extend(money::net_captured(&orders, &payments));
    findings.extend(money::payment_ledger(&dbs.order, &payments).await?);
    findings.extend(stock::stock_reserved(&dbs.inventory).await?);
    findings.extend(stock::reservations(&dbs.inventory, &orders).await?);
    findings.extend(stock::stock_log(&dbs.inventory).await?);
    findings.extend(stock::stock_sold(&dbs.inventory, &orders).await?);
    findings.extend(outboxes::outboxes_drained(dbs).await?);
    findings.extend(consumers::purchases(&dbs.recommendation, &orders, demo_orders).await?);
    findings.extend(consumers::notifications(&dbs.notification, &dbs.order, &orders).await?);
    findings.extend(consumers::product_stock(&dbs.product, &dbs.inventory).await?);
    Ok(findings)
}

/// "1 check", "3 checks".
pub(crate) fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// The invariants with findings, in order.
fn failing(findings: &[Finding]) -> Vec<Invariant> {
    let mut failing: Vec<Invariant> = findings.iter().map(|f| f.invariant).collect();
    failing.sort();
    failing.dedup();
    failing
}

fn by_invariant(findings: &[Finding]) -> BTreeMap<Invariant, Vec<&Finding>> {
    let mut grouped: BTreeMap<Invariant, Vec<&Finding>> = BTreeMap::new();
    for finding in findings {
        grouped.entry(finding.invariant).or_default().push(finding);
    }
    grouped
}

fn invariant_reports(findings: &[Finding]) -> Vec<InvariantReport> {
    let grouped = by_invariant(findings);
    Invariant::ALL
        .into_iter()
        .map(|invariant| {
            let found = grouped.get(&invariant).map(Vec::as_slice).unwrap_or(&[]);
            InvariantReport {
                name: invariant.name(),
                rule: invariant.rule(),
                holds: found.is_empty(),
                count: found.len(),
                findings: found
                    .iter()
                    .take(JSON_PER_INVARIANT)
                    .map(|f| (*f).clone())
                    .collect(),
            }
        })
        .collect()
}

/// The findings (a few per invariant) or, when all hold, the summary.
fn render(report: &AuditReport, findings: &[Finding]) -> String {
    let mut out = String::new();
    if report.passed {
        let _ = writeln!(
            out,
            "audit: all {} invariants hold (settled after {:.1}s, {})",
            Invariant::ALL.len(),
            report.seconds,
            counted(report.checks, "check")
        );
        out.push_str(&report.summary.render());
        return out;
    }
    let grouped = by_invariant(findings);
    let _ = writeln!(
        out,
        "audit: {} of {} invariants do not hold after {:.1}s ({})",
        grouped.len(),
        Invariant::ALL.len(),
        report.seconds,
        counted(report.checks, "check")
    );
    for (invariant, found) in &grouped {
        let _ = writeln!(
            out,
            "\nFAIL {}: {} ({})",
            invariant.name(),
            invariant.rule(),
            counted(found.len() as u64, "finding")
        );
        for finding in found.iter().take(PRINTED_PER_INVARIANT) {
            let _ = writeln!(
                out,
                "  {}: expected {}, found {}",
                finding.subject, finding.expected, finding.found
            );
        }
        if found.len() > PRINTED_PER_INVARIANT {
            let _ = writeln!(out, "  … and {} more", found.len() - PRINTED_PER_INVARIANT);
        }
    }
    let holding: Vec<&str> = Invariant::ALL
        .into_iter()
        .filter(|i| !grouped.contains_key(i))
        .map(Invariant::name)
        .collect();
    if !holding.is_empty() {
        let _ = writeln!(out, "\nhold: {}", holding.join(", "));
    }
    out.push('\n');
    out.push_str(&report.summary.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case_like_their_json() {
        let names: HashSet<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
        assert_eq!(names.len(), Invariant::ALL.len());
        for invariant in Invariant::ALL {
            let json = serde_json::to_string(&invariant).unwrap();
            assert_eq!(json, format!("\"{}\"", invariant.name()));
        }
    }

    #[test]
    fn printing_caps_each_invariant() {
        let findings: Vec<Finding> = (0..25)
            .map(|n| Finding::new(Invariant::Money, format!("order {n}"), "0", "1"))
            .chain([Finding::new(Invariant::Outboxes, "shop_order", "0", "3")])
            .collect();
        let report = AuditReport {
            passed: false,
            checks: 3,
            seconds: 4.0,
            db_suffix: String::new(),
            invariants: invariant_reports(&findings),
            summary: Summary::default(),
        };
        let text = render(&report, &findings);
        assert!(text.contains("2 of 11 invariants"), "{text}");
        assert!(text.contains("order 9: expected 0, found 1"), "{text}");
        assert!(!text.contains("order 10:"), "{text}");
        assert!(text.contains("… and 15 more"), "{text}");
        assert_eq!(report.invariants[1].count, 25);
        assert!(report.invariants[0].holds);
    }
}
