//! Profile rules independent of storage: what a valid display name, email and
//! phone are, and what a CreateProfile or UpdateMyProfile asks for.

use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_proto::shop::user::v1::{CreateProfileRequest, UpdateMyProfileRequest};
use tonic::Status;
use uuid::Uuid;

use crate::update_mask;

pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// The longest address RFC 5321 allows in a path.
pub const MAX_EMAIL_CHARS: usize = 254;

/// Paths UpdateMyProfile may name, and what an empty mask means.
const WRITABLE: &[&str] = &[
    "display_name",
    "phone",
    "marketing",
    "marketing.email_opt_in",
    "marketing.sms_opt_in",
];
const ALL_WRITABLE: &[&str] = &["display_name", "phone", "marketing"];

/// Checks a display name (already trimmed): 1 to 100 characters, no control characters.
pub fn check_display_name(violations: &mut FieldViolations, field: &str, name: &str) {
    if name.is_empty() {
        violations.add(field, "is required");
    } else if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        violations.add(field, "must be at most 100 characters");
    } else if name.chars().any(char::is_control) {
        violations.add(field, "must not contain control characters");
    }
}

/// Whether `phone` is in E.164 form: `+`, a non-zero digit, then 7 to 14 more
/// digits (8 to 15 in all).
pub fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Checks an optional phone (already trimmed): empty, or E.164.
pub fn check_phone(violations: &mut FieldViolations, field: &str, phone: &str) {
    violations.check(
        phone.is_empty() || is_e164(phone),
        field,
        "must be empty or an E.164 number, e.g. +14155550100",
    );
}

/// A validated CreateProfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProfile {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
}

impl NewProfile {
    pub fn from_request(request: &CreateProfileRequest) -> Result<Self, Status> {
        let mut violations = FieldViolations::new();
        let user_id = match Uuid::parse_str(&request.user_id) {
            Ok(id) => id,
            Err(_) => {
                violations.add("user_id", "must be a user id (UUID)");
                Uuid::nil()
            }
        };
        // svc-auth sends the email already normalised; this only refuses nonsense.
        let email = request.email.trim();
        let at = email.find('@');
        violations.check(
            at.is_some_and(|at| at > 0 && at < email.len() - 1)
                && email.chars().count() <= MAX_EMAIL_CHARS
                && !email.chars().any(|c| c.is_whitespace() || c.is_control()),
            "email",
            "must be an email address of at most 254 characters",
        );
        let display_name = request.display_name.trim();
        check_display_name(&mut violations, "display_name", display_name);
        violations.into_result()?;
        Ok(Self {
            user_id,
            email: email.to_owned(),
            display_name: display_name.to_owned(),
        })
    }
}

/// The fields an UpdateMyProfile sets; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email_opt_in: Option<bool>,
    pub sms_opt_in: Option<bool>,
}

impl ProfileChange {
    /// Validates the fields the mask names, reporting all bad ones at once.
    /// (SMS consent without a phone is checked against the stored row, by the store.)
    pub fn from_request(request: &UpdateMyProfileRequest) -> Result<Self, Status> {
        let profile = request
            .profile
            .as_ref()
            .ok_or_else(|| errors::invalid_field("profile", "is required"))?;
        let paths = update_mask::paths(request.update_mask.as_ref(), WRITABLE, ALL_WRITABLE)?;
        let marketing = profile.marketing.unwrap_or_default();
        let mut violations = FieldViolations::new();
        let mut change = Self::default();
        for path in paths {
            match path {
                "display_name" => {
                    let name = profile.display_name.trim();
                    check_display_name(&mut violations, "profile.display_name", name);
                    change.display_name = Some(name.to_owned());
                }
                "phone" => {
                    let phone = profile.phone.trim();
                    check_phone(&mut violations, "profile.phone", phone);
                    change.phone = Some(phone.to_owned());
                }
                "marketing" => {
                    change.email_opt_in = Some(marketing.email_opt_in);
                    change.sms_opt_in = Some(marketing.sms_opt_in);
                }
                "marketing.email_opt_in" => change.email_opt_in = Some(marketing.email_opt_in),
                "marketing.sms_opt_in" => change.sms_opt_in = Some(marketing.sms_opt_in),
                _ => {}
            }
        }
        violations.into_result()?;
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use prost_types::FieldMask;
    use shopmesh_proto::shop::user::v1::{MarketingPreferences, Profile};

    use super::*;

    fn update(profile: Profile, paths: &[&str]) -> UpdateMyProfileRequest {
        UpdateMyProfileRequest {
            profile: Some(profile),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        }
    }

    #[test]
    fn e164_numbers() {
        for good in [
            "+14155550100",
            "+4930123456",
            "+12345678",
            "+123456789012345",
        ] {
            assert!(is_e164(good), "{good}");
        }
        for bad in [
            "",
            "14155550100",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "+1 415 555 0100",
            "+1415555010a",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn display_names_are_1_to_100_characters() {
        let check = |name: &str| {
            let mut v = FieldViolations::new();
            check_display_name(&mut v, "display_name", name);
            v.is_empty()
        };
        assert!(check("Ada"));
        assert!(check(&"é".repeat(100)), "counted in characters, not bytes");
        assert!(!check(""));
        assert!(!check(&"x".repeat(101)));
        assert!(!check("tab\there"));
    }

    #[test]
    fn an_update_sets_only_the_masked_fields() {
        let profile = Profile {
            display_name: "  Ada Lovelace ".into(),
            phone: "+14155550100".into(),
            marketing: Some(MarketingPreferences {
                email_opt_in: true,
                sms_opt_in: true,
            }),
            ..Default::default()
        };
        let change = ProfileChange::from_request(&update(
            profile.clone(),
            &["display_name", "marketing.email_opt_in"],
        ))
        .unwrap();
        assert_eq!(
            change,
            ProfileChange {
                display_name: Some("Ada Lovelace".into()),
                email_opt_in: Some(true),
                ..Default::default()
            }
        );
        let everything = ProfileChange::from_request(&update(profile, &[])).unwrap();
        assert_eq!(everything.phone.as_deref(), Some("+14155550100"));
        assert_eq!(everything.sms_opt_in, Some(true));
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = Profile {
            display_name: String::new(),
            phone: "0800 FLOWERS".into(),
            ..Default::default()
        };
        let status = ProfileChange::from_request(&update(bad, &[])).unwrap_err();
        for field in ["profile.display_name", "profile.phone"] {
            assert!(status.message().contains(field), "{}", status.message());
        }
        let unmasked_bad_field_is_ignored = Profile {
            display_name: String::new(),
            ..Default::default()
        };
        assert!(
            ProfileChange::from_request(&update(unmasked_bad_field_is_ignored, &["phone"])).is_ok()
        );
    }

    #[test]
    fn a_new_profile_needs_an_id_an_email_and_a_name() {
        let status = NewProfile::from_request(&CreateProfileRequest {
            user_id: "user-1".into(),
            email: "nobody".into(),
            display_name: " ".into(),
        })
        .unwrap_err();
        for field in ["user_id", "email", "display_name"] {
            assert!(status.message().contains(field), "{}", status.message());
        }
        let id = Uuid::now_v7();
        let ok = NewProfile::from_request(&CreateProfileRequest {
            user_id: id.to_string(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
        })
        .unwrap();
        assert_eq!(ok.user_id, id);
    }
}
