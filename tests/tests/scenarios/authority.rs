//! The MDM authority changes standalone → office365 → none (and back): devices keep their
//! enrollment, the allowed actions change at once, and new enrollments stop under none.

use mdm_e2e::apple::{AuthMode, Model, SimulatedDevice};
use mdm_e2e::windows::{Edition, WindowsDevice};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::json;

use crate::world::{PASSWORD, WINDOWS_CERT_HEADER, World};

test_on_both_backends! {
    async fn authority_changes(db) {
        let w = World::start(db).await;
        let eve = w.user("eve").await;
        let mut iphone = w.enrol_apple(Model::IPhone, "company", Some(&eve)).await;
        let mut mac = w.enrol_apple(Model::Mac, "company", Some(&eve)).await;
        let android = w.enrol_android("corporateFullyManaged", Some(&eve)).await;
        let mut mobile = w.enrol_windows(Edition::Mobile, &eve).await;

        // Standalone: every capability.
        let (lock, _) = w.act(android.id, "remoteLock", json!({})).await;
        w.wait_action(android.id, lock, "done").await;

        // office365: retire, wipe and delete only, and no macOS at all — at once.
        w.set_authority("office365").await;
        for (id, action) in [(iphone.id, "remoteLock"), (iphone.id, "resetPasscode"), (iphone.id, "rebootNow"), (mac.id, "wipe"), (mac.id, "retire"), (mobile.id, "remoteLock")] {
            let (status, refused) = w.try_act(id, action, json!({})).await;
            assert_eq!(status, 409, "{action}: {refused}");
            assert_eq!(refused["code"], "authority_disallows_action", "{action}: {refused}");
        }
        let pushes_before = w.apns.pushes_to(&mac.sim.token_hex()).len();
        // Devices keep their enrollment: they still check in, and retire works.
        assert_eq!(mac.sim.poll().await.unwrap(), 0);
        assert_eq!(mac.sim.last_status, 200);
        w.windows_session(&mut mobile).await;
        let (retire, _) = w.act(iphone.id, "retire", json!({})).await;
        w.apple_pushed(&iphone, 2).await;
        assert_eq!(w.apple_until_final(&mut iphone, retire).await["actionState"], "done");
        assert!(iphone.sim.received.iter().all(|r| r.request_type != "DeviceLock"));
        assert_eq!(w.apns.pushes_to(&mac.sim.token_hex()).len(), pushes_before, "nothing was sent to the Mac");
        for id in [mac.id, android.id, mobile.id] {
            assert_eq!(w.device(id).await.unwrap()["managementState"], "managed");
        }

        // none: only delete, and no new enrollment on any platform.
        w.set_authority("none").await;
        let (status, refused) = w.try_act(android.id, "wipe", json!({})).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["code"], "authority_disallows_action");
        let (status, created) = w.post("/api/v1/deviceManagement/appleEnrollmentProfiles", json!({ "ownership": "company" })).await;
        if status == 201 {
            let mut newcomer = SimulatedDevice::new(Model::IPad, AuthMode::Forwarded { header: "Client-Cert".into(), rfc9440: true });
            let enrolled = newcomer.enroll(created["profileUrl"].as_str().unwrap(), w.now().timestamp()).await;
            assert!(enrolled.is_err(), "an iPad enrolled under authority none");
        } else {
            assert_eq!(created["code"], "authority_disallows_enrollment", "{created}");
        }
        let mut newcomer = WindowsDevice::new(&w.app.url, WINDOWS_CERT_HEADER, Edition::Desktop).unwrap();
        assert!(newcomer.enroll(&eve.upn, PASSWORD).await.is_err(), "a PC enrolled under authority none");
        let (status, refused) = w.post(mdm_android::TOKENS_PATH, json!({ "profile": "corporateFullyManaged" })).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["code"], "authority_disallows_enrollment", "{refused}");
        assert!(refused["detail"].as_str().unwrap_or_default().contains("authority is none"), "{refused}");
        // Enrolled devices stay enrolled.
        assert_eq!(mac.sim.poll().await.unwrap(), 0);
        assert_eq!(mac.sim.last_status, 200);
        w.windows_session(&mut mobile).await;
        assert_eq!(w.device(mobile.id).await.unwrap()["managementState"], "managed");
        // Delete is still offered: the Android phone leaves management at Google.
        let (status, body) = w.call(Method::DELETE, &format!("/api/v1/deviceManagement/managedDevices/{}", android.id), None).await;
        assert!(status.is_success(), "{status} {body}");
        w.wait_device(android.id, |d| d.is_none()).await;
        assert!(android.sim.resource().is_none(), "the device is gone at Google");

        // Back to standalone: locking works again at once, on the same enrollment.
        w.set_authority("standalone").await;
        let (lock, _) = w.act(mobile.id, "remoteLock", json!({})).await;
        let (executed, result) = w.windows_until_final(&mut mobile, lock).await;
        assert_eq!(result["actionState"], "done", "{result}");
        assert_eq!(executed, [("Exec".to_owned(), "./Device/Vendor/MSFT/RemoteLock/Lock".to_owned(), 200)]);
    }
}
