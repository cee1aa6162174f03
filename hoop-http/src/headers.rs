//! Header hygiene: hop-by-hop headers, client credentials, forwarding headers and the
//! injected target credential.

use std::net::SocketAddr;

use base64::Engine;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{HttpTarget, UpstreamCredential};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` and `Keep-Alive`). `Trailer` is end to end (it
/// announces the trailer fields, and an HTTP/1.1 peer needs it to send them): kept.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// True when the request carries both `Content-Length` and `Transfer-Encoding`, or more
/// than one `Content-Length` value: a smuggling attempt or a broken client, refused.
pub fn framing_conflict(headers: &HeaderMap) -> bool {
    let cl = headers.get_all(header::CONTENT_LENGTH).iter().count();
    cl > 1 || (cl == 1 && headers.contains_key(header::TRANSFER_ENCODING))
}

/// True when the request asks for a protocol upgrade (`Connection: upgrade` and an
/// `Upgrade` header).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// True when the requested upgrade is one the gateway relays: `websocket`, or `SPDY/x`
/// (kubectl exec / attach / port-forward). Others, `h2c` above all (it would turn the
/// connection into an HTTP/2 tunnel past the per-request policy), are refused.
pub fn upgrade_allowed(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut protocols = v.split(',').map(str::trim).peekable();
    protocols.peek().is_some()
        && protocols.all(|p| {
            let name = p.split('/').next().unwrap_or("");
            name.eq_ignore_ascii_case("websocket") || name.eq_ignore_ascii_case("spdy")
        })
}

/// Removes hop-by-hop headers, and those the `Connection` header names. With `upgrade`,
/// `Upgrade` and `Connection: upgrade` are kept (and nothing else the client listed).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    // Most messages carry none: one pass over the names present instead of a lookup
    // (which parses the name) per hop-by-hop header.
    if headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        for n in HOP_BY_HOP {
            headers.remove(n);
        }
    }
    if let Some(v) = upgrade_value {
        headers.insert(header::UPGRADE, v);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The client's bearer token, if its `Authorization` header carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Drops the named cookies from every `Cookie` header (removing headers left empty).
fn strip_cookies(headers: &mut HeaderMap, names: &[String]) {
    if names.is_empty() || !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !pair.is_empty() && !names.iter().any(|c| c == name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Keeps only the content codings the gateway can decode for masking.
fn restrict_accept_encoding(headers: &mut HeaderMap) {
    let Some(v) = headers.get(header::ACCEPT_ENCODING) else {
        return;
    };
    let kept: Vec<&str> = v
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| {
            let coding = t.split(';').next().unwrap_or("").trim();
            ["gzip", "x-gzip", "deflate", "identity"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c))
        })
        .collect();
    let joined = kept.join(", ");
    match HeaderValue::from_str(&joined) {
        Ok(v) if !joined.is_empty() => {
            headers.insert(header::ACCEPT_ENCODING, v);
        }
        _ => {
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
    }
}

/// Drops from `Accept` the media types the masking cannot read (protobuf, MessagePack,
/// CBOR...): a client that also accepts others gets those; one that accepts only such a
/// type is asked for JSON instead (Kubernetes clients fall back to it).
fn restrict_accept(headers: &mut HeaderMap) {
    let Some(v) = headers.get(header::ACCEPT) else {
        return;
    };
    let all = v.to_str().unwrap_or("");
    let kept: Vec<&str> = all
        .split(',')
        .map(str::trim)
        .filter(|t| !crate::body::is_sealed_media_type(t.split(';').next().unwrap_or("")))
        .collect();
    if kept.len() == all.split(',').count() && v.to_str().is_ok() {
        return;
    }
    let joined = kept.join(", ");
    match HeaderValue::from_str(&joined) {
        Ok(v) if !joined.is_empty() => {
            headers.insert(header::ACCEPT, v);
        }
        _ => {
            headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        }
    }
}

/// Rewrites the headers of a request on its way to the target: hop-by-hop headers, the
/// client's `Authorization` / `Proxy-Authorization` and configured cookies removed,
/// `Forwarded` / `X-Forwarded-*` replaced by what the gateway saw, `Host` set to the
/// target, and the target credential injected. `masking` restricts `Accept-Encoding` to
/// codings the gateway decodes and `Accept` to media types it can read.
pub fn prepare_request(
    headers: &mut HeaderMap,
    target: &HttpTarget,
    peer: SocketAddr,
    upgrade: bool,
    masking: bool,
) -> Result<(), String> {
    let credential = match &target.credential {
        Some(cred) => Some(credential_header(cred)?),
        None => None,
    };
    prepare_request_with(headers, target, peer, upgrade, masking, credential)
}

/// [`prepare_request`] with the credential header already read (by the adapter's
/// [`CredentialCache`](crate::route::CredentialCache)); `None` injects none.
pub(crate) fn prepare_request_with(
    headers: &mut HeaderMap,
    target: &HttpTarget,
    peer: SocketAddr,
    upgrade: bool,
    masking: bool,
    credential: Option<(HeaderName, HeaderValue)>,
) -> Result<(), String> {
    // `TE: trailers` is end-to-end in meaning (gRPC needs it): kept, nothing else is.
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(headers, upgrade);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers.remove(header::AUTHORIZATION);
    strip_cookies(headers, &target.strip_cookies);
    headers.remove(header::FORWARDED);
    headers.remove("x-forwarded-host");
    headers.remove("x-real-ip");
    let ip = HeaderValue::from_str(&peer.ip().to_string()).map_err(|e| e.to_string())?;
    headers.insert("x-forwarded-for", ip);
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    let host = HeaderValue::from_str(&target.authority).map_err(|e| e.to_string())?;
    headers.insert(header::HOST, host);
    if masking {
        restrict_accept_encoding(headers);
        restrict_accept(headers);
    }
    if let Some((name, value)) = credential {
        headers.insert(name, value);
    }
    Ok(())
}

/// Removes from a request's trailers the fields the gateway controls in its headers
/// (client credentials, cookies, forwarding information, hop-by-hop fields, and the
/// header carrying the injected credential), so that a trailer cannot stand in for them.
pub fn clean_request_trailers(trailers: &mut HeaderMap, credential: Option<&HeaderName>) {
    for n in [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
        header::HOST,
        header::FORWARDED,
    ] {
        trailers.remove(n);
    }
    for n in HOP_BY_HOP.iter().chain(&[
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    ]) {
        trailers.remove(*n);
    }
    if let Some(name) = credential {
        trailers.remove(name);
    }
}

/// The header carrying `cred`, read from its secret source now.
pub(crate) fn credential_header(
    cred: &UpstreamCredential,
) -> Result<(HeaderName, HeaderValue), String> {
    let (name, text) = match cred {
        UpstreamCredential::Bearer(s) => (header::AUTHORIZATION, format!("Bearer {}", s.read()?)),
        UpstreamCredential::Basic { user, password } => {
            let raw = format!("{user}:{}", password.read()?);
            (
                header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ),
            )
        }
        UpstreamCredential::Header { name, value } => (
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid credential header name {name:?}"))?,
            value.read()?,
        ),
    };
    let mut v = HeaderValue::from_str(&text)
        .map_err(|_| String::from("the upstream credential is not a valid header value"))?;
    v.set_sensitive(true);
    Ok((name, v))
}

/// Removes hop-by-hop headers from a response (kept for a `101 Switching Protocols`).
pub fn prepare_response(headers: &mut HeaderMap, switching: bool) {
    strip_hop_by_hop(headers, switching);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use hoop_core::Resource;
    use hoop_core::sequence::UpstreamSecurity;

    fn target() -> HttpTarget {
        HttpTarget::new(
            Resource::new("api", "http"),
            "127.0.0.1:1".parse().unwrap(),
            UpstreamSecurity::PlaintextOptIn,
        )
        .authority("api.internal")
        .credential(UpstreamCredential::Bearer(Secret::Value(
            "upstream-secret".into(),
        )))
        .strip_cookies(["session"])
    }

    #[test]
    fn request_headers_are_cleaned_and_credential_injected() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer client"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("cookie", HeaderValue::from_static("a=1; session=abc; b=2"));
        h.insert(
            "accept-encoding",
            HeaderValue::from_static("br, gzip;q=0.5, zstd"),
        );
        prepare_request(
            &mut h,
            &target(),
            "10.1.2.3:5555".parse().unwrap(),
            false,
            true,
        )
        .unwrap();
        assert_eq!(h["authorization"], "Bearer upstream-secret");
        assert!(h.get("proxy-authorization").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("x-secret").is_none());
        assert!(h.get("te").is_none());
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["host"], "api.internal");
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h["accept-encoding"], "gzip;q=0.5");
    }

    /// Under masking a client cannot ask for an encoding the masking cannot read.
    #[test]
    fn accept_loses_unreadable_media_types_under_masking() {
        let peer = "10.1.2.3:5555".parse().unwrap();
        for (accept, masking, want) in [
            (
                "application/vnd.kubernetes.protobuf, application/json",
                true,
                "application/json",
            ),
            (
                "application/vnd.kubernetes.protobuf",
                true,
                "application/json",
            ),
            ("application/msgpack;q=1, */*;q=0.1", true, "*/*;q=0.1"),
            (
                "application/json, text/plain",
                true,
                "application/json, text/plain",
            ),
            (
                "application/vnd.kubernetes.protobuf",
                false,
                "application/vnd.kubernetes.protobuf",
            ),
        ] {
            let mut h = HeaderMap::new();
            h.insert("accept", HeaderValue::from_str(accept).unwrap());
            prepare_request(&mut h, &target(), peer, false, masking).unwrap();
            assert_eq!(h["accept"], want, "{accept} masking={masking}");
        }
    }

    #[test]
    fn basic_and_named_header_credentials_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut t = target();
        t.credential = Some(UpstreamCredential::Basic {
            user: "svc".into(),
            password: Secret::File(file.clone()),
        });
        let mut h = HeaderMap::new();
        prepare_request(&mut h, &t, "10.0.0.1:1".parse().unwrap(), false, false).unwrap();
        // base64("svc:s3cret")
        assert_eq!(h["authorization"], "Basic c3ZjOnMzY3JldA==");
        assert!(h["authorization"].is_sensitive());
        t.credential = Some(UpstreamCredential::Header {
            name: "X-Api-Key".into(),
            value: Secret::File(file),
        });
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer client"));
        prepare_request(&mut h, &t, "10.0.0.1:1".parse().unwrap(), false, false).unwrap();
        assert_eq!(h["x-api-key"], "s3cret");
        assert!(h.get("authorization").is_none());
        // A missing secret fails the request (never forwarded without its credential).
        t.credential = Some(UpstreamCredential::Bearer(Secret::Env(
            "HOOP_HTTP_TEST_UNSET_VARIABLE".into(),
        )));
        let err =
            prepare_request(&mut h, &t, "10.0.0.1:1".parse().unwrap(), false, false).unwrap_err();
        assert!(err.contains("HOOP_HTTP_TEST_UNSET_VARIABLE"));
        assert!(!format!("{:?}", Secret::Value("zq987".into())).contains("zq987"));
    }

    #[test]
    fn request_trailers_cannot_carry_credentials() {
        let mut t = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer client"),
            ("cookie", "session=abc"),
            ("x-api-key", "forged"),
            ("x-forwarded-for", "6.6.6.6"),
            ("connection", "close"),
            ("x-checksum", "abc"),
        ] {
            t.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        clean_request_trailers(&mut t, Some(&HeaderName::from_static("x-api-key")));
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t["x-checksum"], "abc");
    }

    #[test]
    fn te_trailers_is_kept() {
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        prepare_request(
            &mut h,
            &target(),
            "10.1.2.3:5555".parse().unwrap(),
            false,
            false,
        )
        .unwrap();
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn upgrade_headers_survive_only_when_upgrading() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        let mut h2 = h.clone();
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        strip_hop_by_hop(&mut h2, false);
        assert!(h2.is_empty());
    }

    #[test]
    fn allowed_upgrades() {
        let mut h = HeaderMap::new();
        assert!(!upgrade_allowed(&h));
        for (v, ok) in [
            ("websocket", true),
            ("WebSocket", true),
            ("SPDY/3.1", true),
            ("h2c", false),
            ("websocket, h2c", false),
            ("tls/1.2", false),
        ] {
            h.insert("upgrade", HeaderValue::from_static(v));
            assert_eq!(upgrade_allowed(&h), ok, "{v}");
        }
    }

    #[test]
    fn framing_conflicts() {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("5"));
        assert!(!framing_conflict(&h));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        assert!(framing_conflict(&h));
        let mut h = HeaderMap::new();
        h.append("content-length", HeaderValue::from_static("5"));
        h.append("content-length", HeaderValue::from_static("6"));
        assert!(framing_conflict(&h));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
