//! Bounds on the metadata an app imports with a connection (`POST /v1/connections`). It is
//! stored with the connection and returned by every list call, so without a bound one row of
//! a megabyte makes every listing slow and large; and like anything a provider sends, it is
//! input to check: nesting, key counts and control characters (which have no place in a
//! value that may end up in a URL, a header or a log line) are limited too.

use serde_json::{Map, Value};

use crate::http::error::ApiError;

/// The metadata's size as compact JSON.
pub const MAX_BYTES: usize = 16 * 1024;
/// Objects and arrays inside the metadata object (the object itself is level 1).
pub const MAX_DEPTH: usize = 4;
/// Keys of one object, items of one array.
pub const MAX_ENTRIES: usize = 64;
/// Characters of one key.
pub const MAX_KEY_CHARS: usize = 128;

/// Checks imported metadata; the 422 names the first value out of bounds by its path.
pub fn check(metadata: &Map<String, Value>) -> Result<(), ApiError> {
    let size = serde_json::to_vec(metadata).map(|v| v.len()).unwrap_or(0);
    if size > MAX_BYTES {
        return Err(refused(format!(
            "metadata is {size} bytes as JSON; at most {MAX_BYTES} are accepted"
        )));
    }
    check_object(metadata, "metadata", 1)
}

fn refused(detail: String) -> ApiError {
    ApiError::Unprocessable {
        code: "metadata_out_of_bounds",
        detail,
    }
}

fn check_object(object: &Map<String, Value>, path: &str, depth: usize) -> Result<(), ApiError> {
    if object.len() > MAX_ENTRIES {
        return Err(refused(format!(
            "{path} has {} keys; at most {MAX_ENTRIES} are accepted",
            object.len()
        )));
    }
    for (key, value) in object {
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || has_control(key) {
            return Err(refused(format!(
                "{path}: keys must have 1 to {MAX_KEY_CHARS} characters and no control characters"
            )));
        }
        check_value(value, &[path, ".", key].concat(), depth)?;
    }
    Ok(())
}

fn check_value(value: &Value, path: &str, depth: usize) -> Result<(), ApiError> {
    let nested = |depth: usize| {
        if depth > MAX_DEPTH {
            Err(refused(format!(
                "{path} is nested deeper than {MAX_DEPTH} levels"
            )))
        } else {
            Ok(depth)
        }
    };
    match value {
        Value::String(text) if has_control(text) => {
            Err(refused(format!("{path} contains control characters")))
        }
        Value::Object(object) => check_object(object, path, nested(depth + 1)?),
        Value::Array(items) => {
            let depth = nested(depth + 1)?;
            if items.len() > MAX_ENTRIES {
                return Err(refused(format!(
                    "{path} has {} items; at most {MAX_ENTRIES} are accepted",
                    items.len()
                )));
            }
            for (index, item) in items.iter().enumerate() {
                check_value(item, &format!("{path}[{index}]"), depth)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn ordinary_metadata_passes_and_the_rest_is_refused() {
        assert!(
            check(&object(
                json!({"database_id": "42", "tags": ["a", {"b": 1}]})
            ))
            .is_ok()
        );
        let deep = json!({"a": {"b": {"c": {"d": {"e": 1}}}}});
        let cases = [
            deep,
            json!({"big": "x".repeat(MAX_BYTES)}),
            json!({"line": "a\r\nb"}),
            json!({"k\u{7}": "v"}),
        ];
        for case in cases {
            let err = check(&object(case.clone())).unwrap_err();
            assert_eq!(err.code(), "metadata_out_of_bounds", "{case}");
        }
        let many: Map<String, Value> = (0..=MAX_ENTRIES)
            .map(|i| (i.to_string(), json!(i)))
            .collect();
        assert!(check(&many).is_err());
    }
}
