//! Parsing a JSON Web Key Set (RFC 7517) into verification keys, defensively: a key the
//! gateway cannot use (symmetric, encryption-only, unknown curve, malformed) is skipped,
//! and hostile JSON never panics.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;

use super::algorithm::{JwsAlgorithm, KeyKind};

/// At most this many keys of a set are considered.
pub(crate) const MAX_KEYS: usize = 64;

/// One usable verification key.
#[derive(Clone, Debug)]
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    pub(crate) kind: KeyKind,
    /// The JWK's `alg`, when it names one.
    pub(crate) alg: Option<JwsAlgorithm>,
    pub(crate) key: DecodingKey,
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub(crate) fn fits(&self, alg: JwsAlgorithm) -> bool {
        self.kind == alg.key_kind() && self.alg.is_none_or(|a| a == alg)
    }
}

/// The usable keys of a JWKS document.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<VerifyKey>,
}

/// What a lookup found.
pub(crate) enum Selected {
    /// Keys that fit the token (usually one).
    Found(Vec<DecodingKey>),
    /// Keys with the token's `kid` exist, but none fits its algorithm.
    Mismatch,
    /// No key with that `kid` (or, without a `kid`, none for the algorithm).
    Missing,
}

impl KeySet {
    /// Parses a JWKS document. Fails only when the document itself is not a JWKS or
    /// holds no usable key.
    pub(crate) fn parse(body: &[u8]) -> Result<KeySet, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys: Vec<VerifyKey> = doc
            .keys
            .into_iter()
            .take(MAX_KEYS)
            .filter_map(|v| parse_key(v).ok())
            .collect();
        if keys.is_empty() {
            return Err("the key set holds no usable signing key".into());
        }
        Ok(KeySet { keys })
    }

    /// The keys that may verify a token with `kid` and `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: JwsAlgorithm) -> Selected {
        let mut found = Vec::new();
        let mut same_kid = false;
        for k in &self.keys {
            if let Some(kid) = kid {
                if k.kid.as_deref() != Some(kid) {
                    continue;
                }
                same_kid = true;
            }
            if k.fits(alg) {
                found.push(k.key.clone());
            }
        }
        if !found.is_empty() {
            Selected::Found(found)
        } else if same_kid {
            Selected::Mismatch
        } else {
            Selected::Missing
        }
    }
}

#[derive(serde::Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64(field: &'static str, v: Option<&str>) -> Result<Vec<u8>, String> {
    let v = v.ok_or_else(|| format!("missing {field}"))?;
    URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map_err(|_| format!("{field} is not base64url"))
}

fn parse_key(v: serde_json::Value) -> Result<VerifyKey, String> {
    let raw: RawJwk = serde_json::from_value(v).map_err(|e| e.to_string())?;
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signature key".into());
    }
    if let Some(ops) = &raw.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        return Err("key_ops does not allow verify".into());
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        // A key declared for an algorithm we refuse (HS256, RSA-OAEP, ...) is unusable.
        Some(a) => Some(JwsAlgorithm::parse(a).ok_or("unsupported alg")?),
    };
    let (kind, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = b64("n", raw.n.as_deref())?;
            let e = b64("e", raw.e.as_deref())?;
            let n_bits = significant_bits(&n);
            if !(2048..=8192).contains(&n_bits) {
                return Err(format!("RSA modulus of {n_bits} bits"));
            }
            if e.is_empty() || e.len() > 8 {
                return Err("bad RSA exponent".into());
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (kind, len) = if crv == "P-256" {
                (KeyKind::EcP256, 32)
            } else {
                (KeyKind::EcP384, 48)
            };
            let x = b64("x", raw.x.as_deref())?;
            let y = b64("y", raw.y.as_deref())?;
            if x.len() != len || y.len() != len {
                return Err("bad EC coordinate length".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64("x", raw.x.as_deref())?;
            if x.len() != 32 {
                return Err("bad Ed25519 key length".into());
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        _ => return Err("unsupported key type".into()),
    };
    if let Some(a) = alg
        && a.key_kind() != kind
    {
        return Err("alg does not fit the key type".into());
    }
    Ok(VerifyKey {
        kid: raw.kid,
        kind,
        alg,
        key,
    })
}

/// Bits of a big-endian unsigned integer, ignoring leading zeros.
fn significant_bits(be: &[u8]) -> usize {
    let mut it = be.iter().skip_while(|b| **b == 0);
    match it.next() {
        None => 0,
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * it.count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_documents_do_not_panic() {
        for doc in [
            &b""[..],
            b"null",
            b"[]",
            b"{\"keys\":null}",
            b"{\"keys\":[1,2,\"x\",{}]}",
            b"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"\"}]}",
            b"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
            b"{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"!!\"}]}",
            b"{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}",
        ] {
            assert!(
                KeySet::parse(doc).is_err(),
                "{:?}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn ed25519_key_parses_and_selects() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let doc = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a"}},{{"kty":"oct","k":"AA"}}]}}"#
        );
        let set = KeySet::parse(doc.as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(matches!(
            set.select(Some("a"), JwsAlgorithm::EdDSA),
            Selected::Found(_)
        ));
        assert!(matches!(
            set.select(Some("a"), JwsAlgorithm::ES256),
            Selected::Mismatch
        ));
        assert!(matches!(
            set.select(Some("b"), JwsAlgorithm::EdDSA),
            Selected::Missing
        ));
        assert!(matches!(
            set.select(None, JwsAlgorithm::EdDSA),
            Selected::Found(_)
        ));
    }

    #[test]
    fn encryption_keys_and_wrong_alg_are_skipped() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let doc = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","use":"enc"}},
                         {{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"ES256"}},
                         {{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"HS256"}}]}}"#
        );
        assert!(KeySet::parse(doc.as_bytes()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = KeySet::parse(&body);
        }

        #[test]
        fn arbitrary_jwk_fields_never_panic(
            kty in "(RSA|EC|OKP|oct|x)",
            crv in "(P-256|P-384|Ed25519|X25519|)",
            a in "[A-Za-z0-9_=-]{0,90}",
            b in "[A-Za-z0-9_=-]{0,90}",
            alg in "(RS256|ES256|EdDSA|HS256|none|)",
        ) {
            let doc = serde_json::json!({"keys": [{"kty": kty, "crv": crv, "x": a, "y": b, "n": a, "e": b, "alg": alg}]});
            if let Ok(set) = KeySet::parse(doc.to_string().as_bytes()) {
                for k in &set.keys {
                    proptest::prop_assert!(k.alg.is_none_or(|x| x.key_kind() == k.kind));
                }
            }
        }
    }

    #[test]
    fn bits() {
        assert_eq!(significant_bits(&[0, 0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
        assert_eq!(significant_bits(&[]), 0);
    }
}
