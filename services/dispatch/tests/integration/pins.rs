//! A Mac's unlock PIN.

use base64::Engine;
use chrono::Duration;
use mdm_api::internal::adapter::UNLOCK_PIN_PURPOSE;
use mdm_domain::{ActionId, DeviceId, Platform};
use mdm_store::test_on_both_backends;
use serde_json::{Value, json};

use crate::fakes::NewDevice;
use crate::{Harness, assert_problem, eventually};

/// Dispatch's summary for inventory's device view.
async fn summary(h: &Harness, device: DeviceId) -> Value {
    let credential = h.app.context.config.security.service_token.clone().unwrap();
    h.http
        .get(format!(
            "{}/internal/v1/dispatch/devices/{device}/summary?tenantId={}",
            h.app.internal_url, h.tenant
        ))
        .bearer_auth(credential.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The PIN the adapter received for `action`.
fn delivered_pin(h: &Harness, action: ActionId) -> Option<String> {
    let delivered = h.fakes.delivered.lock().unwrap();
    let sealed = delivered
        .iter()
        .find(|d| d.action_id == action)?
        .params
        .sealed_unlock_pin
        .clone()?;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    String::from_utf8(
        h.app
            .context
            .secrets
            .open(UNLOCK_PIN_PURPOSE, &sealed)
            .ok()?,
    )
    .ok()
}

test_on_both_backends! {
    async fn a_locked_mac_gets_a_pin_shown_until_another_action_or_30_days(db) {
        let h = Harness::start(db).await;
        let mac = h.fakes.add(h.tenant, NewDevice::new(Platform::MacOs));

        let (status, lock) = h.act(mac, "remoteLock", Some(json!({ "message": "Return to IT" }))).await;
        assert_eq!(status, 202);
        let pin = lock["lockPin"].as_str().unwrap().to_owned();
        assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()));
        let lock_id: ActionId = lock["id"].as_str().unwrap().parse().unwrap();
        eventually("the lock reaches the adapter", || h.fakes.delivered_for(lock_id) == 1).await;
        assert_eq!(delivered_pin(&h, lock_id).as_deref(), Some(pin.as_str()), "the adapter gets the same PIN, sealed");
        assert_eq!(summary(&h, mac).await["lockPin"]["pin"], pin);

        // A second lock would replace a PIN nobody has used yet.
        assert_problem(&h.act(mac, "remoteLock", None).await, 409, "unlock_pin_outstanding");
        let (status, forced) = h.act(mac, "remoteLock", Some(json!({ "force": true }))).await;
        assert_eq!(status, 202);
        let second = forced["lockPin"].as_str().unwrap().to_owned();
        assert_eq!(summary(&h, mac).await["lockPin"]["pin"], second);

        // Another action sent to the Mac ends the PIN's display.
        assert_eq!(h.act(mac, "syncDevice", None).await.0, 202);
        assert!(summary(&h, mac).await["lockPin"].is_null());
        assert_eq!(h.act(mac, "remoteLock", None).await.0, 202, "no PIN outstanding any more");

        // Thirty days later it is purged.
        assert!(!summary(&h, mac).await["lockPin"].is_null());
        h.app.clock.advance(Duration::days(29));
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(!summary(&h, mac).await["lockPin"].is_null(), "still shown on day 29");
        h.app.clock.advance(Duration::days(1) + Duration::minutes(1));
        let mut gone = false;
        for _ in 0..100 {
            if summary(&h, mac).await["lockPin"].is_null() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(gone, "purged after 30 days");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_mac_wipe_carries_the_admins_code_or_a_new_pin(db) {
        let h = Harness::start(db).await;
        let chosen = h.fakes.add(h.tenant, NewDevice::new(Platform::MacOs));
        let (status, wipe) = h.act(chosen, "wipe", Some(json!({ "macOsUnlockCode": "424242" }))).await;
        assert_eq!(status, 202);
        assert_eq!(wipe["lockPin"], "424242");
        let generated = h.fakes.add(h.tenant, NewDevice::new(Platform::MacOs));
        let (_, wipe) = h.act(generated, "wipe", None).await;
        assert_eq!(wipe["lockPin"].as_str().unwrap().len(), 6);
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let (_, lock) = h.act(phone, "remoteLock", None).await;
        assert!(lock.get("lockPin").is_none(), "only Macs get a PIN");
        // A reader may not see PINs.
        let helpdesk = h.token(mdm_domain::Role::Helpdesk, None).await;
        let other_mac = h.fakes.add(h.tenant, NewDevice::new(Platform::MacOs));
        let (_, by_helpdesk) = h.act_as(&helpdesk, other_mac, "remoteLock", None).await;
        assert!(by_helpdesk["lockPin"].is_string(), "helpdesk may read unlock PINs");
        h.app.stop().await;
    }
}
