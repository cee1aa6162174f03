//! The JWS signature algorithms an OIDC authenticator may accept.

use std::fmt;

/// An asymmetric JWS algorithm (RFC 7518 / RFC 8037).
///
/// `none` and the HMAC algorithms (`HS256`, ...) have no variant: a gateway verifying
/// tokens from an identity provider never shares a secret with it, and accepting them
/// would let anyone who knows a public key forge tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(clippy::upper_case_acronyms)]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

/// The kind of key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    EcP256,
    /// `kty: EC`, `crv: P-384`.
    EcP384,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

impl JwsAlgorithm {
    /// Every supported algorithm (the default allow-list of
    /// [`OidcConfig`](crate::auth::OidcConfig)).
    pub const ALL: [JwsAlgorithm; 9] = [
        JwsAlgorithm::RS256,
        JwsAlgorithm::RS384,
        JwsAlgorithm::RS512,
        JwsAlgorithm::PS256,
        JwsAlgorithm::PS384,
        JwsAlgorithm::PS512,
        JwsAlgorithm::ES256,
        JwsAlgorithm::ES384,
        JwsAlgorithm::EdDSA,
    ];

    /// The name used in JOSE headers and JWKs (`RS256`, `EdDSA`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlgorithm::RS256 => "RS256",
            JwsAlgorithm::RS384 => "RS384",
            JwsAlgorithm::RS512 => "RS512",
            JwsAlgorithm::PS256 => "PS256",
            JwsAlgorithm::PS384 => "PS384",
            JwsAlgorithm::PS512 => "PS512",
            JwsAlgorithm::ES256 => "ES256",
            JwsAlgorithm::ES384 => "ES384",
            JwsAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Parses a JOSE algorithm name (case-sensitive, as RFC 7515 says). `none` and
    /// `HS*` give `None`.
    ///
    /// ```
    /// use hoop_core::auth::JwsAlgorithm;
    /// assert_eq!(JwsAlgorithm::parse("ES256"), Some(JwsAlgorithm::ES256));
    /// assert_eq!(JwsAlgorithm::parse("HS256"), None);
    /// assert_eq!(JwsAlgorithm::parse("none"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub(crate) fn key_kind(self) -> KeyKind {
        match self {
            JwsAlgorithm::RS256
            | JwsAlgorithm::RS384
            | JwsAlgorithm::RS512
            | JwsAlgorithm::PS256
            | JwsAlgorithm::PS384
            | JwsAlgorithm::PS512 => KeyKind::Rsa,
            JwsAlgorithm::ES256 => KeyKind::EcP256,
            JwsAlgorithm::ES384 => KeyKind::EcP384,
            JwsAlgorithm::EdDSA => KeyKind::Ed25519,
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwsAlgorithm::RS256 => A::RS256,
            JwsAlgorithm::RS384 => A::RS384,
            JwsAlgorithm::RS512 => A::RS512,
            JwsAlgorithm::PS256 => A::PS256,
            JwsAlgorithm::PS384 => A::PS384,
            JwsAlgorithm::PS512 => A::PS512,
            JwsAlgorithm::ES256 => A::ES256,
            JwsAlgorithm::ES384 => A::ES384,
            JwsAlgorithm::EdDSA => A::EdDSA,
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JwsAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| format!("unsupported JWS algorithm {s:?}"))
    }
}

impl<'de> serde::Deserialize<'de> for JwsAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unsupported JWS algorithm {s:?} (asymmetric only: RS256..PS512, ES256, ES384, EdDSA)"
            ))
        })
    }
}

impl serde::Serialize for JwsAlgorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
