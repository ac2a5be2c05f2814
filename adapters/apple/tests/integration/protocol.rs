//! The check-in and command endpoints: every check-in type, bad bodies, and device
//! authentication failures (never a 401).

use mdm_e2e::apple::device::{CHECKIN_TYPE, to_xml};
use mdm_e2e::apple::{AuthMode, Model, SimulatedDevice, TestCa};
use mdm_store::test_on_both_backends;
use plist::{Dictionary, Value};

use crate::fakes::Got;
use crate::{EPOCH_2026, Harness, Options};

fn base(device: &SimulatedDevice, message_type: &str) -> Dictionary {
    let mut dict = Dictionary::new();
    dict.insert("MessageType".into(), message_type.into());
    dict.insert("Topic".into(), device.topic.clone().into());
    dict.insert("UDID".into(), device.udid.clone().into());
    dict
}

test_on_both_backends! {
    async fn every_check_in_type_is_answered(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut mac, id) = h.enroll(Model::Mac, AuthMode::Signature).await;
        // Bootstrap token: set, get back, clear.
        let mut set = base(&mac, "SetBootstrapToken");
        set.insert("BootstrapToken".into(), Value::Data(b"bootstrap-secret".to_vec()));
        assert_eq!(mac.check_in(set).await.unwrap(), 200);
        assert_eq!(mac.check_in(base(&mac, "GetBootstrapToken")).await.unwrap(), 200);
        let answer: Value = plist::from_bytes(&mac.last_body).unwrap();
        assert_eq!(answer.as_dictionary().unwrap()["BootstrapToken"].as_data(), Some(&b"bootstrap-secret"[..]));
        assert_eq!(mac.check_in(base(&mac, "SetBootstrapToken")).await.unwrap(), 200);
        assert_eq!(mac.check_in(base(&mac, "GetBootstrapToken")).await.unwrap(), 200);
        let answer: Value = plist::from_bytes(&mac.last_body).unwrap();
        assert!(answer.as_dictionary().unwrap().get("BootstrapToken").is_none());
        // User channels are off: 410.
        let mut user = base(&mac, "UserAuthenticate");
        user.insert("UserID".into(), "A1B2".into());
        assert_eq!(mac.check_in(user).await.unwrap(), 410);
        // Declarative management: supported with nothing declared.
        let mut ddm = base(&mac, "DeclarativeManagement");
        ddm.insert("Endpoint".into(), "tokens".into());
        assert_eq!(mac.check_in(ddm).await.unwrap(), 200);
        let tokens: serde_json::Value = serde_json::from_slice(&mac.last_body).unwrap();
        assert!(tokens["SyncTokens"]["DeclarationsToken"].is_string());
        let mut items = base(&mac, "DeclarativeManagement");
        items.insert("Endpoint".into(), "declaration-items".into());
        assert_eq!(mac.check_in(items).await.unwrap(), 200);
        let mut status = base(&mac, "DeclarativeManagement");
        status.insert("Endpoint".into(), "status".into());
        status.insert("Data".into(), Value::Data(b"{}".to_vec()));
        assert_eq!(mac.check_in(status).await.unwrap(), 200);
        // GetToken: refused cleanly.
        let mut token = base(&mac, "GetToken");
        token.insert("TokenServiceType".into(), "com.apple.maid".into());
        assert_eq!(mac.check_in(token).await.unwrap(), 400);
        // TokenUpdate again (a new token) is fine; CheckOut ends it and inventory hears.
        mac.push_token = vec![7; 32];
        assert_eq!(mac.token_update().await.unwrap(), 200);
        assert_eq!(mac.check_out().await.unwrap(), 200);
        let left = h
            .wait_for(|g| match g { Got::Unenrolled(u) if u.device_id == id => Some(u.reason), _ => None })
            .await;
        assert_eq!(left, Some(mdm_api::internal::inventory::UnenrollReason::RemovedOnDevice));
        mac.state = mdm_e2e::apple::DeviceState::Enrolled;
        mac.poll().await.unwrap();
        assert_eq!(mac.last_status, 403);
    }
}

test_on_both_backends! {
    async fn user_channels_when_enabled(db) {
        let h = Harness::start(db, Options { user_channels: true, ..Options::default() }).await;
        let (mut mac, _) = h.enroll(Model::Mac, AuthMode::Signature).await;
        let mut first = base(&mac, "UserAuthenticate");
        first.insert("UserID".into(), "B9C1D2E3".into());
        assert_eq!(mac.check_in(first).await.unwrap(), 200);
        let challenge: Value = plist::from_bytes(&mac.last_body).unwrap();
        assert_eq!(challenge.as_dictionary().unwrap()["DigestChallenge"].as_string(), Some(""));
        let mut update = base(&mac, "TokenUpdate");
        update.insert("UserID".into(), "B9C1D2E3".into());
        update.insert("UserShortName".into(), "jane".into());
        update.insert("UserLongName".into(), "Jane Doe".into());
        update.insert("Token".into(), Value::Data(vec![9; 32]));
        update.insert("PushMagic".into(), "magic-user".into());
        assert_eq!(mac.check_in(update).await.unwrap(), 200);
        let mut idle = Dictionary::new();
        idle.insert("Status".into(), "Idle".into());
        idle.insert("UDID".into(), mac.udid.clone().into());
        idle.insert("UserID".into(), "B9C1D2E3".into());
        let url = mac.server_url.clone();
        let (status, body) = mac.send_raw(&url, to_xml(&idle), false).await.unwrap();
        assert_eq!((status, body.len()), (200, 0));
        // Another user's channel that never enrolled is unknown.
        idle.insert("UserID".into(), "FFFF0000".into());
        let (status, _) = mac.send_raw(&url, to_xml(&idle), false).await.unwrap();
        assert_eq!(status, 403);
    }
}

test_on_both_backends! {
    async fn bad_bodies_are_400_and_bad_identities_403_never_401(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, _) = h.enroll(Model::IPhone, AuthMode::Signature).await;
        let checkin = iphone.check_in_url.clone();
        let connect = iphone.server_url.clone();
        let (status, _) = iphone.send_raw(&checkin, b"not a plist".to_vec(), true).await.unwrap();
        assert_eq!(status, 400);
        let (status, _) = iphone.send_raw(&connect, b"<plist><dict><key>Status</key><string>Idle</string></dict></plist>".to_vec(), false).await.unwrap();
        assert_eq!(status, 400, "no UDID");
        let huge = vec![b' '; 5 * 1024 * 1024];
        let (status, _) = iphone.send_raw(&connect, huge, false).await.unwrap();
        assert_eq!(status, 400);
        // The server closes a connection whose body it refused; let the device's idle
        // connection expire rather than reuse it.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let deep = format!("<plist><dict><key>Status</key><string>Idle</string><key>UDID</key><string>{}</string><key>X</key>{}{}</dict></plist>", iphone.udid, "<array>".repeat(100), "</array>".repeat(100));
        let (status, _) = iphone.send_raw(&connect, deep.into_bytes(), false).await.unwrap();
        assert_eq!(status, 400);
        // A wrong content type on the check-in endpoint.
        let response = h.http.put(&checkin).body("x").send().await.unwrap();
        assert_eq!(response.status(), 415);

        let idle = |udid: &str| {
            let mut d = Dictionary::new();
            d.insert("Status".into(), "Idle".into());
            d.insert("UDID".into(), udid.into());
            to_xml(&d)
        };
        // No signature at all.
        let response = h.http.put(&connect).body(idle(&iphone.udid)).send().await.unwrap();
        assert_eq!(response.status(), 403);
        // A signature over another body.
        let (cert, key) = iphone.identity.clone().unwrap();
        let none = openssl::stack::Stack::new().unwrap();
        let other = openssl::pkcs7::Pkcs7::sign(&cert, &key, &none, b"something else", openssl::pkcs7::Pkcs7Flags::DETACHED | openssl::pkcs7::Pkcs7Flags::BINARY).unwrap();
        let response = h.http.put(&connect).header("Mdm-Signature", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, other.to_der().unwrap())).body(idle(&iphone.udid)).send().await.unwrap();
        assert_eq!(response.status(), 403);
        // A certificate from a CA nobody trusts.
        let rogue_ca = TestCa::new("Rogue", EPOCH_2026).unwrap();
        let mut rogue = SimulatedDevice::new(Model::IPhone, AuthMode::Signature);
        rogue.udid = iphone.udid.clone();
        rogue.server_url = connect.clone();
        rogue.check_in_url = checkin.clone();
        rogue.topic = iphone.topic.clone();
        rogue.identity = Some(rogue_ca.issue("x", EPOCH_2026 - 86_400, EPOCH_2026 + 86_400 * 365).unwrap());
        rogue.state = mdm_e2e::apple::DeviceState::Enrolled;
        rogue.poll().await.unwrap();
        assert_eq!(rogue.last_status, 403);
        // A valid certificate of ours bound to another device.
        let (other, _) = h.enroll(Model::IPad, AuthMode::Signature).await;
        rogue.identity = other.identity.clone();
        rogue.poll().await.unwrap();
        assert_eq!(rogue.last_status, 403);
        assert_eq!(rogue.authenticate().await.unwrap(), 403, "Authenticate with another device's certificate");
        // An expired identity.
        let ca_cert = h.enrollment.lock().unwrap().ca.issue("old", EPOCH_2026 - 86_400 * 20, EPOCH_2026 - 86_400 * 10).unwrap();
        rogue.identity = Some(ca_cert);
        rogue.poll().await.unwrap();
        assert_eq!(rogue.last_status, 403);
        // The legitimate device still works.
        iphone.poll().await.unwrap();
        assert_eq!(iphone.last_status, 200);
        let _ = CHECKIN_TYPE;
    }
}

test_on_both_backends! {
    async fn a_renewed_identity_is_bound_in_place_of_the_old_one(db) {
        let h = Harness::start(db, Options::default()).await;
        let (mut iphone, id) = h.enroll(Model::IPhone, AuthMode::Signature).await;
        let subject = h.device_id(&iphone).await.to_string();
        let now = h.now();
        let renewed = h.enrollment.lock().unwrap().ca.issue(&subject, now - 60, now + 86_400 * 400).unwrap();
        let old = iphone.identity.replace(renewed).unwrap();
        iphone.poll().await.unwrap();
        assert_eq!(iphone.last_status, 200);
        let facts = h
            .wait_for(|g| match g { Got::Facts(f) if f.device_id == id && f.facts.identity_certificate_expires_at.is_some() => Some(f.clone()), _ => None })
            .await;
        assert!(facts.is_some(), "inventory hears of the new expiry");
        // The old certificate no longer works; one with another subject is refused.
        iphone.identity = Some(old);
        iphone.poll().await.unwrap();
        assert_eq!(iphone.last_status, 403);
        iphone.identity = Some(h.enrollment.lock().unwrap().ca.issue("someone else", now - 60, now + 86_400 * 500).unwrap());
        iphone.poll().await.unwrap();
        assert_eq!(iphone.last_status, 403);
    }
}

/// The real device messages recorded by NanoMDM parse.
#[test]
fn real_device_messages_parse() {
    use mdm_apple::protocol::{CheckIn, Status, parse_check_in, parse_report};
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let read = |name: &str| std::fs::read(data.join(name)).unwrap();
    let ipad = parse_check_in(&read("Authenticate.1.plist")).unwrap();
    assert_eq!(
        ipad.channel.key(),
        "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69"
    );
    let CheckIn::Authenticate(auth) = &ipad.message else {
        panic!("not Authenticate")
    };
    assert_eq!(auth.product_name.as_deref(), Some("iPad2,5"));
    assert_eq!(auth.serial_number.as_deref(), Some("F5JM992LF193"));
    assert_eq!(
        mdm_apple::service::infer_platform(auth, None, None),
        mdm_domain::Platform::IPadOs
    );
    let imac = parse_check_in(&read("Authenticate.2.plist")).unwrap();
    let CheckIn::Authenticate(auth) = &imac.message else {
        panic!("not Authenticate")
    };
    assert_eq!(auth.device_name.as_deref(), Some("Fruit"));
    assert_eq!(
        mdm_apple::service::infer_platform(auth, None, None),
        mdm_domain::Platform::MacOs
    );
    let token = parse_check_in(&read("TokenUpdate.1.plist")).unwrap();
    let CheckIn::TokenUpdate(update) = &token.message else {
        panic!("not TokenUpdate")
    };
    assert_eq!(update.token.len(), 32);
    assert_eq!(update.push_magic, "CEFDF0BD-E342-4A27-8742-E930EA116B0A");
    assert!(update.unlock_token.as_ref().is_some_and(|t| t.len() > 1000));
    let token = parse_check_in(&read("TokenUpdate.2.plist")).unwrap();
    let CheckIn::TokenUpdate(update) = &token.message else {
        panic!("not TokenUpdate")
    };
    assert!(update.unlock_token.is_none());
    let report = parse_report(&read("DeviceInformation.1.plist")).unwrap();
    assert_eq!(report.status, Status::Acknowledged);
    assert_eq!(
        report.command_uuid.as_deref(),
        Some("76eda240-5488-4989-8339-f2ae160113c4")
    );
    let info = mdm_apple::protocol::inventory::parse_device_information(&read(
        "DeviceInformation.1.plist",
    ))
    .unwrap();
    assert_eq!(
        info.udid.as_deref(),
        Some("66ADE930-5FDF-5EC4-8429-15640684C489")
    );
}
