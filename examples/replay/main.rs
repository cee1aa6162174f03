//! Shows what hoop recorded.
//!
//! ```text
//! cargo run -p hoop-examples --example replay -- hoop-data/recordings/<session>.jsonl
//! cargo run -p hoop-examples --example replay -- --verify hoop-data/recordings/<session>.jsonl
//! cargo run -p hoop-examples --example replay -- [--speed 2] [--max-idle 2] session.cast
//! ```
//!
//! A JSONL database recording prints as a transcript: the session's user, resource and
//! client, then one line per statement (time, user, decision, class, text), its result
//! (rows, masked values, duration, error), approvals and the end. `--verify` checks the
//! hash chain and prints `OK: ...` (exit 0) or `BROKEN: <file>: line N: ...` (exit 1).
//! An asciicast v2 terminal recording is played with its timing (`--speed` divides the
//! pauses; `--max-idle` caps them, seconds).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hoop_examples::replay::{self, Kind};

const USAGE: &str = "usage: replay [--verify] [--speed X] [--max-idle SECS] FILE";

fn main() -> ExitCode {
    let mut verify = false;
    let mut speed = 1.0_f64;
    let mut max_idle = 2.0_f64;
    let mut file: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--verify") => verify = true,
            Some(flag @ ("--speed" | "--max-idle")) => {
                let Some(v) = args
                    .next()
                    .and_then(|v| v.to_str().and_then(|s| s.parse::<f64>().ok()))
                else {
                    eprintln!("{flag} needs a number\n{USAGE}");
                    return ExitCode::from(2);
                };
                if !(v.is_finite() && v > 0.0) {
                    eprintln!("{flag} must be positive\n{USAGE}");
                    return ExitCode::from(2);
                }
                if flag == "--speed" {
                    speed = v;
                } else {
                    max_idle = v;
                }
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if file.is_none() => file = Some(PathBuf::from(a)),
            _ => {
                eprintln!("unexpected argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(file) = file else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if verify {
        return match replay::verify(&file) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(msg) => {
                println!("{msg}");
                ExitCode::from(1)
            }
        };
    }
    let open = || std::fs::File::open(&file).map(std::io::BufReader::new);
    let result = (|| {
        let mut first = String::new();
        open()?.read_line(&mut first)?;
        match replay::detect(first.trim_end())? {
            Kind::Jsonl => {
                print!("{}", replay::transcript(open()?)?);
                Ok(())
            }
            Kind::Asciicast => replay::play(
                open()?,
                &mut std::io::stdout().lock(),
                speed,
                Duration::from_secs_f64(max_idle),
            ),
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err::<(), replay::ReplayError>(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
