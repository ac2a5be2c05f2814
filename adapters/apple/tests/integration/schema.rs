//! Every command the adapter can emit, checked against Apple's YAML schema: required keys
//! present, types right, values in range, no unknown keys.

use std::collections::HashMap;

use plist::Value;
use serde_norway::Value as Yaml;

fn schemas() -> HashMap<String, Yaml> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schema/commands");
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let yaml: Yaml = serde_norway::from_str(&text).unwrap();
        let request_type = yaml["payload"]["requesttype"].as_str().unwrap().to_owned();
        out.insert(request_type, yaml);
    }
    out
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "<string>" => value.as_string().is_some(),
        "<boolean>" => value.as_boolean().is_some(),
        "<integer>" => value.as_signed_integer().is_some() || value.as_unsigned_integer().is_some(),
        "<real>" => value.as_real().is_some(),
        "<data>" => value.as_data().is_some(),
        "<array>" => value.as_array().is_some(),
        "<dictionary>" => value.as_dictionary().is_some(),
        "<any>" => true,
        _ => false,
    }
}

/// Checks a dictionary against a list of payload keys; answers the problems found.
fn check(keys: &Yaml, dict: &plist::Dictionary, path: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let keys = keys.as_sequence().cloned().unwrap_or_default();
    for (name, value) in dict {
        let Some(spec) = keys
            .iter()
            .find(|k| k["key"].as_str() == Some(name.as_str()))
        else {
            problems.push(format!("{path}{name}: not in the schema"));
            continue;
        };
        let expected = spec["type"].as_str().unwrap_or("");
        if !type_matches(expected, value) {
            problems.push(format!("{path}{name}: expected {expected}, got {value:?}"));
            continue;
        }
        if let (Some(range), Some(text)) = (spec["rangelist"].as_sequence(), value.as_string())
            && !range.iter().any(|r| r.as_str() == Some(text))
        {
            problems.push(format!("{path}{name}: {text} not in {range:?}"));
        }
        if let Some(items) = value.as_array() {
            let item_type = spec["subkeys"][0]["type"].as_str().unwrap_or("<any>");
            for item in items {
                if !type_matches(item_type, item) {
                    problems.push(format!("{path}{name}[]: expected {item_type}"));
                }
                // Arrays of strings with an enumerated set of values.
                if let (Some(allowed), Some(text)) = (
                    spec["subkeys"][0]["subkeys"].as_sequence(),
                    item.as_string(),
                ) && !allowed.iter().any(|a| a["key"].as_str() == Some(text))
                {
                    problems.push(format!("{path}{name}[]: {text} is not a known value"));
                }
            }
        }
        if let Some(inner) = value.as_dictionary() {
            problems.extend(check(&spec["subkeys"], inner, &format!("{path}{name}.")));
        }
    }
    for spec in &keys {
        if spec["presence"].as_str() == Some("required") {
            let key = spec["key"].as_str().unwrap_or("");
            if !dict.contains_key(key) {
                problems.push(format!("{path}{key}: required but missing"));
            }
        }
    }
    problems
}

#[test]
fn every_command_matches_apples_schema() {
    let schemas = schemas();
    let samples = mdm_apple::protocol::command::samples();
    let mut covered = std::collections::HashSet::new();
    for command in samples {
        let body = command.render("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
        let value: Value = plist::from_bytes(&body).unwrap();
        let root = value.as_dictionary().unwrap();
        assert_eq!(root.len(), 2, "only CommandUUID and Command");
        assert!(root["CommandUUID"].as_string().is_some());
        let dict = root["Command"].as_dictionary().unwrap().clone();
        let request_type = dict["RequestType"].as_string().unwrap().to_owned();
        let schema = schemas
            .get(&request_type)
            .unwrap_or_else(|| panic!("no schema for {request_type}"));
        let mut params = dict.clone();
        params.remove("RequestType");
        let problems = check(&schema["payloadkeys"], &params, "");
        assert!(problems.is_empty(), "{request_type}: {problems:?}");
        covered.insert(request_type);
    }
    assert_eq!(
        covered.len(),
        11,
        "every command type is checked: {covered:?}"
    );
}

#[test]
fn the_checker_catches_mistakes() {
    let schemas = schemas();
    let lock = &schemas["DeviceLock"]["payloadkeys"];
    let mut wrong = plist::Dictionary::new();
    wrong.insert("PIN".into(), Value::Integer(123456.into()));
    wrong.insert("Bogus".into(), "x".into());
    assert_eq!(check(lock, &wrong, "").len(), 2);
    let clear = &schemas["ClearPasscode"]["payloadkeys"];
    assert_eq!(
        check(clear, &plist::Dictionary::new(), ""),
        ["UnlockToken: required but missing"]
    );
    let erase = &schemas["EraseDevice"]["payloadkeys"];
    let mut bad = plist::Dictionary::new();
    bad.insert("ObliterationBehavior".into(), "Sometimes".into());
    assert_eq!(check(erase, &bad, "").len(), 1);
}
