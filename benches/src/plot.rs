//! The SVG plot: startup distribution (box plot + every sample) and peak memory (runtime RSS,
//! sandbox RSS, cgroup tree peak; medians) per backend/peer. SVG backend only: text is written as
//! SVG `<text>` elements, so no font library is needed.

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::model::{Report, SubjectReport};
use crate::stats::percentile_sorted;

pub const STARTUP_CAPTION: &str = "startup: create -> start -> exit -> delete (ms, log scale)";
pub const STARTUP_Y: &str = "startup (ms)";
pub const MEMORY_CAPTION: &str = "peak memory per run (MiB, median)";
pub const MEMORY_Y: &str = "peak memory (MiB)";
pub const MEMORY_SERIES: [&str; 3] = [
    "runtime peak RSS",
    "sandbox peak RSS",
    "memory cgroup peak (whole tree)",
];

const W: u32 = 1700;
const H: u32 = 1000;

/// The subjects that have startup samples, in plot order.
pub fn plotted(r: &Report) -> Vec<&SubjectReport> {
    r.subjects
        .iter()
        .filter(|s| s.startup_ms.is_some())
        .collect()
}

/// Startup samples (ms) used in the plot: not warm-up, no error.
pub fn startup_points(s: &SubjectReport) -> Vec<f32> {
    s.samples
        .iter()
        .filter(|x| !x.warmup && x.error.is_none())
        .map(|x| x.total_ms as f32)
        .collect()
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

pub fn render_svg(r: &Report) -> Result<String> {
    let subjects = plotted(r);
    let names: Vec<String> = subjects.iter().map(|s| s.name.clone()).collect();
    let n = subjects.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(H / 2);
        let palette = |i: usize| Palette99::pick(i).to_rgba();

        // Startup.
        let all: Vec<f32> = subjects.iter().flat_map(|s| startup_points(s)).collect();
        let ymin = all.iter().cloned().fold(f32::INFINITY, f32::min).max(0.01);
        let ymax = all.iter().cloned().fold(0.0, f32::max);
        let (ymin, ymax) = if all.is_empty() {
            (1.0, 10.0)
        } else {
            (ymin * 0.8, ymax * 1.25)
        };
        let mut c = ChartBuilder::on(&top)
            .caption(STARTUP_CAPTION, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n).into_segmented(), (ymin..ymax).log_scale())
            .map_err(err)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .y_desc(STARTUP_Y)
            .y_labels(15)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        for (i, s) in subjects.iter().enumerate() {
            let pts = startup_points(s);
            if pts.is_empty() {
                continue;
            }
            let col = palette(i);
            // Box p25..p75 with the median, whiskers to min and max (no outlier fences: with
            // 20 samples every point is drawn anyway). Drawn in pixels on the root area.
            let mut sorted: Vec<f64> = pts.iter().map(|v| *v as f64).collect();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let q = |p: f64| percentile_sorted(&sorted, p) as f32;
            let px = |v: f32| c.backend_coord(&(SegmentValue::CenterOf(i), v));
            let (lo, q1, med, q3, hi) = (
                px(q(0.0)),
                px(q(25.0)),
                px(q(50.0)),
                px(q(75.0)),
                px(q(100.0)),
            );
            let x = med.0;
            let style = ShapeStyle::from(col).stroke_width(2);
            root.draw(&Rectangle::new([(x - 16, q3.1), (x + 16, q1.1)], style))
                .map_err(err)?;
            root.draw(&PathElement::new(
                vec![(x - 16, med.1), (x + 16, med.1)],
                style,
            ))
            .map_err(err)?;
            for (from, to) in [(q3.1, hi.1), (q1.1, lo.1)] {
                root.draw(&PathElement::new(
                    vec![(x, from), (x, to)],
                    ShapeStyle::from(col),
                ))
                .map_err(err)?;
                root.draw(&PathElement::new(
                    vec![(x - 8, to), (x + 8, to)],
                    ShapeStyle::from(col),
                ))
                .map_err(err)?;
            }
            c.draw_series(
                pts.iter()
                    .map(|v| Circle::new((SegmentValue::CenterOf(i), *v), 3, col.filled())),
            )
            .map_err(err)?;
        }

        // Memory: three bars per subject.
        let metric = |s: &SubjectReport, k: usize| -> f64 {
            match k {
                0 => s.runtime_rss_mib.map(|x| x.median),
                1 => s.sandbox_rss_mib.map(|x| x.median),
                _ => s.cgroup_peak_mib.map(|x| x.median),
            }
            .unwrap_or(0.0)
        };
        let mmax = subjects
            .iter()
            .flat_map(|s| (0..3).map(move |k| metric(s, k)))
            .fold(1.0, f64::max)
            * 1.15;
        let mut m = ChartBuilder::on(&bottom)
            .caption(MEMORY_CAPTION, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n * 4).into_segmented(), 0.0..mmax)
            .map_err(err)?;
        let mlabel = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if i % 4 == 1 => {
                names.get(i / 4).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        m.configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 4)
            .x_label_formatter(&mlabel)
            .y_desc(MEMORY_Y)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        let colors = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
        ];
        for (k, series) in MEMORY_SERIES.iter().enumerate() {
            let col = colors[k];
            m.draw_series(subjects.iter().enumerate().map(|(i, s)| {
                let x = i * 4 + k;
                Rectangle::new(
                    [
                        (SegmentValue::Exact(x), 0.0),
                        (SegmentValue::Exact(x + 1), metric(s, k)),
                    ],
                    col.filled(),
                )
            }))
            .map_err(err)?
            .label(*series)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], col.filled()));
        }
        m.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
