//! Reading a Kubernetes API request path as verb / resource / namespace / name.
//!
//! Paths are read like the API server reads them: `/api/v1/...` (core group) and
//! `/apis/{group}/{version}/...`, an optional `namespaces/{ns}` scope, then
//! `{resource}[/{name}[/{subresource}]]` (the legacy `watch/` prefix is understood).
//!
//! Classes:
//!
//! | verb | class |
//! | --- | --- |
//! | get, list, watch | read |
//! | create, update, patch | write |
//! | delete, deletecollection | destructive |
//! | any verb on `exec`, `attach`, `portforward`, `proxy`, `token` subresources | admin |
//! | get, list, watch on `secrets` | admin (reading secrets discloses credentials) |
//! | anything else | unknown |

use hoop_core::ActionClass;
use http::Method;

/// A Kubernetes resource request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`
    /// or `unknown`.
    pub verb: &'static str,
    /// API group (empty for the core group).
    pub group: String,
    /// Resource (`pods`, `deployments`).
    pub resource: String,
    /// Subresource (`exec`, `log`, `status`).
    pub subresource: Option<String>,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
}

/// Subresources that give a shell, a tunnel or credentials.
const ADMIN_SUBRESOURCES: [&str; 5] = ["exec", "attach", "portforward", "proxy", "token"];

impl KubeRequest {
    /// The request's class (see the module documentation).
    pub fn class(&self) -> ActionClass {
        if self
            .subresource
            .as_deref()
            .is_some_and(|s| ADMIN_SUBRESOURCES.contains(&s))
        {
            return ActionClass::Admin;
        }
        match self.verb {
            "get" | "list" | "watch" if self.resource == "secrets" && self.group.is_empty() => {
                ActionClass::Admin
            }
            "get" | "list" | "watch" => ActionClass::Read,
            "create" | "update" | "patch" => ActionClass::Write,
            "delete" | "deletecollection" => ActionClass::Destructive,
            _ => ActionClass::Unknown,
        }
    }

    /// The resource as RBAC names it: `pods`, `pods/exec`, `deployments.apps`.
    pub fn resource_ref(&self) -> String {
        let mut s = self.resource.clone();
        if !self.group.is_empty() {
            s.push('.');
            s.push_str(&self.group);
        }
        if let Some(sub) = &self.subresource {
            s.push('/');
            s.push_str(sub);
        }
        s
    }

    /// The object: `{namespace}/{resource}/{name}` (parts absent are left out).
    pub fn object(&self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(3);
        if let Some(ns) = &self.namespace {
            parts.push(ns);
        }
        parts.push(&self.resource);
        if let Some(n) = &self.name {
            parts.push(n);
        }
        parts.join("/")
    }
}

fn query_flag(query: Option<&str>, key: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| k == key && (v == "true" || v == "1"))
        })
    })
}

/// Parses a (normalised) path. `None` for non-resource paths (`/healthz`, `/version`,
/// discovery documents): those are classified by method alone.
///
/// ```
/// use hoop_http::kube::parse;
/// let r = parse(&http::Method::DELETE, "/api/v1/namespaces/prod/pods/x", None).unwrap();
/// assert_eq!((r.verb, r.resource.as_str(), r.namespace.as_deref()), ("delete", "pods", Some("prod")));
/// assert_eq!(r.class(), hoop_core::ActionClass::Destructive);
/// ```
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Option<KubeRequest> {
    let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let group = match parts.first().copied() {
        Some("api") => {
            parts.drain(..2.min(parts.len()));
            String::new()
        }
        Some("apis") => {
            let g = parts.get(1).copied()?.to_owned();
            parts.drain(..3.min(parts.len()));
            g
        }
        _ => return None,
    };
    let mut watch = query_flag(query, "watch");
    if parts.first() == Some(&"watch") {
        watch = true;
        parts.remove(0);
    }
    let mut namespace = None;
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = parts.get(1).map(|s| (*s).to_owned());
        if parts.len() > 2 && !matches!(parts.get(2), Some(&"status") | Some(&"finalize")) {
            parts.drain(..2);
        }
    }
    let resource = (*parts.first()?).to_owned();
    let name = parts.get(1).map(|s| (*s).to_owned());
    let subresource = parts.get(2).map(|s| (*s).to_owned());
    // `namespaces/{ns}` itself: the namespace is the object.
    let namespace = if resource == "namespaces" {
        None
    } else {
        namespace
    };
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if name.is_some() => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    Some(KubeRequest {
        verb,
        group,
        resource,
        subresource,
        namespace,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: Method, path: &str, q: Option<&str>) -> KubeRequest {
        parse(&m, path, q).unwrap()
    }

    #[test]
    fn core_group_paths() {
        let r = p(Method::DELETE, "/api/v1/namespaces/prod/pods/x", None);
        assert_eq!(r.verb, "delete");
        assert_eq!(r.object(), "prod/pods/x");
        assert_eq!(r.class(), ActionClass::Destructive);
        let r = p(Method::GET, "/api/v1/namespaces/prod/pods", None);
        assert_eq!((r.verb, r.class()), ("list", ActionClass::Read));
        let r = p(
            Method::GET,
            "/api/v1/namespaces/prod/pods",
            Some("watch=true"),
        );
        assert_eq!(r.verb, "watch");
        let r = p(Method::GET, "/api/v1/watch/namespaces/prod/pods", None);
        assert_eq!(r.verb, "watch");
        let r = p(Method::DELETE, "/api/v1/namespaces/prod/pods", None);
        assert_eq!(
            (r.verb, r.class()),
            ("deletecollection", ActionClass::Destructive)
        );
        let r = p(Method::GET, "/api/v1/nodes/n1", None);
        assert_eq!(
            (r.verb, r.resource.as_str(), r.namespace),
            ("get", "nodes", None)
        );
    }

    #[test]
    fn named_groups_and_subresources() {
        let r = p(
            Method::PATCH,
            "/apis/apps/v1/namespaces/prod/deployments/web",
            None,
        );
        assert_eq!(r.verb, "patch");
        assert_eq!(r.resource_ref(), "deployments.apps");
        assert_eq!(r.class(), ActionClass::Write);
        let r = p(
            Method::POST,
            "/api/v1/namespaces/prod/pods/x/exec",
            Some("command=sh"),
        );
        assert_eq!(r.resource_ref(), "pods/exec");
        assert_eq!(r.class(), ActionClass::Admin);
        let r = p(Method::GET, "/api/v1/namespaces/prod/pods/x/log", None);
        assert_eq!(r.class(), ActionClass::Read);
        let r = p(Method::GET, "/api/v1/namespaces/prod/secrets/db", None);
        assert_eq!(r.class(), ActionClass::Admin);
        let r = p(Method::POST, "/api/v1/namespaces", None);
        assert_eq!((r.verb, r.resource.as_str()), ("create", "namespaces"));
        let r = p(Method::DELETE, "/api/v1/namespaces/prod", None);
        assert_eq!((r.verb, r.name.as_deref()), ("delete", Some("prod")));
        let r = p(Method::PUT, "/api/v1/namespaces/prod/finalize", None);
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("namespaces", Some("finalize"))
        );
        let r = p(Method::OPTIONS, "/api/v1/pods", None);
        assert_eq!(r.class(), ActionClass::Unknown);
    }

    #[test]
    fn non_resource_paths() {
        assert!(parse(&Method::GET, "/healthz", None).is_none());
        assert!(parse(&Method::GET, "/api", None).is_none());
        assert!(parse(&Method::GET, "/api/v1", None).is_none());
        assert!(parse(&Method::GET, "/apis/apps/v1", None).is_none());
    }
}
