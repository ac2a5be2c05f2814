//! The admin API's OpenAPI document: served without a token, the same as `mdm openapi`
//! prints, valid in its own terms, every operation it documents is served, and another
//! method on a documented path answers 405 with the documented methods in `Allow`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::serve::output;
use crate::{Server, mdm};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `path` with a nil UUID for each parameter.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `#/components/schemas/...` reference in `value`.
fn references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                match (name.as_str(), member) {
                    ("$ref", Value::String(target)) => {
                        found.insert(target.clone());
                    }
                    _ => references(member, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_and_every_operation_in_it_is_a_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None, &[]);
    let http = mdm_runtime::testing::http_client();
    let served = http
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200, "served without a token");
    let served: Value = served.json().await.unwrap();

    let (ok, printed, stderr) = output(mdm(dir.path()).arg("openapi"));
    assert!(ok, "{stderr}");
    let printed: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        served, printed,
        "`mdm openapi` prints what the server serves"
    );

    // Every reference resolves, and every operation id is unique.
    let mut targets = BTreeSet::new();
    references(&served, &mut targets);
    for target in &targets {
        let name = target.trim_start_matches("#/components/schemas/");
        assert!(
            served["components"]["schemas"].get(name).is_some(),
            "{target} is not in the document"
        );
    }
    let mut operation_ids = BTreeSet::new();
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() > 10, "{} paths", paths.len());
    for (path, item) in paths {
        let url = concrete(path);
        // Another method on a documented path: 405, and `Allow` lists the documented ones
        // (unless a more specific path, such as `.../bulkAction` beside `.../{id}`, wins).
        let documented: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| m.to_uppercase())
            .collect();
        // A method that changes things, with a token and a malformed Idempotency-Key:
        // the method is refused before the key is looked at.
        let undocumented = ["PATCH", "PUT", "POST", "DELETE"]
            .into_iter()
            .find(|m| !documented.contains(*m))
            .unwrap();
        let other = http
            .request(
                undocumented.parse().unwrap(),
                format!("{}{url}", server.url),
            )
            .bearer_auth("mdm_unknown")
            .header("Idempotency-Key", "")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 405, "{undocumented} {path}");
        let allow: BTreeSet<String> = other.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(str::to_owned)
            .collect();
        assert_eq!(allow, documented, "Allow of {path}");
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let id = operation["operationId"].as_str().unwrap();
            assert!(operation_ids.insert(id), "operationId {id} twice");

            // Each `{name}` of the path is a documented path parameter.
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_path, "{method} {path}");

            // Served: without a token a route answers 401 (the document itself 200),
            // before anything else about the request (here a malformed Idempotency-Key)
            // is looked at; a path or method nobody registered answers 404 or 405.
            let answer = http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{url}", server.url),
                )
                .header("Idempotency-Key", "")
                .send()
                .await
                .unwrap();
            let anonymous = operation["security"] == serde_json::json!([{}]);
            let expected = if anonymous { 200 } else { 401 };
            assert_eq!(answer.status(), expected, "{method} {path}");
        }
    }
}
