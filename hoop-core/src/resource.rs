//! Resources: the named targets a gateway gives access to.

use std::collections::BTreeMap;

/// A target users reach through the gateway (a database, an SSH host, an HTTP API, a Kafka
/// cluster), as seen by the policy and the audit trail.
///
/// Protocol crates keep their own connection settings (address, upstream TLS, credentials)
/// next to it; this type holds only what policy, masking and recording need.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    /// Unique name, matched by policy rules (e.g. `prod-db`).
    pub name: String,
    /// Protocol of the resource (`postgres`, `http`, `kubernetes`, `ssh`, `kafka`, `tcp`).
    pub protocol: String,
    /// Free-form labels (e.g. `env=prod`), matched by policy rules.
    pub labels: BTreeMap<String, String>,
}

impl Resource {
    /// A resource with no labels.
    pub fn new(name: impl Into<String>, protocol: impl Into<String>) -> Self {
        Resource {
            name: name.into(),
            protocol: protocol.into(),
            labels: BTreeMap::new(),
        }
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}
