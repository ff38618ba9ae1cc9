//! `report.md`: a small Markdown builder for run reports (headings, text, tables, figures).

use crate::Result;
use crate::run::RunDir;
use std::fmt::Write as _;
use std::path::PathBuf;

/// A Markdown report assembled piece by piece and written to `report.md` in a run directory.
#[derive(Debug, Clone, Default)]
pub struct Report {
    md: String,
}

impl Report {
    /// A report with a top-level title.
    pub fn new(title: &str) -> Self {
        Report { md: format!("# {title}\n\n") }
    }

    /// A second-level heading.
    pub fn heading(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.md, "## {text}\n\n");
        self
    }

    /// A third-level heading.
    pub fn subheading(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.md, "### {text}\n\n");
        self
    }

    /// A paragraph of Markdown text.
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.md, "{}\n\n", text.trim_end());
        self
    }

    /// A fenced code block (e.g. the command that reproduces the run).
    pub fn code(&mut self, lang: &str, text: &str) -> &mut Self {
        let _ = write!(self.md, "```{lang}\n{}\n```\n\n", text.trim_end());
        self
    }

    /// A table. Every row must have as many cells as there are headers; short rows are padded
    /// with empty cells, long rows are cut (a report is never a reason to fail a run).
    pub fn table<S: AsRef<str>>(&mut self, headers: &[S], rows: &[Vec<String>]) -> &mut Self {
        let n = headers.len();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let hdr: Vec<String> = headers.iter().map(|h| esc(h.as_ref())).collect();
        let _ = writeln!(self.md, "| {} |", hdr.join(" | "));
        let _ = writeln!(self.md, "|{}", "---|".repeat(n));
        for r in rows {
            let mut cells: Vec<String> = r.iter().take(n).map(|c| esc(c)).collect();
            cells.resize(n, String::new());
            let _ = writeln!(self.md, "| {} |", cells.join(" | "));
        }
        self.md.push('\n');
        self
    }

    /// An embedded figure, `path` relative to the run directory (e.g. `"loss.png"`).
    pub fn figure(&mut self, caption: &str, path: &str) -> &mut Self {
        let _ = write!(self.md, "![{caption}]({path})\n\n*{caption}*\n\n");
        self
    }

    /// A bullet list.
    pub fn bullets<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        for i in items {
            let _ = writeln!(self.md, "- {}", i.as_ref());
        }
        self.md.push('\n');
        self
    }

    /// The Markdown so far.
    pub fn as_markdown(&self) -> &str {
        &self.md
    }

    /// Write `report.md` into the run directory.
    pub fn write(&self, dir: &RunDir) -> Result<PathBuf> {
        dir.write_text("report.md", &self.md)
    }
}

/// Format a float with `digits` significant decimals, switching to scientific notation for very
/// large or small magnitudes.
pub fn fmt_num(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) { format!("{x:.digits$e}") } else { format!("{x:.digits$}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_markdown() {
        let mut r = Report::new("T");
        r.heading("H")
            .table(&["a", "b"], &[vec!["1".into(), "x|y".into()], vec!["2".into()]])
            .figure("Loss", "loss.png");
        let md = r.as_markdown();
        assert!(md.starts_with("# T\n"));
        assert!(md.contains("| a | b |\n|---|---|\n| 1 | x\\|y |\n| 2 |  |"));
        assert!(md.contains("![Loss](loss.png)"));
    }

    #[test]
    fn number_formatting() {
        assert_eq!(fmt_num(0.5, 3), "0.500");
        assert_eq!(fmt_num(1.5e-7, 2), "1.50e-7");
        assert_eq!(fmt_num(f64::NAN, 2), "NaN");
    }
}
