//! Opaque keyset page tokens and page-size validation, the same for every List.
//!
//! A token is base64url(JSON { "q": fingerprint of the query, "k": cursor }).
//! The fingerprint binds the token to the filters and sort order it was issued
//! for, so reusing it with another query is an error instead of a wrong page.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tonic::Status;

use crate::errors::invalid_field;

#[derive(Serialize, Deserialize)]
struct Envelope<K> {
    q: String,
    k: K,
}

/// A stable (across processes and releases) 64-bit FNV-1a fingerprint of `query`.
pub fn fingerprint(query: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(query).unwrap_or_default();
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Encodes the cursor of the last item of a page.
pub fn encode<K: Serialize>(query_fingerprint: &str, cursor: &K) -> String {
    let envelope = Envelope {
        q: query_fingerprint.to_owned(),
        k: cursor,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// Decodes a page token; `None` for the first page. Any malformed token, or one
/// issued for another query, is INVALID_ARGUMENT naming `page_token`.
pub fn decode<K: DeserializeOwned>(
    query_fingerprint: &str,
    token: &str,
) -> Result<Option<K>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid_field("page_token", "is not a page token issued for this query");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let envelope: Envelope<K> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if envelope.q != query_fingerprint {
        return Err(bad());
    }
    Ok(Some(envelope.k))
}

/// Validates `page_size`: 0 means `default`, negative is an error, above `max` is clamped
/// (AIP-158).
pub fn page_size(requested: i32, default: u32, max: u32) -> Result<u32, Status> {
    match requested {
        n if n < 0 => Err(invalid_field("page_size", "must not be negative")),
        0 => Ok(default),
        n => Ok((n as u32).min(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_to_their_query() {
        let q = fingerprint(&("newest", "category-1"));
        let token = encode(&q, &(1999_i64, "id-1"));
        let cursor: Option<(i64, String)> = decode(&q, &token).unwrap();
        assert_eq!(cursor, Some((1999, "id-1".to_owned())));

        let other = fingerprint(&("price", "category-1"));
        let err = decode::<(i64, String)>(&other, &token).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn malformed_tokens_name_the_field() {
        for token in ["%%%", "bm90IGpzb24", "e30"] {
            let err = decode::<(i64, String)>("q", token).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{token}");
            assert!(err.message().contains("page_token"));
        }
        assert_eq!(decode::<i64>("q", "").unwrap(), None);
    }

    #[test]
    fn page_sizes_follow_aip_158() {
        assert_eq!(page_size(0, 20, 100).unwrap(), 20);
        assert_eq!(page_size(500, 20, 100).unwrap(), 100);
        assert_eq!(page_size(7, 20, 100).unwrap(), 7);
        assert!(page_size(-1, 20, 100).is_err());
    }

    #[test]
    fn fingerprints_are_stable() {
        // Tokens outlive a deploy: the fingerprint must not depend on the build.
        assert_eq!(fingerprint(&1), "af63ac4c86019afc");
    }
}
