//! Errors, limits, metrics, the internal listener and idempotency keys.

use mdm_runtime::testing::TestApp;
use mdm_store::test_on_both_backends;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Behaviour, Receiver, modules};

async fn app(db: mdm_store::testing::TestDatabase) -> TestApp {
    TestApp::spawn_on(db, |_| {}, modules(&Receiver::new(Behaviour::Apply))).await
}

async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "status {status}"
    );
    (status, response.json().await.unwrap())
}

test_on_both_backends! {
    async fn errors_are_problem_json(db) {
        let app = app(db).await;
        let http = mdm_runtime::testing::http_client();

        let (status, body) = problem(http.get(format!("{}/no/such/thing", app.url)).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

        let (status, body) = problem(http.delete(format!("{}/healthz", app.url)).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));

        let echo = format!("{}/api/test/echo", app.url);
        let (status, body) = problem(
            http.post(&echo).header("content-type", "application/json").body("{\"text\":").send().await.unwrap(),
        )
        .await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));

        let (status, body) = problem(http.post(&echo).json(&json!({"text": 1})).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));

        let (status, _) = problem(http.post(&echo).json(&json!({"text": "a", "extra": 1})).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        let (status, body) = problem(http.post(&echo).body("text").send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")));

        let huge = json!({ "text": "x".repeat(300 * 1024) });
        let refused = http.post(&echo).json(&huge).send().await.unwrap();
        // The body went unread: the client must not send another request on this connection.
        assert_eq!(refused.headers().get("connection").and_then(|v| v.to_str().ok()), Some("close"));
        let (status, body) = problem(refused).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

        let ok = http.post(&echo).json(&json!({"text": "hello"})).send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().contains_key("x-request-id"));
        app.stop().await;
    }
}

test_on_both_backends! {
    async fn metrics_count_requests_by_route(db) {
        let app = app(db).await;
        let http = mdm_runtime::testing::http_client();
        for _ in 0..3 {
            http.post(format!("{}/api/test/echo", app.url)).json(&json!({"text": "x"})).send().await.unwrap();
        }
        let text = http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
        assert!(
            text.contains(r#"mdm_http_requests_total{listener="public",method="POST",route="/api/test/echo",status="200"} 3"#),
            "{text}"
        );
        assert!(text.contains("mdm_http_request_duration_seconds_bucket"));
        assert!(text.contains(r#"mdm_db_pool_connections{state="max"}"#));
        assert!(text.contains("mdm_outbox_pending"));
        app.stop().await;
    }
}

test_on_both_backends! {
    async fn the_internal_listener_wants_the_service_credential(db) {
        let app = app(db).await;
        let http = mdm_runtime::testing::http_client();
        let url = format!("{}/internal/v1/inventory/messages", app.internal_url);
        let batch = json!({ "producer": "dispatch", "messages": [] });

        let anonymous = http.post(&url).json(&batch).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let wrong = http.post(&url).bearer_auth("mdm_0123456789abcdef0123456789abcdef_secret").json(&batch).send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

        let credential = app.context.config.security.service_token.clone().unwrap();
        let right = http.post(&url).bearer_auth(credential.expose()).json(&batch).send().await.unwrap();
        assert_eq!(right.status(), StatusCode::OK);
        assert_eq!(right.json::<Value>().await.unwrap(), json!({ "outcomes": [] }));

        // Internal routes are not on the public listener.
        let public = http.post(format!("{}/internal/v1/inventory/messages", app.url))
            .bearer_auth(credential.expose()).json(&batch).send().await.unwrap();
        assert_eq!(public.status(), StatusCode::NOT_FOUND);
        app.stop().await;
    }
}

test_on_both_backends! {
    async fn idempotency_keys_replay_the_first_answer(db) {
        let app = app(db).await;
        let http = mdm_runtime::testing::http_client();
        let url = format!("{}/api/test/counter", app.url);
        let key = format!("key-{}", uuid::Uuid::new_v4());

        let first = http.post(&url).header("Idempotency-Key", &key).bearer_auth("a-caller").send().await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.unwrap();

        let again = http.post(&url).header("Idempotency-Key", &key).bearer_auth("a-caller").send().await.unwrap();
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
        assert_eq!(again.json::<Value>().await.unwrap(), first);

        // Another credential has its own keys.
        let other = http.post(&url).header("Idempotency-Key", &key).bearer_auth("someone-else").send().await.unwrap();
        assert_ne!(other.json::<Value>().await.unwrap(), first);

        // The same key on another request is refused.
        let reused = http.post(format!("{}/api/test/echo", app.url)).bearer_auth("a-caller")
            .header("Idempotency-Key", &key).json(&json!({"text": "x"})).send().await.unwrap();
        let (status, body) = problem(reused).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")));

        // Without a key every call does the work.
        let a: Value = http.post(&url).bearer_auth("a-caller").send().await.unwrap().json().await.unwrap();
        let b: Value = http.post(&url).bearer_auth("a-caller").send().await.unwrap().json().await.unwrap();
        assert_ne!(a, b);

        // Without credentials the key is not looked at (an admin route answers 401), even
        // when it is malformed, and nothing is replayed.
        let anonymous = http.post(&url).header("Idempotency-Key", "").send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::CREATED);
        let c: Value = http.post(&url).header("Idempotency-Key", &key).send().await.unwrap().json().await.unwrap();
        assert_ne!(c, first);
        app.stop().await;
    }
}

/// A self-signed certificate for 127.0.0.1, as PEM (certificate, key).
fn self_signed() -> (Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};

    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&builder.x509v3_context(None, None))
        .unwrap();
    builder.append_extension(san).unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    (
        builder.build().to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

test_on_both_backends! {
    async fn the_public_listener_serves_tls_when_configured(db) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, &cert).unwrap();
        std::fs::write(&key_file, &key).unwrap();
        let app = TestApp::spawn_on(
            db,
            |c| {
                c.server.tls = Some(mdm_runtime::config::TlsConfig { cert_file, key_file });
                // Open HTTP/2 connections hold a graceful stop until this timeout.
                c.server.shutdown_timeout_secs = 1;
            },
            modules(&Receiver::new(Behaviour::Apply)),
        )
        .await;
        assert!(app.url.starts_with("https://"));
        let https = app.url.clone();

        let trusting = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .build()
            .unwrap();
        let health = trusting.get(format!("{https}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        // Plain HTTP is not served on a TLS listener.
        assert!(reqwest::get(https.replace("https://", "http://") + "/healthz").await.is_err());
        // A client that does not trust the certificate refuses it.
        assert!(reqwest::get(format!("{https}/healthz")).await.is_err());
        drop(trusting);
        app.stop().await;
    }
}
