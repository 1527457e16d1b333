//! The OpenAPI 3.0 document, generated from the same route table and descriptors
//! the gateway serves, so it cannot drift from the API.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use crate::routes::{Access, BodyTarget, Route};

/// Builds the document for `routes`.
pub fn document(routes: &[Route]) -> Json {
    let mut schemas = SchemaSet::default();
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    for route in routes {
        let operation = operation(route, &mut schemas);
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(route.verb.as_str().to_ascii_lowercase(), operation);
    }
    let mut components = schemas.finish();
    components.insert("Problem".to_owned(), problem_schema());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "shopmesh REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST edge of shopmesh. Every operation is a gRPC method of the \
                shop.*.v1 contracts, mapped by its google.api.http annotation; JSON follows the \
                proto3 JSON mapping (lowerCamelCase fields, 64-bit integers as strings). \
                Errors are application/problem+json with a stable `code`."
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        }
    })
}

fn operation(route: &Route, schemas: &mut SchemaSet) -> Json {
    let input = route.method.input();
    let path_fields: BTreeSet<String> = route
        .template
        .fields()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut parameters = Vec::new();
    for field in &path_fields {
        let schema = crate::routes::resolve_path(&input, field)
            .and_then(|chain| chain.last().cloned())
            .map(|f| schemas.field(&f))
            .unwrap_or_else(|| json!({"type": "string"}));
        parameters.push(json!({"name": field, "in": "path", "required": true, "schema": schema}));
    }
    let mut operation = Map::new();
    operation.insert("operationId".into(), json!(route.method.full_name()));
    operation.insert("tags".into(), json!([route.method.parent_service().name()]));
    let summary = route.method.name().to_owned();
    operation.insert("summary".into(), json!(summary));
    operation.insert("x-access".into(), json!(route.access.as_str()));
    match &route.body {
        BodyTarget::None => {
            for field in input.fields() {
                if path_fields.contains(field.name()) || field.is_map() {
                    continue;
                }
                if matches!(field.kind(), Kind::Message(ref m) if !is_string_wkt(m)) {
                    continue;
                }
                let mut parameter = json!({
                    "name": field.name(),
                    "in": "query",
                    "required": false,
                    "schema": schemas.field(&field),
                });
                if field.is_list() {
                    // `?ids=a&ids=b`
                    parameter["style"] = json!("form");
                    parameter["explode"] = json!(true);
                }
                parameters.push(parameter);
            }
        }
        BodyTarget::Whole => {
            operation.insert("requestBody".into(), body(schemas.message_ref(&input)));
        }
        BodyTarget::Field(field) => {
            operation.insert("requestBody".into(), body(schemas.field(field)));
        }
    }
    operation.insert("parameters".into(), Json::Array(parameters));
    let output = match &route.response_body {
        Some(field) => schemas.field(field),
        None => schemas.message_ref(&route.method.output()),
    };
    let success = if route.method.is_server_streaming() {
        json!({"description": "A Server-Sent Events stream; each `data:` line is one JSON message.",
               "content": {"text/event-stream": {"schema": {"type": "string"}, "x-message": output}}})
    } else {
        json!({"description": "OK", "content": {"application/json": {"schema": output}}})
    };
    operation.insert(
        "responses".into(),
        json!({
            "200": success,
            "default": {
                "description": "An error",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
            }
        }),
    );
    if matches!(route.access, Access::User | Access::Admin) {
        operation.insert("security".into(), json!([{"bearerAuth": []}]));
    }
    Json::Object(operation)
}

fn body(schema: Json) -> Json {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn is_string_wkt(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask"
    )
}

/// Component schemas for every message reachable from the routes.
#[derive(Default)]
struct SchemaSet {
    done: BTreeMap<String, Json>,
    pending: Vec<MessageDescriptor>,
}

impl SchemaSet {
    fn message_ref(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(inline) = wkt_schema(message) {
            return inline;
        }
        let name = message.full_name().to_owned();
        if !self.done.contains_key(&name) && !self.pending.iter().any(|m| m.full_name() == name) {
            self.pending.push(message.clone());
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    fn field(&mut self, field: &FieldDescriptor) -> Json {
        if field.is_map() {
            let value = field
                .kind()
                .as_message()
                .and_then(|entry| entry.get_field_by_name("value"))
                .map(|v| self.single(&v))
                .unwrap_or_else(|| json!({}));
            return json!({"type": "object", "additionalProperties": value});
        }
        let single = self.single(field);
        if field.is_list() {
            json!({"type": "array", "items": single})
        } else {
            single
        }
    }

    fn single(&mut self, field: &FieldDescriptor) -> Json {
        match field.kind() {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int32", "minimum": 0})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "int64"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(e) => {
                json!({"type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()})
            }
            Kind::Message(m) => self.message_ref(&m),
        }
    }

    fn finish(mut self) -> Map<String, Json> {
        while let Some(message) = self.pending.pop() {
            let mut properties = Map::new();
            for field in message.fields() {
                let mut schema = self.field(&field);
                if let (Some(doc), Json::Object(map)) = (field_doc(&field), &mut schema)
                    && !map.contains_key("$ref")
                {
                    map.insert("description".into(), json!(doc));
                }
                properties.insert(field.json_name().to_owned(), schema);
            }
            self.done.insert(
                message.full_name().to_owned(),
                json!({"type": "object", "properties": properties}),
            );
        }
        self.done.into_iter().collect()
    }
}

/// The leading comment of a field, when the descriptors carry source info.
fn field_doc(field: &FieldDescriptor) -> Option<String> {
    field
        .parent_file()
        .file_descriptor_proto()
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|loc| loc.path == field.path())
        .and_then(|loc| loc.leading_comments.as_deref())
        .map(|c| c.trim().replace('\n', " "))
        .filter(|c| !c.is_empty())
}

fn wkt_schema(message: &MessageDescriptor) -> Option<Json> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "example": "1.5s"}),
        "google.protobuf.FieldMask" => json!({"type": "string", "example": "name,price"}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.Any" => {
            json!({"type": "object", "properties": {"@type": {"type": "string"}}, "additionalProperties": true})
        }
        "google.protobuf.StringValue" => json!({"type": "string", "nullable": true}),
        "google.protobuf.BoolValue" => json!({"type": "boolean", "nullable": true}),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({"type": "integer", "nullable": true})
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({"type": "string", "format": "int64", "nullable": true})
        }
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => {
            json!({"type": "number", "nullable": true})
        }
        _ => return None,
    })
}

fn problem_schema() -> Json {
    json!({
        "type": "object",
        "required": ["type", "title", "status", "code", "detail", "request_id"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "code": {"type": "string", "description": "Stable machine-readable error code, e.g. INVALID_ARGUMENT or PRODUCT_NOT_FOUND."},
            "detail": {"type": "string"},
            "request_id": {"type": "string"},
            "violations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "description": {"type": "string"}}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{descriptor_pool, routes};

    #[test]
    fn lists_the_product_routes_with_their_parameters() {
        let doc = document(&routes(&descriptor_pool().unwrap()).unwrap());
        assert_eq!(doc["openapi"], "3.0.3");
        let get = &doc["paths"]["/v1/products/{id}"]["get"];
        assert_eq!(
            get["operationId"],
            "shop.product.v1.ProductService.GetProduct"
        );
        assert_eq!(get["parameters"][0]["in"], "path");
        assert_eq!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/shop.product.v1.Product"
        );
        let list = &doc["paths"]["/v1/products"]["get"];
        let names: Vec<_> = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].clone())
            .collect();
        assert!(names.contains(&json!("page_size")) && names.contains(&json!("category_id")));
        let product = &doc["components"]["schemas"]["shop.product.v1.Product"]["properties"];
        assert_eq!(
            product["price"]["$ref"],
            "#/components/schemas/shop.common.v1.Money"
        );
        assert_eq!(product["createTime"]["format"], "date-time");
        let patch = &doc["paths"]["/v1/products/{product.id}"]["patch"];
        assert_eq!(patch["security"][0]["bearerAuth"], json!([]));
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document(&routes(&descriptor_pool().unwrap()).unwrap());
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }
}
