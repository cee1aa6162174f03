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
//! [`body`] (masking), `upstream` (target connections).

pub mod adapter;
pub mod body;
pub mod command;
pub mod config;
pub mod error;
pub mod headers;
pub mod kube;
pub mod normalize;
mod response;
pub mod stream;
mod upstream;

pub use adapter::HttpAdapter;
pub use config::{HttpOptions, HttpTarget, Secret, UpstreamCredential};
pub use error::HttpError;
pub use normalize::{PathError, normalize_path};
