//! Client side of the password exchanges toward a target: SCRAM-SHA-256 (RFC 5802 /
//! RFC 7677), SCRAM-SHA-256-PLUS with `tls-server-end-point` channel binding (RFC 5929),
//! and md5.
//!
//! The gateway logs in with credentials the user never sees; these types never print the
//! password (their `Debug` output redacts it).

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::CodecError;

/// Highest PBKDF2 iteration count accepted from a server (PostgreSQL's default is 4096);
/// a hostile target cannot make the gateway spin.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// SCRAM mechanism names.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// SCRAM with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Channel binding for SCRAM.
#[derive(Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    /// The client does not support channel binding (`n,,`).
    Unsupported,
    /// The client supports it but the server did not offer `-PLUS` (`y,,`): a server that
    /// does support it will detect a downgrade.
    NotOffered,
    /// `tls-server-end-point`: the hash of the target's certificate (`p=...`).
    TlsServerEndPoint(Vec<u8>),
}

impl std::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelBinding::Unsupported => f.write_str("Unsupported"),
            ChannelBinding::NotOffered => f.write_str("NotOffered"),
            ChannelBinding::TlsServerEndPoint(_) => f.write_str("TlsServerEndPoint(..)"),
        }
    }
}

impl ChannelBinding {
    fn gs2_header(&self) -> &'static str {
        match self {
            ChannelBinding::Unsupported => "n,,",
            ChannelBinding::NotOffered => "y,,",
            ChannelBinding::TlsServerEndPoint(_) => "p=tls-server-end-point,,",
        }
    }

    /// Computes `tls-server-end-point` data from the target's end-entity certificate:
    /// its hash with the certificate's signature hash, SHA-256 for MD5/SHA-1 (RFC 5929).
    /// `signature_hash` is the hash of the certificate's signature algorithm if known
    /// (`"sha384"`, `"sha512"`); anything else uses SHA-256.
    pub fn tls_server_end_point(cert_der: &[u8], signature_hash: Option<&str>) -> Self {
        let alg = match signature_hash {
            Some("sha384") => &digest::SHA384,
            Some("sha512") => &digest::SHA512,
            _ => &digest::SHA256,
        };
        ChannelBinding::TlsServerEndPoint(digest::digest(alg, cert_der).as_ref().to_vec())
    }
}

#[derive(Clone, PartialEq, Eq)]
enum State {
    Start,
    SentFirst,
    SentFinal { server_signature: Vec<u8> },
    Done,
}

/// A SCRAM-SHA-256 exchange, client side.
///
/// ```
/// use hoop_postgres::scram::{ChannelBinding, ScramClient};
/// let mut c = ScramClient::new("secret", ChannelBinding::Unsupported);
/// let first = c.client_first();
/// assert!(first.starts_with(b"n,,n=,r="));
/// ```
pub struct ScramClient {
    password: Vec<u8>,
    nonce: String,
    binding: ChannelBinding,
    client_first_bare: String,
    state: State,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("password", &"<redacted>")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

fn bad(detail: impl Into<String>) -> CodecError {
    CodecError::Invalid {
        what: "SCRAM exchange",
        detail: detail.into(),
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

impl ScramClient {
    /// Starts an exchange with a random nonce.
    pub fn new(password: &str, binding: ChannelBinding) -> Self {
        let mut raw = [0u8; 18];
        // A failing system RNG leaves zeros; the server nonce still makes the exchange
        // unique, and SCRAM's security does not rest on the client nonce alone.
        let _ = aws_lc_rs::rand::fill(&mut raw);
        Self::with_nonce(password, binding, &B64.encode(raw))
    }

    /// Starts an exchange with a given nonce (tests).
    pub fn with_nonce(password: &str, binding: ChannelBinding, nonce: &str) -> Self {
        ScramClient {
            password: password.as_bytes().to_vec(),
            nonce: nonce.to_owned(),
            binding,
            client_first_bare: String::new(),
            state: State::Start,
        }
    }

    /// The mechanism to name in SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        match self.binding {
            ChannelBinding::TlsServerEndPoint(_) => SCRAM_SHA_256_PLUS,
            _ => SCRAM_SHA_256,
        }
    }

    /// The client-first message. PostgreSQL ignores the SCRAM user name (it uses the
    /// startup `user`), so it is sent empty.
    pub fn client_first(&mut self) -> Vec<u8> {
        self.client_first_bare = format!("n=,r={}", self.nonce);
        self.state = State::SentFirst;
        format!("{}{}", self.binding.gs2_header(), self.client_first_bare).into_bytes()
    }

    /// Takes server-first, returns client-final.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, CodecError> {
        if self.state != State::SentFirst {
            return Err(bad("server-first out of order"));
        }
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| bad("server-first not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(B64.decode(v).map_err(|_| bad("bad salt"))?),
                Some(("i", v)) => {
                    iterations = Some(v.parse::<u32>().map_err(|_| bad("bad iteration count"))?)
                }
                Some(("m", _)) => return Err(bad("mandatory extension not supported")),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        let salt = salt.ok_or_else(|| bad("no salt"))?;
        let iterations = iterations.ok_or_else(|| bad("no iteration count"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(bad("server nonce does not extend the client nonce"));
        }
        if iterations > MAX_ITERATIONS {
            return Err(bad(format!("iteration count {iterations} over the limit")));
        }
        let iters = std::num::NonZeroU32::new(iterations).ok_or_else(|| bad("zero iterations"))?;
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iters,
            &salt,
            &self.password,
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        let stored_key = digest::digest(&digest::SHA256, &client_key);
        let mut cbind = self.binding.gs2_header().as_bytes().to_vec();
        if let ChannelBinding::TlsServerEndPoint(data) = &self.binding {
            cbind.extend_from_slice(data);
        }
        let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_sig = hmac_sha256(stored_key.as_ref(), &[auth_message.as_bytes()]);
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_sig.iter()) {
            *p ^= s;
        }
        let server_key = hmac_sha256(&salted, &[b"Server Key"]);
        let server_signature = hmac_sha256(&server_key, &[auth_message.as_bytes()]).to_vec();
        self.state = State::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final (the server's signature proves it knew the password too).
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), CodecError> {
        let State::SentFinal { server_signature } = &self.state else {
            return Err(bad("server-final out of order"));
        };
        let text = std::str::from_utf8(server_final).map_err(|_| bad("server-final not UTF-8"))?;
        let mut verifier = None;
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("e", e)) => return Err(bad(format!("server error: {e}"))),
                Some(("v", v)) => verifier = Some(B64.decode(v).map_err(|_| bad("bad verifier"))?),
                _ => {}
            }
        }
        let verifier = verifier.ok_or_else(|| bad("no server signature"))?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&verifier, server_signature)
            .map_err(|_| bad("server signature mismatch"))?;
        self.state = State::Done;
        Ok(())
    }

    /// Whether the server's signature was verified.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

/// The md5 password answer: `"md5" + md5hex(md5hex(password + user) + salt)`.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    use md5::{Digest, Md5};
    let inner = hex_lower(&Md5::digest(
        [password.as_bytes(), user.as_bytes()].concat(),
    ));
    let outer = hex_lower(&Md5::digest([inner.as_bytes(), &salt[..]].concat()));
    format!("md5{outer}")
}

fn hex_lower(b: &[u8]) -> String {
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 test vector (user "user", password "pencil"); PostgreSQL sends an empty
    /// user, so the vector is replayed with the RFC's bare message.
    #[test]
    fn rfc7677_vector() {
        let mut c = ScramClient::with_nonce(
            "pencil",
            ChannelBinding::Unsupported,
            "rOprNGfwEbeRWgbNEkqO",
        );
        let _ = c.client_first();
        c.client_first_bare = String::from("n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .client_final(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c.is_done());
    }

    #[test]
    fn refuses_bad_servers() {
        let mut c = ScramClient::with_nonce("pw", ChannelBinding::Unsupported, "abc");
        let _ = c.client_first();
        assert!(
            c.client_final(b"r=xyz123,s=AAAA,i=4096").is_err(),
            "nonce not extended"
        );
        assert!(
            c.client_final(b"r=abcdef,s=AAAA,i=99999999").is_err(),
            "too many iterations"
        );
        assert!(c.client_final(b"r=abcdef,s=AAAA,i=0").is_err());
        assert!(c.client_final(b"r=abcdef,s=AAAA,i=4096").is_ok());
        assert!(c.verify_server_final(b"v=AAAA").is_err());
        assert!(c.verify_server_final(b"e=invalid-proof").is_err());
    }

    #[test]
    fn md5_known_answer() {
        // md5(md5("secret" + "alice") + [1,2,3,4]), checked with Python's hashlib.
        assert_eq!(
            md5_password("alice", "secret", [1, 2, 3, 4]),
            "md598a0412b9c31436fc53776e863350083"
        );
    }
}
