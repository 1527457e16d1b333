//! What a valid product is: the rules CreateProduct and UpdateProduct enforce
//! before anything reaches the database, and which fields an `update_mask` names.
//! Every violation names the request field it is about (`product.price.amount_minor`).

use std::collections::BTreeMap;

use prost_types::FieldMask;
use shopmesh_platform::errors::FieldViolations;
use shopmesh_proto::shop::product::v1::Product;
use tonic::Status;
use uuid::Uuid;

use crate::search::{is_attribute_key, is_attribute_value};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
pub const MAX_ATTRIBUTES: usize = 20;
pub const MAX_IMAGES: usize = 10;
pub const MAX_URL_CHARS: usize = 2_048;
/// A trillion minor units: far above any real price, far below overflow when summed.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000;

/// A product's writable fields, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductDraft {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Uuid,
    pub price_minor: i64,
    pub currency_code: String,
    pub attributes: BTreeMap<String, String>,
    pub image_urls: Vec<String>,
}

/// A writable field, as an `update_mask` path names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Sku,
    Name,
    Description,
    CategoryId,
    Price,
    Attributes,
    ImageUrls,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::Sku,
        Field::Name,
        Field::Description,
        Field::CategoryId,
        Field::Price,
        Field::Attributes,
        Field::ImageUrls,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Field::Sku => "sku",
            Field::Name => "name",
            Field::Description => "description",
            Field::CategoryId => "category_id",
            Field::Price => "price",
            Field::Attributes => "attributes",
            Field::ImageUrls => "image_urls",
        }
    }
}

/// The fields an update names: every writable one for an absent or empty mask
/// or `*` (AIP-134); any other path is INVALID_ARGUMENT naming `update_mask`.
pub fn update_fields(mask: Option<&FieldMask>) -> Result<Vec<Field>, Status> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() || paths == ["*"] {
        return Ok(Field::ALL.to_vec());
    }
    let mut violations = FieldViolations::new();
    let mut fields = Vec::with_capacity(paths.len());
    for path in paths {
        match Field::ALL.iter().find(|f| f.path() == path.trim()) {
            Some(field) if !fields.contains(field) => fields.push(*field),
            Some(_) => {}
            None => violations.add(
                "update_mask",
                format!(
                    "{path:?} is not a writable field; writable: sku, name, description, \
                     category_id, price, attributes, image_urls"
                ),
            ),
        }
    }
    violations.into_result()?;
    Ok(fields)
}

/// The catalog-wide rules a product is checked against.
#[derive(Clone, Debug)]
pub struct ProductRules {
    /// The one currency every price is in (ISO 4217).
    pub currency: String,
}

impl ProductRules {
    /// A new product from a CreateProduct request: every field is checked.
    pub fn new_product(&self, product: Option<&Product>) -> Result<ProductDraft, Status> {
        let Some(product) = product else {
            return Err(shopmesh_platform::errors::invalid_field(
                "product",
                "is required",
            ));
        };
        self.merge(ProductDraft::default(), product, &Field::ALL)
    }

    /// `current` with the `fields` of `incoming` written over it; only those
    /// fields are checked (the rest were checked when they were written).
    pub fn merge(
        &self,
        mut draft: ProductDraft,
        incoming: &Product,
        fields: &[Field],
    ) -> Result<ProductDraft, Status> {
        let mut violations = FieldViolations::new();
        for field in fields {
            self.apply(&mut draft, incoming, *field, &mut violations);
        }
        violations.into_result()?;
        Ok(draft)
    }

    fn apply(
        &self,
        draft: &mut ProductDraft,
        incoming: &Product,
        field: Field,
        violations: &mut FieldViolations,
    ) {
        match field {
            Field::Sku => {
                violations.check(
                    is_sku(&incoming.sku),
                    "product.sku",
                    "must be 3 to 40 of A-Z, 0-9 and -",
                );
                draft.sku.clone_from(&incoming.sku);
            }
            Field::Name => {
                let name = incoming.name.trim();
                violations.check(!name.is_empty(), "product.name", "is required");
                violations.check(
                    name.chars().count() <= MAX_NAME_CHARS,
                    "product.name",
                    "must be at most 200 characters",
                );
                violations.check(
                    !name.chars().any(char::is_control),
                    "product.name",
                    "must not contain control characters",
                );
                draft.name = name.to_owned();
            }
            Field::Description => {
                violations.check(
                    incoming.description.chars().count() <= MAX_DESCRIPTION_CHARS,
                    "product.description",
                    "must be at most 5000 characters",
                );
                draft.description = incoming.description.trim().to_owned();
            }
            Field::CategoryId => match Uuid::parse_str(&incoming.category_id) {
                Ok(id) => draft.category_id = id,
                Err(_) => violations.add("product.category_id", "must be a category id (UUID)"),
            },
            Field::Price => self.apply_price(draft, incoming, violations),
            Field::Attributes => {
                violations.check(
                    incoming.attributes.len() <= MAX_ATTRIBUTES,
                    "product.attributes",
                    "must have at most 20 keys",
                );
                let mut keys: Vec<&String> = incoming.attributes.keys().collect();
                keys.sort();
                for key in keys {
                    let value = &incoming.attributes[key];
                    if !is_attribute_key(key) {
                        violations.add(
                            format!("product.attributes[{key:?}]"),
                            "key must be 1 to 32 of a-z and _",
                        );
                    } else if !is_attribute_value(value) {
                        violations.add(
                            format!("product.attributes[{key:?}]"),
                            "value must be 1 to 100 characters, without control characters",
                        );
                    }
                }
                draft.attributes = incoming
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.trim().to_owned()))
                    .collect();
            }
            Field::ImageUrls => {
                violations.check(
                    incoming.image_urls.len() <= MAX_IMAGES,
                    "product.image_urls",
                    "must have at most 10 URLs",
                );
                for (i, url) in incoming.image_urls.iter().enumerate() {
                    violations.check(
                        is_absolute_http_url(url),
                        &format!("product.image_urls[{i}]"),
                        "must be an absolute http:// or https:// URL",
                    );
                }
                draft.image_urls.clone_from(&incoming.image_urls);
            }
        }
    }

    fn apply_price(
        &self,
        draft: &mut ProductDraft,
        incoming: &Product,
        violations: &mut FieldViolations,
    ) {
        let Some(price) = &incoming.price else {
            violations.add("product.price", "is required");
            return;
        };
        violations.check(
            (0..=MAX_PRICE_MINOR).contains(&price.amount_minor),
            "product.price.amount_minor",
            "must be between 0 and 1000000000000 minor units",
        );
        let code = &price.currency_code;
        if !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())) {
            violations.add(
                "product.price.currency_code",
                "must be an ISO 4217 code: three upper-case letters",
            );
        } else if *code != self.currency {
            violations.add(
                "product.price.currency_code",
                format!(
                    "must be {}: the catalog is priced in one currency",
                    self.currency
                ),
            );
        }
        draft.price_minor = price.amount_minor;
        draft.currency_code.clone_from(code);
    }
}

/// 3 to 40 of `A-Z`, `0-9` and `-`.
pub fn is_sku(sku: &str) -> bool {
    (3..=40).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

/// An absolute `http://` or `https://` URL with a plausible host: a DNS name,
/// IPv4 address or bracketed IPv6 address, an optional port, no credentials,
/// no whitespace.
pub fn is_absolute_http_url(raw: &str) -> bool {
    if raw.chars().count() > MAX_URL_CHARS
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let scheme_end = match raw.find("://") {
        Some(end) => end,
        None => return false,
    };
    let scheme = &raw[..scheme_end];
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return false;
    }
    let rest = &raw[scheme_end + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ipv6, port)) if ipv6.parse::<std::net::Ipv6Addr>().is_ok() => ("ipv6", port),
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, _)) => (host, &authority[host.len()..]),
            None => (authority, ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => digits.parse::<u16>().is_ok_and(|p| p > 0),
        None => port.is_empty(),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopmesh_proto::shop::common::v1::Money;

    fn rules() -> ProductRules {
        ProductRules {
            currency: "USD".into(),
        }
    }

    fn valid() -> Product {
        Product {
            sku: "EL-TEST-0001".into(),
            name: "  Test Headphones ".into(),
            description: "Sound.".into(),
            category_id: Uuid::now_v7().to_string(),
            price: Some(Money {
                currency_code: "USD".into(),
                amount_minor: 1999,
            }),
            attributes: [("brand".to_owned(), "Auralis".to_owned())].into(),
            image_urls: vec!["https://images.example/p/1.jpg".into()],
            ..Default::default()
        }
    }

    use shopmesh_platform::errors::violated_fields as fields;

    #[test]
    fn a_valid_product_is_trimmed_and_kept() {
        let draft = rules().new_product(Some(&valid())).unwrap();
        assert_eq!(draft.name, "Test Headphones");
        assert_eq!(draft.price_minor, 1999);
        assert_eq!(draft.attributes["brand"], "Auralis");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = valid();
        bad.name = "   ".into();
        bad.sku = "lower-case".into();
        bad.category_id = "headphones".into();
        bad.price = Some(Money {
            currency_code: "usd".into(),
            amount_minor: -1,
        });
        bad.attributes = [
            ("Brand".to_owned(), "x".to_owned()),
            ("colour".to_owned(), "y".repeat(101)),
        ]
        .into();
        bad.image_urls = vec![
            "https://ok.example/a.jpg".into(),
            "/relative.jpg".into(),
            "ftp://files.example/a.jpg".into(),
        ];
        let status = rules().new_product(Some(&bad)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            fields(&status),
            [
                "product.sku",
                "product.name",
                "product.category_id",
                "product.price.amount_minor",
                "product.price.currency_code",
                "product.attributes[\"Brand\"]",
                "product.attributes[\"colour\"]",
                "product.image_urls[1]",
                "product.image_urls[2]",
            ]
        );
    }

    #[test]
    fn one_currency_per_catalog() {
        let mut eur = valid();
        eur.price = Some(Money {
            currency_code: "EUR".into(),
            amount_minor: 100,
        });
        let status = rules().new_product(Some(&eur)).unwrap_err();
        assert_eq!(fields(&status), ["product.price.currency_code"]);
        let mut none = valid();
        none.price = None;
        assert_eq!(
            fields(&rules().new_product(Some(&none)).unwrap_err()),
            ["product.price"]
        );
        assert_eq!(fields(&rules().new_product(None).unwrap_err()), ["product"]);
    }

    #[test]
    fn a_merge_checks_and_writes_only_the_named_fields() {
        let current = rules().new_product(Some(&valid())).unwrap();
        let incoming = Product {
            name: "Renamed".into(),
            // Not in the mask: neither checked nor written.
            sku: "bad sku".into(),
            ..Default::default()
        };
        let merged = rules()
            .merge(current.clone(), &incoming, &[Field::Name])
            .unwrap();
        assert_eq!(merged.name, "Renamed");
        assert_eq!(merged.sku, current.sku);
        assert_eq!(merged.price_minor, current.price_minor);
    }

    #[test]
    fn update_masks_name_writable_fields_only() {
        let mask = |paths: &[&str]| FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        assert_eq!(update_fields(None).unwrap(), Field::ALL);
        assert_eq!(update_fields(Some(&mask(&["*"]))).unwrap(), Field::ALL);
        assert_eq!(
            update_fields(Some(&mask(&["price", "name", "price"]))).unwrap(),
            [Field::Price, Field::Name]
        );
        for bad in ["id", "create_time", "price.amount_minor", "nme"] {
            let status = update_fields(Some(&mask(&["name", bad]))).unwrap_err();
            assert_eq!(fields(&status), ["update_mask"], "{bad}");
        }
    }

    #[test]
    fn skus() {
        for ok in ["EL-HEAD-0001", "ABC", "A1-B2", &"X".repeat(40)] {
            assert!(is_sku(ok), "{ok}");
        }
        for bad in [
            "AB",
            "el-head-1",
            "EL HEAD",
            "EL_HEAD",
            &"X".repeat(41),
            "ÄBC",
        ] {
            assert!(!is_sku(bad), "{bad}");
        }
    }

    #[test]
    fn image_urls() {
        for ok in [
            "https://images.shopmesh.example/products/EL-HEAD-0001-1.jpg",
            "http://127.0.0.1:8080/a.png",
            "HTTPS://CDN.EXAMPLE/x?size=2#top",
            "https://[::1]:8443/a.jpg",
            "https://localhost",
        ] {
            assert!(is_absolute_http_url(ok), "{ok}");
        }
        for bad in [
            "",
            "images/a.jpg",
            "//cdn.example/a.jpg",
            "ftp://cdn.example/a.jpg",
            "javascript:alert(1)",
            "https://",
            "https:///a.jpg",
            "https://cdn example/a.jpg",
            "https://user:pw@cdn.example/a.jpg",
            "https://cdn.example:0/a.jpg",
            "https://cdn.example:99999/a.jpg",
            "https://-bad-.example/a.jpg",
            "https://cdn..example/a.jpg",
            "https://[nope]/a.jpg",
        ] {
            assert!(!is_absolute_http_url(bad), "{bad}");
        }
    }
}
