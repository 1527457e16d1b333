//! Reading an `update_mask` (AIP-134): which writable fields an Update names.

use prost_types::FieldMask;
use shopmesh_platform::errors::FieldViolations;
use tonic::Status;

/// The writable paths `mask` names, each as spelled in `writable`. An absent or
/// empty mask, or `*`, names `all` (every writable field). Any other path,
/// unknown or read-only, is INVALID_ARGUMENT naming `update_mask`.
pub fn paths(
    mask: Option<&FieldMask>,
    writable: &[&'static str],
    all: &[&'static str],
) -> Result<Vec<&'static str>, Status> {
    let requested = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if requested.is_empty() || requested == ["*"] {
        return Ok(all.to_vec());
    }
    let mut violations = FieldViolations::new();
    let mut named = Vec::with_capacity(requested.len());
    for path in requested {
        match writable.iter().find(|w| **w == path.trim()) {
            Some(known) => named.push(*known),
            None => violations.add(
                "update_mask",
                format!(
                    "{path:?} is not a writable field; writable: {}",
                    writable.join(", ")
                ),
            ),
        }
    }
    violations.into_result()?;
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITABLE: &[&str] = &["name", "marketing", "marketing.sms_opt_in"];
    const ALL: &[&str] = &["name", "marketing"];

    fn mask(paths: &[&str]) -> FieldMask {
        FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn empty_absent_or_star_means_every_writable_field() {
        assert_eq!(paths(None, WRITABLE, ALL).unwrap(), ALL);
        assert_eq!(paths(Some(&mask(&[])), WRITABLE, ALL).unwrap(), ALL);
        assert_eq!(paths(Some(&mask(&["*"])), WRITABLE, ALL).unwrap(), ALL);
    }

    #[test]
    fn named_paths_are_kept_and_others_refused_naming_update_mask() {
        assert_eq!(
            paths(Some(&mask(&["marketing.sms_opt_in"])), WRITABLE, ALL).unwrap(),
            ["marketing.sms_opt_in"]
        );
        let status = paths(Some(&mask(&["name", "email"])), WRITABLE, ALL).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("update_mask"), "{status:?}");
    }
}
