//! Gateway-issued bearer tokens, stored only as SHA-256 hashes
//! (see [`StaticTokenAuthenticator`]).

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::AuthConfigError;
use super::oidc::looks_like_jwt;
use crate::{AuthError, AuthMethod, Authenticator, Credential, Identity};

/// Prefix of tokens made by [`generate_token`].
pub const TOKEN_PREFIX: &str = "hoop_";

/// The lowercase hex SHA-256 of `token`, as stored in token files.
///
/// ```
/// let h = hoop_core::auth::hash_token("hoop_example");
/// assert_eq!(h.len(), 64);
/// ```
pub fn hash_token(token: &str) -> String {
    hex::encode(digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Makes a new token: `(token, sha256hex)`. Give the token to its holder once; store
/// only the hash.
///
/// ```
/// let (token, hash) = hoop_core::auth::generate_token().unwrap();
/// assert!(token.starts_with("hoop_"));
/// assert_eq!(hoop_core::auth::hash_token(&token), hash);
/// ```
pub fn generate_token() -> Result<(String, String), AuthConfigError> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| AuthConfigError::Random)?;
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// One stored token: who it stands for and its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticToken {
    /// The identity's subject.
    pub subject: String,
    /// The identity's groups.
    pub groups: Vec<String>,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// When the token stops being accepted.
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticToken")
            .field("subject", &self.subject)
            .field("groups", &self.groups)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl StaticToken {
    /// An entry for `subject` with the hex SHA-256 `sha256_hex` of its token.
    pub fn new(subject: impl Into<String>, sha256_hex: &str) -> Result<Self, AuthConfigError> {
        let subject = subject.into();
        if subject.is_empty() || subject.contains(':') || subject.contains('\n') {
            return Err(AuthConfigError::invalid(
                "subject",
                "must be non-empty and contain no ':' or newline",
            ));
        }
        Ok(StaticToken {
            subject,
            groups: Vec::new(),
            sha256: parse_hash(sha256_hex).map_err(|m| AuthConfigError::invalid("sha256", m))?,
            expires_at: None,
        })
    }

    /// Adds groups.
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Sets an expiry.
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The entry as one line of the token file format (without newline).
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{}:{}:{}",
            self.subject,
            self.groups.join(","),
            hex::encode(self.sha256)
        );
        if let Some(at) = self.expires_at
            && let Ok(s) = OffsetDateTime::from(at).format(&Rfc3339)
        {
            line.push(':');
            line.push_str(&s);
        }
        line
    }
}

fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    if s.starts_with(TOKEN_PREFIX) {
        return Err(
            "this looks like a token: store its SHA-256 (hash_token), never the token".into(),
        );
    }
    let mut out = [0u8; 32];
    if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
        return Err("must be the 64 hex digits of the token's SHA-256".into());
    }
    Ok(out)
}

/// Authenticates gateway-issued tokens against a table of hashes.
///
/// Tokens are 32 random bytes, base64url, prefixed `hoop_` ([`generate_token`]). Only the
/// hex SHA-256 of a token is ever stored; the gateway hashes a presented token and looks
/// the hash up. Because tokens are high-entropy, an unsalted hash is enough: it cannot be
/// reversed, and a lookup keyed by the hash leaks nothing about any stored token.
///
/// Bearer tokens shaped like a JWT, and client certificates, answer
/// [`AuthError::NotApplicable`]; any other unknown token is [`AuthError::Invalid`];
/// a known token past its expiry is [`AuthError::Expired`].
///
/// # File format ([`from_file`](Self::from_file), [`parse`](Self::parse))
///
/// One token per line, `subject:groups:sha256hex` or `subject:groups:sha256hex:expires`:
///
/// ```text
/// # comments and blank lines are ignored
/// ci-bot:deployers,readers:3f0a...64 hex digits...
/// alice@example.com::9b71...64 hex digits...:2027-01-01T00:00:00Z
/// ```
///
/// * `subject`: not empty, no `:`;
/// * `groups`: comma-separated, may be empty;
/// * `sha256hex`: 64 hex digits, the SHA-256 of the token (never the token itself; a
///   value starting with `hoop_` is refused);
/// * `expires` (optional): an RFC 3339 time after which the token is refused.
///
/// [`StaticToken::to_line`] writes this format.
#[derive(Clone, Debug, Default)]
pub struct StaticTokenAuthenticator {
    by_hash: HashMap<[u8; 32], StaticToken>,
}

impl StaticTokenAuthenticator {
    /// An authenticator for `tokens`; two entries with the same hash are an error.
    pub fn new(tokens: impl IntoIterator<Item = StaticToken>) -> Result<Self, AuthConfigError> {
        let mut by_hash = HashMap::new();
        for t in tokens {
            if by_hash.contains_key(&t.sha256) {
                return Err(AuthConfigError::invalid(
                    "sha256",
                    format!("duplicate token hash (subject {:?})", t.subject),
                ));
            }
            by_hash.insert(t.sha256, t);
        }
        Ok(StaticTokenAuthenticator { by_hash })
    }

    /// Parses the token file format (see the [type docs](Self)).
    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        Self::parse_named(text, "(inline)")
    }

    /// Reads a token file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, AuthConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| AuthConfigError::TokenFile {
            path: name.clone(),
            message: e.to_string(),
        })?;
        Self::parse_named(&text, &name)
    }

    fn parse_named(text: &str, name: &str) -> Result<Self, AuthConfigError> {
        let err = |line: usize, message: String| AuthConfigError::TokenFile {
            path: name.to_owned(),
            message: format!("line {line}: {message}"),
        };
        let mut entries = Vec::new();
        let mut seen = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(4, ':');
            let (Some(subject), Some(groups), Some(hash)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(err(n, "expected subject:groups:sha256hex[:expires]".into()));
            };
            if subject.is_empty() {
                return Err(err(n, "empty subject".into()));
            }
            let sha256 = parse_hash(hash).map_err(|m| err(n, m))?;
            let expires_at = match parts.next() {
                None | Some("") => None,
                Some(t) => Some(SystemTime::from(
                    OffsetDateTime::parse(t, &Rfc3339)
                        .map_err(|e| err(n, format!("expiry {t:?} is not RFC 3339: {e}")))?,
                )),
            };
            if let Some(prev) = seen.insert(sha256, n) {
                return Err(err(n, format!("same token hash as line {prev}")));
            }
            entries.push(StaticToken {
                subject: subject.to_owned(),
                groups: groups
                    .split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect(),
                sha256,
                expires_at,
            });
        }
        Self::new(entries)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Checks one token.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if looks_like_jwt(token) {
            return Err(AuthError::NotApplicable);
        }
        let unknown = || AuthError::Invalid("unknown token".into());
        if token.is_empty() || token.len() > super::MAX_TOKEN_LEN {
            return Err(unknown());
        }
        let hash = digest(token);
        let entry = self.by_hash.get(&hash).ok_or_else(unknown)?;
        // The map lookup already matched; compare again in constant time so that no
        // future change of the lookup can turn into a timing oracle.
        aws_lc_rs::constant_time::verify_slices_are_equal(&entry.sha256, &hash)
            .map_err(|_| unknown())?;
        if entry.expires_at.is_some_and(|at| SystemTime::now() >= at) {
            return Err(AuthError::Expired);
        }
        let mut id = Identity::new(entry.subject.clone(), AuthMethod::StaticToken)
            .with_groups(entry.groups.iter().cloned());
        id.expires_at = entry.expires_at;
        Ok(id)
    }
}

#[async_trait]
impl Authenticator for StaticTokenAuthenticator {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError> {
        match credential {
            Credential::Bearer(token) => self.verify(token),
            Credential::ClientCertificate(_) => Err(AuthError::NotApplicable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn generated_tokens_differ_and_hash() {
        let (a, ha) = generate_token().unwrap();
        let (b, hb) = generate_token().unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_token(&a), ha);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
    }

    #[test]
    fn good_wrong_expired() {
        let (good, h) = generate_token().unwrap();
        let (old, ho) = generate_token().unwrap();
        let auth = StaticTokenAuthenticator::new([
            StaticToken::new("ci", &h).unwrap().with_groups(["deploy"]),
            StaticToken::new("old", &ho)
                .unwrap()
                .with_expiry(SystemTime::now() - Duration::from_secs(5)),
        ])
        .unwrap();
        let id = auth.verify(&good).unwrap();
        assert_eq!(id.subject, "ci");
        assert_eq!(id.groups, vec!["deploy"]);
        assert_eq!(id.method, AuthMethod::StaticToken);
        assert_eq!(
            auth.verify("hoop_wrong"),
            Err(AuthError::Invalid("unknown token".into()))
        );
        assert_eq!(
            auth.verify(""),
            Err(AuthError::Invalid("unknown token".into()))
        );
        assert_eq!(auth.verify(&old), Err(AuthError::Expired));
        assert_eq!(auth.verify("a.b.c"), Err(AuthError::NotApplicable));
        // The hash itself is not a credential.
        assert!(auth.verify(&h).is_err());
    }

    #[test]
    fn file_holds_only_hashes() {
        let (t1, h1) = generate_token().unwrap();
        let (t2, h2) = generate_token().unwrap();
        let future = SystemTime::now() + Duration::from_secs(3600);
        let entries = [
            StaticToken::new("alice@example.com", &h1)
                .unwrap()
                .with_groups(["dba", "ops"]),
            StaticToken::new("bot", &h2).unwrap().with_expiry(future),
        ];
        let text = format!(
            "# tokens\n\n{}\n{}\n",
            entries[0].to_line(),
            entries[1].to_line()
        );
        assert!(!text.contains(&t1) && !text.contains(&t2));
        assert!(!text.contains(&t1[TOKEN_PREFIX.len()..]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, &text).unwrap();
        let auth = StaticTokenAuthenticator::from_file(&path).unwrap();
        assert_eq!(auth.len(), 2);
        let a = auth.verify(&t1).unwrap();
        assert_eq!(a.subject, "alice@example.com");
        assert_eq!(a.groups, vec!["dba", "ops"]);
        let b = auth.verify(&t2).unwrap();
        assert_eq!(b.subject, "bot");
        assert!(b.groups.is_empty());
        let exp = b.expires_at.unwrap();
        let diff = exp.duration_since(future).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1));
    }

    #[test]
    fn file_errors_name_the_line() {
        let (t, h) = generate_token().unwrap();
        let cases = [
            (format!("a:b:{t}\n"), "line 1", "looks like a token"),
            ("x\n".to_owned(), "line 1", "expected"),
            (format!("# c\n:g:{h}\n"), "line 2", "empty subject"),
            (
                format!("a::{h}\nb::{h}\n"),
                "line 2",
                "same token hash as line 1",
            ),
            (format!("a::{h}:tomorrow\n"), "line 1", "RFC 3339"),
            ("a::abcd\n".to_owned(), "line 1", "64 hex digits"),
        ];
        for (text, line, msg) in cases {
            let e = StaticTokenAuthenticator::parse(&text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(line) && e.contains(msg), "{text:?} -> {e}");
        }
    }
}
