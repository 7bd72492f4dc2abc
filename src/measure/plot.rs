//! Line charts as self-contained SVG text (no dependency, no script, no
//! external font): a title, one or more panels in rows of up to three, each
//! with gridlines, ticks, axis labels, one polyline with point markers (and
//! ± error bars) per series, and a legend shared by the panels (or one per
//! panel when they draw different series). Every series of a panel has its
//! own colour, marker shape and dash pattern, and markers of several series
//! at one spot are spread apart, so equal series stay visible. Opens in any
//! browser.

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

/// Panels per row at most.
const MAX_COLUMNS: usize = 3;
/// Markers of several series at one spot are spread this far apart in x (pixels),
/// less when many coincide, the group at most `JITTER_SPAN` wide.
const JITTER: f64 = 5.0;
const JITTER_SPAN: f64 = 30.0;

/// Distinct colours (colour-blind friendly first), cycled.
const COLORS: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

/// Marker shapes, cycled with a period prime to the colours', so (colour,
/// marker) pairs repeat only after 40 series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Circle,
    Square,
    Up,
    Diamond,
    Down,
}

const MARKERS: [Marker; 5] = [Marker::Circle, Marker::Square, Marker::Up, Marker::Diamond, Marker::Down];

/// Line dash patterns (solid, dashed, dotted), cycled: a line drawn over an
/// equal one leaves gaps the one below shows through.
const DASHES: [&str; 3] = ["", "8 4", "2 3"];

/// How one series is drawn: the `i`-th style of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Style {
    color: &'static str,
    marker: Marker,
    dash: &'static str,
}

impl Style {
    fn nth(i: usize) -> Style {
        Style { color: COLORS[i % COLORS.len()], marker: MARKERS[i % MARKERS.len()], dash: DASHES[i % DASHES.len()] }
    }

    /// Stroke attributes of the series' line.
    fn stroke(&self, width: f64) -> String {
        let dash = if self.dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{}""#, self.dash) };
        format!(r#"stroke="{}" stroke-width="{width}"{dash}"#, self.color)
    }

    /// The marker centred at (x, y), `inner` (a tooltip) inside its element.
    fn marker(&self, x: f64, y: f64, inner: &str) -> String {
        let poly = |pts: &[(f64, f64)]| {
            let p: Vec<String> = pts.iter().map(|(dx, dy)| format!("{:.1},{:.1}", x + dx, y + dy)).collect();
            format!(r#"polygon points="{}""#, p.join(" "))
        };
        let shape = match self.marker {
            Marker::Circle => format!(r#"circle cx="{x:.1}" cy="{y:.1}" r="3.8""#),
            Marker::Square => format!(r#"rect x="{:.1}" y="{:.1}" width="6.6" height="6.6""#, x - 3.3, y - 3.3),
            Marker::Up => poly(&[(0.0, -4.5), (4.2, 3.0), (-4.2, 3.0)]),
            Marker::Diamond => poly(&[(0.0, -4.6), (4.6, 0.0), (0.0, 4.6), (-4.6, 0.0)]),
            Marker::Down => poly(&[(0.0, 4.5), (4.2, -3.0), (-4.2, -3.0)]),
        };
        let tag = shape.split(' ').next().unwrap_or_default();
        format!(r#"<{shape} fill="{}" stroke="white" stroke-width="0.8">{inner}</{tag}>"#, self.color)
    }

    /// A legend entry: a stretch of the line with the marker on it, and the name.
    fn legend(&self, s: &mut String, x: f64, y: f64, name: &str) {
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" {}/>{}<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 28.0,
            self.stroke(2.5),
            self.marker(x + 14.0, y, ""),
            x + 36.0,
            y + 4.0,
            escape(name)
        );
    }
}

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
            if v.fract() == 0.0 {
                format!("{v}")
            } else {
                format!("{v:.3}")
            }
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

    /// Each series name's style: in first-seen order, a name takes the
    /// lowest style no name it shares a panel with has taken, so the series
    /// of a panel are drawn apart and a name looks the same in every panel.
    fn styles(&self) -> Vec<(&str, Style)> {
        let mut index: Vec<(&str, usize)> = Vec::new();
        for name in self.names() {
            let panels: Vec<&Panel> = self.panels.iter().filter(|p| p.series.iter().any(|s| s.name == name)).collect();
            let taken: Vec<usize> = index.iter().filter(|(n, _)| panels.iter().any(|p| p.series.iter().any(|s| s.name == *n))).map(|&(_, i)| i).collect();
            let i = (0..).find(|i| !taken.contains(i)).unwrap_or(0);
            index.push((name, i));
        }
        index.into_iter().map(|(n, i)| (n, Style::nth(i))).collect()
    }

    /// The legend below all panels when every panel with data draws the
    /// same series; None when they differ (each panel then has its own).
    fn shared_legend(&self) -> Option<Vec<&str>> {
        let sets: Vec<Vec<&str>> = self
            .panels
            .iter()
            .map(|p| {
                let mut v: Vec<&str> = p.series.iter().filter(|s| !s.points.is_empty()).map(|s| s.name.as_str()).collect();
                v.sort();
                v.dedup();
                v
            })
            .filter(|v| !v.is_empty())
            .collect();
        if sets.windows(2).all(|w| w[0] == w[1]) { Some(self.names()) } else { None }
    }

    pub fn to_svg(&self) -> String {
        let styles = self.styles();
        let shared = self.shared_legend();
        let n = self.panels.len().max(1);
        let rows = n.div_ceil(MAX_COLUMNS);
        let cols = n.div_ceil(rows) as f64;
        // Each panel's own legend, when the panels draw different series.
        let legend_h = match shared {
            Some(_) => 0.0,
            None => 12.0 + LEGEND_ROW * self.panels.iter().map(|p| p.series.len()).max().unwrap_or(0) as f64,
        };
        let block_h = PANEL_H + legend_h;
        let panels_h = rows as f64 * block_h + (rows - 1) as f64 * GAP;
        // Wide enough for the panels and for the title (about 9 px a character at 16 px bold).
        let title_w = 9.0 * self.title.chars().count().max(self.subtitle.chars().count() * 2 / 3) as f64 + 2.0 * GAP;
        let panels_w = cols * PANEL_W + (cols - 1.0) * GAP;
        let width = (panels_w + 2.0 * GAP).max(title_w.ceil());
        let x0 = (width - panels_w) / 2.0;
        let legend_top = HEAD + panels_h + 12.0;
        let height = match &shared {
            Some(names) => legend_top + LEGEND_ROW * names.len() as f64 + 16.0,
            None => HEAD + panels_h + 16.0,
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#);
        let _ = writeln!(s, r#"<text x="{:.1}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#, width / 2.0, escape(&self.title));
        let _ = writeln!(s, r##"<text x="{:.1}" y="44" fill="#555" text-anchor="middle">{}</text>"##, width / 2.0, escape(&self.subtitle));
        for (i, p) in self.panels.iter().enumerate() {
            let (row, col) = (i / cols as usize, i % cols as usize);
            let left = x0 + col as f64 * (PANEL_W + GAP);
            panel(&mut s, p, left, HEAD + row as f64 * (block_h + GAP), &styles, shared.is_none());
        }
        if let Some(names) = &shared {
            let _ = writeln!(s, r#"<g class="legend">"#);
            for (i, name) in names.iter().enumerate() {
                style_of(&styles, name).legend(&mut s, x0 + M_LEFT, legend_top + LEGEND_ROW * i as f64 + 9.0, name);
            }
            let _ = writeln!(s, "</g>");
        }
        s.push_str("</svg>\n");
        s
    }
}

fn style_of(styles: &[(&str, Style)], name: &str) -> Style {
    styles.iter().find(|(n, _)| *n == name).map_or(Style::nth(0), |&(_, st)| st)
}

/// Each series' points in pixels, sorted by x: `(x, y, point)`. Points of
/// several series at one spot are spread apart in x (in series order,
/// centred on the spot), so every marker shows.
fn placed(p: &Panel, sx: &dyn Fn(f64) -> f64, sy: &dyn Fn(f64) -> f64) -> Vec<Vec<(f64, f64, Point)>> {
    let mut out: Vec<Vec<(f64, f64, Point)>> = p
        .series
        .iter()
        .map(|series| {
            let mut pts: Vec<(f64, f64, Point)> = series.points.iter().map(|q| (sx(q.x), sy(q.y), *q)).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts
        })
        .collect();
    // Every point's spot (to the nearest half pixel) with its series and
    // index, sorted by spot (stably: series order within a spot).
    let mut spots: Vec<(i64, i64, usize, usize)> = Vec::new();
    for (si, pts) in out.iter().enumerate() {
        for (pi, &(x, y, _)) in pts.iter().enumerate() {
            spots.push(((x * 2.0).round() as i64, (y * 2.0).round() as i64, si, pi));
        }
    }
    spots.sort_by_key(|&(x, y, _, _)| (x, y));
    for at in spots.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).filter(|at| at.len() > 1) {
        let k = at.len() as f64;
        let step = JITTER.min(JITTER_SPAN / (k - 1.0));
        for (j, &(_, _, si, pi)) in at.iter().enumerate() {
            out[si][pi].0 += (j as f64 - (k - 1.0) / 2.0) * step;
        }
    }
    out
}

/// One panel with its top-left corner at (left, top), and its own legend
/// below it when `legend`.
fn panel(s: &mut String, p: &Panel, left: f64, top: f64, styles: &[(&str, Style)], legend: bool) {
    let (x0, x1) = (left + M_LEFT, left + PANEL_W - M_RIGHT);
    let (y0, y1) = (top + M_TOP, top + PANEL_H - M_BOTTOM);
    let pts = p.series.iter().flat_map(|s| &s.points);
    let xmax = pts.clone().map(|q| q.x).fold(0.0, f64::max);
    let ymax = pts.clone().map(|q| q.y + q.err.max(0.0)).fold(0.0, f64::max);
    let (xa, ya) = (Axis::new(xmax, p.x_scale), Axis::new(ymax, p.y_scale));
    let sx = |x: f64| x0 + xa.frac(x) * (x1 - x0);
    let sy = |y: f64| y1 - ya.frac(y) * (y1 - y0);
    let _ = writeln!(s, r#"<g class="panel">"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        top + 16.0,
        escape(&p.title)
    );
    // Gridlines and tick labels.
    for v in ya.ticks() {
        let y = sy(v * ya.unit);
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            escape(&ya.label(v))
        );
    }
    for v in xa.ticks() {
        let x = sx(v * xa.unit);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}" stroke="#eee"/><line x1="{x:.1}" y1="{y1:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y1 + 5.0,
            y1 + 18.0,
            escape(&xa.label(v))
        );
    }
    let _ = writeln!(s, r##"<polyline points="{x0:.1},{y0:.1} {x0:.1},{y1:.1} {x1:.1},{y1:.1}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, (x0 + x1) / 2.0, y1 + 38.0, escape(&p.x_label));
    let (lx, ly) = (left + 16.0, (y0 + y1) / 2.0);
    let _ = writeln!(s, r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx:.1} {ly:.1})">{}</text>"#, escape(&p.y_label));
    if p.series.iter().all(|q| q.points.is_empty()) {
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#888" text-anchor="middle">no data</text>"##, (x0 + x1) / 2.0, (y0 + y1) / 2.0);
    }
    for (series, pts) in p.series.iter().zip(placed(p, &sx, &sy)) {
        if pts.is_empty() {
            continue;
        }
        let st = style_of(styles, &series.name);
        let line: Vec<String> = pts.iter().map(|(x, y, _)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(s, r#"<g class="series" data-name="{}">"#, escape(&series.name));
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" {}/>"#, line.join(" "), st.stroke(2.0));
        for &(cx, cy, q) in &pts {
            if q.err > 0.0 {
                let _ = writeln!(s, r#"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="{}"/>"#, sy(q.y - q.err), sy(q.y + q.err), st.color);
            }
            let tip = format!("{}: {} → {}", series.name, fmt_value(q.x, p.x_scale), fmt_value(q.y, p.y_scale));
            let _ = writeln!(s, "{}", st.marker(cx, cy, &format!("<title>{}</title>", escape(&tip))));
        }
        let _ = writeln!(s, "</g>");
    }
    if legend {
        let _ = writeln!(s, r#"<g class="legend">"#);
        for (i, series) in p.series.iter().enumerate() {
            style_of(styles, &series.name).legend(s, x0, top + PANEL_H + 12.0 + LEGEND_ROW * i as f64 + 9.0, &series.name);
        }
        let _ = writeln!(s, "</g>");
    }
    let _ = writeln!(s, "</g>");
}

/// A policy's family: its spec without `budget=` (`snapkv:budget=10%` →
/// `snapkv`, `vatp:budget=5%,alloc=dynamic` → `vatp:alloc=dynamic`); a name
/// that is no spec is its own family.
pub fn policy_family(kv: &str) -> String {
    match crate::kv::KvSpec::parse(kv) {
        Ok(mut spec) => {
            for p in &mut spec.parts {
                p.options.retain(|(k, _)| k != "budget");
            }
            spec.to_string()
        }
        Err(_) => kv.to_string(),
    }
}

/// Small multiples of a panel whose series are policies, when it has more
/// than `max`: one panel per policy family (`policy_family`), in first-seen
/// order, titled with it, drawing the series of the `references` families
/// (e.g. `full`, `streaming`) first and then its own. A panel of at most
/// `max` series, or with fewer than two families besides the references,
/// stays whole.
pub fn by_family(p: Panel, max: usize, references: &[&str]) -> Vec<Panel> {
    let is_ref = |s: &Series| references.contains(&policy_family(&s.name).as_str());
    let mut families: Vec<String> = Vec::new();
    for s in p.series.iter().filter(|s| !is_ref(s)) {
        let f = policy_family(&s.name);
        if !families.contains(&f) {
            families.push(f);
        }
    }
    if p.series.len() <= max || families.len() < 2 {
        return vec![p];
    }
    let refs: Vec<Series> = p.series.iter().filter(|s| is_ref(s)).cloned().collect();
    families
        .iter()
        .map(|f| {
            let own = p.series.iter().filter(|s| !is_ref(s) && policy_family(&s.name) == *f).cloned();
            Panel { title: format!("{}: {f}", p.title), series: refs.iter().cloned().chain(own).collect(), ..p.clone() }
        })
        .collect()
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

/// The distinct values `f` gives over `points`, in first-seen order,
/// joined by ", " (a figure's subtitle).
pub fn distinct<T>(points: &[T], f: impl Fn(&T) -> String) -> String {
    let mut v: Vec<String> = Vec::new();
    for p in points {
        let s = f(p);
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every tag (between `<` and `>`) in `svg`, in order.
    fn tags(svg: &str) -> Vec<&str> {
        svg.split('<').skip(1).map(|t| &t[..t.find('>').expect("tag closed")]).collect()
    }

    /// The value of attribute `name` in a tag's text.
    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let key = format!(r#" {name}=""#);
        let i = tag.find(&key)? + key.len();
        Some(&tag[i..i + tag[i..].find('"')?])
    }

    fn num(tag: &str, name: &str) -> f64 {
        attr(tag, name).unwrap_or_else(|| panic!("no {name} in {tag}")).parse().unwrap()
    }

    /// A marker tag's shape, wherever it is drawn (the element, and its
    /// size or the directions of its vertices), and its centre's x.
    fn marker(tag: &str) -> Option<(String, f64)> {
        let name = tag.split(' ').next()?;
        match name {
            "circle" => Some((format!("circle r={}", num(tag, "r")), num(tag, "cx"))),
            "rect" => Some((format!("rect {}x{}", num(tag, "width"), num(tag, "height")), num(tag, "x") + num(tag, "width") / 2.0)),
            "polygon" => {
                let pts: Vec<(f64, f64)> = attr(tag, "points")?
                    .split(' ')
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                let n = pts.len() as f64;
                let (cx, cy) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
                // The directions of the vertices from their centre, to 15°
                // (coordinates are written to 0.1 px, so exact offsets vary).
                let angles: Vec<String> = pts.iter().map(|(x, y)| format!("{}", ((y - cy).atan2(x - cx).to_degrees() / 15.0).round() * 15.0)).collect();
                Some((format!("polygon {}", angles.join(" ")), cx))
            }
            _ => None,
        }
    }

    /// How a series or legend entry is drawn: (line colour, dash pattern, marker shape).
    type Look = (String, String, String);

    /// One series group as drawn: its name, look and marker centres' x.
    struct Drawn {
        name: String,
        look: Look,
        xs: Vec<f64>,
    }

    /// The series groups of one panel's SVG text.
    fn series(panel: &str) -> Vec<Drawn> {
        let mut out = Vec::new();
        for group in panel.split(r#"<g class="series""#).skip(1) {
            let group = &group[..group.find("</g>").unwrap()];
            let t = tags(group);
            let line = t.iter().find(|t| t.starts_with("polyline")).expect("a line");
            let markers: Vec<(String, f64)> = t.iter().filter_map(|t| marker(t)).collect();
            let look = (attr(line, "stroke").unwrap().to_string(), attr(line, "stroke-dasharray").unwrap_or("").to_string(), markers[0].0.clone());
            assert!(markers.iter().all(|m| m.0 == look.2), "one marker shape per series");
            let name = attr(&format!(" {}", &group[..group.find('>').unwrap()]), "data-name").unwrap().to_string();
            out.push(Drawn { name, look, xs: markers.iter().map(|m| m.1).collect() });
        }
        out
    }

    /// The legend entries in `text` (a panel's, or the figure's): (name, look).
    fn legend(text: &str) -> Vec<(String, Look)> {
        let Some(start) = text.find(r#"<g class="legend">"#) else { return Vec::new() };
        let body = &text[start..start + text[start..].find("</g>").unwrap()];
        let mut out = Vec::new();
        for entry in body.split("<line").skip(1) {
            let entry_text = format!("<line{entry}");
            let t = tags(&entry_text);
            let line = t[0];
            let shape = t.iter().find_map(|t| marker(t)).unwrap().0;
            let name = &entry[entry.rfind("\">").unwrap() + 2..entry.find("</text>").unwrap()];
            out.push((name.to_string(), (attr(line, "stroke").unwrap().to_string(), attr(line, "stroke-dasharray").unwrap_or("").to_string(), shape)));
        }
        out
    }

    fn panels(svg: &str) -> Vec<&str> {
        svg.split(r#"<g class="panel">"#).skip(1).collect()
    }

    fn same_points(name: &str) -> Series {
        Series { name: name.into(), points: [0.0, 25.0, 50.0, 75.0, 100.0].iter().map(|&x| Point { x, y: 100.0, err: 0.0 }).collect() }
    }

    fn accuracy(series: Vec<Series>) -> Panel {
        Panel { title: "Accuracy".into(), x_label: "depth".into(), y_label: "%".into(), x_scale: Scale::Percent, y_scale: Scale::Percent, series }
    }

    /// The 25 policies of docs/passkey-lavapipe-4096-evict.json, in its order.
    fn evict_run() -> Vec<String> {
        let mut v = vec!["full".to_string()];
        for f in ["knorm", "streaming", "snapkv", "pyramidkv", "dynamickv", "h2o", "vatp"] {
            v.extend(["5%", "10%", "25%"].iter().map(|b| format!("{f}:budget={b}")));
        }
        v.extend(["5%", "10%", "25%"].iter().map(|b| format!("vatp:budget={b},alloc=dynamic")));
        v
    }

    #[test]
    fn equal_series_each_have_their_own_look_and_visible_markers() {
        for n in [2, 8, 25] {
            let names: Vec<String> = (0..n).map(|i| format!("policy {i}")).collect();
            let fig = Figure { title: "t".into(), subtitle: "s".into(), panels: vec![accuracy(names.iter().map(|n| same_points(n)).collect())] };
            let svg = fig.to_svg();
            let drawn = series(panels(&svg)[0]);
            assert_eq!(drawn.iter().map(|d| d.name.clone()).collect::<Vec<_>>(), names);
            let mut looks: Vec<&Look> = drawn.iter().map(|d| &d.look).collect();
            looks.sort();
            looks.dedup();
            assert_eq!(looks.len(), n, "{n} series, {} distinct looks", looks.len());
            // Every series' marker at a depth sits apart from the others', and
            // the spread stays within a few pixels of the depth.
            for k in 0..5 {
                let mut xs: Vec<f64> = drawn.iter().map(|d| d.xs[k]).collect();
                xs.sort_by(f64::total_cmp);
                assert!(xs.windows(2).all(|w| w[1] - w[0] >= 0.9), "markers at depth {k} coincide: {xs:?}");
                assert!(xs[n - 1] - xs[0] <= 30.5, "spread {:?}", xs);
            }
            // The shared legend names each series with the look it is drawn with.
            let entries = legend(&svg);
            assert_eq!(entries, drawn.iter().map(|d| (d.name.clone(), d.look.clone())).collect::<Vec<_>>());
        }
        // Two equal series: different dash patterns, markers a marker's width apart.
        let svg = Figure { title: "t".into(), subtitle: "s".into(), panels: vec![accuracy(vec![same_points("a"), same_points("b")])] }.to_svg();
        let d = series(panels(&svg)[0]);
        assert_ne!(d[0].look.1, d[1].look.1);
        assert!((d[1].xs[2] - d[0].xs[2]).abs() >= 4.0);
    }

    #[test]
    fn a_25_policy_figure_is_split_into_family_panels_of_at_most_8() {
        let names = evict_run();
        assert_eq!(names.len(), 25);
        let all: Vec<Series> =
            names.iter().enumerate().map(|(i, n)| Series { name: n.clone(), points: vec![Point { x: 50.0, y: (i % 5) as f64 * 25.0, err: 0.0 }] }).collect();
        let fig = Figure { title: "t".into(), subtitle: "s".into(), panels: by_family(accuracy(all), 8, &["full", "streaming"]) };
        let svg = fig.to_svg();
        let p = panels(&svg);
        let refs = ["full", "streaming:budget=5%", "streaming:budget=10%", "streaming:budget=25%"];
        let mut seen: Vec<String> = Vec::new();
        let mut titles = Vec::new();
        let mut full_look = None;
        for panel in &p {
            titles.push(panel[panel.find('>').unwrap() + 1..panel.find("</text>").unwrap()].to_string());
            let drawn = series(panel);
            assert!(drawn.len() <= 8, "{} series in a panel", drawn.len());
            let got: Vec<&str> = drawn.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(got[..4], refs, "the references first in every panel");
            // One family besides the references.
            let families: Vec<&str> = got[4..].iter().map(|n| n.split(':').next().unwrap()).collect();
            assert!(families.len() == 3 && families.iter().all(|f| *f == families[0]), "{got:?}");
            seen.extend(got[4..].iter().map(|s| s.to_string()));
            // Within a panel every series looks different; its legend names its series as drawn.
            let mut looks: Vec<&Look> = drawn.iter().map(|d| &d.look).collect();
            looks.sort();
            looks.dedup();
            assert_eq!(looks.len(), drawn.len());
            assert_eq!(legend(panel), drawn.iter().map(|d| (d.name.clone(), d.look.clone())).collect::<Vec<_>>());
            // `full` looks the same in every panel.
            assert_eq!(*full_look.get_or_insert(drawn[0].look.clone()), drawn[0].look);
        }
        assert_eq!(titles, ["knorm", "snapkv", "pyramidkv", "dynamickv", "h2o", "vatp", "vatp:alloc=dynamic"].map(|f| format!("Accuracy: {f}")));
        let mut want: Vec<String> = names.into_iter().filter(|n| !refs.contains(&n.as_str())).collect();
        want.sort();
        seen.sort();
        assert_eq!(seen, want, "every other policy in exactly one panel");
        // No legend below the panels: each has its own.
        assert_eq!(svg.matches(r#"<g class="legend">"#).count(), p.len());
    }

    #[test]
    fn few_policies_stay_in_one_panel() {
        let few: Vec<Series> = evict_run().iter().take(8).map(|n| same_points(n)).collect();
        assert_eq!(by_family(accuracy(few), 8, &["full", "streaming"]).len(), 1);
        // Many policies of one family (and references) have nothing to split by.
        let quest: Vec<Series> = (1..=9).map(|i| same_points(&format!("quest:budget={}", 128 * i))).chain([same_points("full")]).collect();
        assert_eq!(by_family(accuracy(quest), 8, &["full", "streaming"]).len(), 1);
        assert_eq!(policy_family("vatp:budget=5%,alloc=dynamic"), "vatp:alloc=dynamic");
        assert_eq!(policy_family("snapkv:budget=10%"), "snapkv");
        assert_eq!(policy_family("not a spec"), "not a spec");
    }
}
