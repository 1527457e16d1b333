//! `google.api.http` path templates (the subset AIP-127 uses): literal segments,
//! `{field}` and `{field=pattern}` variables with `*`/`**` wildcards, and a
//! trailing custom verb such as `:search`.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// One segment bound to a field.
    Field(String),
    /// A field bound to a multi-segment pattern such as `shelves/*/books/**`.
    Pattern {
        field: String,
        parts: Vec<String>,
    },
}

/// A parsed template, e.g. `/v1/products/{id}` or `/v1/products:search`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    verb: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |reason| TemplateError {
            template: template.to_owned(),
            reason,
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| fail("must start with /"))?;
        // The verb follows the last ':' that is outside a variable.
        let (path, verb) = match rest.rfind(':') {
            Some(colon) if !rest[colon..].contains('}') && !rest[colon..].contains('/') => {
                (&rest[..colon], Some(rest[colon + 1..].to_owned()))
            }
            _ => (rest, None),
        };
        let mut segments = Vec::new();
        let mut chars = path;
        while !chars.is_empty() {
            if let Some(var) = chars.strip_prefix('{') {
                let end = var.find('}').ok_or_else(|| fail("unclosed {"))?;
                let inner = &var[..end];
                segments.push(match inner.split_once('=') {
                    None => Segment::Field(inner.to_owned()),
                    Some((field, pattern)) => Segment::Pattern {
                        field: field.to_owned(),
                        parts: pattern.split('/').map(str::to_owned).collect(),
                    },
                });
                chars = var[end + 1..].trim_start_matches('/');
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                let literal = &chars[..end];
                if literal.contains('{') || literal.contains('}') {
                    return Err(fail("a variable must be a whole segment"));
                }
                segments.push(Segment::Literal(literal.to_owned()));
                chars = chars[end..].trim_start_matches('/');
            }
        }
        Ok(Self {
            source: template.to_owned(),
            segments,
            verb,
        })
    }

    /// The template as written in the proto, used as the metrics route label.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The field paths bound by the template, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Field(f) | Segment::Pattern { field: f, .. } => Some(f.as_str()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// The OpenAPI form: variables as `{field}`, patterns collapsed.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Field(f) | Segment::Pattern { field: f, .. } => {
                    out.push('{');
                    out.push_str(f);
                    out.push('}');
                }
            }
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// Matches a request path (still percent-encoded), returning the bound
    /// variables, decoded.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut bindings = Vec::new();
        let mut index = 0;
        for (position, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    if parts.get(index) != Some(&literal.as_str()) {
                        return None;
                    }
                    index += 1;
                }
                Segment::Field(field) => {
                    let value = parts.get(index).filter(|v| !v.is_empty())?;
                    // Without a verb, a trailing ':x' belongs to another route.
                    if self.verb.is_none()
                        && position + 1 == self.segments.len()
                        && value.contains(':')
                    {
                        return None;
                    }
                    bindings.push((field.clone(), percent_decode(value)?));
                    index += 1;
                }
                Segment::Pattern {
                    field,
                    parts: pattern,
                } => {
                    let take = if pattern.last().is_some_and(|p| p == "**") {
                        parts
                            .len()
                            .checked_sub(index + self.segments.len() - position - 1)?
                    } else {
                        pattern.len()
                    };
                    let matched = parts.get(index..index + take)?;
                    for (want, got) in pattern.iter().zip(matched) {
                        if want != "*" && want != "**" && want != got {
                            return None;
                        }
                    }
                    let decoded: Option<Vec<String>> =
                        matched.iter().map(|p| percent_decode(p)).collect();
                    bindings.push((field.clone(), decoded?.join("/")));
                    index += take;
                }
            }
        }
        (index == parts.len()).then_some(bindings)
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Decodes `%XX` escapes; `None` for malformed escapes or invalid UTF-8.
pub fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = input.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathTemplate::parse(template).unwrap().matches(path)
    }

    #[test]
    fn literal_and_field_segments() {
        assert_eq!(bind("/v1/products", "/v1/products"), Some(vec![]));
        assert_eq!(
            bind("/v1/products/{id}", "/v1/products/abc"),
            Some(vec![("id".into(), "abc".into())])
        );
        assert_eq!(bind("/v1/products/{id}", "/v1/products"), None);
        assert_eq!(bind("/v1/products/{id}", "/v1/products/"), None);
        assert_eq!(bind("/v1/products/{id}", "/v1/products/a/b"), None);
        assert_eq!(
            bind(
                "/v1/carts/{cart_id}/items/{sku}",
                "/v1/carts/mine/items/EL%2D1"
            ),
            Some(vec![
                ("cart_id".into(), "mine".into()),
                ("sku".into(), "EL-1".into())
            ])
        );
    }

    #[test]
    fn custom_verbs_do_not_collide_with_fields() {
        assert_eq!(
            bind("/v1/products:search", "/v1/products:search"),
            Some(vec![])
        );
        assert_eq!(bind("/v1/products/{id}", "/v1/products:search"), None);
        assert_eq!(bind("/v1/products/{id}", "/v1/products/x:cancel"), None);
        assert_eq!(
            bind("/v1/orders/{id}:cancel", "/v1/orders/42:cancel"),
            Some(vec![("id".into(), "42".into())])
        );
        assert_eq!(bind("/v1/orders/{id}:cancel", "/v1/orders/42"), None);
    }

    #[test]
    fn patterns_and_nested_fields() {
        assert_eq!(
            bind("/v1/{name=shelves/*}", "/v1/shelves/7"),
            Some(vec![("name".into(), "shelves/7".into())])
        );
        assert_eq!(bind("/v1/{name=shelves/*}", "/v1/books/7"), None);
        assert_eq!(
            bind("/v1/{path=files/**}", "/v1/files/a/b/c"),
            Some(vec![("path".into(), "files/a/b/c".into())])
        );
        let t = PathTemplate::parse("/v1/products/{product.id}").unwrap();
        assert_eq!(t.fields(), ["product.id"]);
        assert_eq!(t.openapi_path(), "/v1/products/{product.id}");
    }

    #[test]
    fn bad_escapes_do_not_match() {
        assert_eq!(bind("/v1/products/{id}", "/v1/products/%zz"), None);
        assert!(PathTemplate::parse("v1/x").is_err());
        assert!(PathTemplate::parse("/v1/{id").is_err());
    }
}
