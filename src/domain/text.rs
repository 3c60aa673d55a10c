//! Text shown to people. Member systems choose some of what the hub prints (event types,
//! dossier codes, violation messages quoting their input): a control character in it could move
//! the cursor, rewrite earlier lines or change the terminal's title. Everything that did not come
//! from the hub itself goes through [`printable`].

use std::borrow::Cow;

/// `text` with every control character escaped (`\u{1b}`), unchanged when it has none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("Nguyễn Minh An"), "Nguyễn Minh An");
        assert_eq!(
            printable("a\u{1b}]0;pwned\u{7}\nb"),
            "a\\u{1b}]0;pwned\\u{7}\\u{a}b"
        );
    }
}
