//! `pg_gateway`: a hoop PostgreSQL gateway configured from the command line, for the
//! end-to-end benchmark `benches/pgbench.sh`.
//!
//! ```text
//! pg_gateway --listen 127.0.0.1:6433 --cert gw.crt --key gw.key \
//!     --target 127.0.0.1:5432 --target-ca ca.crt --target-name localhost \
//!     --database bench --user bench --password-env BENCH_PW \
//!     --token-hash-file tokens.txt --recordings /tmp/rec --masking nomatch
//! ```
//!
//! Clients connect with TLS (ALPN `postgresql` or the `SSLRequest` upgrade) and a token
//! as the password; the gateway logs in to the target over verified TLS with the
//! injected credentials. Policy: connect, read and write are allowed, anything else is
//! denied. Prints `ready` on stdout once listening; stops on Ctrl-C or SIGTERM.
//! `--threads N` sets the runtime's worker threads (default: one per CPU); `--threads 1`
//! runs a current-thread runtime (one event loop, as pgbouncer does).
//! `--no-recording` (diagnostics only) leaves sessions unrecorded, to measure what the
//! recorder costs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hoop_core::approval::{GateConfig, InMemoryGate};
use hoop_core::auth::StaticTokenAuthenticator;
use hoop_core::masking::{NoMasking, RuleMasker, Strategy};
use hoop_core::policy::{ActionMatch, Rule, RulePolicy};
use hoop_core::recording::JsonlRecorder;
use hoop_core::sequence::UpstreamSecurity;
use hoop_core::server::{ListenerConfig, Server};
use hoop_core::tls::{ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_core::{ActionClass, Masker, Resource, Services};
use hoop_postgres::{PostgresAdapter, PostgresOptions, PostgresTarget, Secret};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: pg_gateway --listen ADDR --cert F --key F --target ADDR \
--target-ca F --target-name NAME --database D --user U --password-env VAR \
--token-hash-file F --recordings DIR [--masking none|nomatch|match] [--threads N] [--no-recording]";

/// Which masking rules the gateway runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaskingMode {
    /// No masker at all (the adapter skips decoding rows).
    None,
    /// Rules that match nothing in pgbench data: every value is still inspected.
    NoMatch,
    /// Rules that match every row of `pgbench_accounts` (`filler`, `abalance`).
    Match,
}

/// Parsed command line.
#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    target: SocketAddr,
    target_ca: PathBuf,
    target_name: String,
    database: String,
    user: String,
    password_env: String,
    token_hash_file: PathBuf,
    recordings: PathBuf,
    masking: MaskingMode,
    /// Diagnostics only: sessions are not recorded (to measure the recorder's cost).
    no_recording: bool,
    /// Runtime worker threads (0: one per CPU).
    threads: usize,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = None;
    let mut cert = None;
    let mut key = None;
    let mut target = None;
    let mut target_ca = None;
    let mut target_name = None;
    let mut database = None;
    let mut user = None;
    let mut password_env = None;
    let mut token_hash_file = None;
    let mut recordings = None;
    let mut masking = MaskingMode::NoMatch;
    let mut no_recording = false;
    let mut threads = 0;
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        if flag == "--no-recording" {
            no_recording = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let addr = |v: &str| -> Result<SocketAddr, String> {
            v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(addr(&value)?),
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            "--target" => target = Some(addr(&value)?),
            "--target-ca" => target_ca = Some(PathBuf::from(value)),
            "--target-name" => target_name = Some(value),
            "--database" => database = Some(value),
            "--user" => user = Some(value),
            "--password-env" => password_env = Some(value),
            "--token-hash-file" => token_hash_file = Some(PathBuf::from(value)),
            "--recordings" => recordings = Some(PathBuf::from(value)),
            "--threads" => {
                threads = value
                    .parse()
                    .map_err(|e| format!("--threads {value:?}: {e}"))?
            }
            "--masking" => {
                masking = match value.as_str() {
                    "none" => MaskingMode::None,
                    "nomatch" => MaskingMode::NoMatch,
                    "match" => MaskingMode::Match,
                    other => return Err(format!("--masking {other:?}: none|nomatch|match")),
                }
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        listen: need(listen, "--listen")?,
        cert: need(cert, "--cert")?,
        key: need(key, "--key")?,
        target: need(target, "--target")?,
        target_ca: need(target_ca, "--target-ca")?,
        target_name: need(target_name, "--target-name")?,
        database: need(database, "--database")?,
        user: need(user, "--user")?,
        password_env: need(password_env, "--password-env")?,
        token_hash_file: need(token_hash_file, "--token-hash-file")?,
        recordings: need(recordings, "--recordings")?,
        masking,
        no_recording,
        threads,
    })
}

fn need<T>(v: Option<T>, name: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("missing {name}\n{USAGE}"))
}

/// hoop-core's rule masker: every detector redacts, and every value of the listed
/// columns is masked.
fn rule_masker(fields: &[&str]) -> Arc<dyn Masker> {
    let mut b = RuleMasker::builder().all_detectors(Strategy::Redact);
    for f in fields {
        b = b.field_rule(f, Strategy::Redact);
    }
    match b.build() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("masking rules: {e}");
            std::process::exit(2);
        }
    }
}

/// The masker for a mode.
fn masker(mode: MaskingMode) -> Arc<dyn Masker> {
    match mode {
        MaskingMode::None => Arc::new(NoMasking),
        MaskingMode::NoMatch => rule_masker(&["ssn"]),
        MaskingMode::Match => rule_masker(&["ssn", "filler", "abalance"]),
    }
}

fn policy() -> RulePolicy {
    RulePolicy::new(vec![
        Rule::allow("connect").actions(ActionMatch::connect()),
        Rule::allow("read-write").actions(ActionMatch::classes([
            ActionClass::Read,
            ActionClass::Write,
        ])),
    ])
}

async fn run(args: Args) -> Result<(), String> {
    let tls = ServerTls::new(ServerTlsConfig {
        cert_path: args.cert.clone(),
        key_path: args.key.clone(),
        alpn: vec![b"postgresql".to_vec()],
        ..Default::default()
    })
    .map_err(|e| format!("gateway TLS: {e}"))?;
    let upstream = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaFile(args.target_ca.clone()),
        ..Default::default()
    })
    .map_err(|e| format!("target TLS: {e}"))?;
    let adapter = Arc::new(
        PostgresAdapter::new(PostgresOptions::default()).with_target(PostgresTarget {
            resource: Resource::new(args.database.clone(), "postgres"),
            addr: args.target,
            security: UpstreamSecurity::Tls {
                tls: upstream,
                server_name: args.target_name.clone(),
            },
            database: args.database.clone(),
            user: args.user.clone(),
            password: Secret::Env(args.password_env.clone()),
            read_only: false,
        }),
    );
    let auth = StaticTokenAuthenticator::from_file(&args.token_hash_file)
        .map_err(|e| format!("token file: {e}"))?;
    let mut services = Services::new(Arc::new(auth));
    services.policy = Arc::new(policy());
    services.masker = masker(args.masking);
    if args.no_recording {
        tracing::warn!("--no-recording: sessions are NOT recorded (diagnostics only)");
    } else {
        services.recorder = Arc::new(JsonlRecorder::new(args.recordings.clone()));
    }
    services.approvals = Arc::new(InMemoryGate::new(GateConfig::default()));
    let server = Server::builder()
        .services(Arc::new(services))
        .listener(ListenerConfig::new("pg", args.listen, adapter).tls(tls))
        .build()
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let handle = server.spawn();
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    handle.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// The allocator of the gateway binary (`examples/gateway`), so the benchmark measures
/// what is deployed.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // One thread: a current-thread runtime (no work stealing, no cross-thread wake-ups),
    // the shape of pgbouncer's single event loop.
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if args.threads > 1 {
        builder.worker_threads(args.threads);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg_gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let f = hoop_core::Field::named("filler");
        assert_eq!(masker(MaskingMode::NoMatch).mask(&f, "   x"), "   x");
        assert_eq!(masker(MaskingMode::Match).mask(&f, "   x"), "[REDACTED]");
        assert!(masker(MaskingMode::None).is_noop());
        let args = parse_args(
            "--listen 127.0.0.1:1 --cert c --key k --target 127.0.0.1:2 --target-ca ca \
             --target-name localhost --database d --user u --password-env P \
             --token-hash-file t --recordings r --masking match"
                .split_whitespace()
                .map(String::from),
        )
        .unwrap();
        assert_eq!(args.masking, MaskingMode::Match);
        assert!(parse_args(["--bogus".to_string(), "x".to_string()].into_iter()).is_err());
    }
}
