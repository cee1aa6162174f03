//! A development CA and gateway certificate, generated once into the data directory for
//! gateways configured without certificates. Not for production: the CA key lies next
//! to the certificates.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Paths of the development PKI.
#[derive(Clone, Debug)]
pub struct DevPki {
    /// The CA certificate clients trust (`sslrootcert=`, `curl --cacert`).
    pub ca_cert: PathBuf,
    /// The gateway's certificate (for localhost, 127.0.0.1 and ::1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Whether the files were created now.
    pub created: bool,
}

/// Why the development PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    /// File I/O.
    #[error("development PKI in {dir}: {source}")]
    Io {
        /// The data directory.
        dir: String,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation.
    #[error("development PKI: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Makes (or reuses) `dir/dev-ca.crt`, `dir/gateway.crt` and `dir/gateway.key`.
/// The CA is valid for a year, the leaf for localhost / 127.0.0.1 / ::1.
pub fn ensure(dir: &Path) -> Result<DevPki, DevPkiError> {
    let io = |source| DevPkiError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let pki = DevPki {
        ca_cert: dir.join("dev-ca.crt"),
        cert: dir.join("gateway.crt"),
        key: dir.join("gateway.key"),
        created: false,
    };
    if pki.ca_cert.is_file() && pki.cert.is_file() && pki.key.is_file() {
        return Ok(pki);
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let now = OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "hoop development CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "hoop (development only)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - Duration::hours(1);
    ca.not_after = now + Duration::days(365);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::hours(1);
    leaf.not_after = now + Duration::days(364);
    let cert = leaf.signed_by(&key, &issuer)?;

    std::fs::write(&pki.ca_cert, ca_cert.pem()).map_err(io)?;
    std::fs::write(&pki.cert, format!("{}{}", cert.pem(), ca_cert.pem())).map_err(io)?;
    write_private(&pki.key, &key.serialize_pem()).map_err(io)?;
    Ok(DevPki {
        created: true,
        ..pki
    })
}

/// Writes `text` to a new file readable by its owner only (where the platform has modes).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
