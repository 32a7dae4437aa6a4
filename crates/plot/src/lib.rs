//! SVG line charts through plotters: linear or log-log axes, labels,
//! legends, reference lines. bigbatch's reports (`cargo xtask reproduce`) and
//! measurements (`bigbatch measure interpolate`) draw with it.
//!
//! ```
//! use bigbatch_plot::{Chart, Series, line_chart};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let loss = Series { name: "train".into(), points: vec![(0.0, 2.3), (100.0, 0.4)] };
//! let chart = Chart { title: "Loss", x_label: "step", y_label: "loss" };
//! line_chart(&dir.path().join("loss.svg"), &chart, &[loss])?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// What can go wrong drawing a chart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// plotters could not draw.
    #[error("drawing chart: {0}")]
    Draw(String),
    /// The SVG could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes `contents` to `path` through a temporary file and a rename,
/// creating its directory.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("svg.tmp");
    std::fs::write(&tmp, contents).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// One named line of a chart; a name starting with `~` marks a reference
/// line (drawn thin, without markers; the `~` is not shown).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// `(x, y)` points in order.
    pub points: Vec<(f64, f64)>,
}

/// Axes and title of a line chart.
pub struct Chart<'a> {
    /// The caption.
    pub title: &'a str,
    /// The x axis' label, with its unit.
    pub x_label: &'a str,
    /// The y axis' label, with its unit.
    pub y_label: &'a str,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws `series` as lines with markers on linear axes into an SVG file,
/// atomically (see [`Series`] for reference lines).
pub fn line_chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<()> {
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let ((x0, x1), (y0, y1)) = bounds(series, keep).unwrap_or(((0.0, 1.0), (0.0, 1.0)));
    let pad = |lo: f64, hi: f64| {
        let d = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
        (lo - d)..(hi + d)
    };
    let svg = draw(chart, series, keep, pad(x0, x1), pad(y0, y1))?;
    write_atomic(path, svg.as_bytes())
}

/// Draws `series` on log-log axes into an SVG file, atomically; points that
/// are not positive and finite are skipped.
pub fn log_log_chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<()> {
    let keep = |&(x, y): &(f64, f64)| x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite();
    let ((x0, x1), (y0, y1)) = bounds(series, keep).unwrap_or(((1.0, 10.0), (1.0, 10.0)));
    let (x, y) = (
        (x0 / 1.3..x1 * 1.3).log_scale(),
        (y0 / 1.3..y1 * 1.3).log_scale(),
    );
    let svg = draw(chart, series, keep, x, y)?;
    write_atomic(path, svg.as_bytes())
}

/// The `(x, y)` extent of the points `keep` accepts, if any.
fn bounds(
    series: &[Series],
    keep: impl Fn(&(f64, f64)) -> bool,
) -> Option<((f64, f64), (f64, f64))> {
    let points = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| keep(p));
    points.fold(None, |acc, &(x, y)| {
        let ((x0, x1), (y0, y1)) = acc.unwrap_or(((x, x), (y, y)));
        Some(((x0.min(x), x1.max(x)), (y0.min(y), y1.max(y))))
    })
}

/// Renders the chart as SVG on the given axes. Series named with a leading
/// `~` are reference lines: thin, no markers, the `~` dropped from the legend.
fn draw<X, Y>(
    chart: &Chart<'_>,
    series: &[Series],
    keep: impl Fn(&(f64, f64)) -> bool,
    x: X,
    y: Y,
) -> Result<String>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut c = ChartBuilder::on(&root)
            .caption(chart.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .x_labels(12)
            .y_labels(10)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| keep(p)).collect();
            let (name, reference) = match s.name.strip_prefix('~') {
                Some(n) => (n, true),
                None => (s.name.as_str(), false),
            };
            let width = if reference { 1 } else { 2 };
            c.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.stroke_width(width))
            });
            if !reference {
                c.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(plot_err)?;
            }
        }
        if series.len() > 1 {
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// An axis label: whole numbers without decimals, others with three significant digits.
fn tick(v: &f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.digits$}")
    }
}

fn plot_err<E: std::fmt::Display>(e: E) -> Error {
    Error::Draw(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        let labels: Vec<String> = [1024.0, 100.0, 0.95, 0.0123, 2.5, 250.4]
            .iter()
            .map(tick)
            .collect();
        assert_eq!(labels, ["1024", "100", "0.950", "0.0123", "2.50", "250"]);
    }

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn chart_is_valid_svg_with_title_and_labels() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.svg");
        let series = [
            Series {
                name: "train".into(),
                points: vec![(0.0, 2.3), (100.0, 0.4)],
            },
            Series {
                name: "test".into(),
                points: vec![(0.0, 2.2), (100.0, 0.5)],
            },
        ];
        line_chart(
            &path,
            &Chart {
                title: "Loss",
                x_label: "step",
                y_label: "loss",
            },
            &series,
        )?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for text in ["Loss", "step", "train", "test"] {
            assert!(svg.contains(text), "missing {text}");
        }
        Ok(())
    }

    #[test]
    fn log_log_chart_skips_non_positive_points() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.svg");
        let series = [
            Series {
                name: "steps".into(),
                points: vec![(16.0, 1000.0), (256.0, 80.0), (0.0, 5.0)],
            },
            Series {
                name: "~perfect scaling".into(),
                points: vec![(16.0, 1000.0), (256.0, 62.5)],
            },
        ];
        let chart = Chart {
            title: "Steps",
            x_label: "batch size",
            y_label: "steps",
        };
        log_log_chart(&path, &chart, &series)?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(svg.starts_with("<svg") && svg.contains("perfect scaling"));
        assert!(!svg.contains("~perfect"));
        Ok(())
    }
}
