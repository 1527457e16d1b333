//! The command line, parsed by hand (a dozen flags do not need a parser crate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::grpc::Method;
use crate::plan::{parse_duration, parse_rate, parse_steps};
use crate::schedule::Arrivals;

pub const USAGE: &str = "\
loadgen: open-loop load for shopmesh (docs/benchmarks.md, \"Load generator\")

USAGE
  loadgen run --target T[,T…] (--rate N | --steps LIST) [options]
  loadgen run --target T@STEPS [--target T@STEPS …] [options]
  loadgen bare [--http ADDR] [--grpc ADDR]
  loadgen audit --database-url URL [--db-suffix S] [--settle D] [--json FILE]
  loadgen help

TARGETS
  grpc:get-product | grpc:list-products | grpc:search-products
                     one ProductService method, straight to svc-product (--grpc-url)
  rest:product       GET /v1/products/{id} through the gateway (--http-url)
  browse             list, category, product page, similar, bought together
  search             typo'd text and faceted searches
  cart               a signed-in shopper views the cart, adds, removes
  shopper            checkout journeys: add to cart, view, check out with a
                     test card, poll the order until it is terminal
  mix                browse/search/cart/checkout by --mix weights

RUN OPTIONS
  --rate N                one step of N arrivals/s (20k = 20000)
  --steps LIST            5000,10000,20000 or 1000..20000/5 (5 steps, ends included)
  --target T@STEPS        a target with its own steps (repeat --target for several)
  --duration D            measured time per step (default 10s)
  --warmup D              unmeasured lead-in per step, same rate (default 2s)
  --arrivals KIND         constant (default) or poisson
  --connections N         gRPC HTTP/2 connections (default 4); REST HTTP/1.1 (default 64)
  --streams N             gRPC calls on the wire per connection; more wait in loadgen,
                          in arrival order (default 200, hyper's server default)
  --max-in-flight N       outstanding arrivals before new ones are refused and
                          counted as client_overflow (default 20000)
  --timeout D             per request, waiting for a connection included (default 10s)
  --order-timeout D       for an order to become terminal in a journey (default 30s)
  --max-requests N        refuse plans above N arrivals; stop if reached (default 20000000)
  --http-url URL          REST edge (default http://127.0.0.1:8080)
  --grpc-url URL          svc-product (default http://127.0.0.1:50053)
  --allow-remote          allow non-loopback URLs (plain http only, e.g. a cluster ingress)
  --bare                  also run the plan against `loadgen bare` (started as a child
                          process) for targets it serves (rest:product, grpc:get-product),
                          and report real/bare
  --mix W                 browse=60,search=25,cart=10,checkout=5 (default)
  --users N               signed-in shoppers for cart/shopper/mix (default 200)
  --products N            products to discover (default 2000)
  --watch-pids-dir DIR    report peak RSS of the processes in DIR/<name>.pid (repeatable)
  --watch NAME=PID        and of this one (repeatable)
  --json FILE             write everything as JSON
  --markdown FILE         write the tables as Markdown (also printed to stdout)
  --seed N                random seed (default 1)
  --workers N             loadgen's tokio worker threads (default 2)

BARE OPTIONS
  --http ADDR             default 127.0.0.1:18080
  --grpc ADDR             default 127.0.0.1:18081
  --workers N             default 2

AUDIT (the invariant checker of the fault suite, scripts/faults.sh)
  Reads the services' own databases, shop_<service><suffix> (order, payment,
  inventory, notification, recommendation, product, auth, user), and checks
  that the books balance once everything asynchronous has caught up:
    orders-terminal  every order confirmed/failed/cancelled/refunded, its saga done
    money            per order, captured - refunded = total if confirmed, else 0;
                     no payment pending or authorized, none for an unknown order
    payment-ledger   svc-order's order_payment_ledger agrees with every payment
    stock-reserved   stock.reserved = units of the live ('reserved') reservations
    reservations     a sold order has a committed reservation of its lines; no
                     other order has one committed or still reserved
    stock-log        stock levels = the newest stock_changes row = the sum of its deltas
    stock-sold       units committed per SKU = units of the sold orders
    outboxes         no unpublished outbox row in any database
    purchases        svc-recommendation's purchases = the confirmed/refunded
                     orders' lines (the demo seed's orders excluded)
    notifications    one notification per channel per order event
                     (confirmed, failed, cancelled, refunded)
    product-stock    svc-product's stock_levels = inventory's on_hand - reserved
  Checks again every 2s until all hold or --settle runs out; prints the findings
  and exits 1, or a summary and exits 0.

AUDIT OPTIONS
  --database-url URL      the PostgreSQL server (its path, if any, is ignored)
  --db-suffix S           database name suffix, e.g. _100 for a second stack (default none)
  --settle D              how long to wait for the checks to pass (default 120s)
  --json FILE             write the findings and the summary as JSON
";

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Grpc(Method),
    RestProduct,
    Browse,
    Search,
    Cart,
    Shopper,
    Mix,
}

impl Target {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "grpc:get-product" => Self::Grpc(Method::GetProduct),
            "grpc:list-products" => Self::Grpc(Method::ListProducts),
            "grpc:search-products" => Self::Grpc(Method::SearchProducts),
            "rest:product" => Self::RestProduct,
            "browse" => Self::Browse,
            "search" => Self::Search,
            "cart" => Self::Cart,
            "shopper" => Self::Shopper,
            "mix" => Self::Mix,
            _ => return Err(format!("unknown target {text:?} (see loadgen help)")),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc(Method::GetProduct) => "grpc:get-product",
            Self::Grpc(Method::ListProducts) => "grpc:list-products",
            Self::Grpc(Method::SearchProducts) => "grpc:search-products",
            Self::RestProduct => "rest:product",
            Self::Browse => "browse",
            Self::Search => "search",
            Self::Cart => "cart",
            Self::Shopper => "shopper",
            Self::Mix => "mix",
        }
    }

    /// Whether `loadgen bare` serves it.
    pub fn has_bare(self) -> bool {
        matches!(self, Self::Grpc(Method::GetProduct) | Self::RestProduct)
    }
}

/// Weights of the mix's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixWeights {
    pub browse: u32,
    pub search: u32,
    pub cart: u32,
    pub checkout: u32,
}

impl Default for MixWeights {
    /// Product discovery dominates shop traffic; a few visits add to a cart and
    /// fewer buy (60/25/10/5, as the issue proposes).
    fn default() -> Self {
        Self {
            browse: 60,
            search: 25,
            cart: 10,
            checkout: 5,
        }
    }
}

impl MixWeights {
    fn parse(text: &str) -> Result<Self, String> {
        let mut weights = Self {
            browse: 0,
            search: 0,
            cart: 0,
            checkout: 0,
        };
        for part in text.split(',') {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix {text:?}: expected name=weight,…"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("--mix: {weight:?} is not a weight"))?;
            match name.trim() {
                "browse" => weights.browse = weight,
                "search" => weights.search = weight,
                "cart" => weights.cart = weight,
                "checkout" => weights.checkout = weight,
                other => return Err(format!("--mix: unknown part {other:?}")),
            }
        }
        if weights.browse + weights.search + weights.cart + weights.checkout == 0 {
            return Err("--mix: every weight is 0".to_owned());
        }
        Ok(weights)
    }
}

/// A target and, when it has its own (`T@STEPS`), its step rates.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetPlan {
    pub target: Target,
    pub rates: Option<Vec<f64>>,
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub targets: Vec<TargetPlan>,
    /// Steps of the targets without their own.
    pub rates: Vec<f64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub arrivals: Arrivals,
    pub connections: Option<usize>,
    pub streams: usize,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub order_timeout: Duration,
    pub max_requests: u64,
    pub http_url: String,
    pub grpc_url: String,
    pub allow_remote: bool,
    pub bare: bool,
    pub mix: MixWeights,
    pub users: usize,
    pub products: usize,
    pub watch_dirs: Vec<PathBuf>,
    pub watch: Vec<(String, u32)>,
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub seed: u64,
    pub workers: usize,
}

impl RunOptions {
    /// The step rates of one target.
    pub fn rates_of<'a>(&'a self, plan: &'a TargetPlan) -> &'a [f64] {
        plan.rates.as_deref().unwrap_or(&self.rates)
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            rates: Vec::new(),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            arrivals: Arrivals::Constant,
            connections: None,
            streams: 200,
            max_in_flight: 20_000,
            timeout: Duration::from_secs(10),
            order_timeout: Duration::from_secs(30),
            max_requests: 20_000_000,
            http_url: "http://127.0.0.1:8080".to_owned(),
            grpc_url: "http://127.0.0.1:50053".to_owned(),
            allow_remote: false,
            bare: false,
            mix: MixWeights::default(),
            users: 200,
            products: 2_000,
            watch_dirs: Vec::new(),
            watch: Vec::new(),
            json: None,
            markdown: None,
            seed: 1,
            workers: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BareOptions {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub workers: usize,
    pub exit_on_stdin_eof: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditOptions {
    pub database_url: String,
    /// Appended to `shop_<service>` to name each service's database.
    pub db_suffix: String,
    /// How long failing checks are retried before they count.
    pub settle: Duration,
    pub json: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub enum Command {
    Run(Box<RunOptions>),
    Bare(BareOptions),
    Audit(AuditOptions),
    Help,
}

impl Command {
    pub fn workers(&self) -> usize {
        match self {
            Self::Run(options) => options.workers,
            Self::Bare(options) => options.workers,
            // A few queries at a time: one thread is plenty.
            Self::Audit(_) | Self::Help => 1,
        }
    }
}

/// `--flag value` or `--flag=value`, in order.
struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
}

impl<'a> Flags<'a> {
    /// The next flag and its inline value, if any.
    fn next_flag(&mut self) -> Option<Result<(&'a str, Option<&'a str>), String>> {
        let arg = self.args.next()?;
        let Some(flag) = arg.strip_prefix("--") else {
            return Some(Err(format!("unexpected argument {arg:?}")));
        };
        Some(Ok(match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        }))
    }

    fn value(&mut self, flag: &str, inline: Option<&'a str>) -> Result<&'a str, String> {
        match inline {
            Some(value) => Ok(value),
            None => self
                .args
                .next()
                .map(String::as_str)
                .ok_or_else(|| format!("--{flag} needs a value")),
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("--{flag}: {text:?} is not a valid number"))
}

fn positive(flag: &str, text: &str) -> Result<usize, String> {
    let n: usize = number(flag, text)?;
    if n == 0 {
        return Err(format!("--{flag} must be at least 1"));
    }
    Ok(n)
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => Ok(Command::Help),
        Some("run") => parse_run(&args[1..]).map(|o| Command::Run(Box::new(o))),
        Some("bare") => parse_bare(&args[1..]).map(Command::Bare),
        Some("audit") => parse_audit(&args[1..]).map(Command::Audit),
        Some(other) => Err(format!(
            "unknown command {other:?}: run, bare, audit or help"
        )),
    }
}

fn parse_run(args: &[String]) -> Result<RunOptions, String> {
    let mut options = RunOptions::default();
    let mut flags = Flags { args: args.iter() };
    while let Some(flag) = flags.next_flag() {
        let (name, inline) = flag?;
        let mut value = || flags.value(name, inline);
        match name {
            "target" => {
                let text = value()?;
                if let Some((target, steps)) = text.split_once('@') {
                    options.targets.push(TargetPlan {
                        target: Target::parse(target.trim())?,
                        rates: Some(parse_steps(steps)?),
                    });
                    continue;
                }
                for target in text.split(',').filter(|t| !t.is_empty()) {
                    options.targets.push(TargetPlan {
                        target: Target::parse(target.trim())?,
                        rates: None,
                    });
                }
            }
            "rate" => options.rates = vec![parse_rate(value()?)?],
            "steps" => options.rates = parse_steps(value()?)?,
            "duration" => options.duration = parse_duration(value()?)?,
            "warmup" => options.warmup = parse_duration(value()?)?,
            "arrivals" => {
                options.arrivals = match value()? {
                    "constant" => Arrivals::Constant,
                    "poisson" => Arrivals::Poisson,
                    other => return Err(format!("--arrivals: {other:?} (constant or poisson)")),
                }
            }
            "connections" => options.connections = Some(positive(name, value()?)?),
            "streams" => options.streams = positive(name, value()?)?,
            "max-in-flight" => options.max_in_flight = positive(name, value()?)?,
            "timeout" => options.timeout = parse_duration(value()?)?,
            "order-timeout" => options.order_timeout = parse_duration(value()?)?,
            "max-requests" => options.max_requests = number(name, value()?)?,
            "http-url" => options.http_url = value()?.to_owned(),
            "grpc-url" => options.grpc_url = value()?.to_owned(),
            "allow-remote" => options.allow_remote = true,
            "bare" => options.bare = true,
            "mix" => options.mix = MixWeights::parse(value()?)?,
            "users" => options.users = positive(name, value()?)?,
            "products" => options.products = positive(name, value()?)?,
            "watch-pids-dir" => options.watch_dirs.push(value()?.into()),
            "watch" => {
                let text = value()?;
                let (process, pid) = text
                    .split_once('=')
                    .ok_or_else(|| format!("--watch {text:?}: expected NAME=PID"))?;
                options.watch.push((process.to_owned(), number(name, pid)?));
            }
            "json" => options.json = Some(value()?.into()),
            "markdown" => options.markdown = Some(value()?.into()),
            "seed" => options.seed = number(name, value()?)?,
            "workers" => options.workers = positive(name, value()?)?,
            _ => return Err(format!("unknown option --{name} (see loadgen help)")),
        }
    }
    if options.targets.is_empty() {
        return Err("--target is required (see loadgen help)".to_owned());
    }
    if options.rates.is_empty() && options.targets.iter().any(|t| t.rates.is_none()) {
        return Err(
            "--rate or --steps is required (or give each --target its own @STEPS)".to_owned(),
        );
    }
    if options.duration.is_zero() {
        return Err("--duration must be above 0".to_owned());
    }
    if options.timeout.is_zero() {
        return Err("--timeout must be above 0".to_owned());
    }
    Ok(options)
}

fn parse_bare(args: &[String]) -> Result<BareOptions, String> {
    let mut options = BareOptions {
        http: SocketAddr::from(([127, 0, 0, 1], 18080)),
        grpc: SocketAddr::from(([127, 0, 0, 1], 18081)),
        workers: 2,
        exit_on_stdin_eof: false,
    };
    let mut flags = Flags { args: args.iter() };
    while let Some(flag) = flags.next_flag() {
        let (name, inline) = flag?;
        let mut value = || flags.value(name, inline);
        match name {
            "http" => options.http = number(name, value()?)?,
            "grpc" => options.grpc = number(name, value()?)?,
            "workers" => options.workers = positive(name, value()?)?,
            "exit-on-stdin-eof" => options.exit_on_stdin_eof = true,
            _ => return Err(format!("unknown option --{name} for bare")),
        }
    }
    Ok(options)
}

fn parse_audit(args: &[String]) -> Result<AuditOptions, String> {
    let mut database_url = None;
    let mut options = AuditOptions {
        database_url: String::new(),
        db_suffix: String::new(),
        settle: Duration::from_secs(120),
        json: None,
    };
    let mut flags = Flags { args: args.iter() };
    while let Some(flag) = flags.next_flag() {
        let (name, inline) = flag?;
        let mut value = || flags.value(name, inline);
        match name {
            "database-url" => database_url = Some(value()?.to_owned()),
            "db-suffix" => options.db_suffix = value()?.to_owned(),
            "settle" => options.settle = parse_duration(value()?)?,
            "json" => options.json = Some(value()?.into()),
            _ => return Err(format!("unknown option --{name} for audit")),
        }
    }
    options.database_url =
        database_url.ok_or_else(|| "--database-url is required for audit".to_owned())?;
    if !options.database_url.starts_with("postgres://")
        && !options.database_url.starts_with("postgresql://")
    {
        return Err(format!(
            "--database-url {:?}: expected postgres://…",
            options.database_url
        ));
    }
    // It becomes part of database names: keep it to what needs no quoting.
    if !options
        .db_suffix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "--db-suffix {:?}: only a-z, 0-9 and _",
            options.db_suffix
        ));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_stepped_run() {
        let Command::Run(options) = parse(&args(
            "run --target grpc:get-product,mix --steps 1000..3000/3 --duration=5s \
             --warmup 0s --bare --watch svc-product=42 --mix browse=1,checkout=0",
        ))
        .unwrap() else {
            panic!("not a run");
        };
        let targets: Vec<Target> = options.targets.iter().map(|t| t.target).collect();
        assert_eq!(targets, [Target::Grpc(Method::GetProduct), Target::Mix]);
        assert_eq!(options.rates, [1000.0, 2000.0, 3000.0]);
        assert_eq!(options.duration, Duration::from_secs(5));
        assert!(options.bare);
        assert_eq!(options.watch, [("svc-product".to_owned(), 42)]);
        assert_eq!(options.mix.browse, 1);
        assert_eq!(options.mix.search, 0);
    }

    #[test]
    fn targets_with_their_own_steps() {
        let Command::Run(options) = parse(&args(
            "run --target grpc:get-product@5k,10k --target mix@100..300/3 --target search --rate 50",
        ))
        .unwrap() else {
            panic!("not a run");
        };
        let rates: Vec<&[f64]> = options
            .targets
            .iter()
            .map(|t| options.rates_of(t))
            .collect();
        assert_eq!(
            rates,
            [&[5000.0, 10000.0][..], &[100.0, 200.0, 300.0], &[50.0]]
        );
        assert!(parse(&args("run --target mix@100")).is_ok());
        assert!(parse(&args("run --target mix@100 --target search")).is_err());
    }

    #[test]
    fn mistakes_are_named() {
        for (line, needle) in [
            ("run --rate 5", "--target"),
            ("run --target mix", "--rate"),
            ("run --target nope --rate 5", "nope"),
            ("run --target mix --rate 5 --colour red", "--colour"),
            ("run --target mix --rate", "--rate needs a value"),
            ("run --target mix --rate 5 --connections 0", "at least 1"),
            ("launch", "launch"),
            ("audit", "--database-url is required"),
            ("audit --database-url mysql://x/", "postgres://"),
            (
                "audit --database-url postgres://h/ --db-suffix _1;drop",
                "--db-suffix",
            ),
            ("audit --database-url postgres://h/ --settle soon", "soon"),
            ("audit --database-url postgres://h/ --rate 5", "--rate"),
        ] {
            let err = parse(&args(line)).unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }

    #[test]
    fn bare_defaults() {
        let Command::Bare(options) = parse(&args("bare --http 127.0.0.1:0")).unwrap() else {
            panic!("not bare");
        };
        assert_eq!(options.http.port(), 0);
        assert_eq!(options.grpc.port(), 18081);
    }

    #[test]
    fn an_audit() {
        let Command::Audit(options) = parse(&args(
            "audit --database-url postgres://root@127.0.0.1:5432/ --db-suffix _300 --settle=30s",
        ))
        .unwrap() else {
            panic!("not an audit");
        };
        assert_eq!(options.database_url, "postgres://root@127.0.0.1:5432/");
        assert_eq!(options.db_suffix, "_300");
        assert_eq!(options.settle, Duration::from_secs(30));
        assert_eq!(options.json, None);
        let Command::Audit(options) = parse(&args("audit --database-url postgres://h/")).unwrap()
        else {
            panic!("not an audit");
        };
        assert_eq!(
            (options.db_suffix.as_str(), options.settle),
            ("", Duration::from_secs(120))
        );
    }
}
