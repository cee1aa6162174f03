//! Identities from client certificates.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{AuthError, AuthMethod, Authenticator, Credential, Identity};

/// Where a certificate's subject name comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertSubjectSource {
    /// The subject's (first) common name.
    #[default]
    CommonName,
    /// The first e-mail address (rfc822Name) in the subject alternative names.
    SanEmail,
    /// The first DNS name in the subject alternative names.
    SanDns,
    /// The first URI in the subject alternative names (e.g. a SPIFFE ID).
    SanUri,
}

/// Maps a client certificate that the TLS layer has already verified against the
/// listener's client CA to an [`Identity`].
///
/// The certificate's validity period is checked again here (defence in depth): outside
/// it, [`AuthError::Expired`] or [`AuthError::NotYetValid`]. Groups come from a static
/// table keyed by subject and, optionally, from the subject's OU values. Bearer tokens
/// answer [`AuthError::NotApplicable`].
///
/// ```
/// use hoop_core::auth::{CertSubjectSource, ClientCertAuthenticator};
/// let auth = ClientCertAuthenticator::new(CertSubjectSource::SanEmail)
///     .with_groups_from_ou(true)
///     .with_subject_groups("alice@example.com", ["dba"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientCertAuthenticator {
    subject_from: CertSubjectSource,
    groups_from_ou: bool,
    groups: HashMap<String, Vec<String>>,
}

impl ClientCertAuthenticator {
    /// An authenticator taking the subject from `subject_from`, with no groups.
    pub fn new(subject_from: CertSubjectSource) -> Self {
        ClientCertAuthenticator {
            subject_from,
            ..Self::default()
        }
    }

    /// Also takes each OU of the certificate subject as a group.
    pub fn with_groups_from_ou(mut self, yes: bool) -> Self {
        self.groups_from_ou = yes;
        self
    }

    /// Gives `subject` these groups.
    pub fn with_subject_groups<I, S>(mut self, subject: impl Into<String>, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups
            .entry(subject.into())
            .or_default()
            .extend(groups.into_iter().map(Into::into));
        self
    }

    /// Maps one certificate.
    pub fn verify(&self, cert: &CertificateDer<'_>) -> Result<Identity, AuthError> {
        let (rest, x509) = X509Certificate::from_der(cert.as_ref())
            .map_err(|_| AuthError::Invalid("malformed client certificate".into()))?;
        if !rest.is_empty() {
            return Err(AuthError::Invalid("trailing data after certificate".into()));
        }
        let now = unix_now();
        let validity = x509.validity();
        if now < validity.not_before.timestamp() {
            return Err(AuthError::NotYetValid);
        }
        if now > validity.not_after.timestamp() {
            return Err(AuthError::Expired);
        }
        let subject = self.subject(&x509)?;
        let mut groups: Vec<String> = Vec::new();
        if let Some(g) = self.groups.get(&subject) {
            groups.extend(g.iter().cloned());
        }
        if self.groups_from_ou {
            for ou in x509.subject().iter_organizational_unit() {
                if let Ok(s) = ou.as_str()
                    && !s.is_empty()
                    && !groups.iter().any(|g| g == s)
                {
                    groups.push(s.to_owned());
                }
            }
        }
        let mut id = Identity::new(subject, AuthMethod::ClientCertificate).with_groups(groups);
        id.issuer = Some(x509.issuer().to_string());
        id.expires_at = u64::try_from(validity.not_after.timestamp())
            .ok()
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)));
        Ok(id)
    }

    fn subject(&self, x509: &X509Certificate<'_>) -> Result<String, AuthError> {
        let found = match self.subject_from {
            CertSubjectSource::CommonName => x509
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            source => {
                let san = x509.subject_alternative_name().map_err(|_| {
                    AuthError::Invalid("malformed subject alternative names".into())
                })?;
                san.and_then(|ext| {
                    ext.value
                        .general_names
                        .iter()
                        .find_map(|n| match (source, n) {
                            (CertSubjectSource::SanEmail, GeneralName::RFC822Name(s))
                            | (CertSubjectSource::SanDns, GeneralName::DNSName(s))
                            | (CertSubjectSource::SanUri, GeneralName::URI(s)) => {
                                Some((*s).to_owned())
                            }
                            _ => None,
                        })
                })
            }
        };
        match found {
            Some(s) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(s),
            _ => Err(AuthError::Invalid(format!(
                "client certificate has no usable {}",
                match self.subject_from {
                    CertSubjectSource::CommonName => "common name",
                    CertSubjectSource::SanEmail => "e-mail SAN",
                    CertSubjectSource::SanDns => "DNS SAN",
                    CertSubjectSource::SanUri => "URI SAN",
                }
            ))),
        }
    }
}

#[async_trait]
impl Authenticator for ClientCertAuthenticator {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError> {
        match credential {
            Credential::ClientCertificate(cert) => self.verify(cert),
            Credential::Bearer(_) => Err(AuthError::NotApplicable),
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
