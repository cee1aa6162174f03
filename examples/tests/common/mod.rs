//! Helpers shared by the end-to-end tests of the compiled gateway (`gateway.rs`,
//! `oidc.rs`). Each test crate uses a part of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<name>` next to this test binary (`target/<profile>/deps/`).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join("examples").join(name)
}

/// `psql CONN -X -A -t -c SCRIPT`, optionally stopping at the first error.
pub fn psql(conn: &str, script: &str, stop_on_error: bool) -> Output {
    let mut c = Command::new("psql");
    c.arg(conn).args(["-X", "-A", "-t"]);
    if stop_on_error {
        c.args(["-v", "ON_ERROR_STOP=1"]);
    }
    c.args(["-c", script]).output().unwrap()
}

/// The compiled gateway running one configuration; SIGTERM'd (and reaped) on drop.
pub struct GatewayProcess {
    child: std::process::Child,
    /// `(listener name, address)` from the banner.
    pub listeners: Vec<(String, std::net::SocketAddr)>,
    log: PathBuf,
}

impl GatewayProcess {
    /// Starts the binary on `cfg` (stderr to `log`) and reads its banner; `None` when it
    /// is not built.
    pub fn start(cfg: &Path, log: &Path) -> Option<GatewayProcess> {
        Self::start_with(cfg, log, &[])
    }

    /// [`start`](Self::start) with more arguments.
    pub fn start_with(cfg: &Path, log: &Path, args: &[&str]) -> Option<GatewayProcess> {
        use std::io::{BufRead, BufReader};
        let bin = example_binary("gateway");
        if !bin.is_file() {
            eprintln!(
                "note: {} not built (cargo build -p hoop-examples --examples); skipped",
                bin.display()
            );
            return None;
        }
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(cfg)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut listeners = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            // "  listener NAME (PROTOCOL) on ADDR: resources: ..."
            if let Some(rest) = line.trim().strip_prefix("listener ") {
                let (name, rest) = rest.split_once(' ').unwrap();
                let addr = rest.split(" on ").nth(1).unwrap();
                let addr = addr.split_once(": ").map_or(addr, |(a, _)| a);
                listeners.push((name.to_owned(), addr.parse().unwrap()));
            }
            if line.starts_with("Try:") {
                break;
            }
        }
        // Keep reading: a closed pipe would fail the gateway's next banner line.
        std::thread::spawn(move || lines.for_each(drop));
        assert!(
            !listeners.is_empty(),
            "no banner; stderr:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Some(GatewayProcess {
            child,
            listeners,
            log: log.to_path_buf(),
        })
    }

    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> std::net::SocketAddr {
        self.listeners.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`HUP`, `TERM`...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 20 s) until the log has `count` lines containing `what`; returns it.
    pub fn wait_log(&self, what: &str, count: usize) -> String {
        let start = Instant::now();
        loop {
            let text = self.log();
            if text.lines().filter(|l| l.contains(what)).count() >= count {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {what:?} (x{count}) in\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGHUP and waits until the log has `count` lines containing `what`; returns
    /// the log and the last such line, without its colour escapes.
    pub fn reload(&self, what: &str, count: usize) -> (String, String) {
        self.signal("HUP");
        let text = self.wait_log(what, count);
        let line = text.lines().rfind(|l| l.contains(what));
        // `ESC [ ... m` sequences: drop each up to its `m`.
        let plain = line
            .unwrap_or_default()
            .split('\x1b')
            .enumerate()
            .map(|(i, p)| match p.split_once('m') {
                Some((_, rest)) if i > 0 => rest,
                _ => p,
            })
            .collect();
        (text, plain)
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        self.child.wait().unwrap().code()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
