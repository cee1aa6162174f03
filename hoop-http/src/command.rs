//! Turning a request into the [`Command`] the policy decides on.

use hoop_core::{ActionClass, Command, Resource};
use http::Method;

use crate::kube;

/// The class of a plain HTTP method: GET/HEAD/OPTIONS read, POST/PUT/PATCH write,
/// DELETE destructive, anything else unknown.
pub fn method_class(method: &Method) -> ActionClass {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => ActionClass::Read,
        Method::POST | Method::PUT | Method::PATCH => ActionClass::Write,
        Method::DELETE => ActionClass::Destructive,
        _ => ActionClass::Unknown,
    }
}

/// The command for a request on `resource` with the already normalised `path`.
///
/// `text` is `METHOD /path` (plus `?query` when there is one, so that a grant given
/// after a review covers exactly the request that was reviewed). For a `kubernetes`
/// resource the verb and class come from [`kube::parse`] and `objects` holds the RBAC
/// resource (`pods/exec`, `deployments.apps`) and the object (`prod/pods/x`); otherwise
/// the verb is the method and `objects` the path.
///
/// ```
/// use hoop_core::{ActionClass, Resource};
/// let c = hoop_http::command::command(&Resource::new("k8s", "kubernetes"), &http::Method::DELETE,
///     "/api/v1/namespaces/prod/pods/x", None);
/// assert_eq!((c.verb.as_str(), c.class), ("delete", ActionClass::Destructive));
/// assert_eq!(c.text, "DELETE /api/v1/namespaces/prod/pods/x");
/// ```
pub fn command(resource: &Resource, method: &Method, path: &str, query: Option<&str>) -> Command {
    let text = match query {
        Some(q) if !q.is_empty() => format!("{method} {path}?{q}"),
        _ => format!("{method} {path}"),
    };
    if resource.protocol == "kubernetes"
        && let Some(k) = kube::parse(method, path, query)
    {
        return Command {
            class: k.class(),
            verb: k.verb.to_owned(),
            text,
            objects: vec![k.resource_ref(), k.object()],
        };
    }
    Command {
        class: method_class(method),
        verb: method.as_str().to_owned(),
        text,
        objects: vec![path.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_classes() {
        let r = Resource::new("api", "http");
        let c = command(&r, &Method::GET, "/a", Some("x=1"));
        assert_eq!(
            (c.class, c.text.as_str()),
            (ActionClass::Read, "GET /a?x=1")
        );
        assert_eq!(
            command(&r, &Method::PATCH, "/a", None).class,
            ActionClass::Write
        );
        assert_eq!(
            command(&r, &Method::DELETE, "/a", None).class,
            ActionClass::Destructive
        );
        let trace = Method::from_bytes(b"TRACE").unwrap();
        assert_eq!(command(&r, &trace, "/a", None).class, ActionClass::Unknown);
        // Kubernetes paths on a plain HTTP resource are just paths.
        let c = command(&r, &Method::GET, "/api/v1/namespaces/p/secrets/s", None);
        assert_eq!(c.class, ActionClass::Read);
    }

    #[test]
    fn kubernetes_classes() {
        let r = Resource::new("k8s", "kubernetes");
        let c = command(&r, &Method::GET, "/api/v1/namespaces/p/secrets/s", None);
        assert_eq!(c.class, ActionClass::Admin);
        assert_eq!(
            c.objects,
            vec!["secrets".to_owned(), "p/secrets/s".to_owned()]
        );
        let c = command(&r, &Method::GET, "/healthz", None);
        assert_eq!((c.class, c.verb.as_str()), (ActionClass::Read, "GET"));
    }
}
