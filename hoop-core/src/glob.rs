//! Minimal glob patterns (`*` any run, `?` one character) for names in rules.

/// A compiled glob pattern. Matching is case-sensitive and allocation-free.
///
/// ```
/// use hoop_core::glob::Glob;
/// assert!(Glob::new("prod-*").matches("prod-db"));
/// assert!(!Glob::new("prod-*").matches("staging-db"));
/// assert!(Glob::new("db-?").matches("db-1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Compiles a pattern.
    pub fn new(pattern: impl Into<String>) -> Self {
        Glob {
            pattern: pattern.into(),
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern (no allocation).
    pub fn matches(&self, text: &str) -> bool {
        let p = self.pattern.as_str();
        let first = |s: &str, at: usize| s.get(at..).and_then(|r| r.chars().next());
        // Wildcard matching with one backtrack point, over byte offsets that always sit
        // on character boundaries: O(|p|*|t|) worst case.
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while let Some(tc) = first(text, ti) {
            match first(p, pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(pc) if pc == '?' || pc == tc => {
                    pi += pc.len_utf8();
                    ti += tc.len_utf8();
                }
                _ => match star {
                    Some((sp, st)) => {
                        let skipped = first(text, st).map_or(1, char::len_utf8);
                        pi = sp + 1;
                        ti = st + skipped;
                        star = Some((sp, ti));
                    }
                    None => return false,
                },
            }
        }
        p.get(pi..)
            .is_some_and(|rest| rest.chars().all(|c| c == '*'))
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs() {
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("*").matches("anything"));
        assert!(Glob::new("a*b*c").matches("aXbYc"));
        assert!(!Glob::new("a*b*c").matches("aXbY"));
        assert!(Glob::new("exact").matches("exact"));
        assert!(!Glob::new("exact").matches("exactly"));
        assert!(Glob::new("*.example.com").matches("db.example.com"));
        assert!(!Glob::new("*.example.com").matches("example.org"));
        assert!(Glob::new("é*ü").matches("éxyzü"));
        assert!(Glob::new("?b").matches("éb"));
        assert!(!Glob::new("a?").matches("a"));
    }
}
