//! A real PostgreSQL server on loopback, with TLS and SCRAM, for tests.
//!
//! ```no_run
//! use hoop_testkit::postgres::{PgOptions, PgServer};
//! let pg = PgServer::start(PgOptions::default());
//! let out = pg.psql("postgres", "select 1");
//! assert_eq!(out.trim(), "1");
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::certs::{TestCa, TestCert};

/// How the server authenticates TCP clients (pg_hba method for `hostssl` lines).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgAuth {
    /// `scram-sha-256` (the default).
    #[default]
    Scram,
    /// `md5` (passwords stored as md5 for the created users).
    Md5,
    /// `password` (cleartext over TLS).
    Cleartext,
}

/// Settings of a test PostgreSQL server.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Password of the `postgres` superuser.
    pub superuser_password: String,
    /// Extra login roles: (name, password).
    pub users: Vec<(String, String)>,
    /// Databases to create, owned by `postgres`.
    pub databases: Vec<String>,
    /// Authentication method for TLS clients.
    pub auth: PgAuth,
    /// Server certificate; `None` issues a localhost certificate from the server's own CA.
    pub server_cert: Option<TestCert>,
    /// Allow plaintext (non-TLS) TCP clients too (default: rejected).
    pub allow_plaintext: bool,
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            superuser_password: "postgres-secret".into(),
            users: Vec::new(),
            databases: Vec::new(),
            auth: PgAuth::Scram,
            server_cert: None,
            allow_plaintext: false,
            extra_conf: Vec::new(),
        }
    }
}

/// A running PostgreSQL 15 server, stopped and removed on drop.
pub struct PgServer {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Password of the `postgres` superuser.
    pub superuser_password: String,
    dir: tempfile::TempDir,
    data: PathBuf,
    ca: TestCa,
    ca_path: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_bin(name: &str) -> PathBuf {
    for dir in ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Runs a PostgreSQL server binary as the `postgres` user when we are root (initdb and
/// postgres refuse to run as root).
fn as_postgres(bin: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(bin));
        c
    } else {
        Command::new(pg_bin(bin))
    }
}

fn check(out: Output, what: &str) -> Output {
    if !out.status.success() {
        panic!(
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn chown_postgres(path: &Path) {
    if is_root() {
        check(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .output()
                .expect("chown"),
            "chown",
        );
    }
}

impl PgServer {
    /// Starts a server: initdb as `postgres`, TLS on with a certificate for localhost,
    /// `hostssl ... scram-sha-256` (or the chosen method) for 127.0.0.1 and plaintext TCP
    /// rejected, on a free port. Panics with the server's output if it cannot start.
    pub fn start(opts: PgOptions) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("hoop-pg-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let ca = TestCa::new("hoop-test-postgres-ca");
        let ca_path = ca.write_cert(&root, "ca.crt");
        let server = opts.server_cert.clone().unwrap_or_else(|| ca.server());
        let (cert, key) = server.write(&root, "server");
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, &opts.superuser_password).expect("write pwfile");
        chown_postgres(&root);
        let method = match opts.auth {
            PgAuth::Scram => "scram-sha-256",
            PgAuth::Md5 => "md5",
            PgAuth::Cleartext => "password",
        };
        let mut initdb = as_postgres("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C.UTF-8");
        check(initdb.output().expect("run initdb"), "initdb");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod key");
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n\
             ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n\
             password_encryption = '{enc}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 200\n",
            root = root.display(),
            cert = cert.display(),
            key = key.display(),
            enc = if opts.auth == PgAuth::Md5 {
                "md5"
            } else {
                "scram-sha-256"
            },
        );
        for l in &opts.extra_conf {
            conf.push_str(l);
            conf.push('\n');
        }
        append(&data.join("postgresql.conf"), &conf);
        let mut hba =
            format!("local all all scram-sha-256\nhostssl all all 127.0.0.1/32 {method}\n");
        if opts.allow_plaintext {
            hba.push_str(&format!("hostnossl all all 127.0.0.1/32 {method}\n"));
        } else {
            hba.push_str("host all all 127.0.0.1/32 reject\n");
        }
        std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba");
        chown_postgres(&root);
        let log = root.join("postgres.log");
        // The port was free a moment ago; another process may take it before the server
        // binds it. The server then refuses to start (it says why in its log) and is
        // started again on another port.
        let mut attempt = 0;
        let port = loop {
            attempt += 1;
            let port = crate::free_port();
            // The last `port` line of postgresql.conf wins.
            append(&data.join("postgresql.conf"), &format!("port = {port}\n"));
            let log_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let mut start = as_postgres("pg_ctl");
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "120", "start"]);
            let out = start.output().expect("run pg_ctl start");
            if out.status.success() {
                break port;
            }
            let text = std::fs::read(&log).unwrap_or_default();
            let new = String::from_utf8_lossy(text.get(log_before as usize..).unwrap_or(&[]));
            if attempt < 5 && new.contains("could not bind") {
                continue;
            }
            panic!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&text)
            );
        };
        let pg = PgServer {
            port,
            superuser_password: opts.superuser_password.clone(),
            dir,
            data,
            ca,
            ca_path,
        };
        // With md5 the superuser's scram verifier stays; created users get md5 hashes.
        for (user, pass) in &opts.users {
            pg.psql(
                "postgres",
                &format!(
                    "CREATE ROLE \"{user}\" LOGIN PASSWORD '{}'",
                    pass.replace('\'', "''")
                ),
            );
        }
        for db in &opts.databases {
            pg.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
        }
        pg
    }

    /// The CA that issued the server's default certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Path of that CA's PEM file.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The server's directory (data directory, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq connection string for `user`/`password` on `dbname` with
    /// `sslmode=verify-full` against the server's CA.
    pub fn conn_string(&self, user: &str, password: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={dbname} \
             sslmode=verify-full sslrootcert={}",
            self.port,
            self.ca_path.display()
        )
    }

    /// Runs `sql` with psql as the superuser over the server's Unix socket (so it works
    /// whatever certificate the server presents); returns stdout (unaligned, tuples
    /// only). Panics on failure.
    pub fn psql(&self, dbname: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .arg(format!(
                "host={} port={} user=postgres password={} dbname={dbname}",
                self.dir.path().display(),
                self.port,
                self.superuser_password
            ))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        let out = check(out, "psql");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open conf");
    f.write_all(text.as_bytes()).expect("write conf");
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_tls_and_scram() {
        let pg = PgServer::start(PgOptions {
            users: vec![("app".into(), "app-pw".into())],
            databases: vec!["appdb".into()],
            ..PgOptions::default()
        });
        assert_eq!(pg.psql("appdb", "select 1").trim(), "1");
        // A TCP client gets TLS, verified against the server's CA, and SCRAM.
        let out = Command::new("psql")
            .arg(pg.conn_string("app", "app-pw", "appdb"))
            .args(["-X", "-A", "-t", "-c"])
            .arg("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
        let enc = pg.psql(
            "postgres",
            "select left(rolpassword, 13) from pg_authid where rolname = 'app'",
        );
        assert_eq!(enc.trim(), "SCRAM-SHA-256");
        // Plaintext TCP is rejected.
        let out = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres password=postgres-secret sslmode=disable",
                pg.port
            ))
            .args(["-c", "select 1"])
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}
