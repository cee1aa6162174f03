//! JSON Web Tokens for tests: fresh signing keys (ES256, EdDSA, RS256) with their public
//! JWK, key sets, signed and unsigned tokens.
//!
//! ```
//! use hoop_testkit::jwt::{SigningKey, jwks, now};
//! use serde_json::json;
//!
//! let key = SigningKey::es256("k1");
//! let set = jwks(&[&key]); // what the identity provider publishes
//! assert_eq!(set["keys"][0]["kid"], "k1");
//! let token = key.sign(&json!({"sub": "alice", "exp": now() + 600}));
//! assert_eq!(token.split('.').count(), 3);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A private key that signs tokens, with its key id and its public JWK.
pub struct SigningKey {
    /// Key id (`kid` of the JWK and of the tokens' header).
    pub kid: String,
    /// The JWS algorithm it signs with.
    pub alg: Algorithm,
    /// The public key, as a JWK.
    pub jwk: Value,
    enc: EncodingKey,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl SigningKey {
    /// A new P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate P-256 key");
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("read P-256 key");
        let p = kp.public_key().as_ref();
        assert_eq!(p.len(), 65, "uncompressed point");
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            enc: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                        "x": b64(&p[1..33]), "y": b64(&p[33..65])}),
        }
    }

    /// A new Ed25519 key (EdDSA).
    pub fn eddsa(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519 key");
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("read Ed25519 key");
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            enc: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                        "x": b64(kp.public_key().as_ref())}),
        }
    }

    /// A new 2048-bit RSA key (RS256).
    pub fn rs256(kid: &str) -> Self {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("generate RSA key");
        let pkcs8: Pkcs8V1Der = kp.as_der().expect("RSA key as PKCS#8");
        // PrivateKeyInfo { version, algorithm, privateKey OCTET STRING { RSAPrivateKey } }
        let (_, info, _) = der_tlv(pkcs8.as_ref());
        let (_, _, rest) = der_tlv(info);
        let (_, _, rest) = der_tlv(rest);
        let (tag, pkcs1, _) = der_tlv(rest);
        assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
        let public = kp.public_key();
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            enc: EncodingKey::from_rsa_der(pkcs1),
            jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                        "n": b64(public.modulus().big_endian_without_leading_zero()),
                        "e": b64(public.exponent().big_endian_without_leading_zero())}),
        }
    }

    /// A token of `claims` signed with this key (its `kid` in the header).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.enc).expect("sign token")
    }
}

/// One DER TLV: (tag, content, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let first = input[1] as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        let len = input[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &input[hdr..hdr + len], &input[hdr + len..])
}

/// The key set (`{"keys": [...]}`) publishing `keys`.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

/// An unsigned token (`alg: none`, empty signature): every verifier must refuse it.
pub fn unsigned(claims: &Value) -> String {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims.to_string().as_bytes());
    format!("{header}.{payload}.")
}

/// Seconds since the Unix epoch (for `iat`, `exp`, `nbf`).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
