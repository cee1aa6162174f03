//! A real nginx on loopback with TLS (HTTP/1.1 and HTTP/2), for tests and benchmarks:
//! serving fixed files, or as a TLS reverse proxy in front of another TLS server.
//!
//! ```no_run
//! use hoop_testkit::nginx::{NginxOptions, NginxServer};
//! if let Some(nginx) = NginxServer::start(NginxOptions::default()) {
//!     println!("https://localhost:{}/ (CA {})", nginx.port, nginx.ca_path().display());
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs::{TestCa, TestCert};

/// Settings of a test nginx.
#[derive(Clone, Debug, Default)]
pub struct NginxOptions {
    /// Server certificate; `None` issues a localhost certificate from the server's own CA.
    pub server_cert: Option<TestCert>,
    /// Files served from the document root: (path relative to the root, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// Act as a reverse proxy (with pooled keep-alive connections) to the HTTPS origin at
    /// this address, verifying it against the CA file for the name `localhost`, instead
    /// of serving files.
    pub proxy_to: Option<(std::net::SocketAddr, PathBuf)>,
    /// Extra directives inside the `server` block.
    pub extra_server: Vec<String>,
}

/// A running nginx, stopped on drop.
#[derive(Debug)]
pub struct NginxServer {
    /// HTTPS port on 127.0.0.1.
    pub port: u16,
    /// Working directory (configuration, logs, document root).
    pub dir: tempfile::TempDir,
    ca_path: PathBuf,
    child: Child,
}

/// The nginx binary, if installed.
pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl NginxServer {
    /// Starts nginx in the foreground on a free port. `None` when nginx is not installed.
    /// Panics if it is installed but does not start.
    pub fn start(opts: NginxOptions) -> Option<NginxServer> {
        let bin = nginx_binary()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("root dir");
        for (rel, content) in &opts.files {
            let p = root.join(rel.trim_start_matches('/'));
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("file dir");
            }
            std::fs::write(&p, content).expect("write file");
        }
        let (ca_path, cert) = match opts.server_cert {
            Some(c) => (PathBuf::new(), c),
            None => {
                let ca = TestCa::new("nginx-ca");
                (ca.write_cert(dir.path(), "nginx-ca.crt"), ca.server())
            }
        };
        let (cert_path, key_path) = cert.write(dir.path(), "nginx");
        let location = match &opts.proxy_to {
            Some((_, ca)) => format!(
                "location / {{\n proxy_pass https://origin;\n proxy_http_version 1.1;\n \
                 proxy_set_header Connection \"\";\n proxy_ssl_verify on;\n \
                 proxy_ssl_trusted_certificate {};\n proxy_ssl_name localhost;\n \
                 proxy_ssl_server_name on;\n proxy_ssl_session_reuse on;\n }}",
                ca.display()
            ),
            None => format!("location / {{ root {}; }}", root.display()),
        };
        let upstream_block = match &opts.proxy_to {
            Some((origin, _)) => format!("upstream origin {{ server {origin}; keepalive 64; }}"),
            None => String::new(),
        };
        let d = dir.path().display().to_string();
        let conf_path = dir.path().join("nginx.conf");
        let error_log = dir.path().join("error.log");
        // The port was free a moment ago; another process may take it before nginx binds
        // it. nginx is ready once it listens on the port itself (not merely once something
        // answers there); if it cannot bind, it is started again on another port.
        let mut attempt = 0;
        let (port, child) = loop {
            attempt += 1;
            let port = crate::free_port();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n types {{ application/json json; text/plain txt; text/html html; }}\n\
                 default_type application/octet-stream;\n access_log off;\n\
                 client_body_temp_path {d}/client_body;\n proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
                 {upstream_block}\n\
                 server {{\n listen 127.0.0.1:{port} ssl http2;\n server_name localhost;\n\
                 ssl_certificate {};\n ssl_certificate_key {};\n keepalive_requests 100000;\n\
                 {}\n {location}\n }}\n}}\n",
                cert_path.display(),
                key_path.display(),
                opts.extra_server.join("\n"),
            );
            std::fs::write(&conf_path, conf).expect("write nginx.conf");
            let _ = std::fs::remove_file(&error_log);
            let mut child = Command::new(&bin)
                .arg("-c")
                .arg(&conf_path)
                .arg("-p")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let deadline = Instant::now() + Duration::from_secs(60);
            let bind_failed = loop {
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                if log.contains("Address already in use") {
                    break true;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("nginx exited ({status}) at start: {log}");
                }
                if crate::ports::listens(child.id(), port) {
                    break false;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nginx did not start: {log}");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if !bind_failed {
                break (port, child);
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(attempt < 5, "nginx could not bind a free port five times");
        };
        let server = NginxServer {
            port,
            dir,
            ca_path,
            child,
        };
        Some(server)
    }

    /// PEM file of the CA that issued the server certificate (empty path when a
    /// certificate was given in the options).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }
}

impl Drop for NginxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
