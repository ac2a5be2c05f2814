//! Google's discovery document for the Android Management API v1, used by the mock the way
//! Google's front end uses its API definition: to route a request to a method, and to
//! refuse query parameters and body fields the method does not declare.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The discovery document (revision 20261104), as shipped in `tests/data/android/`.
pub const DOCUMENT: &str = include_str!("../../data/android/androidmanagement.v1.json");

/// Query parameters every Google API accepts.
const STANDARD_PARAMETERS: &[&str] = &[
    "$.xgafv",
    "access_token",
    "alt",
    "callback",
    "fields",
    "key",
    "oauth_token",
    "prettyPrint",
    "quotaUser",
    "uploadType",
    "upload_protocol",
];

/// One method of the API.
#[derive(Debug, Clone)]
pub struct Method {
    /// `androidmanagement.enterprises.devices.issueCommand`.
    pub id: String,
    pub http_method: String,
    segments: Vec<String>,
    parameters: Map<String, Value>,
    /// The request body's schema, if the method takes one.
    pub request: Option<String>,
}

/// A request matched to a method, with the path variables (`enterprisesId`, ...).
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    pub method: &'a Method,
    pub variables: Vec<(String, String)>,
}

impl Matched<'_> {
    pub fn var(&self, name: &str) -> &str {
        self.variables
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The parsed document.
pub struct Discovery {
    doc: Value,
    methods: Vec<Method>,
}

impl Discovery {
    /// The document, parsed once per process.
    pub fn get() -> &'static Discovery {
        static CELL: OnceLock<Discovery> = OnceLock::new();
        CELL.get_or_init(|| {
            let doc: Value = serde_json::from_str(DOCUMENT).unwrap_or(Value::Null);
            let mut methods = Vec::new();
            collect_methods(doc.get("resources"), &mut methods);
            Discovery { doc, methods }
        })
    }

    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// The method a request addresses: path (without the leading `/`) and HTTP method.
    /// `None` when no method has this path; `Some(Err(()))` when the path exists with
    /// another HTTP method.
    pub fn route(&self, http_method: &str, path: &str) -> Option<Result<Matched<'_>, ()>> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut path_exists = false;
        let mut best: Option<(usize, Matched<'_>)> = None;
        for method in &self.methods {
            let Some(variables) = match_segments(&method.segments, &parts) else {
                continue;
            };
            path_exists = true;
            if !method.http_method.eq_ignore_ascii_case(http_method) {
                continue;
            }
            let literal: usize = method.segments.iter().map(|s| literal_len(s)).sum();
            if best.as_ref().is_none_or(|(l, _)| literal > *l) {
                best = Some((literal, Matched { method, variables }));
            }
        }
        match best {
            Some((_, matched)) => Some(Ok(matched)),
            None if path_exists => Some(Err(())),
            None => None,
        }
    }

    /// Checks a query string against the method's parameters, as Google does: unknown
    /// names and values outside an enum are refused.
    pub fn check_query(&self, method: &Method, query: &[(String, String)]) -> Result<(), String> {
        for (name, value) in query {
            if STANDARD_PARAMETERS.contains(&name.as_str()) {
                continue;
            }
            let Some(spec) = method.parameters.get(name) else {
                return Err(format!(
                    "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message."
                ));
            };
            if spec.get("location").and_then(Value::as_str) != Some("query") {
                return Err(format!("Parameter '{name}' is not a query parameter."));
            }
            if let Some(values) = spec.get("enum").and_then(Value::as_array)
                && !values.iter().any(|v| v.as_str() == Some(value))
            {
                return Err(format!(
                    "Invalid value at '{name}', \"{value}\" is not a valid enum value."
                ));
            }
            if spec.get("type").and_then(Value::as_str) == Some("boolean")
                && value != "true"
                && value != "false"
            {
                return Err(format!(
                    "Invalid value at '{name}' (TYPE_BOOL), \"{value}\""
                ));
            }
            if spec.get("type").and_then(Value::as_str) == Some("integer")
                && value.parse::<i64>().is_err()
            {
                return Err(format!(
                    "Invalid value at '{name}' (TYPE_INT32), \"{value}\""
                ));
            }
        }
        Ok(())
    }

    /// Checks a JSON value against a named schema. Unknown fields, wrong types and values
    /// outside an enum are refused with Google's wording.
    pub fn validate(&self, schema: &str, value: &Value) -> Result<(), String> {
        let spec = serde_json::json!({ "$ref": schema });
        self.check(&spec, value, &lower_first(schema), 0)
    }

    fn schema(&self, name: &str) -> Option<&Value> {
        self.doc.get("schemas")?.get(name)
    }

    fn check(&self, spec: &Value, value: &Value, at: &str, depth: usize) -> Result<(), String> {
        if depth > 32 {
            return Err(format!(
                "Invalid JSON payload received. Nesting too deep at '{at}'."
            ));
        }
        if let Some(name) = spec.get("$ref").and_then(Value::as_str) {
            let schema = self
                .schema(name)
                .ok_or_else(|| format!("Unknown schema {name}"))?;
            return self.check(schema, value, at, depth + 1);
        }
        if value.is_null() {
            // Proto3 JSON accepts null for any field: it means "not set".
            return Ok(());
        }
        let kind = spec.get("type").and_then(Value::as_str).unwrap_or("any");
        let mismatch = |expected: &str| {
            Err(format!(
                "Invalid value at '{at}' ({expected}), {}",
                short(value)
            ))
        };
        match kind {
            "object" => {
                let Some(object) = value.as_object() else {
                    return mismatch("TYPE_MESSAGE");
                };
                let properties = spec.get("properties").and_then(Value::as_object);
                let additional = spec.get("additionalProperties");
                for (name, field) in object {
                    let field_at = format!("{at}.{name}");
                    if let Some(prop) = properties.and_then(|p| p.get(name)) {
                        self.check(prop, field, &field_at, depth + 1)?;
                    } else if let Some(additional) = additional {
                        if additional.get("type").and_then(Value::as_str) == Some("any")
                            || name == "@type"
                        {
                            continue;
                        }
                        self.check(additional, field, &field_at, depth + 1)?;
                    } else {
                        return Err(format!(
                            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
                        ));
                    }
                }
                Ok(())
            }
            "array" => {
                let Some(items) = value.as_array() else {
                    return mismatch("TYPE_REPEATED");
                };
                let item_spec = spec.get("items").cloned().unwrap_or(Value::Null);
                for (i, item) in items.iter().enumerate() {
                    self.check(&item_spec, item, &format!("{at}[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            "string" => {
                let Some(text) = value.as_str() else {
                    return mismatch("TYPE_STRING");
                };
                if let Some(values) = spec.get("enum").and_then(Value::as_array)
                    && !values.iter().any(|v| v.as_str() == Some(text))
                {
                    return Err(format!("Invalid value at '{at}' (TYPE_ENUM), \"{text}\""));
                }
                match spec.get("format").and_then(Value::as_str) {
                    Some("int64" | "uint64") if text.parse::<i128>().is_err() => {
                        mismatch("TYPE_INT64")
                    }
                    Some("google-duration") if parse_duration(text).is_none() => Err(format!(
                        "Invalid value at '{at}' (type.googleapis.com/google.protobuf.Duration), Field '{at}', Illegal duration format; duration must end with 's'"
                    )),
                    Some("google-datetime")
                        if chrono::DateTime::parse_from_rfc3339(text).is_err() =>
                    {
                        Err(format!(
                            "Invalid value at '{at}' (type.googleapis.com/google.protobuf.Timestamp), Field '{at}', Invalid time format"
                        ))
                    }
                    _ => Ok(()),
                }
            }
            "boolean" => {
                if value.is_boolean() {
                    Ok(())
                } else {
                    mismatch("TYPE_BOOL")
                }
            }
            "integer" => {
                // Proto3 JSON accepts integers as numbers or as decimal strings.
                let ok = value.as_i64().is_some()
                    || value.as_str().is_some_and(|s| s.parse::<i64>().is_ok());
                if ok { Ok(()) } else { mismatch("TYPE_INT32") }
            }
            "number" => {
                if value.is_number() {
                    Ok(())
                } else {
                    mismatch("TYPE_DOUBLE")
                }
            }
            _ => Ok(()),
        }
    }
}

/// `600s`, `3.5s`: a protobuf Duration in JSON. Answers seconds.
pub fn parse_duration(text: &str) -> Option<f64> {
    let number = text.strip_suffix('s')?;
    if number.is_empty()
        || !number
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return None;
    }
    number.parse::<f64>().ok().filter(|s| s.is_finite())
}

fn collect_methods(resources: Option<&Value>, out: &mut Vec<Method>) {
    let Some(resources) = resources.and_then(Value::as_object) else {
        return;
    };
    for resource in resources.values() {
        if let Some(methods) = resource.get("methods").and_then(Value::as_object) {
            for method in methods.values() {
                let path = method
                    .get("flatPath")
                    .or_else(|| method.get("path"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push(Method {
                    id: text(method, "id"),
                    http_method: text(method, "httpMethod"),
                    segments: path.split('/').map(str::to_owned).collect(),
                    parameters: method
                        .get("parameters")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                    request: method
                        .get("request")
                        .and_then(|r| r.get("$ref"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
        }
        collect_methods(resource.get("resources"), out);
    }
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Matches `v1/enterprises/{enterprisesId}/devices/{devicesId}:issueCommand` against a
/// path's segments. A variable never holds a `:` (AMAPI ids have none), so `abc:verb`
/// does not match a bare `{devicesId}`.
fn match_segments(template: &[String], parts: &[&str]) -> Option<Vec<(String, String)>> {
    if template.len() != parts.len() {
        return None;
    }
    let mut variables = Vec::new();
    for (t, p) in template.iter().zip(parts) {
        match (t.find('{'), t.find('}')) {
            (Some(open), Some(close)) if open < close => {
                let (prefix, name, suffix) = (&t[..open], &t[open + 1..close], &t[close + 1..]);
                let value = p.strip_prefix(prefix)?.strip_suffix(suffix)?;
                if value.is_empty() || value.contains(':') {
                    return None;
                }
                variables.push((name.to_owned(), value.to_owned()));
            }
            _ if t == p => {}
            _ => return None,
        }
    }
    Some(variables)
}

fn literal_len(segment: &str) -> usize {
    match (segment.find('{'), segment.find('}')) {
        (Some(open), Some(close)) if open < close => segment.len() - (close - open + 1),
        _ => segment.len(),
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_document_has_every_method() {
        let discovery = Discovery::get();
        assert_eq!(discovery.methods().len(), 36);
    }

    #[test]
    fn routes_verbs_and_variables() {
        let d = Discovery::get();
        let m = d
            .route("POST", "v1/enterprises/LC1/devices/abc:issueCommand")
            .unwrap()
            .unwrap();
        assert_eq!(
            m.method.id,
            "androidmanagement.enterprises.devices.issueCommand"
        );
        assert_eq!(m.var("devicesId"), "abc");
        let m = d
            .route("GET", "v1/enterprises/LC1/devices/abc")
            .unwrap()
            .unwrap();
        assert_eq!(m.method.id, "androidmanagement.enterprises.devices.get");
        assert!(
            d.route("PUT", "v1/enterprises/LC1/devices/abc")
                .unwrap()
                .is_err()
        );
        assert!(d.route("GET", "v1/nothing").is_none());
    }

    #[test]
    fn unknown_fields_and_bad_enums_are_refused() {
        let d = Discovery::get();
        d.validate("Command", &json!({"type": "LOCK", "duration": "600s"}))
            .unwrap();
        let err = d
            .validate("Command", &json!({"type": "LOCK", "colour": 1}))
            .unwrap_err();
        assert!(err.contains("Unknown name \"colour\""), "{err}");
        assert!(d.validate("Command", &json!({"type": "EXPLODE"})).is_err());
        assert!(
            d.validate("Command", &json!({"duration": "10 minutes"}))
                .is_err()
        );
        assert!(
            d.validate(
                "Command",
                &json!({"wipeParams": {"wipeDataFlags": ["WIPE_ESIMS"]}})
            )
            .is_ok()
        );
        assert!(
            d.validate(
                "Command",
                &json!({"wipeParams": {"wipeDataFlags": "WIPE_ESIMS"}})
            )
            .is_err()
        );
    }
}
