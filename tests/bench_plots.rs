//! `bench-plots DATA OUT`: the SVG plots of `docs/benchmarks.md`, from
//! the TSV files the benchmarks write under `BENCH_DATA` (`make bench`).
//! Each plot's title names its method, whether the program was attached,
//! the machine and the date (`BENCH_MACHINE`, `BENCH_DATE`). A missing
//! data file skips its plot. Text is SVG text: no font is read.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use plotters::prelude::*;

/// A TSV file's rows after its header, split on tabs.
fn rows(data: &Path, name: &str) -> Option<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(data.join(name)).ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect(),
    )
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

const COLORS: [RGBColor; 5] = [
    RGBColor(0x4c, 0x72, 0xb0),
    RGBColor(0xdd, 0x84, 0x52),
    RGBColor(0x55, 0xa8, 0x68),
    RGBColor(0xc4, 0x4e, 0x52),
    RGBColor(0x81, 0x72, 0xb3),
];

/// Grouped bars: one group per category, one bar per series.
fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(&str, Vec<f64>)],
) -> Result<()> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        * 1.15;
    let n = categories.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(90)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..top.max(1e-9))?;
    let cats = categories.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&move |x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < cats.len() {
                cats[i].clone()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 11))
        .y_desc(y_label)
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (k, (name, values)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let x0 = i as f64 + 0.1 + k as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *v)], color.filled())
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Lines with points; `log` sets logarithmic axes (both); the legend
/// goes where `legend` says.
fn lines(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    (log, legend): (bool, SeriesLabelPosition),
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let pts = series.iter().flat_map(|(_, v)| v.iter().copied());
    let (x_max, y_max) = pts
        .clone()
        .fold((0.0f64, 0.0f64), |(a, b), (x, y)| (a.max(x), b.max(y)));
    let (x_min, y_min) = pts.fold((f64::INFINITY, f64::INFINITY), |(a, b), (x, y)| {
        (a.min(x), b.min(y))
    });
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()?;
            for (k, (name, values)) in series.iter().enumerate() {
                let color = COLORS[k % COLORS.len()];
                let dashed = name.starts_with("ideal");
                let style = if dashed {
                    color.stroke_width(1)
                } else {
                    color.stroke_width(2)
                };
                chart
                    .draw_series(LineSeries::new(values.iter().copied(), style))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
                if !dashed {
                    chart.draw_series(
                        values
                            .iter()
                            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                    )?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(legend.clone())
                .draw()?;
        }};
    }
    if log {
        finish!(builder.build_cartesian_2d(
            (x_min * 0.8..x_max * 1.25).log_scale(),
            (y_min * 0.5..y_max * 2.0).log_scale()
        )?);
    } else {
        finish!(builder.build_cartesian_2d(0f64..x_max * 1.05, 0f64..y_max * 1.25)?);
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(data), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bench-plots DATA_DIR OUT_DIR");
    };
    let (data, out) = (PathBuf::from(data), PathBuf::from(out));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let machine = std::env::var("BENCH_MACHINE").unwrap_or_else(|_| "this machine".into());
    let date = std::env::var("BENCH_DATE").unwrap_or_default();
    let tag = format!("{machine}, {date}");

    if let Some(r) = rows(&data, "director.tsv") {
        let cats: Vec<String> = r
            .iter()
            .map(|x| {
                x[0].split(" (")
                    .next()
                    .unwrap_or(&x[0])
                    .replace("matched ", "")
            })
            .collect();
        let col = |i: usize| r.iter().map(|x| num(&x[i])).collect::<Vec<_>>();
        bars(
            &out.join("cost.svg"),
            &format!("Cost per packet, ns (BPF_PROG_TEST_RUN, detached) - {tag}"),
            "ns per packet (floor; others above the floor)",
            &cats,
            &[
                ("floor (XDP_TX)", col(2)),
                ("minimal encap above floor", col(3)),
                ("SipHash 16 B above floor", col(4)),
                ("director above floor", col(5)),
            ],
        )?;
    }
    if let Some(r) = rows(&data, "throughput.tsv") {
        let cats: Vec<String> = r.iter().map(|x| format!("{} {}", x[0], x[1])).collect();
        bars(
            &out.join("throughput.svg"),
            &format!("Throughput, Mpps (attached, native XDP on veth) - {tag}"),
            "Mpps",
            &cats,
            &[
                ("out per core", r.iter().map(|x| num(&x[4])).collect()),
                ("out", r.iter().map(|x| num(&x[3])).collect()),
                ("offered", r.iter().map(|x| num(&x[2])).collect()),
            ],
        )?;
    }
    if let Some(r) = rows(&data, "scale.tsv") {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for x in &r {
            let name = format!("{} table(s)", x[1]);
            let point = (num(&x[0]), num(&x[3]));
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(point),
                None => series.push((name, vec![point])),
            }
        }
        let series: Vec<(&str, Vec<(f64, f64)>)> = series
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone()))
            .collect();
        lines(
            &out.join("scale.svg"),
            &format!(
                "Director above floor by VIPs and tables, ns (BPF_PROG_TEST_RUN, detached) - {tag}"
            ),
            ("VIPs", "ns per packet above the floor"),
            (false, SeriesLabelPosition::LowerRight),
            &series,
        )?;
    }
    if let Some(r) = rows(&data, "table.tsv") {
        let v4: Vec<&Vec<String>> = r.iter().filter(|x| x[1] == "IPv4").collect();
        let col =
            |i: usize| -> Vec<(f64, f64)> { v4.iter().map(|x| (num(&x[0]), num(&x[i]))).collect() };
        lines(
            &out.join("table.svg"),
            &format!("Table build and update, ms (65,536 rows x 1 + 2 hops, user space) - {tag}"),
            ("backends", "ms (median)"),
            (true, SeriesLabelPosition::UpperLeft),
            &[
                ("full build", col(2)),
                ("drain one", col(3)),
                ("one unhealthy", col(4)),
                ("add one", col(5)),
                ("remove one", col(6)),
            ],
        )?;
    }
    if let Some(r) = rows(&data, "moved.tsv") {
        let col = |i: usize| -> Vec<(f64, f64)> {
            r.iter().map(|x| (num(&x[0]), num(&x[i]) * 100.0)).collect()
        };
        lines(
            &out.join("moved.svg"),
            &format!("Rows moved per change, % of rows (table builder, user space) - {tag}"),
            ("backends N", "% of rows whose primary changes"),
            (true, SeriesLabelPosition::UpperRight),
            &[
                ("add one: measured", col(1)),
                ("remove one: measured", col(3)),
                ("ideal 1/(N+1) and 1/N", col(2)),
            ],
        )?;
    }
    if let Some(r) = rows(&data, "e2e.tsv") {
        let cats: Vec<String> = r.iter().map(|x| x[0].clone()).collect();
        bars(
            &out.join("e2e.svg"),
            &format!("HTTP latency, µs (nginx + wrk in the namespace lab, attached) - {tag}"),
            "µs",
            &cats,
            &[
                ("p50", r.iter().map(|x| num(&x[2])).collect()),
                ("p99", r.iter().map(|x| num(&x[3])).collect()),
            ],
        )?;
    }
    Ok(())
}
