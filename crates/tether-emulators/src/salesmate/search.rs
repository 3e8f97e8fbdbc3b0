//! The `POST /apis/{module}/v4/search` query engine over one account's records: filter rules
//! (`CONTAINS`, `EQUALS` and a few siblings on text), sort, offset pagination and the
//! `displayingFields` projection, all applied loosely as the provider facts allow.
//!
//! Field names arrive as `deal.title` or `deal.Owner.name`; the module prefix is dropped and
//! the rest matched case-insensitively against the record. Unknown fields or conditions are
//! ignored rather than rejected. This module is pure: no I/O, no state.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

/// The `Data` object of a search response.
pub(crate) fn run(
    records: &[Value],
    prefix: &str,
    body: &Value,
    rows: usize,
    from: usize,
) -> Value {
    let mut matching: Vec<&Value> = records
        .iter()
        .filter(|record| matches_group(record, prefix, body.pointer("/filterQuery/group")))
        .collect();
    if let Some(sort) = body.get("sort") {
        let field = sort
            .get("fieldName")
            .and_then(Value::as_str)
            .unwrap_or("id");
        let descending = sort
            .get("order")
            .and_then(Value::as_str)
            .is_some_and(|order| order.eq_ignore_ascii_case("desc"));
        matching.sort_by(|a, b| {
            let ordering = compare(lookup(a, prefix, field), lookup(b, prefix, field));
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    let total_rows = matching.len();
    let fields: Vec<&str> = body
        .get("displayingFields")
        .and_then(Value::as_array)
        .map(|fields| fields.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let data: Vec<Value> = matching
        .into_iter()
        .skip(from)
        .take(rows)
        .map(|record| project(record, prefix, &fields))
        .collect();
    json!({
        "data": data,
        "totalRows": total_rows,
        "totalPages": total_rows.div_ceil(rows.max(1)),
    })
}

/// Drops `deal.` (the module prefix) from a field name.
fn strip<'a>(prefix: &str, field: &'a str) -> &'a str {
    field
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| field.get(prefix.len()..))
        .unwrap_or(field)
}

/// The key of `object` equal to `name` ignoring case.
fn find_key<'a>(object: &'a Map<String, Value>, name: &str) -> Option<(&'a String, &'a Value)> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
}

/// The value at a dotted field path (`Owner.name`), case-insensitive at every step.
fn lookup<'a>(record: &'a Value, prefix: &str, field: &str) -> Option<&'a Value> {
    strip(prefix, field)
        .split('.')
        .try_fold(record, |value, segment| {
            value
                .as_object()
                .and_then(|o| find_key(o, segment))
                .map(|(_, v)| v)
        })
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(x), Some(y)) => text(x).cmp(&text(y)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string().to_lowercase(),
    }
}

/// A filter group: `AND` (default) or `OR` over its rules; nested groups are honoured.
fn matches_group(record: &Value, prefix: &str, group: Option<&Value>) -> bool {
    let Some(rules) = group.and_then(|g| g.get("rules")).and_then(Value::as_array) else {
        return true;
    };
    let any = group
        .and_then(|g| g.get("operator"))
        .and_then(Value::as_str)
        .is_some_and(|op| op.eq_ignore_ascii_case("or"));
    let mut results = rules.iter().map(|rule| match rule.get("group") {
        Some(nested) => matches_group(record, prefix, Some(nested)),
        None => matches_rule(record, prefix, rule),
    });
    if any && !rules.is_empty() {
        results.any(|ok| ok)
    } else {
        results.all(|ok| ok)
    }
}

/// One rule, e.g. `{"field":{"fieldName":"deal.title"},"condition":"CONTAINS","data":"Acme"}`.
fn matches_rule(record: &Value, prefix: &str, rule: &Value) -> bool {
    let field = rule
        .get("field")
        .and_then(|f| f.get("fieldName").or(Some(f)))
        .and_then(Value::as_str)
        .or_else(|| rule.get("fieldName").and_then(Value::as_str));
    let condition = rule
        .get("condition")
        .or_else(|| rule.get("operator"))
        .and_then(Value::as_str);
    let wanted = rule.get("data").or_else(|| rule.get("value")).map(text);
    let (Some(field), Some(condition), Some(wanted)) = (field, condition, wanted) else {
        return true;
    };
    let actual = lookup(record, prefix, field).map(text).unwrap_or_default();
    match condition.to_ascii_uppercase().as_str() {
        "CONTAINS" => actual.contains(&wanted),
        "DOES_NOT_CONTAINS" | "DOES_NOT_CONTAIN" => !actual.contains(&wanted),
        "EQUALS" => actual == wanted,
        "NOT_EQUALS" => actual != wanted,
        "STARTS_WITH" => actual.starts_with(&wanted),
        "ENDS_WITH" => actual.ends_with(&wanted),
        _ => true,
    }
}

/// Keeps the displayed fields (by their first segment), always with `id`.
fn project(record: &Value, prefix: &str, fields: &[&str]) -> Value {
    let Some(object) = record.as_object() else {
        return record.clone();
    };
    if fields.is_empty() {
        return record.clone();
    }
    let mut out = Map::new();
    if let Some(id) = object.get("id") {
        out.insert("id".to_owned(), id.clone());
    }
    for field in fields {
        let head = strip(prefix, field).split('.').next().unwrap_or_default();
        if let Some((key, value)) = find_key(object, head) {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Value> {
        vec![
            json!({"id":1,"title":"Acme renewal","createdAt":"2023-01-02","Owner":{"name":"Ada"}}),
            json!({"id":2,"title":"Birch onboarding","createdAt":"2023-03-01","Owner":{"name":"Ben"}}),
            json!({"id":3,"title":"ACME expansion","createdAt":"2023-02-01","Owner":{"name":"Ada"}}),
        ]
    }

    #[test]
    fn filters_sorts_pages_and_projects() {
        let body = json!({
            "displayingFields": ["deal.title", "deal.owner.name"],
            "filterQuery": {"group": {"operator": "AND", "rules": [
                {"field": {"fieldName": "deal.title"}, "condition": "CONTAINS", "data": "acme"}
            ]}},
            "sort": {"fieldName": "deal.createdAt", "order": "desc"},
        });
        let data = run(&records(), "deal.", &body, 1, 0);
        assert_eq!(data["totalRows"], 2);
        assert_eq!(data["totalPages"], 2);
        assert_eq!(
            data["data"],
            json!([{"id":3,"title":"ACME expansion","Owner":{"name":"Ada"}}])
        );
        let equals = json!({"filterQuery": {"group": {"rules": [
            {"field": "deal.Owner.name", "condition": "EQUALS", "data": "ben"}
        ]}}});
        assert_eq!(run(&records(), "deal.", &equals, 10, 0)["data"][0]["id"], 2);
    }
}
