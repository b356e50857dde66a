//! target/bench/chart.svg: one panel per scenario and variant, a bar per
//! tool at the median with a whisker up to the p99, one colour per tool.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::measure::{median, percentile, Section};

const PANEL: (u32, u32) = (640, 380);
const COLUMNS: usize = 2;

fn colour(tool: &str) -> RGBColor {
    match tool {
        "berth" => RGBColor(0x1f, 0x77, 0xb4),
        "runc" => RGBColor(0xff, 0x7f, 0x0e),
        "podman" => RGBColor(0x2c, 0xa0, 0x2c),
        "containerd" => RGBColor(0xd6, 0x27, 0x28),
        "systemd-run" => RGBColor(0x94, 0x67, 0xbd),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

pub fn write(path: &Path, sections: &[Section]) -> Result<()> {
    // A panel per (section, variant): variants differ by orders of
    // magnitude (serial vs 64 at once), one axis would flatten the small.
    let mut panels: Vec<(String, &Section, &str)> = Vec::new();
    for s in sections {
        let mut variants: Vec<&str> = Vec::new();
        for x in &s.series {
            if !variants.contains(&x.variant.as_str()) {
                variants.push(&x.variant);
            }
        }
        for v in &variants {
            let title = if variants.len() > 1 {
                format!("{} — {v}", s.title)
            } else {
                s.title.clone()
            };
            panels.push((title, s, v));
        }
    }
    let rows = panels.len().div_ceil(COLUMNS).max(1);
    let size = (PANEL.0 * COLUMNS as u32, PANEL.1 * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let areas = root.split_evenly((rows, COLUMNS));
    for (area, (title, s, variant)) in areas.iter().zip(&panels) {
        panel(area, title, s, variant).map_err(|e| anyhow!("chart {}: {e}", s.id))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// One bar per tool (named under it), the median written on top.
fn panel(
    area: &Area,
    title: &str,
    s: &Section,
    variant: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let bars: Vec<(&str, f64, f64)> = s
        .series
        .iter()
        .filter(|x| x.variant == variant)
        .map(|x| {
            (
                x.tool.as_str(),
                median(&x.samples).unwrap_or(0.0),
                percentile(&x.samples, 0.99).unwrap_or(0.0),
            )
        })
        .collect();
    let ymax = bars.iter().map(|b| b.2.max(b.1)).fold(0.0f64, f64::max) * 1.15;
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    let n = bars.len() as u32;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(24)
        .y_label_area_size(60)
        // (0..m).into_segmented() has m + 1 segments: one per bar.
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0.0..ymax)?;
    let names: Vec<&str> = bars.iter().map(|b| b.0).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).unwrap_or(&"").to_string(),
            _ => String::new(),
        })
        .y_desc(format!("{} (bar: median, line: p99)", s.unit.label()))
        .draw()?;
    for (i, (tool, p50, p99)) in bars.iter().enumerate() {
        let i = i as u32;
        chart.draw_series(std::iter::once({
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *p50),
                ],
                colour(tool).filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![
                (SegmentValue::CenterOf(i), *p50),
                (SegmentValue::CenterOf(i), *p99),
            ],
            BLACK.stroke_width(1),
        )))?;
        let label = if *p50 < 10.0 {
            format!("{p50:.2}")
        } else {
            format!("{p50:.0}")
        };
        chart.draw_series(std::iter::once(Text::new(
            label,
            (SegmentValue::CenterOf(i), p50 + ymax * 0.01),
            ("sans-serif", 12)
                .into_font()
                .into_text_style(area)
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Unit;

    #[test]
    fn writes_an_svg_with_every_tool() {
        let mut s = Section::new("l", "Lifecycle", Unit::Ms, "");
        s.push("berth", "serial", vec![10.0, 11.0, 12.0]);
        s.push("runc", "serial", vec![20.0, 30.0]);
        s.push("berth", "16 concurrent", vec![40.0]);
        let dir = std::env::temp_dir().join(format!("berth-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chart.svg");
        write(&path, &[s]).expect("chart written");
        let svg = std::fs::read_to_string(&path).expect("read back");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for text in ["Lifecycle — serial", "berth", "runc", "16 concurrent"] {
            assert!(svg.contains(text), "{text} missing from the chart");
        }
        // berth's serial median, written on its bar.
        assert!(svg.lines().any(|l| l.trim() == "11"), "no median label");
    }
}
