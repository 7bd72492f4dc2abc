//! Line charts as self-contained SVG text (no dependency, no script, no
//! external font): a title, one or more panels side by side sharing a
//! legend, each panel with gridlines, ticks, axis labels, one polyline with
//! point markers (and ± error bars) per series. Opens in any browser.

use super::fmt_bytes;
use super::record::Record;
use std::fmt::Write;

/// One measured point; `err` is drawn as a ± bar when non-zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub err: f64,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// How an axis' values are labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Number,
    /// Bytes, ticks in the largest binary unit that fits.
    Bytes,
    /// Percent, axis fixed to 0..100.
    Percent,
}

#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug)]
pub struct Figure {
    pub title: String,
    pub subtitle: String,
    pub panels: Vec<Panel>,
}

// Geometry in pixels.
const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 320.0;
const GAP: f64 = 24.0;
const HEAD: f64 = 60.0;
const M_LEFT: f64 = 84.0;
const M_RIGHT: f64 = 18.0;
const M_TOP: f64 = 30.0;
const M_BOTTOM: f64 = 50.0;
const LEGEND_ROW: f64 = 18.0;

/// Distinct colours (colour-blind friendly first), cycled.
const COLORS: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

/// Text safe inside XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A tick step of 1, 2 or 5 × 10^k giving about `target` intervals over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// An axis from 0 to a round top: (unit divisor, unit suffix, step, top).
struct Axis {
    unit: f64,
    suffix: &'static str,
    step: f64,
    top: f64,
}

impl Axis {
    fn new(max: f64, scale: Scale) -> Axis {
        if scale == Scale::Percent {
            return Axis { unit: 1.0, suffix: "%", step: 25.0, top: 100.0 };
        }
        let (unit, suffix) = match scale {
            Scale::Bytes => {
                let units = [(1.0, " B"), (1024.0, " KiB"), (1048576.0, " MiB"), (1073741824.0, " GiB")];
                *units.iter().rev().find(|(u, _)| max >= *u).unwrap_or(&units[0])
            }
            _ => (1.0, ""),
        };
        let m = if max > 0.0 && max.is_finite() { max / unit } else { 1.0 };
        let step = nice_step(m, 5.0);
        let top = (m / step).ceil().max(1.0) * step;
        Axis { unit, suffix, step, top }
    }

    /// Tick values in axis units, 0..=top.
    fn ticks(&self) -> Vec<f64> {
        let n = (self.top / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }

    fn label(&self, v: f64) -> String {
        let decimals = if self.step >= 1.0 { 0 } else { (-self.step.log10().floor()) as usize };
        format!("{v:.decimals$}{}", self.suffix)
    }

    /// Fraction of the axis length for a raw value.
    fn frac(&self, raw: f64) -> f64 {
        (raw / self.unit / self.top).clamp(0.0, 1.0)
    }
}

/// Value for a tooltip: bytes in human units, other numbers with a few digits.
fn fmt_value(v: f64, scale: Scale) -> String {
    match scale {
        Scale::Bytes => fmt_bytes(v.max(0.0) as u64),
        Scale::Percent => format!("{v:.1}%"),
        Scale::Number => {
            if v.fract() == 0.0 { format!("{v}") } else { format!("{v:.3}") }
        }
    }
}

impl Figure {
    /// Series names across all panels, in first-seen order (the legend).
    fn names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.panels {
            for s in &p.series {
                if !out.contains(&s.name.as_str()) {
                    out.push(&s.name);
                }
            }
        }
        out
    }

    pub fn to_svg(&self) -> String {
        let names = self.names();
        let n = self.panels.len().max(1) as f64;
        // Wide enough for the panels and for the title (about 9 px a character at 16 px bold).
        let title_w = 9.0 * self.title.chars().count().max(self.subtitle.chars().count() * 2 / 3) as f64 + 2.0 * GAP;
        let panels_w = n * PANEL_W + (n - 1.0) * GAP;
        let width = (panels_w + 2.0 * GAP).max(title_w.ceil());
        let x0 = (width - panels_w) / 2.0;
        let legend_top = HEAD + PANEL_H + 12.0;
        let height = legend_top + LEGEND_ROW * names.len() as f64 + 16.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#);
        let _ = writeln!(s, r#"<text x="{:.1}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#, width / 2.0, escape(&self.title));
        let _ = writeln!(s, r##"<text x="{:.1}" y="44" fill="#555" text-anchor="middle">{}</text>"##, width / 2.0, escape(&self.subtitle));
        for (i, p) in self.panels.iter().enumerate() {
            let left = x0 + i as f64 * (PANEL_W + GAP);
            panel(&mut s, p, left, HEAD, &names);
        }
        for (i, name) in names.iter().enumerate() {
            let y = legend_top + LEGEND_ROW * i as f64 + 9.0;
            let c = COLORS[i % COLORS.len()];
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{c}" stroke-width="3"/><circle cx="{:.1}" cy="{y:.1}" r="3.5" fill="{c}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                x0 + M_LEFT,
                x0 + M_LEFT + 28.0,
                x0 + M_LEFT + 14.0,
                x0 + M_LEFT + 36.0,
                y + 4.0,
                escape(name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// One panel with its top-left corner at (left, top).
fn panel(s: &mut String, p: &Panel, left: f64, top: f64, names: &[&str]) {
    let (x0, x1) = (left + M_LEFT, left + PANEL_W - M_RIGHT);
    let (y0, y1) = (top + M_TOP, top + PANEL_H - M_BOTTOM);
    let pts = p.series.iter().flat_map(|s| &s.points);
    let xmax = pts.clone().map(|q| q.x).fold(0.0, f64::max);
    let ymax = pts.clone().map(|q| q.y + q.err.max(0.0)).fold(0.0, f64::max);
    let (xa, ya) = (Axis::new(xmax, p.x_scale), Axis::new(ymax, p.y_scale));
    let sx = |x: f64| x0 + xa.frac(x) * (x1 - x0);
    let sy = |y: f64| y1 - ya.frac(y) * (y1 - y0);
    let _ = writeln!(s, r#"<g class="panel">"#);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"#, (x0 + x1) / 2.0, top + 16.0, escape(&p.title));
    // Gridlines and tick labels.
    for v in ya.ticks() {
        let y = sy(v * ya.unit);
        let _ = writeln!(s, r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##, x0 - 6.0, y + 4.0, escape(&ya.label(v)));
    }
    for v in xa.ticks() {
        let x = sx(v * xa.unit);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}" stroke="#eee"/><line x1="{x:.1}" y1="{y1:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##, y1 + 5.0, y1 + 18.0, escape(&xa.label(v)));
    }
    let _ = writeln!(s, r##"<polyline points="{x0:.1},{y0:.1} {x0:.1},{y1:.1} {x1:.1},{y1:.1}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, (x0 + x1) / 2.0, y1 + 38.0, escape(&p.x_label));
    let (lx, ly) = (left + 16.0, (y0 + y1) / 2.0);
    let _ = writeln!(s, r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx:.1} {ly:.1})">{}</text>"#, escape(&p.y_label));
    if p.series.iter().all(|q| q.points.is_empty()) {
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#888" text-anchor="middle">no data</text>"##, (x0 + x1) / 2.0, (y0 + y1) / 2.0);
    }
    for series in &p.series {
        if series.points.is_empty() {
            continue;
        }
        let idx = names.iter().position(|n| *n == series.name).unwrap_or(0);
        let c = COLORS[idx % COLORS.len()];
        let mut sorted = series.points.clone();
        sorted.sort_by(|a, b| a.x.total_cmp(&b.x));
        let line: Vec<String> = sorted.iter().map(|q| format!("{:.1},{:.1}", sx(q.x), sy(q.y))).collect();
        let _ = writeln!(s, r#"<g class="series" data-name="{}">"#, escape(&series.name));
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#, line.join(" "));
        for q in &sorted {
            let (cx, cy) = (sx(q.x), sy(q.y));
            if q.err > 0.0 {
                let _ = writeln!(s, r#"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="{c}"/>"#, sy(q.y - q.err), sy(q.y + q.err));
            }
            let tip = format!("{}: {} → {}", series.name, fmt_value(q.x, p.x_scale), fmt_value(q.y, p.y_scale));
            let _ = writeln!(s, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3.5" fill="{c}"><title>{}</title></circle>"#, escape(&tip));
        }
        let _ = writeln!(s, "</g>");
    }
    let _ = writeln!(s, "</g>");
}

/// Label of a record's series: the policy, plus the device when several
/// are compared, plus the file and commit when several runs are.
fn series_name(r: &Record, many_devices: bool, many_origins: bool) -> String {
    let mut name = r.kv.clone();
    if many_devices {
        name = format!("{name} — {}", r.device.key());
    }
    if many_origins {
        name = format!("{name} — {}", r.origin());
    }
    name
}

/// `wgkv bench --plot`: decode tokens/s against depth, and KV bytes resident
/// against depth, one line per policy (with `--compare`, per policy, device
/// and file: runs of one policy on one device stay apart).
pub fn bench_figure(records: &[Record]) -> Figure {
    let mut devices: Vec<String> = Vec::new();
    for r in records {
        if !devices.contains(&r.device.key()) {
            devices.push(r.device.key());
        }
    }
    let many = devices.len() > 1;
    let origins = super::record::origins(records);
    let mut speed: Vec<Series> = Vec::new();
    let mut bytes: Vec<Series> = Vec::new();
    for r in records.iter().filter(|r| r.is_decode()) {
        let name = series_name(r, many, origins.len() > 1);
        let at = |v: &mut Vec<Series>| -> usize {
            match v.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    v.push(Series { name: name.clone(), points: Vec::new() });
                    v.len() - 1
                }
            }
        };
        let i = at(&mut speed);
        speed[i].points.push(Point { x: r.depth as f64, y: r.mean, err: r.std });
        let i = at(&mut bytes);
        bytes[i].points.push(Point { x: r.depth as f64, y: r.kv_bytes_resident as f64, err: 0.0 });
    }
    let mut models: Vec<&str> = Vec::new();
    for r in records {
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
    }
    let gens: Vec<String> = {
        let mut g: Vec<String> = records.iter().filter(|r| r.is_decode()).map(|r| r.n_gen.to_string()).collect();
        g.sort();
        g.dedup();
        g
    };
    let tests = if gens.is_empty() { "no decode tests".to_string() } else { format!("decode of {} tokens after `depth` cached tokens", gens.join("/")) };
    let version = match origins.len() {
        0 | 1 => records.first().map(|r| format!("wgkv {} ({})", r.wgkv_version, r.git_commit)).unwrap_or_default(),
        _ => format!("runs of {}", origins.join(", ")),
    };
    Figure {
        title: format!("{} on {}", models.join(", "), devices.join(" vs ")),
        subtitle: format!("{tests}; {version}"),
        panels: vec![
            Panel {
                title: "Decode speed".into(),
                x_label: "depth (tokens in the cache)".into(),
                y_label: "tokens / s (mean ± std)".into(),
                x_scale: Scale::Number,
                y_scale: Scale::Number,
                series: speed,
            },
            Panel {
                title: "KV cache resident".into(),
                x_label: "depth (tokens in the cache)".into(),
                y_label: "KV bytes resident after the test".into(),
                x_scale: Scale::Number,
                y_scale: Scale::Bytes,
                series: bytes,
            },
        ],
    }
}
