//! Vietnamese for JSON Schema's violations. The officials who read refusals are Vietnamese;
//! the semantic rules already speak both languages, and the jsonschema crate speaks English
//! only. Each keyword gets a short Vietnamese statement of the rule, put before the crate's
//! (value-free) English message, in the same "vi / en" form as the semantic rules.

/// The Vietnamese statement of a broken JSON Schema keyword, when one is known.
pub fn keyword(keyword: &str) -> Option<&'static str> {
    Some(match keyword {
        "required" => "thiếu trường bắt buộc",
        "type" => "sai kiểu dữ liệu",
        "pattern" => "không đúng định dạng quy định",
        "format" => "không đúng định dạng (ngày, thời điểm, email...)",
        "enum" | "const" => "giá trị không nằm trong danh sách cho phép",
        "minLength" => "chuỗi ngắn hơn độ dài tối thiểu",
        "maxLength" => "chuỗi dài hơn độ dài tối đa",
        "minimum" | "exclusiveMinimum" => "giá trị nhỏ hơn mức tối thiểu",
        "maximum" | "exclusiveMaximum" => "giá trị lớn hơn mức tối đa",
        "minItems" => "danh sách ít phần tử hơn mức tối thiểu",
        "maxItems" => "danh sách nhiều phần tử hơn mức tối đa",
        "uniqueItems" => "danh sách có phần tử trùng nhau",
        "additionalProperties" | "unevaluatedProperties" => "có trường không được khai báo",
        "oneOf" | "anyOf" => "không khớp với dạng nào được phép",
        "not" => "giá trị thuộc dạng bị cấm",
        "multipleOf" => "giá trị không phải bội số quy định",
        _ => return None,
    })
}

/// `english` with the Vietnamese statement of `keyword` before it, when one is known.
pub fn bilingual(keyword_name: &str, english: String) -> String {
    match keyword(keyword_name) {
        Some(vi) => format!("{vi} / {english}"),
        None => english,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_keywords_speak_vietnamese_and_unknown_ones_stay_english() {
        assert_eq!(
            bilingual("required", "\"sex\" is a required property".into()),
            "thiếu trường bắt buộc / \"sex\" is a required property"
        );
        assert_eq!(bilingual("$dynamicRef", "x".into()), "x");
    }
}
