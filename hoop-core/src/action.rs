//! Actions: what a user asks the target to do, as seen by the [`Policy`](crate::Policy).

use std::fmt;

/// How risky an action is. Adapters classify every command; what they cannot classify is
/// [`ActionClass::Unknown`], which no rule written for another class ever matches.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionClass {
    /// Reads data (`SELECT`, `GET`, Kafka Fetch).
    Read,
    /// Changes data (`INSERT`/`UPDATE`/`DELETE`, `POST`/`PUT`/`PATCH`, Produce).
    Write,
    /// Changes schema (`CREATE`/`ALTER`, Kafka CreateTopics/AlterConfigs).
    Ddl,
    /// Destroys data or objects (`DROP`, `TRUNCATE`, HTTP `DELETE`, DeleteTopics, `rm -rf`).
    Destructive,
    /// Administers the target (roles, grants, `COPY ... PROGRAM`, server settings).
    Admin,
    /// Not classified: never treated as safe.
    Unknown,
}

impl ActionClass {
    /// All classes, from least to most strict.
    pub const ALL: [ActionClass; 6] = [
        ActionClass::Read,
        ActionClass::Write,
        ActionClass::Ddl,
        ActionClass::Destructive,
        ActionClass::Admin,
        ActionClass::Unknown,
    ];

    /// The class's name as used in configuration (`read`, `write`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionClass::Read => "read",
            ActionClass::Write => "write",
            ActionClass::Ddl => "ddl",
            ActionClass::Destructive => "destructive",
            ActionClass::Admin => "admin",
            ActionClass::Unknown => "unknown",
        }
    }

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }

    /// The stricter of two classes (for a multi-statement command). `Unknown` is the
    /// strictest.
    pub fn max(self, other: ActionClass) -> ActionClass {
        std::cmp::Ord::max(self, other)
    }
}

impl fmt::Display for ActionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One command inside a session.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Command {
    /// Class of the command (for several statements, the strictest).
    pub class: ActionClass,
    /// Short verb (`SELECT`, `DROP TABLE`, `GET`, `exec`, `DeleteTopics`).
    pub verb: String,
    /// The command as the user sent it (statement text, `METHOD /normalised/path`, exec
    /// line), already normalised where the protocol allows it.
    pub text: String,
    /// Objects it touches, where known (tables, paths, topics), for rules and audit.
    pub objects: Vec<String>,
}

/// What the policy is asked about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Opening a session on the resource.
    Connect,
    /// One command inside an open session.
    Command(Command),
}

impl Action {
    /// The class of a command; `None` for [`Action::Connect`].
    pub fn class(&self) -> Option<ActionClass> {
        match self {
            Action::Connect => None,
            Action::Command(c) => Some(c.class),
        }
    }

    /// A stable fingerprint of the action (SHA-256 over its kind and text), used to key
    /// approval grants: a retried identical command has the same fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        match self {
            Action::Connect => ctx.update(b"connect"),
            Action::Command(c) => {
                ctx.update(b"command\0");
                ctx.update(c.text.trim().as_bytes());
            }
        }
        let d = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }
}

/// SHA-256 fingerprint of an [`Action`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_strictest() {
        for c in ActionClass::ALL {
            assert_eq!(c.max(ActionClass::Unknown), ActionClass::Unknown);
        }
        assert_eq!(
            ActionClass::Read.max(ActionClass::Destructive),
            ActionClass::Destructive
        );
    }

    #[test]
    fn fingerprint_depends_on_text() {
        let a = |t: &str| {
            Action::Command(Command {
                class: ActionClass::Read,
                verb: "SELECT".into(),
                text: t.into(),
                objects: vec![],
            })
        };
        assert_eq!(a("select 1").fingerprint(), a(" select 1 ").fingerprint());
        assert_ne!(a("select 1").fingerprint(), a("select 2").fingerprint());
        assert_ne!(Action::Connect.fingerprint(), a("connect").fingerprint());
    }
}
