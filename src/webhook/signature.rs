//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body, hex, prefixed `sha256=`.
//!
//! Pure functions: no I/O, so every case is a unit test. The comparison is the
//! MAC's own constant-time `verify_slice`, never `==` on strings.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";
/// SHA-256 output, in bytes.
const DIGEST_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not 'sha256=' followed by 64 hex digits")]
    Malformed,
    #[error("the signature does not match any configured secret")]
    Mismatch,
}

/// A signature header as GitHub sends it, ready to check against a body.
#[derive(Clone, Copy)]
pub struct ClaimedSignature([u8; DIGEST_LEN]);

/// Reads the header alone, so that a request without a well-formed one is
/// refused before its body is read (an unsigned body is never buffered).
pub fn parse_header(header: Option<&[u8]>) -> Result<ClaimedSignature, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header.strip_prefix(PREFIX.as_bytes()).ok_or(SignatureError::Malformed)?;
    let mut expected = [0u8; DIGEST_LEN];
    hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
    Ok(ClaimedSignature(expected))
}

/// Accepts `header` when it is the signature of `body` under any of `secrets`.
pub fn verify(secrets: &[Secret], body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    verify_claimed(secrets, body, &parse_header(header)?)
}

/// Accepts `claimed` when it is the signature of `body` under any of `secrets`.
pub fn verify_claimed(
    secrets: &[Secret],
    body: &[u8],
    claimed: &ClaimedSignature,
) -> Result<(), SignatureError> {
    let expected = &claimed.0;
    // Every secret is tried even after a match would be found, so the time
    // taken does not tell which secret (or whether an early one) matched.
    let mut matched = false;
    for secret in secrets {
        matched |= mac(secret, body).verify_slice(expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header value GitHub would send for `body` signed with `secret`.
/// Used by the simulator and the tests to sign deliveries.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(mac(secret, body).finalize().into_bytes()))
}

fn mac(secret: &Secret, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac =
        HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test vector (FACTS.md, "Signature").
    const VECTOR_SECRET: &str = "It's a Secret to Everybody";
    const VECTOR_BODY: &[u8] = b"Hello, World!";
    const VECTOR_HEADER: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secrets(values: &[&str]) -> Vec<Secret> {
        values.iter().map(|v| Secret::new(*v)).collect()
    }

    #[test]
    fn githubs_test_vector_verifies() {
        let secrets = secrets(&[VECTOR_SECRET]);
        assert_eq!(verify(&secrets, VECTOR_BODY, Some(VECTOR_HEADER.as_bytes())), Ok(()));
        assert_eq!(sign(&secrets[0], VECTOR_BODY), VECTOR_HEADER);
    }

    #[test]
    fn a_flipped_byte_of_body_or_signature_is_rejected() {
        let secrets = secrets(&[VECTOR_SECRET]);
        let mut body = VECTOR_BODY.to_vec();
        body[0] ^= 1;
        assert_eq!(verify(&secrets, &body, Some(VECTOR_HEADER.as_bytes())), Err(SignatureError::Mismatch));
        let mut header = VECTOR_HEADER.as_bytes().to_vec();
        let last = header.len() - 1;
        header[last] = b'6'; // ...e17 → ...e16
        assert_eq!(verify(&secrets, VECTOR_BODY, Some(&header)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_configured_secret_verifies() {
        let both = secrets(&["old secret", VECTOR_SECRET]);
        assert_eq!(verify(&both, VECTOR_BODY, Some(VECTOR_HEADER.as_bytes())), Ok(()));
        let signed_by_old = sign(&both[0], VECTOR_BODY);
        assert_eq!(verify(&both, VECTOR_BODY, Some(signed_by_old.as_bytes())), Ok(()));
        assert_eq!(
            verify(&secrets(&["other"]), VECTOR_BODY, Some(signed_by_old.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart_from_wrong_ones() {
        let secrets = secrets(&[VECTOR_SECRET]);
        let digest = &VECTOR_HEADER[PREFIX.len()..];
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            digest.as_bytes().to_vec(),                         // no prefix
            format!("sha1={digest}").into_bytes(),              // legacy algorithm
            format!("SHA256={digest}").into_bytes(),            // GitHub always writes lower case
            format!("sha256={}", &digest[..63]).into_bytes(),   // odd length
            format!("sha256={digest}00").into_bytes(),          // too long
            format!("sha256={}zz", &digest[..62]).into_bytes(), // not hex
            format!("sha256= {digest}").into_bytes(),
            vec![0xff; 71], // not even UTF-8
        ];
        for header in cases {
            assert_eq!(
                verify(&secrets, VECTOR_BODY, Some(&header)),
                Err(SignatureError::Malformed),
                "{}",
                String::from_utf8_lossy(&header)
            );
        }
        assert_eq!(verify(&secrets, VECTOR_BODY, None), Err(SignatureError::Missing));
    }

    #[test]
    fn no_secret_configured_verifies_nothing() {
        assert_eq!(verify(&[], VECTOR_BODY, Some(VECTOR_HEADER.as_bytes())), Err(SignatureError::Mismatch));
    }
}
