//! Presenting results: the printed table and the JSON document.

use std::fmt::Write as _;

use serde::Serialize;

use crate::ctx::Ctx;
use crate::report::{Figure, Mode, Target};

/// `value unit` with a sensible number of digits.
fn value(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    if unit == "ratio" {
        format!("{v:.3}")
    } else {
        format!("{v:.digits$} {unit}")
    }
}

fn target(t: Option<Target>) -> String {
    match t {
        Some(Target::AtLeast(x)) => format!(">= {x}"),
        Some(Target::AtMost(x)) => format!("<= {x}"),
        None => String::new(),
    }
}

fn verdict(f: &Figure) -> &'static str {
    match f.pass() {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "",
    }
}

/// A figure's columns: case, figure, value, target, verdict, steal %, detail.
fn columns(f: &Figure) -> [String; 7] {
    [
        f.case.clone(),
        f.name.clone(),
        value(f.value, &f.unit),
        target(f.target),
        verdict(f).into(),
        format!("{:.1}", f.steal_pct),
        f.detail.clone(),
    ]
}

/// One figure on one line (progress output).
pub fn line(f: &Figure) -> String {
    let [case, name, value, target, verdict, steal, detail] = columns(f);
    format!("{case} | {name} = {value} {target} {verdict} (steal {steal} %) {detail}")
}

/// The Markdown table of every figure, then the cases that failed to run.
pub fn render(figures: &[Figure], errors: &[(u8, String)]) -> String {
    let mut s = String::from(
        "\n| case | figure | value | target | verdict | steal % | detail |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let _ = writeln!(s, "| {} |", columns(f).join(" | "));
    }
    for (n, e) in errors {
        let _ = writeln!(s, "| {n} | ERROR | | | FAIL | | {e} |");
    }
    s
}

#[derive(Serialize)]
struct Doc<'a> {
    mode: Mode,
    unix_time: u64,
    machine: Machine,
    figures: &'a [Figure],
    errors: Vec<CaseError<'a>>,
}

#[derive(Serialize)]
struct CaseError<'a> {
    case: u8,
    error: &'a str,
}

#[derive(Serialize)]
struct Machine {
    kernel: String,
    cpus: usize,
    cpu_model: String,
}

fn machine() -> Machine {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    Machine {
        kernel,
        cpus,
        cpu_model,
    }
}

/// The JSON document of a run.
pub fn json(ctx: &Ctx, figures: &[Figure], errors: &[(u8, String)]) -> String {
    let doc = Doc {
        mode: ctx.mode,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: machine(),
        figures,
        errors: errors
            .iter()
            .map(|(n, e)| CaseError { case: *n, error: e })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(value: f64, target: Option<Target>) -> Figure {
        Figure {
            case: "2 relay cost".into(),
            name: "1 conn: mpbond / direct".into(),
            value,
            unit: "ratio".into(),
            target,
            runs: vec![value],
            steal_pct: 1.25,
            detail: "x".into(),
        }
    }

    #[test]
    fn table_rows_carry_the_verdict() {
        let t = render(
            &[
                fig(0.9, Some(Target::AtLeast(0.8))),
                fig(0.5, Some(Target::AtLeast(0.8))),
                fig(2.0, None),
            ],
            &[(4, "boom".into())],
        );
        assert!(t.contains("| 0.900 | >= 0.8 | PASS | 1.2 |"), "{t}");
        assert!(t.contains("| 0.500 | >= 0.8 | FAIL |"), "{t}");
        assert!(t.contains("| 2.000 |  |  |"), "{t}");
        assert!(t.contains("| 4 | ERROR | | | FAIL | | boom |"), "{t}");
        assert_eq!(value(f64::NAN, "s/GB"), "n/a");
        assert_eq!(value(12.345, "s/GB"), "12.3 s/GB");
    }
}
