//! Field-name rules: case-insensitive glob patterns on column / key names.

use super::Field;
use super::strategy::Strategy;

/// A rule that masks every value of the fields whose name matches `pattern`.
///
/// Patterns are case-insensitive globs (`*` any run, `?` one character): `email`,
/// `*_ssn`, `pass*`. A pattern with a dot matches `table.column` (`users.email`,
/// `*.password`) and only fields whose table is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRule {
    pattern: String,
    strategy: Strategy,
    label: Option<String>,
}

impl FieldRule {
    /// A rule; the pattern is folded to lower case.
    pub fn new(pattern: &str, strategy: Strategy) -> Self {
        FieldRule {
            pattern: pattern.to_ascii_lowercase(),
            strategy,
            label: None,
        }
    }

    /// Sets the label used in `[REDACTED:LABEL]` and `LABEL_<hex>` pseudonyms.
    pub fn with_label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }

    /// The pattern (lower case).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The strategy applied to matching fields.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The label, if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Whether the rule applies to `field` (no allocation).
    pub fn matches(&self, field: &Field<'_>) -> bool {
        let Some(name) = field.name else {
            return false;
        };
        match self.pattern.split_once('.') {
            Some((tp, np)) => field.table.is_some_and(|t| {
                glob_ci(tp.as_bytes(), t.as_bytes()) && glob_ci(np.as_bytes(), name.as_bytes())
            }),
            None => glob_ci(self.pattern.as_bytes(), name.as_bytes()),
        }
    }
}

/// Length of the UTF-8 character starting with `b`.
fn char_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// ASCII case-insensitive glob match of a lower-case pattern against `text`; `?` matches
/// one UTF-8 character. Linear-time backtracking on the last `*`.
pub(crate) fn glob_ci(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&t) = text.get(ti) {
        match pattern.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(b'?') => {
                pi += 1;
                ti += char_len(t);
            }
            Some(&p) if p == t.to_ascii_lowercase() => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    let next = st + char_len(text.get(st).copied().unwrap_or(0));
                    pi = sp + 1;
                    ti = next;
                    star = Some((sp, next));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(pi..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

/// Whether a field name reads like an SSN column (`ssn`, `customer_ssn`,
/// `social_security_number`): nine bare digits then count as an SSN.
pub(crate) fn ssn_like_name(name: &str) -> bool {
    contains_ci(name.as_bytes(), b"ssn")
        || contains_ci(name.as_bytes(), b"socialsecurity")
        || contains_ci(name.as_bytes(), b"social_security")
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| {
        w.iter()
            .zip(needle)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_ci(b"*_ssn", b"Customer_SSN"));
        assert!(glob_ci(b"email", b"EMAIL"));
        assert!(!glob_ci(b"email", b"emails"));
        assert!(glob_ci(b"pass*", b"Password"));
        assert!(glob_ci(b"a?c", "aéc".as_bytes()));
        assert!(glob_ci(b"*", b""));
        assert!(!glob_ci(b"?", b""));
        assert!(glob_ci(b"*a*b*", b"xxaxxbxx"));
    }

    #[test]
    fn table_rules() {
        let r = FieldRule::new("Users.*mail", Strategy::Redact);
        let mut f = Field::named("email");
        assert!(!r.matches(&f));
        f.table = Some("USERS");
        assert!(r.matches(&f));
        assert!(ssn_like_name("Customer_SSN"));
        assert!(!ssn_like_name("session"));
    }
}
