//! Rules that fields of several requests share: names, http URLs, signing secrets. Each
//! check takes the JSON path of the field it checks, so that its error names that field.

use super::FieldError;

/// Names of operations and of their phases.
pub const MAX_NAME_LEN: usize = 500;

/// The value trimmed; refused when blank or longer than `max` characters.
pub fn checked_name(value: &str, field: &str, max: usize) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// An absolute http or https URL with a host. Whether its host may be reached is the
/// outbound guard's question, asked where addresses are resolved.
pub fn http_url(value: &str, field: &str) -> Result<url::Url, FieldError> {
    let url = url::Url::parse(value)
        .map_err(|e| FieldError::new(field, format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(FieldError::new(field, "must be an http or https URL"));
    }
    Ok(url)
}

/// A secret a client chooses to sign what Relais sends it (webhooks, push tasks): long
/// enough to resist guessing, and bounded like every value Relais stores.
pub fn check_signing_secret(secret: &str, field: &str) -> Result<(), FieldError> {
    if secret.len() < 8 || secret.len() > 256 {
        return Err(FieldError::new(field, "must be 8 to 256 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(checked_name("  report ", "n", 10).unwrap(), "report");
        assert_eq!(checked_name(" \t", "n", 10).unwrap_err().field, "n");
        assert!(checked_name("ééé", "n", 3).is_ok(), "characters, not bytes");
        assert!(checked_name("abcd", "n", 3).is_err());
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        assert!(http_url("https://example.com/hook", "u").is_ok());
        for bad in ["ftp://example.com", "mailto:a@b.c", "not a url", "http://"] {
            assert_eq!(http_url(bad, "u").unwrap_err().field, "u", "{bad}");
        }
    }

    #[test]
    fn signing_secrets_are_bounded() {
        assert!(check_signing_secret("12345678", "s").is_ok());
        assert!(check_signing_secret("1234567", "s").is_err());
        assert!(check_signing_secret(&"x".repeat(257), "s").is_err());
    }
}
