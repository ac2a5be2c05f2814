//! The device-identity CA.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use mdm_domain::{DeviceId, TenantId};
use mdm_runtime::Clock;
use mdm_store::test_on_both_backends;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder, X509Req};
use reqwest::Method;
use serde_json::{Value, json};

use crate::Harness;

fn csr(common_name: &str) -> Vec<u8> {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", common_name).unwrap();
    let mut request = X509Req::builder().unwrap();
    request.set_subject_name(&name.build()).unwrap();
    request.set_pubkey(&key).unwrap();
    request.sign(&key, MessageDigest::sha256()).unwrap();
    request.build().to_der().unwrap()
}

async fn sign(h: &Harness, csr: &[u8], common_name: &str) -> (reqwest::StatusCode, Value) {
    let body = json!({
        "tenantId": TenantId::new(),
        "deviceId": DeviceId::new(),
        "csr": STANDARD.encode(csr),
        "commonName": common_name,
    });
    h.internal(Method::POST, "/ca/sign", Some(body)).await
}

test_on_both_backends! {
    async fn the_ca_signs_csrs_for_client_authentication(db) {
        let h = Harness::start(db).await;
        let (status, ca) = h.internal(Method::GET, "/ca/certificate", None).await;
        assert_eq!(status, 200);
        let ca = X509::from_der(&STANDARD.decode(ca["certificate"].as_str().unwrap()).unwrap()).unwrap();

        let (status, signed) = sign(&h, &csr("ignored subject"), "device-1234").await;
        assert_eq!(status, 200, "{signed}");
        let certificate = X509::from_der(&STANDARD.decode(signed["certificate"].as_str().unwrap()).unwrap()).unwrap();
        assert!(certificate.verify(&ca.public_key().unwrap()).unwrap(), "chains to our CA");
        let cn = certificate.subject_name().entries_by_nid(Nid::COMMONNAME).next().unwrap().data().to_string().unwrap();
        assert_eq!(cn, "device-1234", "the requested name, not the CSR's");
        let serial = certificate.serial_number().to_bn().unwrap();
        assert!(serial.num_bits() > 120 && !serial.is_negative(), "128 random bits");
        assert_eq!(signed["serial"].as_str().unwrap(), serial.to_hex_str().unwrap().to_lowercase());
        let text = String::from_utf8(certificate.to_text().unwrap()).unwrap();
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(text.contains("CA:FALSE"));
        let validity = chrono::DateTime::parse_from_rfc3339(signed["notAfter"].as_str().unwrap()).unwrap();
        assert_eq!((validity.with_timezone(&chrono::Utc) - h.app.clock.now()).num_days(), 365);

        // The real Windows 10 CSR (old sha1WithRSA OID, a NUL in its CN) is signed too.
        let windows = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/windows-real-client.csr.der")).unwrap();
        let (status, _) = sign(&h, &windows, "562A7F9A-6CD8-40B0-9E7E-0DBDD8B5B954").await;
        assert_eq!(status, 200);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn bad_csrs_are_refused(db) {
        let h = Harness::start(db).await;
        let mut tampered = csr("x");
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0x01;
        assert_eq!(sign(&h, &tampered, "device").await.0, 422);
        let body = json!({ "tenantId": TenantId::new(), "deviceId": DeviceId::new(), "csr": "%%%", "commonName": "d" });
        assert_eq!(h.internal(Method::POST, "/ca/sign", Some(body)).await.0, 422);
        assert_eq!(sign(&h, &csr("x"), "").await.0, 422);
        assert_eq!(sign(&h, &csr("x"), &"n".repeat(65)).await.0, 422);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn certificates_are_revoked_and_the_ca_survives_restarts(db) {
        let h = Harness::start(db).await;
        let (_, ca_before) = h.internal(Method::GET, "/ca/certificate", None).await;
        let (_, signed) = sign(&h, &csr("x"), "device-1").await;
        let serial = signed["serial"].as_str().unwrap();
        let (status, revoked) = h.internal(Method::POST, "/ca/revoke", Some(json!({ "serial": serial, "reason": "device wiped" }))).await;
        assert_eq!((status.as_u16(), revoked["revoked"].clone()), (200, json!(true)));
        assert_eq!(h.internal(Method::POST, "/ca/revoke", Some(json!({ "serial": "00ff", "reason": "x" }))).await.0, 404);

        // The CA key is sealed at rest.
        let sealed: Vec<u8> = h
            .app
            .context
            .store
            .read(|c| {
                use diesel::prelude::*;
                mdm_store::schema::enr_ca::table
                    .select(mdm_store::schema::enr_ca::sealed_private_key)
                    .first(c)
                    .map_err(mdm_store::StoreError::from)
            })
            .await
            .unwrap();
        assert!(PKey::private_key_from_der(&sealed).is_err());

        // Another process on the same database uses the same CA.
        let config = h.app.context.config.security.clone();
        let db = h.app.stop().await;
        let again = mdm_runtime::testing::TestApp::spawn_on(
            db,
            |c| c.security = config,
            |ctx| Ok(vec![mdm_enrollment::module(ctx, &mdm_enrollment::Config::default())]),
        )
        .await;
        let credential = again.context.config.security.service_token.clone().unwrap();
        let after: Value = mdm_runtime::testing::http_client()
            .get(format!("{}/internal/v1/enrollment/ca/certificate", again.internal_url))
            .bearer_auth(credential.expose())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(after, ca_before);
        let _ = Duration::zero();
        again.stop().await;
    }
}
