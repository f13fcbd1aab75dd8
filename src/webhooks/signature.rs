//! Signing deliveries the way receivers already know from Stripe and GitHub:
//! `X-Plangraph-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! under the webhook's secret. The timestamp is signed with the body, so a
//! receiver that refuses old timestamps refuses replays; `v1` names the
//! scheme, so another can be added beside it later without breaking anyone.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{AppError, AppResult};

/// The secrets' visible prefix, so one found in a config file says what it is.
const SECRET_PREFIX: &str = "whsec_";
/// 256 bits, as much as the HMAC-SHA256 key can use.
const SECRET_BYTES: usize = 32;

/// A fresh random secret, `whsec_` and 64 hex digits. The whole string is the
/// HMAC key.
pub fn generate_secret() -> AppResult<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| AppError::internal_from("no randomness for a secret", error))?;
    Ok(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
}

/// The `X-Plangraph-Signature` value of `body` sent at `timestamp` (unix seconds).
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error branch cannot happen.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return format!("t={timestamp},v1="),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently:
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature_header("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn secrets_are_random_and_recognisable() {
        let secret = generate_secret().expect("secret");
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 2 * SECRET_BYTES);
        assert_ne!(secret, generate_secret().expect("secret"));
    }
}
