//! Reading claims out of a verified JWT payload.

use serde_json::Value;

/// At most this many groups are taken from a token.
pub(crate) const MAX_GROUPS: usize = 256;

/// The claim at `path`: first the literal key (claim names such as
/// `https://example.com/groups` contain dots), then the dot-separated path into nested
/// objects (`realm_access.roles`).
pub(crate) fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    let obj = claims.as_object()?;
    if let Some(v) = obj.get(path) {
        return Some(v);
    }
    if !path.contains('.') {
        return None;
    }
    let mut cur = claims;
    for part in path.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// A claim that is a string, or an array of strings (other array items are ignored),
/// as a list. Anything else gives an empty list.
pub(crate) fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .take(MAX_GROUPS)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A NumericDate claim (seconds since the epoch, integer or fraction), floored.
/// `Err(())` when present but not a finite number.
pub(crate) fn numeric_date(claims: &Value, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(u) = n.as_u64() {
                Ok(Some(i64::try_from(u).unwrap_or(i64::MAX)))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Ok(Some(
                        f.floor().clamp(i64::MIN as f64, i64::MAX as f64) as i64,
                    )),
                    _ => Err(()),
                }
            }
        }
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_lists() {
        let c = json!({
            "groups": ["a", 1, "b", ""],
            "realm_access": {"roles": ["r1"]},
            "https://x.example/groups": "g",
            "role": "solo"
        });
        assert_eq!(string_list(lookup(&c, "groups")), vec!["a", "b"]);
        assert_eq!(string_list(lookup(&c, "realm_access.roles")), vec!["r1"]);
        assert_eq!(
            string_list(lookup(&c, "https://x.example/groups")),
            vec!["g"]
        );
        assert_eq!(string_list(lookup(&c, "role")), vec!["solo"]);
        assert!(string_list(lookup(&c, "missing.path")).is_empty());
        assert!(lookup(&json!([1]), "x").is_none());
    }

    #[test]
    fn dates() {
        let c = json!({"a": 10, "b": 10.9, "c": "10", "d": -5, "e": 1e300});
        assert_eq!(numeric_date(&c, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(&c, "b"), Ok(Some(10)));
        assert_eq!(numeric_date(&c, "c"), Err(()));
        assert_eq!(numeric_date(&c, "d"), Ok(Some(-5)));
        assert_eq!(numeric_date(&c, "e"), Ok(Some(i64::MAX)));
        assert_eq!(numeric_date(&c, "zz"), Ok(None));
    }
}
