//! # hoop-http
//!
//! An HTTP/HTTPS and Kubernetes-API adapter for hoop: clients (curl, SDKs, kubectl) reach
//! a target through the gateway with their own identity (OIDC JWT, gateway token or
//! client certificate); the gateway injects the target's credential, decides every
//! request with the policy (method + normalised path, or Kubernetes verb / resource),
//! masks response bodies and records each request.
//!
//! Modules: [`adapter`] (the session), [`config`], [`normalize`] (paths), [`command`]
//! and [`kube`] (what the policy sees), [`headers`] (hygiene and credential injection),
//! [`body`] and [`stream`] (masking), `upstream` (target connections).
//!
//! ## Choices
//!
//! - **One TCP connection is one hoop session** (one recording). The client's TLS is
//!   terminated with the listener's [`hoop_core::tls::ServerTls`] (offer ALPN `h2` and
//!   `http/1.1`); a listener without TLS is refused (bearer tokens would travel in clear).
//! - **Identity**: a client certificate holds for the connection; otherwise every request
//!   carries a bearer token, the first one authenticates and authorizes, later ones must
//!   prove the same subject and groups (see [`adapter`]).
//! - **Upstream connections** are opened through the proof token
//!   ([`hoop_core::sequence::Authorized::connect_upstream`]) and pooled per session, never
//!   across sessions: a refusal is recorded in the session that caused it and a pooled
//!   connection can only be reused with the one target and security setting it was opened
//!   with. HTTP/2 toward the target when its TLS agrees on `h2`; upgrades (WebSocket,
//!   SPDY) go on their own connection offering only `http/1.1`.
//! - **Trailers** are forwarded, masked bodies included (an HTTP/1.1 client gets them
//!   when it sent `TE: trailers`); request trailers lose the fields the gateway controls
//!   in headers (credentials, cookies, forwarding information).
//! - **WebSocket over HTTP/2** (RFC 8441 extended `CONNECT`) is decided and recorded like
//!   its HTTP/1.1 upgrade and relayed to the target as one; other `CONNECT`s get 405.
//! - **Several targets behind one listener** with [`HttpAdapter::by_host`]: the request's
//!   `Host` (`:authority`) chooses the target (exact names); an unknown host gets 404
//!   without any target contacted; a connection stays on the target of its first
//!   authorized request (another host on it gets 421, clients retry on a new connection).
//! - **Policy text** is `METHOD /normalised/path[?query]`: the query is part of it so a
//!   grant after a review covers exactly the reviewed request.
//! - **Kubernetes**: reading `secrets` and the `exec` / `attach` / `portforward` / `proxy` /
//!   `token` subresources are class `admin` (see [`kube`]).
//! - **X-Forwarded-For** is replaced by the client address the gateway saw (the gateway is
//!   the trust boundary), `Forwarded` / `X-Forwarded-Host` / `X-Real-IP` are removed.
//! - **Framing**: hyper refuses several different `Content-Length`s and non-chunked
//!   `Transfer-Encoding` (400); with `Content-Length` and chunked `Transfer-Encoding`
//!   together it applies RFC 9112 §6.3 (chunked wins, the length is dropped, the
//!   connection is closed after the response), so nothing can be smuggled behind it;
//!   requests are re-framed toward the target.
//! - **Masking** needs the body: JSON and text bodies are buffered up to
//!   [`HttpTarget::max_body`] (502 over it unless [`HttpTarget::passthrough_over_limit`]),
//!   gzip/deflate decoded and sent masked as identity; other codings fail closed; streams
//!   (Kubernetes watch, NDJSON, server-sent events) are masked line by line; other
//!   content types are not inspected.

pub mod adapter;
pub mod body;
pub mod command;
pub mod config;
pub mod error;
pub mod headers;
mod idle;
pub mod kube;
pub mod normalize;
mod response;
mod route;
mod scan;
pub mod stream;
mod upstream;

pub use adapter::HttpAdapter;
pub use config::{HttpOptions, HttpTarget, Secret, UpstreamCredential};
pub use error::HttpError;
pub use normalize::{PathError, normalize_path};
