//! target/bench/chart.svg: one panel per section, a bar per (variant, tool)
//! at the median with a whisker up to the p99, bars of one variant side by
//! side, one colour per tool.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

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
    let panels: Vec<&Section> = sections.iter().filter(|s| !s.series.is_empty()).collect();
    let rows = panels.len().div_ceil(COLUMNS).max(1);
    let size = (PANEL.0 * COLUMNS as u32, PANEL.1 * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let areas = root.split_evenly((rows, COLUMNS));
    for (area, s) in areas.iter().zip(panels) {
        panel(area, s).map_err(|e| anyhow!("chart {}: {e}", s.id))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn panel(area: &Area, s: &Section) -> Result<(), Box<dyn std::error::Error>> {
    // Bars: variants in first-seen order, tools within them; a gap between
    // variants.
    let mut variants: Vec<&str> = Vec::new();
    for x in &s.series {
        if !variants.contains(&x.variant.as_str()) {
            variants.push(&x.variant);
        }
    }
    let mut bars = Vec::new(); // (x0, tool, median, p99)
    let mut labels = Vec::new(); // (x centre, variant)
    let mut x = 0.5;
    for v in &variants {
        let start = x;
        for series in s.series.iter().filter(|x| x.variant == *v) {
            let p50 = median(&series.samples).unwrap_or(0.0);
            let p99 = percentile(&series.samples, 0.99).unwrap_or(0.0);
            bars.push((x, series.tool.as_str(), p50, p99));
            x += 1.0;
        }
        labels.push(((start + x) / 2.0, *v));
        x += 0.7;
    }
    let ymax = bars.iter().map(|b| b.3.max(b.2)).fold(0.0f64, f64::max) * 1.15;
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&s.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x, 0.0..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(format!("{} (bar: median, line: p99)", s.unit.label()))
        .draw()?;
    let mut seen: Vec<&str> = Vec::new();
    for (x0, tool, p50, p99) in &bars {
        let c = colour(tool);
        let series = chart.draw_series(std::iter::once(Rectangle::new(
            [(*x0, 0.0), (*x0 + 0.8, *p50)],
            c.filled(),
        )))?;
        if !seen.contains(tool) {
            seen.push(tool);
            series
                .label(*tool)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*x0 + 0.4, *p50), (*x0 + 0.4, *p99)],
            BLACK.stroke_width(1),
        )))?;
    }
    for (centre, variant) in labels {
        chart.draw_series(std::iter::once(Text::new(
            variant.to_string(),
            (centre - 0.4, ymax * 0.97),
            ("sans-serif", 12).into_font(),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Unit;

    #[test]
    fn writes_an_svg_with_every_tool() {
        let mut s = Section::new("l", "Lifecycle", Unit::Ms, "");
        s.push("berth", "serial", vec![10.0, 12.0]);
        s.push("runc", "serial", vec![20.0, 30.0]);
        s.push("berth", "16 concurrent", vec![40.0]);
        let dir = std::env::temp_dir().join(format!("berth-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chart.svg");
        write(&path, &[s]).expect("chart written");
        let svg = std::fs::read_to_string(&path).expect("read back");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for text in ["Lifecycle", "berth", "runc", "16 concurrent"] {
            assert!(svg.contains(text), "{text} missing from the chart");
        }
    }
}
