//! The report's plot: pipeline throughput against batch size, wasm and native, one line per
//! record size (PNG, drawn with plotters).

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::pipeline::{BATCH_SIZES, Point, VALUE_BYTES};

/// TrueType fonts tried for the labels (plotters' `ab_glyph` backend needs one; Debian and
/// Ubuntu ship DejaVu in `fonts-dejavu-core`).
const FONTS: [&str; 3] = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

fn register_sans() -> Result<()> {
    let path = FONTS
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| anyhow!("no TrueType font for the plot's labels (tried {}); install fonts-dejavu-core", FONTS.join(", ")))?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow!("{path} is not a usable TrueType font"))
}

/// Draws records/s (log scale) against batch size (log scale) into `out`.
pub fn throughput_by_batch_size(points: &[Point], out: &Path) -> Result<()> {
    register_sans()?;
    let max = points.iter().map(|p| p.wasm.max(p.native)).fold(1.0, f64::max);
    let root = BitMapBackend::new(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("wasmflow pipeline throughput: wasm vs native", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((BATCH_SIZES[0] as f64 / 1.5..*BATCH_SIZES.last().unwrap() as f64 * 1.5).log_scale(), (max / 100.0..max * 1.5).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("batch size (records)")
        .y_desc("records / s")
        .y_label_formatter(&|v| format!("{:.1}M", v / 1e6))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, &bytes) in VALUE_BYTES.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series: Vec<&Point> = points.iter().filter(|p| p.value_bytes == bytes).collect();
        for (native, label) in [(true, "native"), (false, "wasm")] {
            let xy: Vec<(f64, f64)> = series.iter().map(|p| (p.batch as f64, if native { p.native } else { p.wasm })).collect();
            let style = if native { color.stroke_width(3) } else { color.stroke_width(1) };
            chart
                .draw_series(LineSeries::new(xy.clone(), style))
                .map_err(|e| anyhow!("{e}"))?
                .label(format!("{label}, {bytes} B values"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(xy.iter().map(|&(x, y)| Circle::new((x, y), 3, color.filled()))).map_err(|e| anyhow!("{e}"))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Draws wall time of wasmflow and Flink per configuration (bars side by side) into `out`.
pub fn flink_side_by_side(points: &[crate::flink::Point], out: &Path) -> Result<()> {
    register_sans()?;
    let max = points.iter().map(|p| p.wasmflow.wall.max(p.flink.wall)).fold(1.0, f64::max);
    let root = BitMapBackend::new(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let labels: Vec<String> = points.iter().map(|p| format!("N={}M p={}", p.records / 1_000_000, p.parallelism)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("whole-process wall time, same job: wasmflow vs Apache Flink 2.3", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..points.len() as f64, 0.0..max * 1.15)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(points.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 0.01 && i >= 0.0 { labels.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
        })
        .y_desc("seconds")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let ours = Palette99::pick(0).to_rgba();
    let theirs = Palette99::pick(1).to_rgba();
    for (k, (name, color)) in [("wasmflow", ours), ("Flink", theirs)].into_iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let x0 = i as f64 + 0.12 + k as f64 * 0.38;
                let v = if k == 0 { p.wasmflow.wall } else { p.flink.wall };
                Rectangle::new([(x0, 0.0), (x0 + 0.36, v)], color.filled())
            })
            .collect();
        chart.draw_series(bars).map_err(|e| anyhow!("{e}"))?.label(name).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}
