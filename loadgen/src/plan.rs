//! The step plan from the command line: rates (`5000`, `20k`), step lists
//! (`5000,10000,20000`), ranges (`1000..20000/5`: five rates, evenly spaced,
//! both ends included) and durations (`30s`, `500ms`, `2m`).

use std::time::Duration;

/// Parses `30s`, `1.5s`, `500ms`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is outside 0..24h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a rate in requests per second: `500`, `2.5k`, `40k`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, scale) = match text.strip_suffix(['k', 'K']) {
        Some(number) => (number, 1e3),
        None => (text, 1.0),
    };
    let rate = number
        .parse::<f64>()
        .map(|n| n * scale)
        .map_err(|_| format!("{text:?} is not a rate like 500 or 20k"))?;
    if !rate.is_finite() || !(0.01..=10_000_000.0).contains(&rate) {
        return Err(format!("rate {text:?} is outside 0.01..10M req/s"));
    }
    Ok(rate)
}

/// Parses `5000,10000,20000` or `1000..20000/5` (5 steps from 1000 to 20000).
pub fn parse_steps(text: &str) -> Result<Vec<f64>, String> {
    if let Some((from, rest)) = text.split_once("..") {
        let (to, count) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: a range needs a step count, e.g. 1000..20000/5"))?;
        let (from, to) = (parse_rate(from)?, parse_rate(to)?);
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {count:?} is not a step count"))?;
        if !(1..=100).contains(&count) || to < from {
            return Err(format!(
                "{text:?}: need FROM <= TO and 1..=100 steps, e.g. 1000..20000/5"
            ));
        }
        if count == 1 {
            return Ok(vec![from]);
        }
        let stride = (to - from) / (count - 1) as f64;
        return Ok((0..count)
            .map(|i| round_rate(from + stride * i as f64))
            .collect());
    }
    let rates = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_rate)
        .collect::<Result<Vec<_>, _>>()?;
    if rates.is_empty() || rates.len() > 100 {
        return Err(format!("{text:?}: give 1 to 100 rates"));
    }
    Ok(rates)
}

/// Whole requests per second above 10/s (the table reads better), else 2 decimals.
fn round_rate(rate: f64) -> f64 {
    if rate >= 10.0 {
        rate.round()
    } else {
        (rate * 100.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500"), Ok(500.0));
        assert_eq!(parse_rate("20k"), Ok(20_000.0));
        assert_eq!(parse_rate("2.5k"), Ok(2_500.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn step_lists_and_ranges() {
        assert_eq!(
            parse_steps("5000,10000,20k"),
            Ok(vec![5000.0, 10000.0, 20000.0])
        );
        assert_eq!(
            parse_steps("1000..20000/5"),
            Ok(vec![1000.0, 5750.0, 10500.0, 15250.0, 20000.0])
        );
        assert_eq!(parse_steps("100..100/1"), Ok(vec![100.0]));
        assert!(parse_steps("1000..20000").is_err());
        assert!(parse_steps("20000..1000/3").is_err());
        assert!(parse_steps("").is_err());
    }
}
