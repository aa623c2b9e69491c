//! The arithmetic of the report: medians over rounds, ratios to plain, CPU per request.

/// The median of `values` (the mean of the two middle ones for an even count); `None` when
/// empty. NaN values are ignored.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// `value / baseline`; `None` when the baseline is zero (or not finite).
pub(crate) fn ratio(value: f64, baseline: f64) -> Option<f64> {
    (baseline != 0.0 && baseline.is_finite() && value.is_finite()).then(|| value / baseline)
}

/// CPU time per request in microseconds: `ticks` of CPU (at `micros_per_tick`) spread over
/// `requests`; `None` when nothing was served.
pub(crate) fn cpu_micros_per_request(
    ticks: u64,
    micros_per_tick: f64,
    requests: u64,
) -> Option<f64> {
    (requests > 0).then(|| ticks as f64 * micros_per_tick / requests as f64)
}

/// Half of `rps`, rounded, and at least 1: the fixed rate derived from plain's maximum.
pub(crate) fn half_rate(rps: f64) -> u64 {
    let half = (rps / 2.0).round();
    if half >= 1.0 { half as u64 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn ratio_refuses_a_zero_baseline() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn cpu_per_request_in_microseconds() {
        // 250 ticks at 100 Hz = 2.5 s of CPU over 50 000 requests = 50 µs each.
        assert_eq!(cpu_micros_per_request(250, 10_000.0, 50_000), Some(50.0));
        assert_eq!(cpu_micros_per_request(250, 10_000.0, 0), None);
    }

    #[test]
    fn half_rate_rounds_and_never_reaches_zero() {
        assert_eq!(half_rate(30_001.0), 15_001);
        assert_eq!(half_rate(0.4), 1);
    }
}
