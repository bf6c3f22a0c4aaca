//! The page's charts, drawn here as SVG with plotters' SVG backend: each
//! has its axes with their units and a legend. Only numbers, dates and
//! words pushgate itself makes (hold reasons, step names) are drawn;
//! plotters escapes text and draws with presentation attributes only, so
//! the page's CSP (no inline style attributes) holds for them too.
//!
//! Each function returns `None` when there is nothing to draw (the page
//! says so in words) or when plotters fails.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use plotters::prelude::*;

const GOOD: RGBColor = RGBColor(0x1a, 0x7f, 0x37);
const BAD: RGBColor = RGBColor(0xcf, 0x22, 0x2e);
const BUSY: RGBColor = RGBColor(0x09, 0x69, 0xda);
const WARN: RGBColor = RGBColor(0x9a, 0x67, 0x00);
const MUTED: RGBColor = RGBColor(0x57, 0x60, 0x6a);

const SIZE: (u32, u32) = (640, 300);

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

/// A count axis: whole numbers only (no `1 1 1 2 2` from rounding).
fn whole(y: &f64) -> String {
    if (y - y.round()).abs() < 1e-9 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

/// Every chart's legend, in one style, where its data leaves room.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(at)
        .label_font(font(12))
        .border_style(MUTED)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    Ok(())
}

/// Runs `draw` on a fresh SVG; the SVG, or `None` if plotters failed.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(
        &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> Option<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        if root.fill(&WHITE).is_err() {
            return None;
        }
        if let Err(e) = draw(&root) {
            tracing::warn!(error = %e, "a chart could not be drawn");
            return None;
        }
        if root.present().is_err() {
            return None;
        }
    }
    Some(out)
}

/// One day's pushes: how many, how many succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Day {
    pub day: NaiveDate,
    pub pushes: usize,
    pub succeeded: usize,
}

/// The days from `from` to `to` in `tz`, each with its pushes (started
/// that day) and successes.
pub fn days(
    runs: &[(DateTime<Utc>, bool)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: Tz,
) -> Vec<Day> {
    let last = to.with_timezone(&tz).date_naive();
    // A week at least, so that one day is not one wide bar.
    let first = from
        .with_timezone(&tz)
        .date_naive()
        .min(last - chrono::Days::new(6));
    let mut out: Vec<Day> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .take(366)
        .map(|day| Day {
            day,
            pushes: 0,
            succeeded: 0,
        })
        .collect();
    for (t, ok) in runs {
        let d = t.with_timezone(&tz).date_naive();
        if let Some(day) = out.iter_mut().find(|x| x.day == d) {
            day.pushes += 1;
            day.succeeded += usize::from(*ok);
        }
    }
    out
}

/// Success rate per day: a bar per day (0–100 %), days without a push
/// left empty.
pub fn success_per_day(days: &[Day], tz: Tz) -> Option<String> {
    if days.iter().all(|d| d.pushes == 0) {
        return None;
    }
    let n = days.len();
    let step = n.div_ceil(12).max(1);
    svg(SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(56)
            // Room above 100 % for the legend.
            .build_cartesian_2d((0..n).into_segmented(), 0f64..135f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) if i % step == 0 => days
                    .get(*i)
                    .map(|d| d.day.format("%m-%d").to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .y_labels(14)
            .y_label_formatter(&|y| {
                if *y <= 100.0 {
                    format!("{y:.0}%")
                } else {
                    String::new()
                }
            })
            .light_line_style(TRANSPARENT)
            .x_desc(format!("day ({})", tz.name()))
            .y_desc("successful pushes (%)")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()?;
        for (all, colour, name) in [
            (true, GOOD, "every push of the day succeeded"),
            (
                false,
                WARN,
                "some failed (the bar: the share that succeeded)",
            ),
        ] {
            let these: Vec<(usize, &Day)> = days
                .iter()
                .enumerate()
                .filter(|(_, d)| d.pushes > 0 && (d.succeeded == d.pushes) == all)
                .collect();
            if these.is_empty() {
                continue;
            }
            chart
                .draw_series(these.iter().map(|(i, d)| {
                    // A day whose every push failed still shows, as a sliver.
                    let pct = (100.0 * d.succeeded as f64 / d.pushes as f64).max(1.0);
                    let mut r = Rectangle::new(
                        [
                            (SegmentValue::Exact(*i), 0.0),
                            (SegmentValue::Exact(*i + 1), pct),
                        ],
                        colour.filled(),
                    );
                    r.set_margin(0, 0, 3, 3);
                    r
                }))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// One run on the duration chart.
#[derive(Clone, Debug)]
pub struct Point {
    pub started: DateTime<Utc>,
    pub secs: f64,
    pub ok: bool,
}

/// Duration per push: a point per push (successful or not) over time,
/// and the line of the successful pushes' median.
pub fn durations(points: &[Point], median: Option<f64>, tz: Tz) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let ts: Vec<f64> = points
        .iter()
        .map(|p| p.started.timestamp() as f64)
        .collect();
    let (mut x0, mut x1) = (
        ts.iter().copied().fold(f64::MAX, f64::min),
        ts.iter().copied().fold(f64::MIN, f64::max),
    );
    if x1 - x0 < 60.0 {
        x0 -= 30.0;
        x1 += 30.0;
    }
    let pad = (x1 - x0) * 0.03;
    let (x0, x1) = (x0 - pad, x1 + pad);
    let top = points
        .iter()
        .map(|p| p.secs)
        .chain(median)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let span = x1 - x0;
    let label = move |x: &f64| {
        let t = Utc.timestamp_opt(*x as i64, 0).single().unwrap_or_default();
        let local = t.with_timezone(&tz);
        if span > 2.0 * 86_400.0 {
            local.format("%m-%d").to_string()
        } else if span > 2.0 * 3600.0 {
            local.format("%m-%d %H:%M").to_string()
        } else {
            local.format("%H:%M:%S").to_string()
        }
    };
    svg(SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0f64..top)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| {
                if top < 10.0 {
                    format!("{y:.1}")
                } else {
                    format!("{y:.0}")
                }
            })
            .light_line_style(TRANSPARENT)
            .x_desc(format!("push started ({})", tz.name()))
            .y_desc("duration (s)")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()?;
        for (ok, colour, name) in [
            (true, GOOD, "successful push"),
            (false, BAD, "failed or rolled-back push"),
        ] {
            let these: Vec<&Point> = points.iter().filter(|p| p.ok == ok).collect();
            if these.is_empty() {
                continue;
            }
            chart
                .draw_series(these.iter().map(|p| {
                    Circle::new((p.started.timestamp() as f64, p.secs), 4, colour.filled())
                }))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
        }
        if let Some(m) = median {
            chart
                .draw_series(LineSeries::new([(x0, m), (x1, m)], BUSY.stroke_width(2)))?
                .label(format!("median of successful pushes: {m:.1} s"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BUSY.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Held runs by reason: a bar per reason.
pub fn holds(by_reason: &[(String, usize)]) -> Option<String> {
    if by_reason.iter().all(|(_, n)| *n == 0) {
        return None;
    }
    let n = by_reason.len();
    let most = by_reason.iter().map(|(_, c)| *c).max().unwrap_or(1);
    let top = most as f64 * 1.15 + 1.0;
    svg((480, 300), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(46)
            .y_label_area_size(48)
            .build_cartesian_2d((0..n).into_segmented(), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => {
                    by_reason.get(*i).map(|r| r.0.clone()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .y_labels((most + 2).min(11))
            .y_label_formatter(&whole)
            .light_line_style(TRANSPARENT)
            .x_desc("reason")
            .y_desc("held runs")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()?;
        chart
            .draw_series(by_reason.iter().enumerate().map(|(i, (_, c))| {
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *c as f64),
                    ],
                    WARN.filled(),
                );
                r.set_margin(0, 0, 6, 6);
                r
            }))?
            .label("runs held, by what held them")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], WARN.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// One bar of a run's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub name: String,
    /// Seconds since the run started.
    pub from: f64,
    pub to: f64,
    /// The step that failed.
    pub failed: bool,
    /// Part of a step (a wave, a check) rather than a step.
    pub sub: bool,
}

/// A run's stage timeline: a row per step, a bar from its start to its
/// end on a time axis in seconds since the run started.
pub fn timeline(bars: &[Bar]) -> Option<String> {
    if bars.is_empty() {
        return None;
    }
    let n = bars.len();
    let end = bars.iter().map(|b| b.to).fold(0.0, f64::max).max(0.5) * 1.05;
    let height = (70 + 28 * n as u32).max(160);
    svg((720, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..end, (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => n
                    .checked_sub(1 + *i)
                    .and_then(|k| bars.get(k))
                    .map(|b| b.name.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_label_formatter(&|x| format!("{x:.1}"))
            .light_line_style(TRANSPARENT)
            .x_desc("seconds since the run started (s)")
            .y_desc("step")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()?;
        for (failed, sub, colour, name) in [
            (false, false, BUSY, "step"),
            (false, true, MUTED, "wave or check"),
            (true, false, BAD, "failed step"),
            (true, true, BAD, "failed check"),
        ] {
            let these: Vec<(usize, &Bar)> = bars
                .iter()
                .enumerate()
                .filter(|(_, b)| b.failed == failed && b.sub == sub)
                .collect();
            if these.is_empty() {
                continue;
            }
            chart
                .draw_series(these.iter().map(|(i, b)| {
                    let row = n - 1 - i;
                    // A step too short to see still shows.
                    let to = b.to.max(b.from + end / 400.0);
                    let mut r = Rectangle::new(
                        [
                            (b.from, SegmentValue::Exact(row)),
                            (to, SegmentValue::Exact(row + 1)),
                        ],
                        colour.filled(),
                    );
                    r.set_margin(5, 5, 0, 0);
                    r
                }))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-16T10:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(h)
    }

    #[test]
    fn days_count_pushes_by_the_day_they_started_in_the_clusters_zone() {
        let tz: Tz = "America/Los_Angeles".parse().unwrap();
        // 10:00 UTC is 02:00 in Los Angeles; -4 h is the day before there.
        let runs = [
            (at(-4), true),
            (at(0), true),
            (at(1), false),
            (at(30), true),
        ];
        let d = days(&runs, at(-4), at(30), tz);
        let seen: Vec<(String, usize, usize)> = d
            .iter()
            .map(|d| (d.day.to_string(), d.pushes, d.succeeded))
            .collect();
        // A week at least: the empty days before are there too.
        assert_eq!(seen.len(), 7, "{seen:?}");
        assert_eq!(seen[0], ("2026-11-11".into(), 0, 0));
        assert_eq!(
            seen[4..],
            [
                ("2026-11-15".into(), 1, 1),
                ("2026-11-16".into(), 2, 1),
                ("2026-11-17".into(), 1, 1)
            ]
        );
    }

    #[test]
    fn each_chart_has_its_axes_units_and_legend_as_svg_text() {
        let tz = chrono_tz::UTC;
        let d = days(&[(at(0), true), (at(26), false)], at(0), at(26), tz);
        let s = success_per_day(&d, tz).unwrap();
        for t in [
            "day (UTC)",
            "successful pushes (%)",
            "100%",
            "11-16",
            "every push of the day succeeded",
        ] {
            assert!(s.contains(t), "{t}: {s}");
        }
        let pts = [
            Point {
                started: at(0),
                secs: 12.0,
                ok: true,
            },
            Point {
                started: at(2),
                secs: 30.0,
                ok: false,
            },
        ];
        let s = durations(&pts, Some(12.0), tz).unwrap();
        for t in [
            "duration (s)",
            "push started (UTC)",
            "median of successful pushes: 12.0 s",
            "failed or rolled-back push",
        ] {
            assert!(s.contains(t), "{t}: {s}");
        }
        let s = holds(&[("locked".into(), 3), ("frozen".into(), 1)]).unwrap();
        for t in ["held runs", "locked", "frozen", "reason"] {
            assert!(s.contains(t), "{t}: {s}");
        }
        let bars = [
            Bar {
                name: "gate".into(),
                from: 0.0,
                to: 0.4,
                failed: false,
                sub: false,
            },
            Bar {
                name: "build".into(),
                from: 0.4,
                to: 3.0,
                failed: true,
                sub: false,
            },
        ];
        let s = timeline(&bars).unwrap();
        for t in [
            "seconds since the run started (s)",
            "gate",
            "build",
            "failed step",
        ] {
            assert!(s.contains(t), "{t}: {s}");
        }
        assert!(
            !s.contains("style="),
            "no style attribute: the CSP forbids them"
        );
        assert_eq!(success_per_day(&days(&[], at(0), at(1), tz), tz), None);
        assert_eq!(durations(&[], None, tz), None);
    }
}
