//! The latency distribution written out, for reading and for looking at: `--latency-hgrm FILE` in
//! HdrHistogram's percentile-distribution text (the `.hgrm` files that HdrHistogram's own plotter and
//! others read), and `--latency-svg FILE` as a percentile plot drawn the way that plotter draws one.
//!
//! # Why percentiles on a log scale of 1/(1-p)
//! A latency distribution's story is in its tail: 1 request in 100 or in 10,000 waits for a stall. On a
//! linear percentile axis everything past 99% is squeezed into the last pixel; on an axis of 1/(1-p) in
//! log scale, 90%, 99%, 99.9% and 99.99% are equally far apart, so each "nine" gets the same room. The y
//! axis is linear, so a stall stands out as the cliff it is.
//!
//! # The `.hgrm` format
//! HdrHistogram's `outputPercentileDistribution` (the `hdrhistogram` crate has no writer for it): a header
//! line, a blank line, then one row per step of the percentile iteration (5 steps per halving of the
//! distance to 100%) with the value, the percentile as a fraction, the count of samples at or below the
//! value and 1/(1-percentile); the last row (percentile 1) has no fourth column. A footer gives mean,
//! standard deviation, max, count and the histogram's bucket layout. Values here are microseconds.
//!
//! Walk-through: `docs/client-and-stress.md` (Latency you can look at).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Percentile steps per halving of the distance to 100%, as HdrHistogram's tools print by default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Nanoseconds (what the run records) per microsecond (what the files show).
pub const NANOS_PER_UNIT: f64 = 1_000.0;

/// The plot's size in pixels.
const SIZE: (u32, u32) = (900, 520);

/// One row of the distribution: the value (ns), the percentile as a fraction, the samples at or below it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub value: u64,
    pub quantile: f64,
    pub total_count: u64,
}

/// The rows HdrHistogram prints, from its own percentile iteration.
pub fn rows(histogram: &Histogram<u64>) -> Vec<Row> {
    let mut total_count = 0;
    histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| {
            total_count += v.count_since_last_iteration();
            Row {
                value: v.value_iterated_to(),
                quantile: v.quantile_iterated_to(),
                total_count,
            }
        })
        .collect()
}

/// The sub-buckets per bucket of a histogram of `sigfig` significant digits, as HdrHistogram lays them out:
/// the power of two at or above 2 × 10^sigfig.
fn sub_buckets(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// The percentile distribution in HdrHistogram's text format, values in microseconds.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let digits = usize::from(histogram.sigfig());
    let mut s = String::new();
    let _ = write!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for row in rows(histogram) {
        let value = row.value as f64 / NANOS_PER_UNIT;
        if row.quantile < 1.0 {
            let _ = writeln!(
                s,
                "{value:>12.digits$} {:>2.12} {:>10} {:>14.2}",
                row.quantile,
                row.total_count,
                1.0 / (1.0 - row.quantile)
            );
        } else {
            let _ = writeln!(
                s,
                "{value:>12.digits$} {:>2.12} {:>10}",
                row.quantile, row.total_count
            );
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.digits$}, StdDeviation   = {:>12.digits$}]",
        histogram.mean() / NANOS_PER_UNIT,
        histogram.stdev() / NANOS_PER_UNIT
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        histogram.max() as f64 / NANOS_PER_UNIT,
        histogram.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_buckets(histogram.sigfig())
    );
    s
}

/// `x` = 1/(1-p) as the percentile it stands for: 1 is 0%, 10 is 90%, 1000 is 99.9%.
pub fn percentile_label(x: f64) -> String {
    if !x.is_finite() || x < 1.0 {
        return String::new();
    }
    let percent = 100.0 * (1.0 - 1.0 / x);
    // As many decimals as the nines need, no more: 99.9%, 99.99%.
    let decimals = (x.log10().floor() as i32 - 2).clamp(0, 9) as usize;
    let text = format!("{percent:.decimals$}");
    format!("{text}%")
}

/// The percentiles marked on the plot, as (label, quantile): the ones the text report gives.
pub const MARKED: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

/// A latency in microseconds as a person reads it: `850 µs`, `12.3 ms`, `2.5 s`.
pub fn human(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.3} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.3} ms", us / 1e3)
    } else if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.2} µs")
    }
}

/// An axis label: a round latency needs no decimals (`1 ms`, `100 µs`, `0.1 µs`).
fn axis_label(us: f64) -> String {
    let (value, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// The percentile plot as an SVG document: latency against percentile, both on log scales. The percentile
/// axis is 1/(1-p), so that each "nine" gets the same room; the latency axis is logarithmic too, so that a
/// median of tens of microseconds and a tail of seconds both show, instead of everything to p90 lying flat
/// at zero under a linear axis scaled to the worst stall. p50, p90, p99 and p99.9 are marked with their
/// values, as wrk2's and HdrHistogram's plots are read. `title` heads it.
pub fn svg(histogram: &Histogram<u64>, title: &str) -> Result<String, String> {
    // The last row (p = 1) lies at infinity; the largest sample is drawn at the last percentile one sample
    // short of it, 1 - 1/n, where a plot of n samples ends.
    let count = histogram.len().max(1) as f64;
    let us = |ns: u64| ns.max(1) as f64 / NANOS_PER_UNIT;
    let mut points: Vec<(f64, f64)> = rows(histogram)
        .iter()
        .filter(|r| r.quantile < 1.0)
        .map(|r| (1.0 / (1.0 - r.quantile), us(r.value)))
        .collect();
    if !histogram.is_empty() {
        points.push((count.max(2.0), us(histogram.max())));
    }
    let x_end = 10f64.powf(count.max(10.0).log10().ceil());
    // Whole decades of latency around what was measured, so the axis' labels are round.
    let low = us(histogram.min().max(1));
    let high = us(histogram.max().max(1));
    let y_start = 10f64.powf(low.log10().floor());
    let y_end = 10f64.powf((high * 1.01).log10().ceil()).max(y_start * 10.0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            // Room for the last percentile label, centred on the axis's end.
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..x_end).log_scale(), (y_start..y_end).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (log scale)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| axis_label(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        if points.is_empty() {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no latency recorded: no reply was right",
                    (2.0, (y_start * y_end).sqrt()),
                    ("sans-serif", 16),
                )))
                .map_err(|e| e.to_string())?;
        } else {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    BLUE.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            // Each marked percentile that the samples reach: a dot on the curve and its value beside it.
            let marks: Vec<(f64, f64, String)> = MARKED
                .iter()
                .map(|&(label, q)| (label, q, 1.0 / (1.0 - q)))
                .filter(|&(_, _, x)| x <= count)
                .map(|(label, q, x)| {
                    let value = us(histogram.value_at_quantile(q));
                    (x, value, format!("{label} {}", human(value)))
                })
                .collect();
            chart
                .draw_series(
                    marks
                        .iter()
                        .map(|&(x, y, _)| Circle::new((x, y), 4, RED.filled())),
                )
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(marks.iter().map(|(x, y, text)| {
                    Text::new(text.clone(), (*x * 1.08, *y), ("sans-serif", 13))
                }))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(samples: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap();
        for s in samples {
            h.record(s).unwrap();
        }
        h
    }

    /// 10,000 samples from 20 µs to about 2 ms, with a tail: a distribution with something to show.
    fn skewed() -> Histogram<u64> {
        histogram(
            (0..10_000u64).map(|i| 20_000 + i * i / 50 + if i % 997 == 0 { 5_000_000 } else { 0 }),
        )
    }

    #[test]
    fn the_hgrm_rows_are_the_histograms_own_percentiles() {
        let h = skewed();
        let text = hgrm(&h);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let body: Vec<&str> = lines.clone().take_while(|l| !l.starts_with('#')).collect();
        assert!(body.len() > 50, "{text}");
        let rows = rows(&h);
        assert_eq!(rows.len(), body.len());
        let mut previous = (0.0, 0.0, 0u64);
        for (i, (line, row)) in body.iter().zip(&rows).enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let last = i + 1 == body.len();
            assert_eq!(fields.len(), if last { 3 } else { 4 }, "{line}");
            let value: f64 = fields[0].parse().unwrap();
            let quantile: f64 = fields[1].parse().unwrap();
            let count: u64 = fields[2].parse().unwrap();
            // Three decimals of microseconds, a fraction to twelve places, as HdrHistogram prints them.
            assert_eq!(fields[0].split('.').nth(1).map(str::len), Some(3), "{line}");
            assert_eq!(
                fields[1].split('.').nth(1).map(str::len),
                Some(12),
                "{line}"
            );
            assert!(value >= previous.0 && quantile >= previous.1 && count >= previous.2);
            // The row is the histogram's own: its value, printed in µs; the samples at or below it; and the
            // first value to reach its percentile (to one sample: the crate warns that `quantile × count`
            // may be one ulp off).
            let ns = row.value;
            assert_eq!(fields[0], format!("{:.3}", ns as f64 / 1e3), "{line}");
            assert!((row.quantile - quantile).abs() < 1e-12, "{line}");
            assert_eq!(row.total_count, count, "{line}");
            assert_eq!(count, h.count_between(0, ns), "{line}");
            let one = 1.0 / h.len() as f64;
            assert!(h.value_at_quantile(row.quantile) <= ns, "{line}");
            let next = h.value_at_quantile((row.quantile + one).min(1.0));
            assert!(ns <= h.highest_equivalent(next), "{line}");
            if !last {
                let inverse: f64 = fields[3].parse().unwrap();
                assert!((inverse - 1.0 / (1.0 - quantile)).abs() < 0.01, "{line}");
            } else {
                assert_eq!(quantile, 1.0);
                assert_eq!(count, h.len());
                assert_eq!(h.highest_equivalent(h.max()), ns);
            }
            previous = (value, quantile, count);
        }
        let footer: Vec<&str> = lines.skip(body.len()).collect();
        assert_eq!(footer.len(), 3, "{text}");
        assert_eq!(
            footer[0],
            format!(
                "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
                h.mean() / 1e3,
                h.stdev() / 1e3
            )
        );
        assert_eq!(
            footer[1],
            format!(
                "#[Max     = {:>12.3}, Total count    = {:>12}]",
                h.max() as f64 / 1e3,
                h.len()
            )
        );
        assert!(
            footer[2].starts_with("#[Buckets = ")
                && footer[2].ends_with("SubBuckets     =         2048]")
        );
    }

    #[test]
    fn an_empty_histogram_gives_the_header_and_footer_only() {
        let text = hgrm(&histogram([]));
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            2,
            "{text}"
        );
        assert!(text.contains("Total count    =            0]"), "{text}");
        assert!(svg(&histogram([]), "nothing")
            .unwrap()
            .contains("no latency recorded"));
    }

    #[test]
    fn percentile_labels_count_the_nines() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1_000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }

    #[test]
    fn the_plot_is_an_svg_with_its_axes_named() {
        let svg = svg(&skewed(), "socklab-stress latency").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "socklab-stress latency",
            "percentile",
            "latency (log scale)",
            "99.9%",
            "<polyline",
            "<circle",
        ] {
            assert!(svg.contains(text), "{text:?} missing");
        }
        // The four percentiles of the text report are marked with their values.
        let h = skewed();
        for (label, q) in MARKED {
            let value = human(h.value_at_quantile(q) as f64 / 1e3);
            assert!(
                svg.contains(&format!("\n{label} {value}\n")),
                "{label} {value} missing"
            );
        }
        // Both axes are logarithmic: the latency labels go by decades.
        for label in ["10 µs", "100 µs", "1 ms", "10 ms"] {
            assert!(svg.contains(&format!("\n{label}\n")), "{label} missing");
        }
    }

    #[test]
    fn latency_labels_read_as_people_write_them() {
        assert_eq!(axis_label(0.1), "0.1 µs");
        assert_eq!(axis_label(100.0), "100 µs");
        assert_eq!(axis_label(1_000.0), "1 ms");
        assert_eq!(axis_label(2_500_000.0), "2.5 s");
        assert_eq!(human(61.4), "61 µs");
        assert_eq!(human(1_234.5), "1.234 ms");
    }
}
