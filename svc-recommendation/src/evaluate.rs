//! `svc-recommendation evaluate`: the offline evaluation of the recommendation algorithms
//! on MovieLens 100K (fetched by `scripts/movielens.sh`); protocol, figures and how the
//! defaults were chosen are in `docs/recommendations-evaluation.md`.
//!
//! Every rating is one implicit interaction. Per user, interactions are sorted by
//! (timestamp, item id); the last is the test item and the one before it the validation
//! item. Hyper-parameters are chosen on validation (models trained without both), the
//! figures reported on test (models retrained on everything but the test item). Nothing
//! is random: there is no seed, and a run repeats to the last digit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::algo::metrics::{RankingMetrics, Split, evaluate_split, leave_last_out};
use crate::algo::{Dataset, ItemKnn, KnnParams, Personal, PersonalParams, Popularity};

/// Cut-off of every metric.
pub const K: usize = 10;

/// The validation grid (`--tune`). The personal model is tuned in two stages: EASE's λ
/// with the recency weighting (no transitions, no de-bias), then, at the best of those,
/// the transition weight with the popularity de-bias.
const KNN_TOP_N: [usize; 5] = [20, 50, 100, 200, 400];
const KNN_MIN_SUPPORT: [u32; 3] = [1, 2, 5];
const LAMBDAS: [f32; 5] = [100.0, 200.0, 300.0, 500.0, 1000.0];
const RECENCY_DECAYS: [f32; 6] = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5];
const RECENCY_FLOORS: [f32; 4] = [0.0, 0.05, 0.1, 0.2];
const TRANSITION_WEIGHTS: [f32; 5] = [0.0, 0.1, 0.2, 0.5, 1.0];
const POPULARITY_BETAS: [f32; 4] = [0.0, 0.1, 0.2, 0.3];

/// Runs `svc-recommendation evaluate --data PATH [--tune]` when `args` (the
/// binary's, after its name) start with `evaluate`, printing the report; the
/// exit status is 2 for bad arguments (with the usage) and 1 for a failed run.
/// `None` for any other command line: the service's own.
pub fn command(args: &[String]) -> Option<ExitCode> {
    const USAGE: &str =
        "usage: svc-recommendation evaluate --data <path of a .inter file> [--tune]";
    let (first, rest) = args.split_first()?;
    if first != "evaluate" {
        return None;
    }
    let (mut data, mut tune) = (None, false);
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--data" => data = rest.next().map(PathBuf::from),
            "--tune" => tune = true,
            other => {
                eprintln!("svc-recommendation evaluate: unknown argument {other:?}\n{USAGE}");
                return Some(ExitCode::from(2));
            }
        }
    }
    let Some(data) = data else {
        eprintln!("{USAGE}");
        return Some(ExitCode::from(2));
    };
    Some(match run(&data, tune) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("svc-recommendation evaluate: {err:#}");
            ExitCode::FAILURE
        }
    })
}

/// Loads a RecBole `.inter` file (tab-separated, header naming `user_id`, `item_id` and
/// `timestamp` columns, e.g. `user_id:token item_id:token rating:float timestamp:float`)
/// as implicit interactions. Items are indexed in increasing numeric id order, users
/// likewise; each user's interactions are sorted by (timestamp, item id).
pub fn load_inter(path: &Path) -> anyhow::Result<Dataset> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().context("empty interactions file")?;
    let columns: Vec<&str> = header.split('\t').collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| c.split(':').next() == Some(name))
            .with_context(|| format!("no {name} column in header {header:?}"))
    };
    let (user_col, item_col, time_col) =
        (column("user_id")?, column("item_id")?, column("timestamp")?);

    let mut rows: Vec<(u64, u64, f64)> = Vec::new();
    for (n, line) in (2usize..).zip(lines) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let field = |c: usize, what: &str| {
            fields
                .get(c)
                .copied()
                .with_context(|| format!("line {n}: no {what}"))
        };
        let bad = |what: &str| format!("line {n}: {what} is not a number");
        rows.push((
            field(user_col, "user id")?
                .parse()
                .with_context(|| bad("user id"))?,
            field(item_col, "item id")?
                .parse()
                .with_context(|| bad("item id"))?,
            field(time_col, "timestamp")?
                .parse()
                .with_context(|| bad("timestamp"))?,
        ));
    }
    if rows.is_empty() {
        bail!("no interactions in {}", path.display());
    }
    let sorted_ids = |mut ids: Vec<u64>| {
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let user_ids = sorted_ids(rows.iter().map(|r| r.0).collect());
    let item_ids = sorted_ids(rows.iter().map(|r| r.1).collect());
    let index = |ids: &[u64], id: u64| ids.binary_search(&id).unwrap_or_default();
    let mut per_user: Vec<Vec<(f64, u32)>> = vec![Vec::new(); user_ids.len()];
    for &(user, item, time) in &rows {
        per_user[index(&user_ids, user)].push((time, index(&item_ids, item) as u32));
    }
    let users = per_user
        .into_iter()
        .map(|mut seq| {
            seq.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            seq.into_iter().map(|p| p.1).collect()
        })
        .collect();
    Ok(Dataset {
        n_items: item_ids.len(),
        users,
    })
}

/// Runs the protocol on the `.inter` file at `data` and returns a Markdown report.
/// Without `tune`, the test figures use the defaults (`KnnParams::default()`,
/// `PersonalParams::default()`, which are what the grid chose); with it, the grid is
/// searched on validation first (about a minute in a release build), reported, and its
/// choice used for the test figures.
pub fn run(data: &Path, tune: bool) -> anyhow::Result<String> {
    let dataset = load_inter(data)?;
    let test = leave_last_out(&dataset);
    let validation = leave_last_out(&test.train);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Data: {} — {} users, {} items, {} interactions. Leave-last-out by time; \
         metrics at {K}.\n",
        data.display(),
        dataset.users.len(),
        dataset.n_items,
        dataset.n_interactions()
    );
    let (knn, personal) = if tune {
        let knn = tune_knn(&validation, &mut out);
        let personal = tune_personal(&validation, &mut out);
        let defaults = knn == KnnParams::default() && personal == PersonalParams::default();
        let _ = writeln!(
            out,
            "Chosen on validation ({} the defaults):\n\n- item-kNN: {knn:?}\n- personal: {personal:?}\n",
            if defaults {
                "equal to"
            } else {
                "DIFFERENT from"
            }
        );
        (knn, personal)
    } else {
        (KnnParams::default(), PersonalParams::default())
    };

    let _ = writeln!(
        out,
        "Test (trained on all but each user's last interaction, {} users):\n",
        test.held_out.iter().flatten().count()
    );
    out.push_str(HEADER);
    let started = Instant::now();
    let pop = Popularity::train(&test.train);
    let pop_train = started.elapsed();
    row(
        &mut out,
        "most-popular",
        &evaluate_split(&test, K, |_, o| pop.score(o)),
    );
    let started = Instant::now();
    let item_knn = ItemKnn::train(&test.train, &knn);
    let knn_train = started.elapsed();
    row(
        &mut out,
        "item-kNN",
        &evaluate_split(&test, K, |h, o| item_knn.score(h, o)),
    );
    let started = Instant::now();
    let model = Personal::train(&test.train, &personal);
    let personal_train = started.elapsed();
    let started = Instant::now();
    let metrics = evaluate_split(&test, K, |h, o| model.score(h, o));
    let personal_eval = started.elapsed();
    row(&mut out, "personal", &metrics);
    let _ = writeln!(
        out,
        "\nParameters: item-kNN {knn:?}; personal {personal:?}. No randomness (no seed).\n"
    );

    // Serving-sized model: the 1,200 most popular items, histories of the last 20 items.
    let serving = PersonalParams {
        max_items: 1200,
        ..personal
    };
    let started = Instant::now();
    let small = Personal::train(&test.train, &serving);
    let small_train = started.elapsed();
    let histories: Vec<&[u32]> = test
        .train
        .users
        .iter()
        .map(|h| &h[h.len().saturating_sub(20)..])
        .collect();
    let mut scores = vec![0.0f32; small.n_items()];
    let started = Instant::now();
    for history in &histories {
        small.score(history, &mut scores);
    }
    let per_score = started.elapsed() / histories.len().max(1) as u32;
    let _ = writeln!(
        out,
        "Timings (this machine): training most-popular {:.3} s, item-kNN {:.3} s, personal \
         {:.2} s on {} items ({:.2} s on the 1,200 most popular); ranking all {} test users \
         with the personal model {:.3} s; one personal score() of a 20-item history over \
         1,200 items {:.1} µs.",
        pop_train.as_secs_f64(),
        knn_train.as_secs_f64(),
        personal_train.as_secs_f64(),
        model.n_modelled(),
        small_train.as_secs_f64(),
        histories.len(),
        personal_eval.as_secs_f64(),
        per_score.as_secs_f64() * 1e6,
    );
    Ok(out)
}

const HEADER: &str = "| algorithm | HR@10 | NDCG@10 | P@10 | MRR@10 | coverage@10 |\n\
                      |---|---:|---:|---:|---:|---:|\n";

fn row(out: &mut String, name: &str, m: &RankingMetrics) {
    let _ = writeln!(
        out,
        "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
        m.hit_rate, m.ndcg, m.precision, m.mrr, m.coverage
    );
}

/// Appends the grid's trials (best NDCG first, at most `shown`) and returns the best's
/// index; ties go to the earlier trial.
fn report_trials(
    out: &mut String,
    title: &str,
    trials: &[(String, RankingMetrics)],
    shown: usize,
) -> usize {
    let mut order: Vec<usize> = (0..trials.len()).collect();
    order.sort_by(|&a, &b| {
        trials[b]
            .1
            .ndcg
            .total_cmp(&trials[a].1.ndcg)
            .then(a.cmp(&b))
    });
    let _ = writeln!(
        out,
        "{title} — validation, best {} of {} by NDCG@{K}:\n",
        shown.min(trials.len()),
        trials.len()
    );
    out.push_str(&HEADER.replace("algorithm", "parameters"));
    for &i in order.iter().take(shown) {
        row(out, &trials[i].0, &trials[i].1);
    }
    out.push('\n');
    order.first().copied().unwrap_or(0)
}

fn tune_knn(validation: &Split, out: &mut String) -> KnnParams {
    let mut grid = Vec::new();
    for top_n in KNN_TOP_N {
        for min_support in KNN_MIN_SUPPORT {
            grid.push(KnnParams { top_n, min_support });
        }
    }
    let trials: Vec<(String, RankingMetrics)> = grid
        .iter()
        .map(|params| {
            let model = ItemKnn::train(&validation.train, params);
            let metrics = evaluate_split(validation, K, |h, o| model.score(h, o));
            (
                format!("top_n {} min_support {}", params.top_n, params.min_support),
                metrics,
            )
        })
        .collect();
    grid[report_trials(out, "item-kNN", &trials, 5)]
}

fn tune_personal(validation: &Split, out: &mut String) -> PersonalParams {
    let defaults = PersonalParams::default();
    let mut grid = Vec::new();
    let mut trials = Vec::new();
    for lambda in LAMBDAS {
        let trained = PersonalParams {
            lambda,
            transition_weight: 0.0,
            popularity_beta: 0.0,
            ..defaults
        };
        let mut model = Personal::train(&validation.train, &trained);
        for recency_decay in RECENCY_DECAYS {
            for recency_floor in RECENCY_FLOORS {
                let params = PersonalParams {
                    recency_decay,
                    recency_floor,
                    ..trained
                };
                model.set_scoring_params(&params);
                let metrics = evaluate_split(validation, K, |h, o| model.score(h, o));
                trials.push((
                    format!("λ {lambda} decay {recency_decay} floor {recency_floor}"),
                    metrics,
                ));
                grid.push(params);
            }
        }
    }
    let best = grid[report_trials(out, "personal, stage 1 (EASE + recency)", &trials, 10)];

    let mut model = Personal::train(&validation.train, &best);
    let mut grid = Vec::new();
    let mut trials = Vec::new();
    for transition_weight in TRANSITION_WEIGHTS {
        for popularity_beta in POPULARITY_BETAS {
            let params = PersonalParams {
                transition_weight,
                popularity_beta,
                ..best
            };
            model.set_scoring_params(&params);
            let metrics = evaluate_split(validation, K, |h, o| model.score(h, o));
            trials.push((
                format!("transitions {transition_weight} β {popularity_beta}"),
                metrics,
            ));
            grid.push(params);
        }
    }
    grid[report_trials(
        out,
        "personal, stage 2 (+ transitions, de-bias)",
        &trials,
        10,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_inter_files_sorted_by_time_then_item_id() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("shopmesh-inter-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("tiny.inter");
        std::fs::write(
            &path,
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
             7\t30\t4\t100\n7\t10\t5\t200\n3\t20\t1\t50\n7\t20\t3\t100\n",
        )?;
        let data = load_inter(&path)?;
        std::fs::remove_dir_all(&dir)?;
        // Items 10, 20, 30 -> 0, 1, 2; users 3, 7 -> 0, 1. User 7 at t=100 had 20 and 30.
        assert_eq!(data.n_items, 3);
        assert_eq!(data.users, vec![vec![1], vec![1, 2, 0]]);
        Ok(())
    }
}
