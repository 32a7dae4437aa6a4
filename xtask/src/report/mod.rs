//! One report model and one renderer for every reproduction.
//!
//! An experiment reduces its records to a [`Report`]: a title, the paper it
//! reproduces, sections of prose, [`Table`]s whose columns say whether they
//! quote the paper or show our runs (with units), [`Figure`]s, and the [`Provenance`] of every run it used.
//! [`Report::write`] renders `report.md`, one SVG per figure and
//! `results.json` into the experiment's directory, atomically.

use std::path::Path;

use anyhow::{Context, Result};
use bigbatch_record::Provenance;
use serde::Serialize;

pub use bigbatch_plot::{Chart, Series};

/// A reproduction's report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The heading of `report.md`.
    pub title: String,
    /// The paper(s) reproduced, as a citation line.
    pub reference: String,
    /// Sections in order.
    pub sections: Vec<Section>,
    /// The provenance of every run the report was reduced from.
    pub provenance: Vec<Provenance>,
}

/// A titled part of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// The `##` heading (empty: the blocks follow the previous ones directly).
    pub heading: String,
    /// Its content, in order.
    pub blocks: Vec<Block>,
}

/// A piece of a section.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A paragraph of Markdown.
    Text(String),
    /// A bulleted list of Markdown items.
    List(Vec<String>),
    /// A table.
    Table(Table),
    /// A figure, drawn to its own SVG file.
    Figure(Figure),
    /// A value shown as pretty JSON (a plan, a configuration).
    Json(serde_json::Value),
}

/// Whose numbers a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Labels or settings, no measurement.
    Label,
    /// Quoted from the paper (`shared/papers/numbers.md`).
    Paper,
    /// Measured by our runs.
    Ours,
}

/// A table column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The header.
    pub name: String,
    /// The unit, shown in the header (`%`, `steps`).
    pub unit: Option<String>,
    /// Whose numbers these are.
    pub source: Source,
}

impl Column {
    /// A label column.
    pub fn label(name: &str) -> Self {
        Self {
            name: name.into(),
            unit: None,
            source: Source::Label,
        }
    }

    /// A column of our measurements.
    pub fn ours(name: &str, unit: Option<&str>) -> Self {
        Self {
            name: name.into(),
            unit: unit.map(Into::into),
            source: Source::Ours,
        }
    }

    /// A column quoting the paper.
    pub fn paper(name: &str, unit: Option<&str>) -> Self {
        Self {
            name: name.into(),
            unit: unit.map(Into::into),
            source: Source::Paper,
        }
    }

    fn header(&self) -> String {
        let unit = self
            .unit
            .as_ref()
            .map_or(String::new(), |u| format!(" ({u})"));
        match self.source {
            Source::Label => format!("{}{unit}", self.name),
            Source::Paper => format!("{}{unit}, paper", self.name),
            Source::Ours => format!("{}{unit}, ours", self.name),
        }
    }
}

/// A table cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Text as it is.
    Text(String),
    /// A number with this many decimals.
    Number {
        /// The value.
        value: f64,
        /// Decimals shown.
        decimals: usize,
    },
    /// No value (shown as `—`).
    Missing,
}

impl Cell {
    /// Text.
    pub fn text(s: impl Into<String>) -> Self {
        Cell::Text(s.into())
    }

    /// A number with `decimals` decimals.
    pub fn number(value: f64, decimals: usize) -> Self {
        Cell::Number { value, decimals }
    }

    fn render(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Number { value, decimals } if value.is_finite() => format!("{value:.decimals$}"),
            Cell::Number { .. } | Cell::Missing => "—".into(),
        }
    }
}

/// A table: columns and rows of cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows, each as long as `columns`.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// The table in Markdown.
    fn markdown(&self) -> String {
        let headers: Vec<String> = self.columns.iter().map(Column::header).collect();
        let mut out = format!(
            "| {} |\n|{}\n",
            headers.join(" | "),
            "---|".repeat(headers.len())
        );
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(Cell::render).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }
}

/// The axes a figure is drawn on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axes {
    /// Linear x and y.
    Linear,
    /// Logarithmic x and y (steps against batch size).
    LogLog,
}

/// A figure: a line chart drawn to `<file>` and shown in `report.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The SVG's file name, e.g. `steps.svg`.
    pub file: String,
    /// The caption, also the image's alternative text.
    pub title: String,
    /// The x axis' label with its unit.
    pub x_label: String,
    /// The y axis' label with its unit.
    pub y_label: String,
    /// Linear or log-log.
    pub axes: Axes,
    /// The lines (a name starting with `~` is a reference line).
    pub series: Vec<Series>,
}

impl Report {
    /// `report.md` as Markdown (figures referenced by file name).
    pub fn markdown(&self) -> String {
        let mut md = format!("# {}\n\n*Reproduces:* {}\n\n", self.title, self.reference);
        for section in &self.sections {
            if !section.heading.is_empty() {
                md.push_str(&format!("## {}\n\n", section.heading));
            }
            for block in &section.blocks {
                match block {
                    Block::Text(t) => md.push_str(&format!("{}\n\n", t.trim_end())),
                    Block::List(items) => {
                        for item in items {
                            md.push_str(&format!("- {item}\n"));
                        }
                        md.push('\n');
                    }
                    Block::Table(t) => md.push_str(&format!("{}\n", t.markdown())),
                    Block::Figure(f) => md.push_str(&format!("![{}]({})\n\n", f.title, f.file)),
                    Block::Json(v) => md.push_str(&format!(
                        "```json\n{}\n```\n\n",
                        serde_json::to_string_pretty(v).unwrap_or_default()
                    )),
                }
            }
        }
        md.push_str("## Provenance\n\n");
        md.push_str(&provenance_markdown(&self.provenance));
        md.push_str("\nMachine-readable: [results.json](results.json).\n");
        md
    }

    /// The figures of every section.
    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.sections.iter().flat_map(|s| {
            s.blocks.iter().filter_map(|b| match b {
                Block::Figure(f) => Some(f),
                _ => None,
            })
        })
    }

    /// Writes `report.md`, every figure's SVG and `results.json` (the
    /// records the report was reduced from) into `out`, each atomically.
    ///
    /// # Errors
    /// A file that cannot be written, or a figure that cannot be drawn.
    pub fn write(&self, out: &Path, results: &impl Serialize) -> Result<()> {
        for f in self.figures() {
            let chart = Chart {
                title: &f.title,
                x_label: &f.x_label,
                y_label: &f.y_label,
            };
            let path = out.join(&f.file);
            match f.axes {
                Axes::Linear => bigbatch_plot::line_chart(&path, &chart, &f.series)?,
                Axes::LogLog => bigbatch_plot::log_log_chart(&path, &chart, &f.series)?,
            }
        }
        write_atomic(
            &out.join("results.json"),
            &serde_json::to_vec_pretty(results)?,
        )?;
        write_atomic(&out.join("report.md"), self.markdown().as_bytes())
    }
}

/// The provenance of the runs, one line per distinct machine setting, then
/// every distinct data file with its digest.
fn provenance_markdown(runs: &[Provenance]) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut digests: Vec<String> = Vec::new();
    let mut seeds: Vec<u64> = runs.iter().map(|p| p.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut data: Vec<String> = Vec::new();
    for p in runs {
        let used = p.data.map_or_else(
            || "data: not recorded".to_owned(),
            |d| format!("data: {}", d.describe()),
        );
        if !data.contains(&used) {
            data.push(used);
        }
        let line = format!(
            "- bigbatch {}, git revision `{}`, {} thread(s) per run on `{}`",
            p.bigbatch_version,
            p.git_revision.as_deref().unwrap_or("unknown"),
            p.threads,
            p.device
        );
        if !lines.contains(&line) {
            lines.push(line);
        }
        for d in &p.datasets {
            let line = format!("- `{}` sha256 `{}`", d.file, d.sha256);
            if !digests.contains(&line) {
                digests.push(line);
            }
        }
    }
    if runs.is_empty() {
        return "- no runs\n".into();
    }
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let data: Vec<String> = data.iter().map(|d| format!("- {d}")).collect();
    format!(
        "- {} run(s), seed(s) {}\n{}\n{}\n{}\n",
        runs.len(),
        seeds.join(", "),
        data.join("\n"),
        lines.join("\n"),
        digests.join("\n")
    )
}

/// Writes `contents` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_say_whose_numbers_they_hold() {
        let t = Table {
            columns: vec![
                Column::label("batch"),
                Column::paper("test accuracy", Some("%")),
                Column::ours("test accuracy", Some("%")),
            ],
            rows: vec![vec![
                Cell::text("8K"),
                Cell::number(99.4, 1),
                Cell::number(99.123, 2),
            ]],
        };
        assert_eq!(
            t.markdown(),
            "| batch | test accuracy (%), paper | test accuracy (%), ours |\n|---|---|---|\n| 8K | 99.4 | 99.12 |\n"
        );
        let missing = Cell::number(f64::NAN, 2).render();
        assert_eq!(missing, "—");
    }
}
