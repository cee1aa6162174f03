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

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // Iterative wildcard matching with single backtrack point: O(|p|*|t|) worst case.
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p.iter().skip(pi).all(|&c| c == '*')
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
    }
}
