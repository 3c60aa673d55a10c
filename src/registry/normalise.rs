//! Normalisation that does not change meaning, applied before any rule runs so that lawful
//! input is not refused for its form: text to Unicode NFC (the same name typed on two systems
//! compares equal), without surrounding spaces, and phone numbers in the national form
//! (`+84 905.123.456` → `0905123456`). The encoded event carries the normalised values; the
//! quarantine keeps what was sent.

use std::borrow::Cow;

use serde_json::Value;
use unicode_normalization::{UnicodeNormalization as _, is_nfc};

/// `payload` normalised; borrowed unchanged when nothing needed normalising (the usual case,
/// which costs one read of the strings and no allocation).
pub fn normalised(payload: &Value) -> Cow<'_, Value> {
    if is_normal(payload, None) {
        return Cow::Borrowed(payload);
    }
    let mut owned = payload.clone();
    normalise(&mut owned, None);
    Cow::Owned(owned)
}

fn is_phone(key: Option<&str>) -> bool {
    key.is_some_and(|k| k == "phone" || k.ends_with("_phone"))
}

fn normal_text<'a>(text: &'a str, key: Option<&str>) -> Cow<'a, str> {
    let trimmed = text.trim();
    if is_phone(key) {
        let phone = national_phone(trimmed);
        return if phone == text {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(phone)
        };
    }
    if trimmed.len() == text.len() && is_nfc(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(trimmed.nfc().collect())
    }
}

/// A phone number in the national form: separators dropped, `+84`/`0084` replaced by `0`.
/// Anything that is not a plain number is left for the schema to judge.
fn national_phone(text: &str) -> String {
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let local = compact
        .strip_prefix("+84")
        .or_else(|| compact.strip_prefix("0084"));
    match local {
        Some(rest) if rest.chars().all(|c| c.is_ascii_digit()) => format!("0{rest}"),
        _ => compact,
    }
}

fn is_normal(value: &Value, key: Option<&str>) -> bool {
    match value {
        Value::String(text) => matches!(normal_text(text, key), Cow::Borrowed(t) if t == text),
        Value::Array(items) => items.iter().all(|item| is_normal(item, key)),
        Value::Object(fields) => fields.iter().all(|(k, v)| is_normal(v, Some(k))),
        _ => true,
    }
}

fn normalise(value: &mut Value, key: Option<&str>) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(normal) = normal_text(text, key) {
                *text = normal;
            }
        }
        Value::Array(items) => {
            for item in items {
                normalise(item, key);
            }
        }
        Value::Object(fields) => {
            for (k, v) in fields.iter_mut() {
                normalise(v, Some(k));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_spaces_and_phones_are_normalised_and_normal_input_is_borrowed() {
        let sent = json!({
            "full_name": "  Nguye\u{0302}\u{0303}n Văn A ",
            "declarant": {"phone": "+84 905.123.456", "office_phone": "(0236) 3822-123"},
            "note": "ok",
        });
        let normal = normalised(&sent);
        assert_eq!(
            *normal,
            json!({
                "full_name": "Nguyễn Văn A",
                "declarant": {"phone": "0905123456", "office_phone": "02363822123"},
                "note": "ok",
            })
        );
        assert!(matches!(normalised(&normal), Cow::Borrowed(_)));
        assert!(matches!(
            normalised(&json!({"phone": "0905123456"})),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            national_phone("+84abc"),
            "+84abc",
            "not a number: left as sent"
        );
    }
}
