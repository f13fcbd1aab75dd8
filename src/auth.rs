//! API keys: `pg_<prefix>_<secret>`. The prefix is stored in clear to find the
//! row; only the SHA-256 of the secret is stored, and it is compared in
//! constant time so response timing says nothing about how close a guess was.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{AppError, AppResult};

const PREFIX_BYTES: usize = 4;
const SECRET_BYTES: usize = 20;

/// A freshly generated key; `token` is shown to its owner once.
pub struct GeneratedKey {
    pub prefix: String,
    pub secret_hash: String,
    pub token: String,
}

pub fn generate_key() -> AppResult<GeneratedKey> {
    let mut prefix = [0u8; PREFIX_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut prefix)
        .and_then(|()| getrandom::fill(&mut secret))
        .map_err(|error| AppError::internal_from("no randomness for a key", error))?;
    let prefix = hex::encode(prefix);
    let secret = hex::encode(secret);
    Ok(GeneratedKey {
        token: format!("pg_{prefix}_{secret}"),
        secret_hash: hash_secret(&secret),
        prefix,
    })
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits a presented token into (prefix, secret).
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.trim().strip_prefix("pg_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let well_formed = prefix.len() == PREFIX_BYTES * 2
        && secret.len() == SECRET_BYTES * 2
        && prefix
            .bytes()
            .chain(secret.bytes())
            .all(|byte| byte.is_ascii_hexdigit());
    well_formed.then_some((prefix, secret))
}

pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// The token in an `Authorization: Bearer …` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let key = generate_key().expect("key");
        let (prefix, secret) = parse_token(&key.token).expect("well formed");
        assert_eq!(prefix, key.prefix);
        assert!(secret_matches(secret, &key.secret_hash));
        assert!(!secret_matches("0".repeat(40).as_str(), &key.secret_hash));
        assert_ne!(generate_key().expect("key").token, key.token);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for token in [
            "",
            "pg_",
            "pg_abc_def",
            "xx_0123abcd_".to_owned().as_str(),
            "pg_0123abcd",
        ] {
            assert!(parse_token(token).is_none(), "{token}");
        }
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
    }
}
