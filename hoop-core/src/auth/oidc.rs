//! OpenID Connect bearer tokens (JWTs) checked against the issuer's JWKS.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use serde_json::Value;

use super::algorithm::JwsAlgorithm;
use super::claims;
use super::error::AuthConfigError;
use super::jwks::{JwksCache, JwksOptions};
use crate::tls::UpstreamTls;
use crate::{AuthError, AuthMethod, Authenticator, Credential, Identity};

/// Tokens longer than this are refused without parsing.
pub const MAX_TOKEN_LEN: usize = 16 << 10;

/// Settings of an [`OidcAuthenticator`].
///
/// ```no_run
/// # fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use hoop_core::auth::{OidcAuthenticator, OidcConfig};
/// use hoop_core::tls::UpstreamTls;
/// let config = OidcConfig::new("https://idp.example.com/realms/ops", "hoop", UpstreamTls::webpki()?)
///     .with_subject_claim("email")
///     .with_groups_claim("realm_access.roles");
/// let auth = OidcAuthenticator::new(config)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuer; a token's `iss` must equal it exactly.
    pub issuer: String,
    /// Accepted audiences; a token's `aud` must contain at least one.
    pub audiences: Vec<String>,
    /// The JWKS URL (`https://`). `None`: found through OpenID Connect discovery at
    /// `{issuer}/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Claim holding the subject (default `sub`; e.g. `email`, `preferred_username`).
    pub subject_claim: String,
    /// Claim holding the groups: a string or an array of strings, a literal claim name
    /// or a dot path into nested objects (default `groups`; e.g. `realm_access.roles`).
    pub groups_claim: String,
    /// Accepted signature algorithms (default: all of [`JwsAlgorithm::ALL`]).
    pub algorithms: Vec<JwsAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub leeway: Duration,
    /// Key-set cache timing.
    pub jwks: JwksOptions,
    /// Verified TLS used to fetch the discovery document and the key set.
    pub tls: UpstreamTls,
}

impl OidcConfig {
    /// Settings for `issuer` and one `audience`, with defaults for everything else.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, tls: UpstreamTls) -> Self {
        OidcConfig {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            jwks_url: None,
            subject_claim: "sub".into(),
            groups_claim: "groups".into(),
            algorithms: JwsAlgorithm::ALL.to_vec(),
            leeway: Duration::from_secs(30),
            jwks: JwksOptions::default(),
            tls,
        }
    }

    /// Uses an explicit JWKS URL instead of discovery.
    pub fn with_jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Accepts one more audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Sets the subject claim.
    pub fn with_subject_claim(mut self, claim: impl Into<String>) -> Self {
        self.subject_claim = claim.into();
        self
    }

    /// Sets the groups claim (literal name or dot path).
    pub fn with_groups_claim(mut self, claim: impl Into<String>) -> Self {
        self.groups_claim = claim.into();
        self
    }

    /// Restricts the accepted algorithms.
    pub fn with_algorithms(mut self, algorithms: impl IntoIterator<Item = JwsAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Sets the clock-skew leeway.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets the key-set cache options.
    pub fn with_jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks = options;
        self
    }
}

/// Verifies OIDC JWTs: signature with a key from the issuer's JWKS (the token's `alg`
/// must be allowed and fit the key), `iss` equal to the issuer, `aud` containing an
/// accepted audience, `exp` required and in the future, `nbf` (if present) in the past,
/// both with the leeway.
///
/// Answers [`AuthError::NotApplicable`] for client certificates and for bearer tokens that
/// are not shaped like a JWT (three dot-separated parts), so an
/// [`AuthenticatorChain`](super::AuthenticatorChain) can try a
/// [`StaticTokenAuthenticator`](super::StaticTokenAuthenticator) next. `alg: none` and
/// the HMAC algorithms are refused before any key lookup.
#[derive(Clone, Debug)]
pub struct OidcAuthenticator {
    issuer: String,
    audiences: Vec<String>,
    subject_claim: String,
    groups_claim: String,
    algorithms: Vec<JwsAlgorithm>,
    leeway: i64,
    jwks: JwksCache,
}

#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

impl OidcAuthenticator {
    /// Builds the authenticator; nothing is fetched until the first token (or
    /// [`JwksCache::refresh`] on [`jwks`](Self::jwks)).
    pub fn new(config: OidcConfig) -> Result<Self, AuthConfigError> {
        if config.issuer.is_empty() {
            return Err(AuthConfigError::invalid("issuer", "must not be empty"));
        }
        if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
            return Err(AuthConfigError::invalid(
                "audiences",
                "at least one non-empty audience is required",
            ));
        }
        if config.algorithms.is_empty() {
            return Err(AuthConfigError::invalid(
                "algorithms",
                "at least one algorithm is required",
            ));
        }
        if config.subject_claim.is_empty() {
            return Err(AuthConfigError::invalid(
                "subject_claim",
                "must not be empty",
            ));
        }
        let jwks = match &config.jwks_url {
            Some(url) => {
                if !url.starts_with("https://") {
                    return Err(AuthConfigError::invalid(
                        "jwks_url",
                        "must be an https:// URL",
                    ));
                }
                JwksCache::new(url.clone(), config.tls.clone(), config.jwks.clone())
            }
            None => {
                if !config.issuer.starts_with("https://") {
                    return Err(AuthConfigError::invalid(
                        "issuer",
                        "discovery needs an https:// issuer (or set jwks_url)",
                    ));
                }
                JwksCache::discover(
                    config.issuer.clone(),
                    config.tls.clone(),
                    config.jwks.clone(),
                )
            }
        };
        Ok(OidcAuthenticator {
            issuer: config.issuer,
            audiences: config.audiences,
            subject_claim: config.subject_claim,
            groups_claim: config.groups_claim,
            algorithms: config.algorithms,
            leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
            jwks,
        })
    }

    /// The key-set cache (to warm it, or to read its counters).
    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Verifies one JWT.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if !looks_like_jwt(token) {
            return Err(AuthError::NotApplicable);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid("token too large".into()));
        }
        let header = parse_header(token)?;
        let alg = self.check_alg(&header.alg)?;
        if header.crit.is_some() {
            return Err(AuthError::Invalid(
                "critical header extensions are not supported".into(),
            ));
        }
        let keys = self.jwks.keys_for(header.kid.as_deref(), alg).await?;
        let claims = verify_signature(token, alg, &keys)?;
        self.identity(&claims)
    }

    fn check_alg(&self, alg: &str) -> Result<JwsAlgorithm, AuthError> {
        let refused = || AuthError::AlgorithmRefused(printable(alg, 16));
        let a = JwsAlgorithm::parse(alg).ok_or_else(refused)?;
        if self.algorithms.contains(&a) {
            Ok(a)
        } else {
            Err(refused())
        }
    }

    fn identity(&self, claims: &Value) -> Result<Identity, AuthError> {
        if !claims.is_object() {
            return Err(AuthError::Invalid("payload is not a JSON object".into()));
        }
        match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if iss == self.issuer => {}
            Some(iss) => return Err(AuthError::UntrustedIssuer(printable(iss, 128))),
            None => return Err(AuthError::UntrustedIssuer("(no iss claim)".into())),
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::WrongAudience);
        }
        let now = unix_now();
        let exp = claims::numeric_date(claims, "exp")
            .map_err(|()| AuthError::Invalid("exp is not a number".into()))?
            .ok_or_else(|| AuthError::Invalid("exp claim missing".into()))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        let nbf = claims::numeric_date(claims, "nbf")
            .map_err(|()| AuthError::Invalid("nbf is not a number".into()))?;
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::NotYetValid);
        }
        let subject = match claims::lookup(claims, &self.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(AuthError::Invalid(format!(
                    "subject claim {:?} missing or not a string",
                    self.subject_claim
                )));
            }
        };
        let groups = claims::string_list(claims::lookup(claims, &self.groups_claim));
        let mut id = Identity::new(subject, AuthMethod::Oidc).with_groups(groups);
        id.issuer = Some(self.issuer.clone());
        id.expires_at = u64::try_from(exp)
            .ok()
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)));
        Ok(id)
    }
}

#[async_trait]
impl Authenticator for OidcAuthenticator {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError> {
        match credential {
            Credential::Bearer(token) => self.verify(token).await,
            Credential::ClientCertificate(_) => Err(AuthError::NotApplicable),
        }
    }
}

/// Three dot-separated parts (the JWS compact serialization).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

fn parse_header(token: &str) -> Result<JoseHeader, AuthError> {
    let malformed = || AuthError::Invalid("malformed JWT header".into());
    let encoded = token.split('.').next().ok_or_else(malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

fn verify_signature(
    token: &str,
    alg: JwsAlgorithm,
    keys: &[jsonwebtoken::DecodingKey],
) -> Result<Value, AuthError> {
    let mut validation = jsonwebtoken::Validation::new(alg.to_jsonwebtoken());
    // Claims are checked by `identity` with exact semantics and precise errors.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let mut first_err = None;
    for key in keys {
        match jsonwebtoken::decode::<Value>(token, key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(match first_err.as_ref().map(|e| e.kind()) {
        Some(ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm) => {
            AuthError::AlgorithmRefused(alg.to_string())
        }
        Some(ErrorKind::InvalidSignature) => AuthError::Invalid("signature does not verify".into()),
        Some(
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat,
        ) => AuthError::Invalid("signature does not verify with the issuer's key".into()),
        _ => AuthError::Invalid("malformed JWT".into()),
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// At most `max` characters of `s`, control characters replaced, for error messages.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("a.b."));
        assert!(!looks_like_jwt("hoop_abcdef"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
    }

    #[test]
    fn header_parse_rejects_garbage() {
        assert!(matches!(parse_header("!!.b.c"), Err(AuthError::Invalid(_))));
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k"}"#);
        let parsed = parse_header(&format!("{h}.x.y")).unwrap();
        assert_eq!(parsed.alg, "ES256");
        assert_eq!(parsed.kid.as_deref(), Some("k"));
    }
}
