//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A signing secret as users see it. `whsec_<base64>` secrets use the decoded bytes as the
/// HMAC key, as every Standard Webhooks library does; any other text (seed clients send
/// things like `your-webhook-secret-key`) is used as-is, and a receiver using such a
/// library passes it as `whsec_` + base64(text).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    pub fn from_secret(secret: &str) -> Self {
        match secret.strip_prefix(PREFIX).map(|b64| B64.decode(b64)) {
            Some(Ok(bytes)) if !bytes.is_empty() => Self(bytes),
            _ => Self(secret.as_bytes().to_vec()),
        }
    }

    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// A fresh `whsec_` secret of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", B64.encode(bytes))
}

/// The `webhook-signature` header: one `v1,…` per secret, space-separated, so receivers
/// holding either the old or the new secret accept it during a rotation.
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is {0} s away from now, more than the tolerance")]
    TimestampOutOfTolerance(i64),
    #[error("no `v1` signature in the header matches")]
    NoMatchingSignature,
}

/// Checks a delivery the way a receiver should: timestamp within `tolerance_seconds` of
/// `now`, and at least one `v1` signature matching (compared in constant time).
pub fn verify(
    key: &SigningKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), VerifyError> {
    let skew = (now - timestamp).abs();
    if skew > tolerance_seconds {
        return Err(VerifyError::TimestampOutOfTolerance(skew));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|sig| B64.decode(sig).ok())
        .any(|sig| constant_time_eq(&sig, &expected));
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's published vectors.
    #[test]
    fn the_specification_test_vectors_are_reproduced() {
        let vectors = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, body, expected) in vectors {
            let key = SigningKey::from_secret(secret);
            assert_eq!(key.sign(id, ts, body.as_bytes()), expected);
            assert_eq!(
                verify(&key, id, ts, body.as_bytes(), expected, ts, 300),
                Ok(())
            );
        }
    }

    #[test]
    fn verification_rejects_tampering_and_stale_timestamps() {
        let key = SigningKey::from_secret(&generate_secret());
        let sig = key.sign("msg_1", 1000, b"{}");
        assert_eq!(
            verify(&key, "msg_1", 1000, b"{ }", &sig, 1000, 300),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            verify(&key, "msg_1", 1000, b"{}", &sig, 1301, 300),
            Err(VerifyError::TimestampOutOfTolerance(301))
        );
        let other = SigningKey::from_secret(&generate_secret());
        assert!(verify(&other, "msg_1", 1000, b"{}", &sig, 1000, 300).is_err());
    }

    #[test]
    fn a_header_signed_by_two_secrets_satisfies_holders_of_either() {
        let old = SigningKey::from_secret(&generate_secret());
        let new = SigningKey::from_secret(&generate_secret());
        let header = signature_header(&[new.clone(), old.clone()], "msg_2", 5, b"x");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, "msg_2", 5, b"x", &header, 5, 300).is_ok());
        assert!(verify(&new, "msg_2", 5, b"x", &header, 5, 300).is_ok());
    }

    #[test]
    fn plain_text_secrets_are_used_as_raw_keys() {
        let plain = SigningKey::from_secret("your-webhook-secret-key");
        let as_whsec =
            SigningKey::from_secret(&format!("whsec_{}", B64.encode("your-webhook-secret-key")));
        assert_eq!(plain, as_whsec);
        assert!(generate_secret().starts_with("whsec_"));
    }
}
