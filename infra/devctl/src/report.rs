//! `devctl bench-report`: `BENCHMARKS.md` from the outputs `make bench` kept, one per
//! benchmark, with SVG charts drawn from their tables.
//!
//! A benchmark's output is its conditions (plain lines) and markdown tables. The report keeps
//! both as printed, and draws, for every table whose rows are measured at several numbers of
//! callers (a `callers`, `clients` or `connections` column), calls/s and p99 against callers
//! for each path of the table (each `…/s` column and the `p99` after it), one chart per value
//! of the table's first column. The RFM benchmark's runs become one chart of seconds against
//! population size.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// The benchmarks in the order the report shows them: (file stem, title).
pub const SECTIONS: [(&str, &str); 6] = [
    ("server", "Container server: gRPC and HTTP, cached and uncached reads"),
    ("credit", "Credit reservations: in process, as deployed, and the SQL floor"),
    ("search", "Search"),
    ("events", "Inbound events"),
    ("rfm", "Nightly RFM run against population size"),
    ("coldstart", "Cold start and footprint of the Lambda binaries"),
];

/// A markdown table as printed.
#[derive(Debug, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The markdown tables of `text`: runs of lines that start with `|`, the second being the
/// `|---|` separator.
pub fn tables(text: &str) -> Vec<Table> {
    let cells = |line: &str| line.trim().trim_matches('|').split('|').map(|cell| cell.trim().to_string()).collect();
    let mut found = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i + 1 < lines.len() {
        if lines[i].trim_start().starts_with('|') && lines[i + 1].trim_start().starts_with("|---") {
            let header = cells(lines[i]);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                rows.push(cells(lines[i]));
                i += 1;
            }
            found.push(Table { header, rows });
        } else {
            i += 1;
        }
    }
    found
}

/// The leading number of a cell: `2,583` → 2583, `4.2 ms` → 4.2, `81%` → 81.
pub fn number(cell: &str) -> Option<f64> {
    let digits: String = cell
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',' || *c == '-')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// One line of a chart.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart's data: its title and its series, by callers.
#[derive(Debug)]
pub struct CallersChart {
    pub title: String,
    pub rates: Vec<Series>,
    pub p99s: Vec<Series>,
}

/// The charts of one table measured at several numbers of callers; none for other tables.
pub fn callers_charts(table: &Table) -> Vec<CallersChart> {
    let Some(x) = table.header.iter().position(|h| matches!(h.as_str(), "callers" | "clients" | "connections")) else {
        return Vec::new();
    };
    let rate_columns: Vec<usize> = (0..table.header.len()).filter(|&c| table.header[c].ends_with("/s")).collect();
    let p99_after = |column: usize| {
        (column + 1..table.header.len()).take_while(|&c| !rate_columns.contains(&c)).find(|&c| table.header[c] == "p99")
    };
    let mut charts: Vec<CallersChart> = Vec::new();
    for row in &table.rows {
        let group = if x == 0 { String::new() } else { row[0].clone() };
        let Some(callers) = row.get(x).and_then(|cell| number(cell)) else { continue };
        let chart = match charts.iter_mut().position(|chart| chart.title == group) {
            Some(found) => &mut charts[found],
            None => {
                charts.push(CallersChart { title: group.clone(), rates: Vec::new(), p99s: Vec::new() });
                charts.last_mut().expect("just pushed")
            }
        };
        for &column in &rate_columns {
            let name = table.header[column].trim_end_matches("/s").to_string();
            if let Some(rate) = row.get(column).and_then(|cell| number(cell)) {
                push_point(&mut chart.rates, &name, (callers, rate));
            }
            if let Some(p99) = p99_after(column).and_then(|c| row.get(c)).and_then(|cell| number(cell)) {
                push_point(&mut chart.p99s, &name, (callers, p99));
            }
        }
    }
    charts
}

fn push_point(series: &mut Vec<Series>, name: &str, point: (f64, f64)) {
    match series.iter_mut().find(|s| s.name == name) {
        Some(found) => found.points.push(point),
        None => series.push(Series { name: name.to_string(), points: vec![point] }),
    }
}

/// Seconds against customers from the RFM benchmark's tables (`| customers | organizations |
/// … | run | seconds | plain aggregation s | …`): one series per kind of run and number of
/// organizations, and the plain aggregation of the first runs.
pub fn rfm_series(tables: &[Table]) -> Vec<Series> {
    let mut series = Vec::new();
    for table in tables {
        let column = |name: &str| table.header.iter().position(|h| h == name);
        let (Some(customers), Some(run), Some(seconds)) = (column("customers"), column("run"), column("seconds"))
        else {
            continue;
        };
        for row in &table.rows {
            let Some(x) = number(&row[customers]) else { continue };
            let organizations = column("organizations").map_or("1", |c| row[c].as_str());
            let suffix = if organizations == "1" { String::new() } else { format!(" ({organizations} organizations)") };
            if row[run].contains("check") {
                continue;
            }
            if let Some(y) = number(&row[seconds]) {
                push_point(&mut series, &format!("{}{suffix}", row[run]), (x, y));
            }
            let plain = column("plain aggregation s").and_then(|c| number(&row[c]));
            if let (Some(y), true) = (plain, row[run] == "first run") {
                push_point(&mut series, &format!("plain aggregation{suffix}"), (x, y));
            }
        }
    }
    series
}

/// A plotters error (which is not `std::error::Error` for every backend) as an `anyhow` error.
fn drawing<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {error:?}")
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws `series` on a log-scale x axis into `area`.
fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let points = series.iter().flat_map(|s| s.points.iter());
    let (x_max, y_max) = points.fold((1.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let x_min = series.iter().flat_map(|s| s.points.iter()).map(|p| p.0).fold(x_max, f64::min).max(1e-9);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), 0.0..y_max * 1.1 + f64::EPSILON)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if y_max >= 100.0 { format!("{y:.0}") } else { format!("{y:.1}") })
        .draw()
        .map_err(drawing)?;
    for (index, line) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let mut points = line.points.clone();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(drawing)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// Calls/s and p99 against callers, side by side, as an SVG at `path`.
fn draw_callers_chart(path: &Path, title: &str, chart: &CallersChart) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let (left, right) = root.split_horizontally(480);
    draw_lines(&left, &format!("{title}: calls/s"), ("concurrent callers", "calls/s"), &chart.rates)?;
    draw_lines(&right, &format!("{title}: p99"), ("concurrent callers", "p99 (ms)"), &chart.p99s)?;
    root.present().map_err(drawing)?;
    Ok(())
}

/// The RFM runs' seconds against customers, as an SVG at `path`.
fn draw_rfm_chart(path: &Path, series: &[Series]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    draw_lines(&root, "RFM run: seconds against customers", ("customers", "seconds"), series)?;
    root.present().map_err(drawing)?;
    Ok(())
}

/// `make bench`'s machine, date and commit.
pub struct Provenance {
    pub date: String,
    pub commit: String,
    pub machine: String,
}

/// Writes `out` (the report) and its charts under `charts` (a directory beside it) from the
/// `<name>.txt` outputs in `results`.
pub fn write(results: &Path, out: &Path, charts: &Path, provenance: &Provenance) -> anyhow::Result<()> {
    std::fs::create_dir_all(charts).with_context(|| format!("creating {}", charts.display()))?;
    let base = out.parent().unwrap_or(Path::new("."));
    let link = |path: &Path| path.strip_prefix(base).unwrap_or(path).display().to_string();
    let mut report = String::new();
    writeln!(report, "# Benchmarks\n")?;
    writeln!(
        report,
        "Written by `make bench` on {} at commit {}, on {}. Each figure stands next to its floor \
         measured in the same run (the same SQL run directly, or the same work without the part \
         measured), with the ratio; every benchmark also runs alone (`make bench-NAME`) and prints \
         its conditions first, as below. Absolute numbers depend on the machine and on what else \
         it was doing; the ratios are the figures to compare.\n",
        provenance.date, provenance.commit, provenance.machine
    )?;
    for (name, title) in SECTIONS {
        let file = results.join(format!("{name}.txt"));
        writeln!(report, "## {title}\n")?;
        let Ok(text) = std::fs::read_to_string(&file) else {
            writeln!(report, "Not run: no `{}`.\n", file.display())?;
            continue;
        };
        write_output(&mut report, &text)?;
        let found = tables(&text);
        let mut drawn = Vec::new();
        for (index, table) in found.iter().enumerate() {
            for chart in callers_charts(table) {
                let title = if chart.title.is_empty() { format!("{name} {}", index + 1) } else { chart.title.clone() };
                let path = charts.join(format!("{name}-{}.svg", slug(&title)));
                draw_callers_chart(&path, &title, &chart)?;
                drawn.push((title, path));
            }
        }
        if name == "rfm" {
            let series = rfm_series(&found);
            if !series.is_empty() {
                let path = charts.join("rfm-population.svg");
                draw_rfm_chart(&path, &series)?;
                drawn.push(("RFM run time against population".into(), path));
            }
        }
        for (title, path) in drawn {
            writeln!(report, "![{title}]({})\n", link(&path))?;
        }
    }
    std::fs::write(out, report).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Conditions and notes as one code block per run of plain lines; tables as they are.
fn write_output(report: &mut String, text: &str) -> std::fmt::Result {
    let mut plain: Vec<&str> = Vec::new();
    let flush = |report: &mut String, plain: &mut Vec<&str>| -> std::fmt::Result {
        while plain.last().is_some_and(|line| line.trim().is_empty()) {
            plain.pop();
        }
        let first = plain.iter().position(|line| !line.trim().is_empty());
        if let Some(first) = first {
            writeln!(report, "```\n{}\n```\n", plain[first..].join("\n"))?;
        }
        plain.clear();
        Ok(())
    };
    let mut in_table = false;
    for line in text.lines() {
        let table_line = line.trim_start().starts_with('|');
        if table_line && !in_table {
            flush(report, &mut plain)?;
        }
        if table_line {
            writeln!(report, "{}", line.trim())?;
        } else {
            if in_table {
                writeln!(report)?;
            }
            plain.push(line);
        }
        in_table = table_line;
    }
    if in_table {
        writeln!(report)?;
    }
    flush(report, &mut plain)
}

fn slug(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "conditions:\n  cpus: 2\n\n\
        | workload | callers | server/s | p50 | p99 | CPU | direct/s | p50 | p99 | CPU | server / direct |\n\
        |---|---|---|---|---|---|---|---|---|---|---|\n\
        | gRPC GetCustomer | 1 | 1,200 | 0.8 ms | 1.5 ms | 90 µs | 2,000 | 0.5 ms | 0.9 ms | 40 µs | 60% |\n\
        | gRPC GetCustomer | 8 | 5,000 | 1.5 ms | 4.2 ms | 90 µs | 6,000 | 1.2 ms | 3.0 ms | 40 µs | 83% |\n";

    #[test]
    fn a_table_measured_at_several_callers_gives_rates_and_p99s_per_path() {
        let found = tables(SERVER);
        assert_eq!(found.len(), 1);
        let charts = callers_charts(&found[0]);
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].title, "gRPC GetCustomer");
        let names: Vec<&str> = charts[0].rates.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["server", "direct"]);
        assert_eq!(charts[0].rates[0].points, [(1.0, 1200.0), (8.0, 5000.0)]);
        assert_eq!(charts[0].p99s[1].points, [(1.0, 0.9), (8.0, 3.0)]);
    }

    #[test]
    fn the_report_keeps_the_conditions_and_tables_and_links_its_charts() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", uuid::Uuid::new_v4().simple()));
        let results = dir.join("results");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("server.txt"), SERVER).unwrap();
        std::fs::write(
            results.join("rfm.txt"),
            "| customers | organizations | run | seconds | plain aggregation s |\n|---|---|---|---|---|\n\
             | 100000 | 1 | first run | 2.0 | 1.0 |\n| 1000000 | 1 | first run | 20.0 | 10.0 |\n\
             | 1000000 | 100 | steady night | 3.0 | 10.0 |\n",
        )
        .unwrap();
        let provenance = Provenance { date: "2026-12-02".into(), commit: "abc1234".into(), machine: "2 cpus".into() };
        write(&results, &dir.join("BENCHMARKS.md"), &dir.join("charts"), &provenance).unwrap();
        let report = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
        assert!(report.contains("at commit abc1234"));
        assert!(report.contains("```\nconditions:\n  cpus: 2\n```"));
        assert!(report.contains("| gRPC GetCustomer | 8 | 5,000 |"));
        assert!(report.contains("](charts/server-grpc-getcustomer.svg)"));
        assert!(report.contains("](charts/rfm-population.svg)"));
        assert!(report.contains("Not run: no"), "a benchmark without output says so");
        let rfm = rfm_series(&tables(&std::fs::read_to_string(results.join("rfm.txt")).unwrap()));
        let names: Vec<&str> = rfm.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first run", "plain aggregation", "steady night (100 organizations)"]);
        assert_eq!(rfm[0].points, [(100000.0, 2.0), (1000000.0, 20.0)]);
        let svg = std::fs::read_to_string(dir.join("charts/server-grpc-getcustomer.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("calls/s"));
        std::fs::remove_dir_all(dir).ok();
    }
}
