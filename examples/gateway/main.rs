//! The full hoop gateway.
//!
//! ```text
//! cargo run -p hoop-examples --example gateway                      # defaults, no config
//! cargo run -p hoop-examples --example gateway -- --config gw.toml  # your configuration
//! cargo run -p hoop-examples --example gateway -- --config gw.toml --check
//! ```
//!
//! Without a configuration it creates `./hoop-data` (or `$HOOP_DATA`) with a development
//! CA and gateway certificate, a demo user token and an admin token (each printed once;
//! only hashes are stored), and serves PostgreSQL on 127.0.0.1:15432 and the admin API
//! on https://127.0.0.1:8443. You will see the paths, the tokens and the psql and curl
//! lines to try. A bad configuration prints one `config error: <key>: <what>` line and
//! exits with code 2. SIGTERM / Ctrl-C drain the sessions; SIGHUP reloads certificates,
//! tokens, policy, masking rules and the resources behind each listener (new sessions get
//! them; running sessions keep what they started with). Logs go to stderr (`RUST_LOG=debug`
//! for more), as text or, with `--log-format json` (or `HOOP_LOG_FORMAT=json`), one JSON
//! object per line carrying the session's fields.
//!
//! `[runtime] threads` picks the runtime: 0 (default) one worker per CPU, 1 a single
//! event loop (tokio current-thread), N a multi-thread runtime with N workers.

use std::path::PathBuf;
use std::process::ExitCode;

use hoop_examples::gateway::{self, Config, config};

const USAGE: &str = "usage: gateway [--config FILE] [--check] [--log-format text|json]";

/// mimalloc: hyper, rustls and the relays allocate per request; glibc's allocator cost
/// about 5% of the gateway's CPU per small HTTP request in `benches/http.sh`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): text (coloured only on a
/// terminal) or one JSON object per line, with the fields of the session's span (session
/// id, peer, listener, protocol, user, resource) in `span`.
fn init_logs(json: bool) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn main() -> ExitCode {
    let mut path: Option<PathBuf> = None;
    let mut check = false;
    let mut json = std::env::var("HOOP_LOG_FORMAT").is_ok_and(|f| f == "json");
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--config" | "-c") => match args.next() {
                Some(p) => path = Some(PathBuf::from(p)),
                None => {
                    eprintln!("--config needs a file\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            Some("--check") => check = true,
            Some("--log-format") => match args.next().as_deref().and_then(|f| f.to_str()) {
                Some("json") => json = true,
                Some("text") => json = false,
                _ => {
                    eprintln!("--log-format needs text or json\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("unknown argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    init_logs(json);
    let config = match &path {
        Some(p) => match config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    // The configuration is read first: `[runtime] threads` chooses the runtime.
    let rt = match config.runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(gateway::run(config, std::future::pending())) {
        // Logged, not printed: in JSON mode every line of stderr is a JSON object.
        Ok(report) => {
            tracing::info!(
                drained = report.drained,
                cancelled = report.cancelled,
                "stopped: {} session(s) drained, {} cancelled",
                report.drained,
                report.cancelled
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                tracing::error!("{e}");
            } else {
                eprintln!("{e}");
            }
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
