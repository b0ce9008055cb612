//! `limactl yq` and a `yq` multi-call name (upstream's `cmd/yq`: a program whose name up to
//! the first `.` is `yq`, such as `yq.lima`, runs as yq): yq's common command line over our
//! one evaluator (`limayq`). `[eval|e] EXPR [FILE...]`, stdin when no file; `-i` edits files
//! in place keeping comments; `-o json|yaml`; `-r` prints strings raw. Not in `limactl help`,
//! as upstream (it is intercepted before the command tree).

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use clap::Parser;
use limayq::Format;

#[derive(Parser)]
#[command(name = "yq", about = "yq (Lima's built-in subset, on jaq)", version = limayq_version())]
struct YqArgs {
    /// Update the file in place.
    #[arg(short = 'i', long = "inplace")]
    inplace: bool,
    /// Output format: yaml (y) or json (j).
    #[arg(short = 'o', long = "output-format", default_value = "yaml")]
    output: String,
    /// Print strings without quotes (yq's default for YAML output).
    #[arg(short = 'r', long = "unwrapScalar", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    raw: Option<bool>,
    /// Pretty print (accepted for compatibility; output is always block style).
    #[arg(short = 'P', long = "prettyPrint")]
    _pretty: bool,
    /// `[eval|e] EXPR [FILE...]` (an expression starting with `-` goes after `--`).
    args: Vec<String>,
}

fn limayq_version() -> &'static str {
    concat!(env!("CARGO_PKG_VERSION"), " (Lima's yq subset)")
}

/// The arguments after `yq`, when this process runs as yq: its program name up to the first
/// `.` is `yq`, or its first argument is `yq`.
pub fn yq_args(argv: &[String]) -> Option<Vec<String>> {
    let prog = std::path::Path::new(argv.first()?)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    if prog.split('.').next() == Some("yq") {
        return Some(argv.to_vec());
    }
    (argv.get(1).map(String::as_str) == Some("yq")).then(|| argv[1..].to_vec())
}

/// Runs as yq; returns the exit code.
pub fn main(argv: Vec<String>) -> i32 {
    let args = YqArgs::parse_from(argv);
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn run(args: YqArgs) -> Result<()> {
    let format = match args.output.as_str() {
        "yaml" | "y" => Format::Yaml,
        "json" | "j" => Format::Json,
        other => bail!("unsupported output format {other:?} (yaml or json)"),
    };
    let mut rest = args.args.as_slice();
    if matches!(rest.first().map(String::as_str), Some("eval" | "e")) {
        rest = &rest[1..];
    }
    let (expr, files) = match rest.split_first() {
        Some((e, f)) => (e.as_str(), f),
        None => (".", rest),
    };
    // yq unwraps scalars unless asked not to; in JSON output only with -r.
    let raw = args.raw.unwrap_or(format == Format::Yaml);
    if args.inplace {
        if files.is_empty() {
            bail!("write in place flag only applicable when giving an expression and at least one file");
        }
        for f in files {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
            let out = limayq::edit_yaml(&text, expr).with_context(|| f.clone())?;
            if out != text {
                std::fs::write(f, out).with_context(|| format!("writing {f}"))?;
            }
        }
        return Ok(());
    }
    let mut texts = vec![];
    if files.is_empty() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        texts.push(("-".to_string(), s));
    }
    for f in files {
        let text = if f == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading stdin")?;
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?
        };
        texts.push((f.clone(), text));
    }
    let mut out = std::io::stdout().lock();
    for (name, text) in texts {
        let doc = limayq::parse_yaml(&text).with_context(|| name.clone())?;
        let results = limayq::eval(expr, &doc)?;
        // One document out of a YAML document: printed with the input's comments, as yq.
        if let (Format::Yaml, [v]) = (format, results.as_slice()) {
            if v.is_object() && doc.is_object() {
                out.write_all(limayq::edit_yaml(&text, expr)?.as_bytes())?;
                continue;
            }
        }
        for v in results {
            out.write_all(limayq::render(&v, format, raw)?.as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::yq_args;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn runs_as_yq_by_name_or_first_argument() {
        assert_eq!(
            yq_args(&v(&["/bin/yq.lima", ".a"])),
            Some(v(&["/bin/yq.lima", ".a"]))
        );
        assert_eq!(yq_args(&v(&["yq", ".a"])), Some(v(&["yq", ".a"])));
        assert_eq!(
            yq_args(&v(&["limactl", "yq", ".a"])),
            Some(v(&["yq", ".a"]))
        );
        assert_eq!(yq_args(&v(&["limactl", "list"])), None);
        assert_eq!(yq_args(&v(&["yqx", ".a"])), None);
    }
}
