//! Values in query strings, which arrive as text: whole numbers within bounds, times, and
//! the bounds of a page.

use chrono::{DateTime, Utc};

use crate::domain::FieldError;

pub const MAX_PAGE_SIZE: u32 = 100;
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// A whole number from a query string, `default` when absent, refused outside `min..=max`.
pub fn parse_uint(
    value: Option<&str>,
    field: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, FieldError> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(FieldError::new(
                field,
                format!("must be a whole number between {min} and {max}"),
            )),
        },
    }
}

/// A list's `page` (from 1) and `pageSize` (1 to 100, 20 by default).
pub fn parse_page(page: Option<&str>, page_size: Option<&str>) -> Result<(u32, u32), FieldError> {
    Ok((
        parse_uint(page, "page", 1, 1, u32::MAX / 2)?,
        parse_uint(page_size, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)?,
    ))
}

/// RFC 3339 times, or a plain date meaning midnight UTC.
pub fn parse_time(value: &str, field: &str) -> Result<DateTime<Utc>, FieldError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(FieldError::new(
        field,
        "must be an RFC 3339 time (2024-01-20T11:15:00Z) or a date (2024-01-20)",
    ))
}
