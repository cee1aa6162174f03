//! Client-certificate identities.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hoop_core::auth::{CertSubjectSource, ClientCertAuthenticator};
use hoop_core::{AuthError, AuthMethod, Authenticator, Credential};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

fn cert(
    cn: Option<&str>,
    ou: Option<&str>,
    sans: Vec<SanType>,
    from: Duration,
    to: Duration,
) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    if let Some(ou) = ou {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, ou);
    }
    p.subject_alt_names = sans;
    let now = OffsetDateTime::now_utc();
    p.not_before = now + from;
    p.not_after = now + to;
    CertificateDer::from(p.self_signed(&key).unwrap().der().to_vec())
}

fn alice() -> CertificateDer<'static> {
    cert(
        Some("alice"),
        Some("dba"),
        vec![
            SanType::DnsName("alice.dev.example.test".try_into().unwrap()),
            SanType::Rfc822Name("alice@example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.test/user/alice".try_into().unwrap()),
        ],
        Duration::hours(-1),
        Duration::days(1),
    )
}

async fn check(
    a: &ClientCertAuthenticator,
    c: &CertificateDer<'_>,
) -> Result<hoop_core::Identity, AuthError> {
    a.authenticate(&Credential::ClientCertificate(c)).await
}

#[tokio::test]
async fn subject_from_cn_with_mapped_groups() {
    let a = ClientCertAuthenticator::new(CertSubjectSource::CommonName)
        .with_subject_groups("alice", ["ops", "dev"]);
    let id = check(&a, &alice()).await.unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(id.groups, vec!["ops", "dev"]);
    assert_eq!(id.method, AuthMethod::ClientCertificate);
    assert!(
        id.issuer.unwrap().contains("alice"),
        "self-signed: issuer is the subject"
    );
    assert!(id.expires_at.is_some());
}

#[tokio::test]
async fn subject_from_sans_and_groups_from_ou() {
    let c = alice();
    let a = ClientCertAuthenticator::new(CertSubjectSource::SanEmail).with_groups_from_ou(true);
    let id = check(&a, &c).await.unwrap();
    assert_eq!(id.subject, "alice@example.com");
    assert_eq!(id.groups, vec!["dba"]);

    let a = ClientCertAuthenticator::new(CertSubjectSource::SanDns)
        .with_subject_groups("alice.dev.example.test", ["dba", "x"])
        .with_groups_from_ou(true);
    let id = check(&a, &c).await.unwrap();
    assert_eq!(id.subject, "alice.dev.example.test");
    assert_eq!(id.groups, vec!["dba", "x"], "no duplicate from the OU");

    let a = ClientCertAuthenticator::new(CertSubjectSource::SanUri);
    let id = check(&a, &c).await.unwrap();
    assert_eq!(id.subject, "spiffe://example.test/user/alice");
    assert!(id.groups.is_empty(), "OU groups are off by default");
}

#[tokio::test]
async fn missing_subject_is_invalid() {
    let no_san = cert(
        Some("bob"),
        None,
        vec![],
        Duration::hours(-1),
        Duration::days(1),
    );
    let a = ClientCertAuthenticator::new(CertSubjectSource::SanEmail);
    assert!(matches!(
        check(&a, &no_san).await,
        Err(AuthError::Invalid(_))
    ));
    let no_cn = cert(
        None,
        None,
        vec![SanType::Rfc822Name("bob@example.com".try_into().unwrap())],
        Duration::hours(-1),
        Duration::days(1),
    );
    let a = ClientCertAuthenticator::new(CertSubjectSource::CommonName);
    assert!(matches!(
        check(&a, &no_cn).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn validity_is_checked_again() {
    let a = ClientCertAuthenticator::default();
    let expired = cert(
        Some("old"),
        None,
        vec![],
        Duration::days(-10),
        Duration::hours(-1),
    );
    assert_eq!(check(&a, &expired).await, Err(AuthError::Expired));
    let future = cert(
        Some("new"),
        None,
        vec![],
        Duration::days(1),
        Duration::days(10),
    );
    assert_eq!(check(&a, &future).await, Err(AuthError::NotYetValid));
}

#[tokio::test]
async fn garbage_and_bearer() {
    let a = ClientCertAuthenticator::default();
    let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
    assert!(matches!(check(&a, &junk).await, Err(AuthError::Invalid(_))));
    let mut trailing = alice().to_vec();
    trailing.push(0);
    assert!(matches!(
        check(&a, &CertificateDer::from(trailing)).await,
        Err(AuthError::Invalid(_))
    ));
    assert_eq!(
        a.authenticate(&Credential::Bearer("token")).await,
        Err(AuthError::NotApplicable)
    );
    // A testkit client certificate (issued by a CA) maps by CN.
    let ca = hoop_testkit::TestCa::new("client CA");
    let id = check(&a, &ca.client("carol").cert()).await.unwrap();
    assert_eq!(id.subject, "carol");
    assert!(id.issuer.unwrap().contains("client CA"));
}
