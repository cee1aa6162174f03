//! Secrets the gateway injects toward targets (passwords, tokens), read from where the
//! operator keeps them. The user never sees them, and neither do logs.

use std::path::PathBuf;

/// Where a secret comes from. Its value never appears in `Debug` output, logs or errors.
///
/// ```
/// use hoop_core::secret::Secret;
/// let s = Secret::Value("hunter2".into());
/// assert_eq!(s.read().unwrap(), "hunter2");
/// assert!(!format!("{s:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub enum Secret {
    /// A value given in code (tests, embedding).
    Value(String),
    /// An environment variable, read at each use (rotation without restart).
    Env(String),
    /// A file whose content (trailing newline removed) is the secret, read at each use
    /// (hoop-postgres: each session; hoop-http: at most once a second).
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret::Value(<redacted>)"),
            Secret::Env(name) => write!(f, "Secret::Env({name:?})"),
            Secret::File(p) => write!(f, "Secret::File({p:?})"),
        }
    }
}

impl Secret {
    /// Reads the secret now. The error names the source, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display())),
        }
    }
}
