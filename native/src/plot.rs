//! Plots (plotters): the sweep's score against the trainable share, as SVG and PNG, with the
//! DejaVu Sans font embedded (no system fonts needed).

use crate::fs::write_file_atomic;
use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (900, 560);

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the `dejavu` crate.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    points: &[(String, f64, f64)],
    zero_shot: Option<f64>,
    metric: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("plot: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let lo = points
        .iter()
        .map(|p| p.1)
        .filter(|&x| x > 0.0)
        .fold(100.0f64, f64::min)
        / 2.0;
    let y_max = points
        .iter()
        .map(|p| p.2)
        .chain(zero_shot)
        .fold(0.0f64, f64::max);
    let y_top = if y_max <= 1.0 { 1.0 } else { y_max * 1.1 };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{metric} vs trainable parameters"),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((lo.max(1e-5)..200.0f64).log_scale(), 0.0..y_top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("trainable parameters, % of the model (log scale)")
        .y_desc(metric)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .x_label_formatter(&|x| {
            if *x >= 1.0 {
                format!("{x:.0}")
            } else {
                format!("{x}")
            }
        })
        .draw()
        .map_err(err)?;
    if let Some(z) = zero_shot {
        chart
            .draw_series(LineSeries::new(
                [(lo.max(1e-5), z), (200.0, z)],
                ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("zero-shot {z:.3}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(150, 150, 150)));
    }
    chart
        .draw_series(points.iter().map(|(name, x, y)| {
            let color = if name.to_lowercase().contains("layernorm") || name.contains("LN") {
                RGBColor(200, 40, 40)
            } else {
                RGBColor(30, 90, 180)
            };
            EmptyElement::at((x.max(lo.max(1e-5)), *y))
                + Circle::new((0, 0), 5, color.filled())
                + Text::new(name.clone(), (7, -14), ("sans-serif", 14))
        }))
        .map_err(err)?;
    if zero_shot.is_some() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `results.svg` and `results.png` in `out`: one labelled point per method at (trainable
/// %, score), the zero-shot score as a grey line.
pub fn score_vs_trainable(
    out: &Path,
    points: &[(String, f64, f64)],
    zero_shot: Option<f64>,
    metric: &str,
) -> anyhow::Result<()> {
    register_font();
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        points,
        zero_shot,
        metric,
    )?;
    write_file_atomic(&out.join("results.svg"), svg.as_bytes())?;
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
        points,
        zero_shot,
        metric,
    )?;
    let img = image::RgbImage::from_raw(SIZE.0, SIZE.1, rgb)
        .ok_or_else(|| anyhow::anyhow!("plot: buffer size"))?;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    write_file_atomic(&out.join("results.png"), &png)?;
    Ok(())
}
