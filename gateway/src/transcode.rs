//! REST ⇄ protobuf by the proto3 JSON mapping: path variables, query parameters
//! and the JSON body become one request message; the response message (or its
//! `response_body` field) becomes JSON.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions,
};
use serde_json::{Map, Value as Json};

use crate::routes::{BodyTarget, Route, resolve_path};

/// A bad request, naming the offending field where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub description: String,
}

impl FieldError {
    fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Builds the request message for `route`.
pub fn request_message(
    route: &Route,
    bindings: &[(String, String)],
    query: &[(String, String)],
    body: &[u8],
) -> Result<DynamicMessage, Vec<FieldError>> {
    let input = route.method.input();
    let mut root = match &route.body {
        BodyTarget::None => Map::new(),
        BodyTarget::Whole => parse_body_object(body, None)?,
        BodyTarget::Field(field) => {
            let mut root = Map::new();
            if !body.is_empty() {
                let value: Json =
                    serde_json::from_slice(body).map_err(|e| vec![json_error(field.name(), &e)])?;
                if let Some(mask) = implied_update_mask(&input, field, &value, query) {
                    root.insert("updateMask".to_owned(), Json::String(mask));
                }
                root.insert(field.json_name().to_owned(), value);
            }
            root
        }
    };
    let mut errors = Vec::new();
    // Query parameters fill what the body does not carry (AIP-127).
    if matches!(route.body, BodyTarget::Whole) {
        if let Some((name, _)) = query.first() {
            errors.push(FieldError::new(
                name.clone(),
                "query parameters are not accepted with a JSON body",
            ));
        }
    } else {
        for (name, value) in query {
            if let Err(e) = set_path(&input, &mut root, name, value, true) {
                errors.push(e);
            }
        }
    }
    // Path variables win over anything the body or query said.
    for (name, value) in bindings {
        if let Err(e) = set_path(&input, &mut root, name, value, false) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    DynamicMessage::deserialize_with_options(input, Json::Object(root), &options).map_err(|e| {
        vec![FieldError::new(
            field_from_serde(&e.to_string()),
            e.to_string(),
        )]
    })
}

/// AIP-134 over REST: a PATCH that names no `update_mask` updates exactly the
/// fields present in its JSON body, never clearing the ones it left out.
fn implied_update_mask(
    input: &MessageDescriptor,
    body_field: &FieldDescriptor,
    body: &Json,
    query: &[(String, String)],
) -> Option<String> {
    let mask = input.get_field_by_name("update_mask")?;
    let is_field_mask =
        matches!(mask.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask");
    let asked = query
        .iter()
        .any(|(k, _)| k == "update_mask" || k == "updateMask");
    let (Json::Object(fields), Kind::Message(resource)) = (body, body_field.kind()) else {
        return None;
    };
    if !is_field_mask || asked {
        return None;
    }
    let paths: Vec<String> = fields
        .keys()
        .filter_map(|key| {
            resource
                .get_field_by_json_name(key)
                .or_else(|| resource.get_field_by_name(key))
        })
        .map(|f| f.json_name().to_owned())
        .collect();
    Some(paths.join(","))
}

fn parse_body_object(
    body: &[u8],
    field: Option<&str>,
) -> Result<Map<String, Json>, Vec<FieldError>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(vec![FieldError::new(
            field.unwrap_or(""),
            "the body must be a JSON object",
        )]),
        Err(e) => Err(vec![json_error(field.unwrap_or(""), &e)]),
    }
}

fn json_error(field: &str, err: &serde_json::Error) -> FieldError {
    FieldError::new(field, format!("malformed JSON: {err}"))
}

/// prost-reflect names the field in its message ("... for field `x`"); pull it out.
fn field_from_serde(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .filter(|f| !f.contains(' '))
        .unwrap_or_default()
        .to_owned()
}

/// Sets the (dotted) field `path` to `raw`, converted to the JSON value the
/// proto3 JSON mapping expects for that field's kind.
fn set_path(
    input: &MessageDescriptor,
    root: &mut Map<String, Json>,
    path: &str,
    raw: &str,
    from_query: bool,
) -> Result<(), FieldError> {
    let chain = resolve_path(input, path)
        .ok_or_else(|| FieldError::new(path, "is not a field of this request"))?;
    let proto_path = chain.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
    let Some((leaf, parents)) = chain.split_last() else {
        return Err(FieldError::new(path, "is empty"));
    };
    let mut object = root;
    for parent in parents {
        if parent.is_list() || parent.is_map() {
            return Err(FieldError::new(proto_path, "cannot be set from the URL"));
        }
        let slot = object
            .entry(parent.json_name().to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        object = match slot {
            Json::Object(map) => map,
            _ => return Err(FieldError::new(proto_path, "is not a message")),
        };
    }
    if leaf.is_map() || (leaf.is_list() && !from_query) {
        return Err(FieldError::new(proto_path, "cannot be set from the URL"));
    }
    let value = scalar(leaf, raw)
        .map_err(|description| FieldError::new(proto_path.clone(), description))?;
    let key = leaf.json_name().to_owned();
    if leaf.is_list() {
        // `?ids=a&ids=b` and `?ids=a,b` both give a list.
        let list = object.entry(key).or_insert_with(|| Json::Array(Vec::new()));
        if let Json::Array(items) = list {
            if matches!(leaf.kind(), Kind::String) && raw.contains(',') {
                items.extend(
                    raw.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| Json::String(s.to_owned())),
                );
            } else {
                items.push(value);
            }
        }
    } else {
        object.insert(key, value);
    }
    Ok(())
}

/// Converts one URL value to JSON for a field of `field`'s kind, checking it.
fn scalar(field: &FieldDescriptor, raw: &str) -> Result<Json, String> {
    Ok(match field.kind() {
        Kind::Bool => match raw {
            "true" | "1" => Json::Bool(true),
            "false" | "0" => Json::Bool(false),
            _ => return Err("must be true or false".into()),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            raw.parse::<i32>()
                .map_err(|_| "must be a 32-bit integer".to_owned())?;
            Json::String(raw.to_owned())
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            raw.parse::<i64>()
                .map_err(|_| "must be an integer".to_owned())?;
            Json::String(raw.to_owned())
        }
        Kind::Uint32 | Kind::Fixed32 => {
            raw.parse::<u32>()
                .map_err(|_| "must be a non-negative 32-bit integer".to_owned())?;
            Json::String(raw.to_owned())
        }
        Kind::Uint64 | Kind::Fixed64 => {
            raw.parse::<u64>()
                .map_err(|_| "must be a non-negative integer".to_owned())?;
            Json::String(raw.to_owned())
        }
        Kind::Float | Kind::Double => {
            raw.parse::<f64>()
                .map_err(|_| "must be a number".to_owned())?;
            Json::String(raw.to_owned())
        }
        Kind::Enum(e) => match raw.parse::<i32>() {
            Ok(n) if e.get_value(n).is_some() => Json::from(n),
            _ if e.get_value_by_name(raw).is_some() => Json::String(raw.to_owned()),
            _ => {
                let names: Vec<_> = e.values().map(|v| v.name().to_owned()).collect();
                return Err(format!("must be one of {}", names.join(", ")));
            }
        },
        // Well-known types (Timestamp, FieldMask, wrappers) take their JSON string form.
        Kind::String | Kind::Bytes | Kind::Message(_) => Json::String(raw.to_owned()),
    })
}

/// The JSON of a response: the whole message, or its `response_body` field.
pub fn response_json(
    route: &Route,
    message: &DynamicMessage,
) -> Result<Vec<u8>, serde_json::Error> {
    let options = SerializeOptions::new()
        .skip_default_fields(false)
        .stringify_64_bit_integers(true);
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::new(&mut out);
    match &route.response_body {
        Some(field) => match message.get_field(field).as_message() {
            Some(inner) => inner.serialize_with_options(&mut serializer, &options)?,
            None => {
                let empty = DynamicMessage::new(
                    field
                        .kind()
                        .as_message()
                        .cloned()
                        .unwrap_or_else(|| message.descriptor()),
                );
                empty.serialize_with_options(&mut serializer, &options)?;
            }
        },
        None => message.serialize_with_options(&mut serializer, &options)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{Lookup, RouteTable, descriptor_pool, routes};
    use http::Method;
    use prost_reflect::Value;

    fn route(verb: Method, path: &str) -> (Route, Vec<(String, String)>) {
        let table = RouteTable::new(routes(&descriptor_pool().unwrap()).unwrap());
        match table.lookup(&verb, path) {
            Lookup::Found(route, bindings) => (route.clone(), bindings),
            _ => panic!("{verb} {path} is not routed"),
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_parameters_fill_fields_by_proto_or_json_name() {
        let (route, bindings) = route(Method::GET, "/v1/products");
        let query = q(&[
            ("page_size", "20"),
            ("minPriceMinor", "100"),
            ("order_by", "PRODUCT_ORDER_PRICE_ASC"),
        ]);
        let message = request_message(&route, &bindings, &query, b"").unwrap();
        assert_eq!(
            message.get_field_by_name("page_size").unwrap().as_i32(),
            Some(20)
        );
        assert_eq!(
            message
                .get_field_by_name("min_price_minor")
                .unwrap()
                .as_i64(),
            Some(100)
        );
        assert_eq!(
            message
                .get_field_by_name("order_by")
                .unwrap()
                .as_enum_number(),
            Some(2)
        );
    }

    #[test]
    fn bad_query_values_name_the_field() {
        let (route, bindings) = route(Method::GET, "/v1/products");
        for (name, value, field) in [
            ("page_size", "twenty", "page_size"),
            ("pageSize", "99999999999", "page_size"),
            ("order_by", "CHEAPEST", "order_by"),
            ("colour", "red", "colour"),
        ] {
            let errors = request_message(&route, &bindings, &q(&[(name, value)]), b"").unwrap_err();
            assert_eq!(errors[0].field, field, "{name}={value}");
        }
    }

    #[test]
    fn repeated_query_values_accumulate() {
        let (route, bindings) = route(Method::GET, "/v1/products:batchGet");
        let message =
            request_message(&route, &bindings, &q(&[("ids", "a,b"), ("ids", "c")]), b"").unwrap();
        let ids = message.get_field_by_name("ids").unwrap();
        let ids: Vec<_> = ids
            .as_list()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn body_field_and_nested_path_variable_combine() {
        let (route, bindings) = route(Method::PATCH, "/v1/products/p-1");
        let body = br#"{"name":"Kettle","price":{"currencyCode":"USD","amountMinor":"2499"},"id":"ignored"}"#;
        let message = request_message(
            &route,
            &bindings,
            &q(&[("update_mask", "name,price")]),
            body,
        )
        .unwrap();
        let product = message.get_field_by_name("product").unwrap();
        let product = product.as_message().unwrap();
        assert_eq!(
            product.get_field_by_name("id").unwrap().as_str(),
            Some("p-1")
        );
        assert_eq!(
            product.get_field_by_name("name").unwrap().as_str(),
            Some("Kettle")
        );
        let mask = message.get_field_by_name("update_mask").unwrap();
        let paths = mask
            .as_message()
            .unwrap()
            .get_field_by_name("paths")
            .unwrap();
        assert_eq!(paths.as_list().map(<[Value]>::len), Some(2));
    }

    #[test]
    fn a_patch_without_a_mask_updates_only_the_fields_sent() {
        let (route, bindings) = route(Method::PATCH, "/v1/products/p-1");
        let body = br#"{"name":"Kettle","imageUrls":[]}"#;
        let message = request_message(&route, &bindings, &[], body).unwrap();
        let mask = message.get_field_by_name("update_mask").unwrap();
        let paths = mask
            .as_message()
            .unwrap()
            .get_field_by_name("paths")
            .unwrap();
        let paths: Vec<_> = paths
            .as_list()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(paths, ["image_urls", "name"]);
    }

    #[test]
    fn malformed_and_unknown_json_is_refused() {
        let (route, bindings) = route(Method::PATCH, "/v1/products/p-1");
        assert!(request_message(&route, &bindings, &[], b"{nope").is_err());
        let errors = request_message(&route, &bindings, &[], br#"{"colour":"red"}"#).unwrap_err();
        assert!(errors[0].description.contains("colour"), "{errors:?}");
    }

    #[test]
    fn responses_unwrap_response_body_and_stringify_int64() {
        let (route, _) = route(Method::GET, "/v1/products/x");
        let output = route.method.output();
        let json = serde_json::json!({"product": {"id": "p", "price": {"currencyCode": "USD", "amountMinor": 1999}}});
        let message = DynamicMessage::deserialize(output, json).unwrap();
        let body: Json = serde_json::from_slice(&response_json(&route, &message).unwrap()).unwrap();
        assert_eq!(body["id"], "p");
        assert_eq!(body["price"]["amountMinor"], "1999");
        assert_eq!(
            body["description"], "",
            "defaults are emitted so the shape is stable"
        );
    }
}
