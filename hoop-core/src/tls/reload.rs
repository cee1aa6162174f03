//! Certificate rotation: a certificate resolver whose key can be swapped while the endpoint
//! serves, and change detection of the files behind it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Serves the current certificate and key to every new handshake. Sessions already
/// established keep the key they were made with; a swap only affects new handshakes.
pub(crate) struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertResolver {
    // Never print the key (even its Debug form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl CertResolver {
    pub(crate) fn new(key: Arc<CertifiedKey>) -> Self {
        CertResolver {
            current: RwLock::new(key),
        }
    }

    /// The certificate and key new handshakes get.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a complete Arc (a swap cannot be half done).
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `key` the certificate of new handshakes.
    pub(crate) fn swap(&self, key: Arc<CertifiedKey>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What identifies one version of a file without reading it: modification time, length
/// and (on Unix) inode, which changes when a file is replaced by a rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// `None` when the file cannot be inspected (missing, no permission).
    fn of(path: &Path) -> Option<FileStamp> {
        // Follows symlinks, so a Kubernetes-style `..data` symlink swap is seen.
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode,
        })
    }
}

/// The stamps of a set of files, compared to tell whether any changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamps(Vec<Option<FileStamp>>);

impl Stamps {
    pub(crate) fn of(paths: &[PathBuf]) -> Stamps {
        Stamps(paths.iter().map(|p| FileStamp::of(p)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_change_with_content_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pem");
        std::fs::write(&a, "one").unwrap();
        let paths = vec![a.clone(), dir.path().join("missing.pem")];
        let s1 = Stamps::of(&paths);
        assert_eq!(s1, Stamps::of(&paths));
        assert!(s1.0[1].is_none());
        std::fs::write(&a, "three").unwrap();
        let s2 = Stamps::of(&paths);
        assert_ne!(s1, s2, "length changed");
        let b = dir.path().join("b.pem");
        std::fs::write(&b, "other").unwrap();
        std::fs::rename(&b, &a).unwrap();
        assert_ne!(s2, Stamps::of(&paths), "replaced by rename");
    }

    #[test]
    fn resolver_swaps() {
        let ca = hoop_testkit::TestCa::new("r");
        let provider = crate::crypto_provider();
        let make = |c: &hoop_testkit::TestCert| {
            Arc::new(CertifiedKey::from_der(vec![c.cert()], c.key(), &provider).unwrap())
        };
        let a = ca.server();
        let b = ca.server();
        let r = CertResolver::new(make(&a));
        assert_eq!(r.current().cert[0].as_ref(), a.cert_der.as_slice());
        r.swap(make(&b));
        assert_eq!(r.current().cert[0].as_ref(), b.cert_der.as_slice());
    }
}
