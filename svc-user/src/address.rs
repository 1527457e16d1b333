//! Address-book rules independent of storage: what a valid address is, what a
//! Create or Update of one asks for, and how the book pages.

use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::user::v1::{Address, ListAddressesRequest, UpdateAddressRequest};
use tonic::Status;
use uuid::Uuid;

use crate::profile;
use crate::update_mask;

/// Most addresses one shopper may keep.
pub const MAX_ADDRESSES: i64 = 20;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// The writable fields: name, whether it must be non-empty, longest length in characters.
const FIELDS: &[(&str, bool, usize)] = &[
    ("label", false, 50),
    ("recipient", true, 100),
    ("line1", true, 200),
    ("line2", false, 200),
    ("city", true, 100),
    ("region", false, 100),
    ("postal_code", false, 20),
    ("country_code", true, 2),
    ("phone", false, 16),
];
const WRITABLE: &[&str] = &[
    "label",
    "recipient",
    "line1",
    "line2",
    "city",
    "region",
    "postal_code",
    "country_code",
    "phone",
];

/// ISO 3166-1 alpha-2: every officially assigned code, sorted.
const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

pub fn is_country_code(code: &str) -> bool {
    COUNTRY_CODES.binary_search(&code).is_ok()
}

/// The address fields a Create or Update sets; `None` leaves a field as it is
/// (a Create sets every one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressInput {
    pub label: Option<String>,
    pub recipient: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country_code: Option<String>,
    pub phone: Option<String>,
}

impl AddressInput {
    /// A CreateAddress: every field, validated.
    pub fn for_create(address: Option<&Address>) -> Result<Self, Status> {
        let address = address.ok_or_else(|| errors::invalid_field("address", "is required"))?;
        Self::from_paths(address, WRITABLE)
    }

    /// An UpdateAddress: the fields its mask names (all when empty), validated,
    /// and the id of the address to change.
    pub fn for_update(request: &UpdateAddressRequest) -> Result<(Uuid, Self), Status> {
        let address = request
            .address
            .as_ref()
            .ok_or_else(|| errors::invalid_field("address", "is required"))?;
        let id = errors::parse_uuid("address.id", &address.id)?;
        let paths = update_mask::paths(request.update_mask.as_ref(), WRITABLE, WRITABLE)?;
        Ok((id, Self::from_paths(address, &paths)?))
    }

    fn from_paths(address: &Address, paths: &[&str]) -> Result<Self, Status> {
        let mut violations = FieldViolations::new();
        let mut input = Self::default();
        for &(name, required, max_chars) in FIELDS {
            if !paths.contains(&name) {
                continue;
            }
            let (raw, slot) = match name {
                "label" => (&address.label, &mut input.label),
                "recipient" => (&address.recipient, &mut input.recipient),
                "line1" => (&address.line1, &mut input.line1),
                "line2" => (&address.line2, &mut input.line2),
                "city" => (&address.city, &mut input.city),
                "region" => (&address.region, &mut input.region),
                "postal_code" => (&address.postal_code, &mut input.postal_code),
                "country_code" => (&address.country_code, &mut input.country_code),
                _ => (&address.phone, &mut input.phone),
            };
            let value = raw.trim();
            let field = format!("address.{name}");
            match name {
                "country_code" => violations.check(
                    is_country_code(value),
                    &field,
                    "must be an ISO 3166-1 alpha-2 code in upper case, e.g. DE",
                ),
                "phone" => profile::check_phone(&mut violations, &field, value),
                _ if value.is_empty() => violations.check(!required, &field, "is required"),
                _ if value.chars().count() > max_chars => {
                    violations.add(field, format!("must be at most {max_chars} characters"));
                }
                _ if value.chars().any(char::is_control) => {
                    violations.add(field, "must not contain control characters");
                }
                _ => {}
            }
            *slot = Some(value.to_owned());
        }
        violations.into_result()?;
        Ok(input)
    }
}

/// The position after the last address of a page, in list order (default first,
/// then newest first): whether it is the default, its creation time in
/// microseconds, its id.
pub type AddressCursor = (bool, i64, Uuid);

/// A validated ListAddresses page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPage {
    pub page_size: u32,
    pub after: Option<AddressCursor>,
}

impl AddressPage {
    pub fn from_request(user_id: Uuid, request: &ListAddressesRequest) -> Result<Self, Status> {
        let page_size = paging::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = paging::decode(&fingerprint(user_id), &request.page_token)?;
        Ok(Self { page_size, after })
    }
}

/// Binds page tokens to the address book they were issued for.
pub fn fingerprint(user_id: Uuid) -> String {
    paging::fingerprint(&("addresses", user_id))
}

#[cfg(test)]
mod tests {
    use prost_types::FieldMask;

    use super::*;

    fn home() -> Address {
        Address {
            label: "Home".into(),
            recipient: "Ada Lovelace".into(),
            line1: "12 St James's Square".into(),
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country_code: "GB".into(),
            ..Default::default()
        }
    }

    use shopmesh_platform::errors::violated_fields as fields;

    #[test]
    fn the_country_list_is_iso_3166_alpha_2() {
        assert_eq!(COUNTRY_CODES.len(), 249);
        assert!(
            COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]),
            "sorted, unique"
        );
        assert!(is_country_code("DE") && is_country_code("US"));
        for bad in ["de", "UK", "ZZ", "DEU", "", "D"] {
            assert!(!is_country_code(bad), "{bad}");
        }
    }

    #[test]
    fn a_create_needs_the_required_fields_and_names_each_bad_one() {
        let input = AddressInput::for_create(Some(&home())).unwrap();
        assert_eq!(input.country_code.as_deref(), Some("GB"));
        assert_eq!(input.line2.as_deref(), Some(""));

        let bad = Address {
            recipient: " ".into(),
            line1: String::new(),
            city: "x".repeat(101),
            country_code: "gb".into(),
            phone: "12345".into(),
            ..Default::default()
        };
        let status = AddressInput::for_create(Some(&bad)).unwrap_err();
        assert_eq!(
            fields(&status),
            [
                "address.recipient",
                "address.line1",
                "address.city",
                "address.country_code",
                "address.phone"
            ]
        );
        assert_eq!(
            fields(&AddressInput::for_create(None).unwrap_err()),
            ["address"]
        );
    }

    #[test]
    fn an_update_sets_only_the_masked_fields() {
        let mut address = Address {
            label: "Work".into(),
            ..Default::default()
        };
        address.id = Uuid::now_v7().to_string();
        let request = UpdateAddressRequest {
            address: Some(address.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["label".into()],
            }),
        };
        let (_, input) = AddressInput::for_update(&request).unwrap();
        assert_eq!(
            input,
            AddressInput {
                label: Some("Work".into()),
                ..Default::default()
            }
        );

        // An empty mask replaces every writable field, so the required ones must be there.
        let everything = UpdateAddressRequest {
            address: Some(address),
            update_mask: None,
        };
        let status = AddressInput::for_update(&everything).unwrap_err();
        assert!(fields(&status).contains(&"address.recipient".to_owned()));

        let read_only = UpdateAddressRequest {
            address: Some(Address {
                id: Uuid::now_v7().to_string(),
                ..home()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["is_default".into()],
            }),
        };
        assert_eq!(
            fields(&AddressInput::for_update(&read_only).unwrap_err()),
            ["update_mask"]
        );
    }

    #[test]
    fn a_page_token_only_pages_the_book_it_came_from() {
        let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
        let cursor: AddressCursor = (true, 42, Uuid::nil());
        let token = paging::encode(&fingerprint(mine), &cursor);
        let request = ListAddressesRequest {
            page_size: 5,
            page_token: token,
        };
        assert_eq!(
            AddressPage::from_request(mine, &request).unwrap(),
            AddressPage {
                page_size: 5,
                after: Some(cursor)
            }
        );
        assert!(AddressPage::from_request(theirs, &request).is_err());
    }
}
