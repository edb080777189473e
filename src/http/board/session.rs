//! The board's login: a cookie that proves its holder typed one of the read
//! tokens, without holding the token.
//!
//! The value is `v1.<expiry, Unix seconds>.<HMAC-SHA256 of the expiry keyed
//! with the token>`. Nothing is stored on the server, so any instance checks
//! a cookie another issued; rotating the token ends every session made with
//! it; a stolen cookie dies at its expiry and never reveals the token. The
//! cookie is `HttpOnly` (no script reads it), `SameSite=Lax` (no cross-site
//! POST carries it) and `Secure` when the board is served over HTTPS.

use actix_web::http::header;
use actix_web::HttpRequest;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

pub const COOKIE: &str = "prmonitor_session";
/// How long a login lasts.
pub const LIFETIME_SECS: i64 = 7 * 24 * 3600;
const VERSION: &str = "v1";
/// Separates the purpose from the expiry, so the MAC means nothing elsewhere.
const CONTEXT: &[u8] = b"prmonitor board session v1|";

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(token: &Secret, expires: i64) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(token.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(CONTEXT);
    mac.update(expires.to_string().as_bytes());
    mac
}

/// A session value for a login with `token`, valid until `now + LIFETIME_SECS`.
pub fn issue(token: &Secret, now: i64) -> String {
    let expires = now + LIFETIME_SECS;
    let tag = mac(token, expires).finalize().into_bytes();
    format!("{VERSION}.{expires}.{}", hex::encode(tag))
}

/// Whether `value` is an unexpired session made with one of `tokens`.
pub fn verify(value: &str, tokens: &[Secret], now: i64) -> bool {
    let mut parts = value.splitn(3, '.');
    let (Some(VERSION), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(expires), Ok(tag)) = (expires.parse::<i64>(), hex::decode(tag)) else {
        return false;
    };
    if expires <= now || expires > now + LIFETIME_SECS {
        return false;
    }
    // Every token is tried, so the time taken does not tell which matched.
    tokens.iter().fold(false, |any, token| any | mac(token, expires).verify_slice(&tag).is_ok())
}

/// Whether the request carries a valid session cookie.
pub fn from_request(request: &HttpRequest, tokens: &[Secret]) -> bool {
    request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && verify(value, tokens, now()))
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The `Set-Cookie` value of a login (`value`), or of a logout (`None`:
/// emptied and expired at once). The value is `v1.<digits>.<hex>`: nothing
/// in it needs quoting.
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let max_age = if value.is_some() { LIFETIME_SECS } else { 0 };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}", value.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_session_is_valid_for_its_token_until_it_expires() {
        let token = Secret::new("read-token");
        let value = issue(&token, NOW);
        assert!(verify(&value, std::slice::from_ref(&token), NOW));
        assert!(verify(&value, std::slice::from_ref(&token), NOW + LIFETIME_SECS - 1));
        assert!(!verify(&value, std::slice::from_ref(&token), NOW + LIFETIME_SECS));
        assert!(!value.contains("read-token"), "the cookie must not hold the token");
    }

    #[test]
    fn a_rotated_token_ends_its_sessions() {
        let value = issue(&Secret::new("old"), NOW);
        assert!(!verify(&value, &[Secret::new("new")], NOW));
        assert!(verify(&value, &[Secret::new("new"), Secret::new("old")], NOW));
    }

    #[test]
    fn forged_and_malformed_values_are_refused() {
        let token = Secret::new("read-token");
        let tokens = std::slice::from_ref(&token);
        let value = issue(&token, NOW);
        let (head, tag) = value.rsplit_once('.').expect("three parts");
        // A later expiry with the old tag.
        let later = format!("v1.{}.{tag}", NOW + LIFETIME_SECS + 10);
        // An expiry past the lifetime, however it was made.
        let far = issue(&token, NOW + 10 * LIFETIME_SECS);
        let flipped =
            format!("{head}.{}", if tag.starts_with('0') { "1" } else { "0" }.to_owned() + &tag[1..]);
        for bad in [
            "",
            "v1",
            "v1..",
            "v2.1.00",
            "v1.notanumber.00",
            "v1.99999999999999999999999.00",
            &format!("v1.{}.zz", NOW + 100),
            &later,
            &flipped,
            &far,
            &format!("{value}\0"),
        ] {
            assert!(!verify(bad, tokens, NOW), "{bad:?} was accepted");
        }
        assert!(!verify(&value, &[], NOW), "no tokens, no sessions");
    }
}
