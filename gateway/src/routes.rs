//! The REST routes, read from the `google.api.http` and `shop.common.v1.access`
//! options of the compiled descriptors: the protos are the only source of truth.

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MethodDescriptor, Value};

pub use shopmesh_platform::access::Access;
use shopmesh_platform::access::method_access;

use crate::template::PathTemplate;

/// Where the HTTP body goes in the request message.
#[derive(Clone, Debug)]
pub enum BodyTarget {
    None,
    /// `body: "*"`: the whole request message.
    Whole,
    /// `body: "field"`: one field of it.
    Field(FieldDescriptor),
}

/// One REST route bound to one gRPC method.
#[derive(Clone, Debug)]
pub struct Route {
    pub verb: Method,
    pub template: PathTemplate,
    pub method: MethodDescriptor,
    /// `/package.Service/Method`.
    pub grpc_path: String,
    pub body: BodyTarget,
    pub response_body: Option<FieldDescriptor>,
    pub access: Access,
    /// The short service name (`product`), which picks the upstream.
    pub upstream: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("descriptor set is invalid: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    #[error("{method}: {reason}")]
    Method { method: String, reason: String },
}

/// The shopmesh descriptors with every option and extension resolved.
pub fn descriptor_pool() -> Result<DescriptorPool, RouteError> {
    Ok(shopmesh_platform::access::descriptor_pool()?)
}

/// Every public, user and admin method with an HTTP binding. Internal methods (and
/// methods that declare no access) are never routed, even if annotated.
pub fn routes(pool: &DescriptorPool) -> Result<Vec<Route>, RouteError> {
    let http_ext = pool.get_extension_by_name("google.api.http");
    let mut routes = Vec::new();
    for service in pool.services() {
        let Some(upstream) = upstream_name(service.package_name()) else {
            continue;
        };
        for method in service.methods() {
            let options = method.options();
            let access = method_access(pool, &method);
            let Some(ext) = &http_ext else { continue };
            if access == Access::Internal || !options.has_extension(ext) {
                continue;
            }
            let rule = options.get_extension(ext);
            let Some(rule) = rule.as_message() else {
                continue;
            };
            let mut bindings = vec![rule.clone()];
            if let Some(Value::List(extra)) =
                rule.get_field_by_name("additional_bindings").as_deref()
            {
                bindings.extend(extra.iter().filter_map(|v| v.as_message().cloned()));
            }
            for binding in bindings {
                routes.push(route_for(&method, &binding, access, upstream)?);
            }
        }
    }
    Ok(routes)
}

fn upstream_name(package: &str) -> Option<&str> {
    let mut parts = package.split('.');
    match (parts.next(), parts.next()) {
        (Some("shop"), Some(name)) if name != "common" && name != "events" => Some(name),
        _ => None,
    }
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn route_for(
    method: &MethodDescriptor,
    rule: &DynamicMessage,
    access: Access,
    upstream: &str,
) -> Result<Route, RouteError> {
    let fail = |reason: String| RouteError::Method {
        method: method.full_name().to_owned(),
        reason,
    };
    let (verb, path) = ["get", "put", "post", "delete", "patch"]
        .iter()
        .find_map(|verb| {
            let path = string_field(rule, verb);
            (!path.is_empty()).then(|| (verb.to_uppercase(), path))
        })
        .ok_or_else(|| fail("http rule has no verb (custom verbs are not supported)".into()))?;
    let verb = Method::from_bytes(verb.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let template = PathTemplate::parse(&path).map_err(|e| fail(e.to_string()))?;
    let input = method.input();
    for field in template.fields() {
        resolve_path(&input, field)
            .ok_or_else(|| fail(format!("path variable {field} is not a request field")))?;
    }
    let body = match string_field(rule, "body").as_str() {
        "" => BodyTarget::None,
        "*" => BodyTarget::Whole,
        name => BodyTarget::Field(
            input
                .get_field_by_name(name)
                .ok_or_else(|| fail(format!("body field {name} does not exist")))?,
        ),
    };
    let response_body = match string_field(rule, "response_body").as_str() {
        "" => None,
        name => Some(
            method
                .output()
                .get_field_by_name(name)
                .ok_or_else(|| fail(format!("response_body field {name} does not exist")))?,
        ),
    };
    Ok(Route {
        verb,
        template,
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        method: method.clone(),
        body,
        response_body,
        access,
        upstream: upstream.to_owned(),
    })
}

/// Resolves a dotted field path (`product.id`) to its chain of fields.
pub fn resolve_path(
    message: &prost_reflect::MessageDescriptor,
    path: &str,
) -> Option<Vec<FieldDescriptor>> {
    let mut chain = Vec::new();
    let mut current = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))?;
        if parts.peek().is_some() {
            current = field.kind().as_message()?.clone();
        }
        chain.push(field);
    }
    Some(chain)
}

/// The route table, matched by verb and path.
#[derive(Clone, Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// The outcome of looking a request up.
pub enum Lookup<'a> {
    Found(&'a Route, Vec<(String, String)>),
    /// The path exists for other verbs (405), listed for `Allow`.
    WrongVerb(Vec<Method>),
    NotFound,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn lookup(&self, verb: &Method, path: &str) -> Lookup<'_> {
        let mut other_verbs = Vec::new();
        for route in &self.routes {
            if let Some(bindings) = route.template.matches(path) {
                if route.verb == *verb {
                    return Lookup::Found(route, bindings);
                }
                other_verbs.push(route.verb.clone());
            }
        }
        if other_verbs.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::WrongVerb(other_verbs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(routes(&descriptor_pool().unwrap()).unwrap())
    }

    #[test]
    fn product_routes_come_from_the_annotations() {
        let table = table();
        let Lookup::Found(route, bindings) = table.lookup(&Method::GET, "/v1/products/abc") else {
            panic!("GET /v1/products/{{id}} is not routed");
        };
        assert_eq!(
            route.grpc_path,
            "/shop.product.v1.ProductService/GetProduct"
        );
        assert_eq!(route.access, Access::Public);
        assert_eq!(route.upstream, "product");
        assert_eq!(bindings, [("id".to_owned(), "abc".to_owned())]);
        assert_eq!(
            route.response_body.as_ref().map(|f| f.name()),
            Some("product")
        );

        let Lookup::Found(route, _) = table.lookup(&Method::GET, "/v1/products:search") else {
            panic!("search is not routed");
        };
        assert_eq!(route.method.name(), "SearchProducts");
        let Lookup::Found(route, _) = table.lookup(&Method::PATCH, "/v1/products/abc") else {
            panic!("update is not routed");
        };
        assert_eq!(route.access, Access::Admin);
        assert!(matches!(
            table.lookup(&Method::PUT, "/v1/products/abc"),
            Lookup::WrongVerb(_)
        ));
        assert!(matches!(
            table.lookup(&Method::GET, "/v2/nothing"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn recommendation_routes_come_from_the_annotations() {
        let table = table();
        for (verb, path, method, access, bindings) in [
            (
                Method::GET,
                "/v1/me/recommendations",
                "RecommendForMe",
                Access::User,
                vec![],
            ),
            (
                Method::GET,
                "/v1/products/p-1/similar",
                "ListSimilarProducts",
                Access::Public,
                vec![("product_id".to_owned(), "p-1".to_owned())],
            ),
            (
                Method::GET,
                "/v1/products/p-1/bought-together",
                "ListFrequentlyBoughtTogether",
                Access::Public,
                vec![("product_id".to_owned(), "p-1".to_owned())],
            ),
            (
                Method::GET,
                "/v1/recommendations/model",
                "GetModelInfo",
                Access::Admin,
                vec![],
            ),
            (
                Method::POST,
                "/v1/recommendations/model:train",
                "TrainModel",
                Access::Admin,
                vec![],
            ),
        ] {
            let Lookup::Found(route, found) = table.lookup(&verb, path) else {
                panic!("{verb} {path} is not routed");
            };
            assert_eq!(route.method.name(), method, "{path}");
            assert_eq!(route.access, access, "{path}");
            assert_eq!(route.upstream, "recommendation", "{path}");
            assert_eq!(found, bindings, "{path}");
        }
        // The product itself is still the product.
        let Lookup::Found(route, _) = table.lookup(&Method::GET, "/v1/products/p-1") else {
            panic!("GET /v1/products/{{id}} is not routed");
        };
        assert_eq!(route.method.name(), "GetProduct");
    }

    #[test]
    fn internal_methods_are_never_routed() {
        let pool = descriptor_pool().unwrap();
        let table = table();
        let access = pool.get_extension_by_name("shop.common.v1.access").unwrap();
        let mut internal = 0;
        for service in pool.services() {
            for method in service.methods() {
                let declared = method.options().get_extension(&access).as_enum_number();
                if declared == Some(4) {
                    internal += 1;
                    assert!(
                        table
                            .routes()
                            .iter()
                            .all(|r| r.method.full_name() != method.full_name()),
                        "{} is internal but routed",
                        method.full_name()
                    );
                }
            }
        }
        assert!(internal > 0, "the contracts declare internal methods");
    }

    #[test]
    fn every_route_is_unique() {
        let table = table();
        let mut seen = std::collections::HashSet::new();
        for route in table.routes() {
            assert!(
                seen.insert((route.verb.clone(), route.template.as_str().to_owned())),
                "{} {} is bound twice",
                route.verb,
                route.template
            );
        }
        assert!(table.routes().len() > 40, "all nine services are routed");
    }
}
