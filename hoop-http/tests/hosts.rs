//! One listener, several targets chosen by the request's Host: each host reaches its
//! own upstream (its own session and recording, its own pooled connections); an unknown
//! host, or another host on a connection already bound to one, reaches no target.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::atomic::Ordering;

use common::{ALICE, Gateway, HyperClient, Setup, bearer, get, upstream};

fn with_host(path: &str, host: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = get(path, ALICE);
    req.headers_mut().insert("host", host.parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_routed_by_host() {
    let a = upstream::start(None).await;
    let b = upstream::start(None).await;
    let gw = Gateway::start_hosts(
        vec![
            ("a.test", "api-a", a.addr, a.ca_path.clone()),
            ("b.test", "api-b", b.addr, b.ca_path.clone()),
        ],
        Setup {
            upstream_alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..Setup::default()
        },
    )
    .await;

    // curl (HTTP/1.1 and HTTP/2) with a Host header each.
    for (version, host, up) in [("--http1.1", "a.test", &a), ("--http2", "b.test", &b)] {
        let (status, body) = gw
            .curl_async(&[
                version,
                "-H",
                &format!("Host: {host}"),
                "-H",
                &bearer(ALICE),
                &gw.url("/users"),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("[REDACTED:EMAIL]"), "{body}");
        let seen = up.last();
        assert_eq!(seen.uri, "/users");
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {}", common::UPSTREAM_TOKEN)
        );
    }
    assert_eq!(a.seen().len(), 1);
    assert_eq!(b.seen().len(), 1);

    for h2 in [true, false] {
        let (a_before, b_before) = (a.seen().len(), b.seen().len());
        let b_conns = b.conns.load(Ordering::SeqCst);
        let mut client = HyperClient::connect(&gw, h2).await;
        // Port, case and a trailing dot do not matter.
        for host in ["a.test", "A.TEST:443", "a.test."] {
            let resp = client.send(&gw, with_host("/users", host)).await;
            assert_eq!(resp.status(), 200, "{host} (h2 {h2})");
        }
        assert_eq!(a.seen().len(), a_before + 3);
        // This connection is a's session: b's host on it is misdirected.
        let resp = client.send(&gw, with_host("/users", "b.test")).await;
        assert_eq!(resp.status(), 421);
        // An unknown host: 404, on this connection or a fresh one.
        let resp = client.send(&gw, with_host("/users", "c.test")).await;
        assert_eq!(resp.status(), 404);
        let mut fresh = HyperClient::connect(&gw, h2).await;
        let resp = fresh.send(&gw, with_host("/users", "a.test.evil")).await;
        assert_eq!(resp.status(), 404);
        // None of these reached b (nor a, beyond the three above).
        assert_eq!(b.seen().len(), b_before);
        assert_eq!(b.conns.load(Ordering::SeqCst), b_conns);
        assert_eq!(a.seen().len(), a_before + 3);
        // The session still serves a's host.
        let resp = client.send(&gw, with_host("/users", "a.test")).await;
        assert_eq!(resp.status(), 200);
    }
    // Each client connection had its own pooled HTTP/2 connection to a: curl's, and one
    // per hyper client (the 404 connection opened none).
    assert_eq!(a.conns.load(Ordering::SeqCst), 3);
    assert!(a.seen().iter().all(|s| s.version == http::Version::HTTP_2));
    let rec = gw.wait_recorded_all(&[r#""api-b""#, r#""api-a""#]).await;
    assert!(rec.contains(r#""api-a""#), "{rec}");
}

#[test]
fn by_host_refuses_ambiguous_configurations() {
    use hoop_core::Resource;
    use hoop_core::sequence::UpstreamSecurity;
    use hoop_http::{HttpAdapter, HttpError, HttpOptions, HttpTarget};
    let t = |name: &str| {
        HttpTarget::new(
            Resource::new(name, "http"),
            "127.0.0.1:1".parse().unwrap(),
            UpstreamSecurity::PlaintextOptIn,
        )
    };
    let config_err = |r: Result<HttpAdapter, HttpError>| match r {
        Err(HttpError::Config(m)) => m,
        other => panic!("unexpected {other:?}"),
    };
    let m = config_err(HttpAdapter::by_host(
        [(vec!["a.test"], t("a")), (vec!["A.test."], t("b"))],
        HttpOptions::default(),
    ));
    assert!(m.contains("twice"), "{m}");
    let m = config_err(HttpAdapter::by_host(
        [(Vec::<&str>::new(), t("a"))],
        HttpOptions::default(),
    ));
    assert!(m.contains("host name"), "{m}");
    let m = config_err(HttpAdapter::by_host(
        Vec::<(Vec<&str>, HttpTarget)>::new(),
        HttpOptions::default(),
    ));
    assert!(m.contains("no target"), "{m}");
    let ok = HttpAdapter::by_host(
        [(vec!["a.test"], t("a")), (vec!["b.test", "c.test"], t("b"))],
        HttpOptions::default(),
    )
    .unwrap();
    assert_eq!(ok.target().resource.name, "a");
    assert_eq!(
        ok.targets()
            .map(|t| t.resource.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
}
