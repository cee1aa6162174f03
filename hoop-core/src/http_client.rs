//! A small HTTPS client for the gateway's own calls (JWKS, webhooks), always over
//! verified TLS ([`UpstreamTls`]). Plain `http://` URLs are refused.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use crate::tls::{TlsError, UpstreamTls};

/// Errors of [`HttpsClient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpClientError {
    /// The URL is not an `https://` URL with a host.
    #[error("invalid URL {0:?}: only https:// URLs with a host are allowed")]
    BadUrl(String),
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    /// TLS was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// HTTP-level failure.
    #[error("http: {0}")]
    Http(String),
    /// The response body exceeded the limit.
    #[error("response body over {0} bytes")]
    TooLarge(usize),
    /// The request took too long.
    #[error("request timed out")]
    Timeout,
}

/// An HTTPS client that opens one verified connection per request.
#[derive(Clone, Debug)]
pub struct HttpsClient {
    tls: UpstreamTls,
    timeout: Duration,
    max_body: usize,
}

impl HttpsClient {
    /// A client verifying servers with `tls`, with a 10 s timeout and 1 MiB body limit.
    pub fn new(tls: UpstreamTls) -> Self {
        HttpsClient {
            tls,
            timeout: Duration::from_secs(10),
            max_body: 1 << 20,
        }
    }

    /// Sets the whole-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the response body limit.
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// `GET url`, returning status and body.
    pub async fn get(&self, url: &str) -> Result<(http::StatusCode, Bytes), HttpClientError> {
        self.send(http::Method::GET, url, None).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(http::StatusCode, Bytes), HttpClientError> {
        let body = serde_json::to_vec(body).map_err(|e| HttpClientError::Http(e.to_string()))?;
        self.send(http::Method::POST, url, Some(Bytes::from(body)))
            .await
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: Option<Bytes>,
    ) -> Result<(http::StatusCode, Bytes), HttpClientError> {
        tokio::time::timeout(self.timeout, self.send_inner(method, url, body))
            .await
            .map_err(|_| HttpClientError::Timeout)?
    }

    async fn send_inner(
        &self,
        method: http::Method,
        url: &str,
        body: Option<Bytes>,
    ) -> Result<(http::StatusCode, Bytes), HttpClientError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| HttpClientError::BadUrl(url.to_owned()))?;
        if uri.scheme_str() != Some("https") {
            return Err(HttpClientError::BadUrl(url.to_owned()));
        }
        let host = uri
            .host()
            .ok_or_else(|| HttpClientError::BadUrl(url.to_owned()))?;
        let port = uri.port_u16().unwrap_or(443);
        // Bracketed IPv6 literals come back with brackets from `host()`.
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((name, port)).await?;
        let tls = self.tls.connect(name, tcp).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| HttpClientError::Http(e.to_string()))?;
        let conn_task = tokio::spawn(conn);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, "hoop/0.1");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| HttpClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| HttpClientError::Http(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|_| HttpClientError::TooLarge(self.max_body))?
            .to_bytes();
        conn_task.abort();
        Ok((status, body))
    }
}
