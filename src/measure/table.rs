//! Markdown tables: padded so they read well in a terminal and render on
//! any markdown viewer. Numbers are right-aligned.

use super::fmt_bytes;
use super::record::Record;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A markdown table under construction.
pub struct Table {
    header: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[(&str, Align)]) -> Table {
        Table { header: header.iter().map(|(h, a)| (h.to_string(), *a)).collect(), rows: Vec::new() }
    }

    /// Adds a row; missing cells are blank, extra cells dropped. A `|` in a
    /// cell is escaped so it cannot split the row.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| c.replace('|', "\\|")).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |i: usize| {
            let cells = self.rows.iter().map(|r| r[i].chars().count());
            cells.chain([self.header[i].0.chars().count(), 3]).max().unwrap_or(3)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let pad = |s: &str, w: usize, a: Align| {
            let n = w.saturating_sub(s.chars().count());
            match a {
                Align::Left => format!("{s}{}", " ".repeat(n)),
                Align::Right => format!("{}{s}", " ".repeat(n)),
            }
        };
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let mut out = line(self.header.iter().zip(&widths).map(|((h, a), &w)| pad(h, w, *a)).collect());
        out += &line(
            self.header
                .iter()
                .zip(&widths)
                .map(|((_, a), &w)| match a {
                    Align::Left => "-".repeat(w),
                    Align::Right => format!("{}:", "-".repeat(w - 1)),
                })
                .collect(),
        );
        for r in &self.rows {
            out += &line(r.iter().zip(&self.header).zip(&widths).map(|((c, (_, a)), &w)| pad(c, w, *a)).collect());
        }
        out
    }
}

/// `12.97 ± 0.11` (more decimals for slow rates so small numbers keep their digits).
pub fn fmt_rate(mean: f64, std: f64) -> String {
    let d = if mean >= 100.0 { 1 } else { 2 };
    format!("{mean:.d$} ± {std:.d$}")
}

/// The bench table, llama-bench style: one row per record, grouped by
/// device (adapter + backend) in order of first appearance. Records of
/// several runs (`--compare` of files, or of a merged file holding several
/// commits) get a first column naming each row's file and commit.
pub fn bench_table(records: &[Record]) -> String {
    use Align::*;
    let sourced = super::record::origins(records).len() > 1;
    let mut header = vec![
        ("model", Left),
        ("weights", Left),
        ("adapter", Left),
        ("backend", Left),
        ("kv", Left),
        ("test", Left),
        ("t/s", Right),
        ("KV resident", Right),
        ("KV read/step", Right),
        ("depth", Right),
    ];
    if sourced {
        header.insert(0, ("source", Left));
    }
    let mut t = Table::new(&header);
    for r in grouped_by_device(records) {
        let mut row = vec![
            r.model.clone(),
            r.weight_type.clone(),
            r.device.adapter.clone(),
            r.device.backend.clone(),
            r.kv.clone(),
            r.test.clone(),
            fmt_rate(r.mean, r.std),
            fmt_bytes(r.kv_bytes_resident),
            fmt_bytes(r.kv_bytes_read_per_step),
            r.depth.to_string(),
        ];
        if sourced {
            row.insert(0, r.origin());
        }
        t.row(row);
    }
    t.render()
}

/// Records reordered so each device's rows are together (stable otherwise).
pub fn grouped_by_device(records: &[Record]) -> Vec<&Record> {
    let mut keys: Vec<String> = Vec::new();
    for r in records {
        let k = r.device.key();
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out: Vec<&Record> = records.iter().collect();
    out.sort_by_key(|r| keys.iter().position(|k| *k == r.device.key()));
    out
}
