//! The bench's chart (`lienthong bench --chart FILE.png`): records per second of every
//! pipeline, and unary `Publish`'s latency against its goal, side by side in one PNG. Both
//! axes are logarithmic, since the figures span three orders of magnitude (the Python pipeline
//! to one core's Avro encoding); whiskers run from the lowest run to the highest.

use std::path::Path;

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

const WIDTH: u32 = 1500;
const HEIGHT: u32 = 620;
const FONT: &str = "sans-serif";

/// One bar: a figure's median and the spread of its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

/// What the chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    /// Records per second, the first bar drawn at the top.
    pub throughput: Vec<Bar>,
    /// Unary `Publish` latency percentiles, in milliseconds.
    pub latency: Vec<Bar>,
    /// The latency goal, in milliseconds, drawn as a line.
    pub latency_goal_ms: f64,
}

/// Draws `chart` into the PNG file `path`.
pub fn draw(chart: &Chart, path: &Path) -> anyhow::Result<()> {
    // plotters draws text only in fonts registered with it; DejaVu Sans comes with the binary,
    // so the chart does not depend on the machine's fonts.
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow::anyhow!("the chart's font cannot be read"))?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let root = root.titled(&chart.title, (FONT, 22)).map_err(drawing)?;
    let (left, right) = root.split_horizontally(WIDTH * 62 / 100);
    bars(
        &left,
        "records per second (median; whiskers: lowest to highest run)",
        &chart.throughput,
        None,
        &BLUE,
    )?;
    bars(
        &right,
        "unary Publish latency, ms (red: the goal)",
        &chart.latency,
        Some(chart.latency_goal_ms),
        &MAGENTA,
    )?;
    root.present()
        .map_err(drawing)
        .with_context(|| format!("cannot write the chart to {}", path.display()))
}

/// Horizontal bars on a logarithmic axis, with a vertical line at `goal` if given.
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    bars: &[Bar],
    goal: Option<f64>,
    colour: &RGBColor,
) -> anyhow::Result<()> {
    if bars.is_empty() {
        return Ok(());
    }
    let (from, to) = log_range(bars, goal);
    // plotters maps a one-value range to no height at all: a single bar gets an empty row
    // below it.
    let count = bars.len().max(2);
    let label_of = |at: &SegmentValue<usize>| match at {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => count
            .checked_sub(i + 1)
            .and_then(|row| bars.get(row))
            .map_or_else(String::new, |bar| bar.label.clone()),
        SegmentValue::Last => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(label_width(bars))
        // An integer range is inclusive: `0..count - 1` is `count` segments.
        .build_cartesian_2d((from..to).log_scale(), (0..count - 1).into_segmented())
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(count)
        .y_label_formatter(&label_of)
        .x_label_formatter(&|value| figure(*value))
        .label_style((FONT, 13))
        .draw()
        .map_err(drawing)?;
    // Row 0 at the top: segment `count - 1`.
    let at = |row: usize| count - 1 - row;
    chart
        .draw_series(bars.iter().enumerate().map(|(row, bar)| {
            let mut rectangle = Rectangle::new(
                [
                    (from, SegmentValue::Exact(at(row))),
                    (bar.median.max(from), SegmentValue::Exact(at(row) + 1)),
                ],
                colour.mix(0.6).filled(),
            );
            rectangle.set_margin(5, 5, 0, 0);
            rectangle
        }))
        .map_err(drawing)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(row, bar)| {
            PathElement::new(
                [
                    (bar.low.max(from), SegmentValue::CenterOf(at(row))),
                    (bar.high.max(from), SegmentValue::CenterOf(at(row))),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(drawing)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(row, bar)| {
            Text::new(
                format!("  {}", figure(bar.median)),
                (bar.high.max(bar.median), SegmentValue::CenterOf(at(row))),
                (FONT, 13).into_font().color(&BLACK),
            )
        }))
        .map_err(drawing)?;
    if let Some(goal) = goal {
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(goal, SegmentValue::Exact(0)), (goal, SegmentValue::Last)],
                RED.stroke_width(2),
            )))
            .map_err(drawing)?;
    }
    Ok(())
}

/// Whole powers of ten around every figure (and the goal), with room on the right for the
/// figures written after the bars.
fn log_range(bars: &[Bar], goal: Option<f64>) -> (f64, f64) {
    let values = bars
        .iter()
        .flat_map(|bar| [bar.low, bar.median, bar.high])
        .chain(goal)
        .filter(|value| value.is_finite() && *value > 0.0);
    let (lowest, highest) = values.fold((f64::INFINITY, 0.0_f64), |(low, high), value| {
        (low.min(value), high.max(value))
    });
    if highest == 0.0 {
        return (0.1, 10.0);
    }
    let from = 10_f64.powf(lowest.log10().floor());
    let to = 10_f64.powf((highest * 5.0).log10().ceil());
    (from, to)
}

/// Room for the longest label, at about 7 pixels a character.
fn label_width(bars: &[Bar]) -> u32 {
    let longest = bars.iter().map(|bar| bar.label.chars().count()).max();
    u32::try_from(longest.unwrap_or(0) * 7 + 16).unwrap_or(400)
}

/// A figure as people read them: no decimals from 100 up, thousands as "k", millions as "M".
fn figure(value: f64) -> String {
    if value >= 1_000_000.0 {
        let millions = format!("{:.1}", value / 1_000_000.0);
        format!("{}M", millions.trim_end_matches(".0"))
    } else if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn drawing<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, median: f64) -> Bar {
        Bar {
            label: label.to_owned(),
            median,
            low: median * 0.9,
            high: median * 1.1,
        }
    }

    #[test]
    fn the_axis_spans_whole_powers_of_ten_with_room_for_the_figures() {
        let (from, to) = log_range(&[bar("a", 1_080.0), bar("b", 825_000.0)], None);
        assert_eq!((from, to), (100.0, 10_000_000.0));
        let (from, to) = log_range(&[bar("p99", 1_500.0)], Some(20.0));
        assert_eq!((from, to), (10.0, 10_000.0));
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(figure(182_400.0), "182k");
        assert_eq!(figure(10_000_000.0), "10M");
        assert_eq!(figure(1_500_000.0), "1.5M");
        assert_eq!(figure(1_080.4), "1080");
        assert_eq!(figure(19.04), "19.0");
        assert_eq!(figure(0.456), "0.46");
    }

    #[test]
    fn a_chart_is_written_as_a_png() {
        let file = std::env::temp_dir().join(format!("lienthong-chart-{}.png", std::process::id()));
        let chart = Chart {
            title: "bench".to_owned(),
            throughput: vec![
                bar("validate + encode", 182_000.0),
                bar("PublishBatch", 12_600.0),
                bar("Python", 1_080.0),
            ],
            // One bar alone, which plotters would draw with no height.
            latency: vec![bar("p99", 66.0)],
            latency_goal_ms: 20.0,
        };
        draw(&chart, &file).expect("drawn");
        let written = std::fs::read(&file).expect("written");
        let _ = std::fs::remove_file(&file);
        assert_eq!(&written[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
        assert!(written.len() > 10_000, "more than a blank image");
    }
}
