//! Taking actions: what is accepted and sent, and every refusal, before anything is sent.

use mdm_domain::{ManagementMode, ManagementState, MdmAuthority, Platform, PlatformFamily, Role};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::json;

use crate::fakes::NewDevice;
use crate::{Harness, assert_problem, eventually};

test_on_both_backends! {
    async fn accepted_actions_reach_their_adapter(db) {
        let h = Harness::start(db).await;
        let cases = [
            (NewDevice::new(Platform::Ios), "remoteLock", PlatformFamily::Apple),
            (NewDevice::new(Platform::Android), "resetPasscode", PlatformFamily::Android),
            (NewDevice::new(Platform::Windows), "rebootNow", PlatformFamily::Windows),
            (NewDevice::new(Platform::IPadOs), "syncDevice", PlatformFamily::Apple),
            (NewDevice::new(Platform::Android).mode(ManagementMode::WorkProfile).personal(), "retire", PlatformFamily::Android),
            (NewDevice::new(Platform::Windows), "wipe", PlatformFamily::Windows),
        ];
        for (device, action, family) in cases {
            let platform = device.platform;
            let id = h.fakes.add(h.tenant, device);
            let (status, body) = h.act(id, action, Some(json!({}))).await;
            assert_eq!(status, 202, "{platform} {action}: {body}");
            assert_eq!(body["actionName"], action);
            assert_eq!(body["actionState"], "pending");
            assert_eq!(body["deviceId"], id.to_string());
            let action_id: mdm_domain::ActionId = body["id"].as_str().unwrap().parse().unwrap();
            eventually("delivery", || h.fakes.delivered_for(action_id) == 1).await;
            let delivered = h.fakes.delivered.lock().unwrap().iter().find(|d| d.action_id == action_id).cloned().unwrap();
            assert_eq!((delivered.family, delivered.device_id, delivered.kind.as_str()), (family, id, action));
            assert_eq!(delivered.priority, matches!(action, "remoteLock" | "wipe"), "lock and wipe take the priority lane");
        }
        // Retire and wipe tell inventory the device is on its way out.
        let retired = h.fakes.devices.lock().unwrap()[4].id;
        eventually("retirePending", || h.fakes.states_of(retired).contains(&(ManagementState::RetirePending, false))).await;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn every_refusal_has_its_code_and_sends_nothing(db) {
        let h = Harness::start(db).await;
        let t = h.tenant;
        let add = |d: NewDevice| h.fakes.add(t, d);

        let desktop = add(NewDevice::new(Platform::Windows));
        assert_problem(&h.act(desktop, "remoteLock", None).await, 422, "action_not_supported");
        let work_profile = add(NewDevice::new(Platform::Android).mode(ManagementMode::WorkProfile).personal());
        assert_problem(&h.act(work_profile, "wipe", None).await, 422, "action_not_supported");
        let dedicated = add(NewDevice::new(Platform::Android).mode(ManagementMode::Dedicated));
        assert_problem(&h.act(dedicated, "retire", None).await, 422, "action_not_supported");
        let no_passcode = add(NewDevice::new(Platform::Ios).passcode(Some(false)));
        assert_problem(&h.act(no_passcode, "remoteLock", None).await, 422, "device_has_no_passcode");
        let old_windows = add(NewDevice::new(Platform::Windows).os("10.0.15063"));
        let keep = json!({ "keepEnrollmentData": true, "keepUserData": true });
        assert_problem(&h.act(old_windows, "wipe", Some(keep.clone())).await, 422, "requires_windows_1709");
        let new_windows = add(NewDevice::new(Platform::Windows).os("10.0.16299"));
        assert_eq!(h.act(new_windows, "wipe", Some(keep)).await.0, 202, "1709 keeps enrollment and user data");
        let contradiction = json!({ "keepUserData": true });
        assert_problem(&h.act(old_windows, "wipe", Some(contradiction)).await, 422, "invalid_action_options");
        let joined = {
            let mut device = NewDevice::new(Platform::Windows);
            device.directory_joined = true;
            add(device)
        };
        assert_problem(&h.act(joined, "retire", None).await, 422, "retire_not_offered_for_directory_joined");
        let mac = add(NewDevice::new(Platform::MacOs));
        assert_problem(&h.act(mac, "wipe", Some(json!({ "macOsUnlockCode": "12ab" }))).await, 422, "validation_failed");
        assert_problem(&h.act(mac, "remoteLock", Some(json!({ "colour": "red" }))).await, 422, "validation_failed");

        // The user's licence.
        let unlicensed = h.user("gone@contoso.example", false).await;
        let users_phone = add(NewDevice::new(Platform::Ios).user(unlicensed));
        assert_problem(&h.act(users_phone, "remoteLock", None).await, 409, "user_not_licensed");

        // The device's state.
        let retired = add(NewDevice::new(Platform::Ios));
        h.fakes.set_state(retired, ManagementState::Retired);
        assert_problem(&h.act(retired, "remoteLock", None).await, 409, "device_not_managed");
        let leaving = add(NewDevice::new(Platform::Ios));
        assert_eq!(h.act(leaving, "retire", None).await.0, 202);
        assert_problem(&h.act(leaving, "retire", None).await, 409, "device_removal_pending");

        // Roles.
        let phone = add(NewDevice::new(Platform::Ios));
        let reader = h.token(Role::Reader, None).await;
        assert_problem(&h.act_as(&reader, phone, "remoteLock", None).await, 403, "forbidden_for_role");
        let helpdesk = h.token(Role::Helpdesk, None).await;
        assert_eq!(h.act_as(&helpdesk, phone, "remoteLock", None).await.0, 202);
        assert_problem(&h.act_as(&helpdesk, phone, "wipe", None).await, 403, "forbidden_for_role");

        // Another tenant's device does not exist.
        let elsewhere = h.fakes.add(mdm_domain::TenantId::new(), NewDevice::new(Platform::Ios));
        assert_problem(&h.act(elsewhere, "remoteLock", None).await, 404, "not_found");

        // Nothing refused was sent; each refusal is in the audit trail.
        let refused_devices = [desktop, work_profile, dedicated, no_passcode, joined, users_phone, retired];
        assert!(h.fakes.delivered.lock().unwrap().iter().all(|d| !refused_devices.contains(&d.device_id)));
        let (_, audit) = h.call(Method::GET, "/api/v1/auditEvents?top=200", &h.admin, None).await;
        let refusals: Vec<_> = audit["value"].as_array().unwrap().iter().filter(|e| e["outcome"] == "refused").collect();
        assert!(refusals.len() >= 10, "{refusals:?}");
        assert!(refusals.iter().any(|e| e["detail"]["code"] == "device_has_no_passcode" && e["deviceId"] == no_passcode.to_string()));
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn the_authority_decides_what_is_possible(db) {
        let h = Harness::start(db).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let mac = h.fakes.add(h.tenant, NewDevice::new(Platform::MacOs));

        h.set_authority(MdmAuthority::Office365).await;
        assert_problem(&h.act(phone, "remoteLock", None).await, 409, "authority_disallows_action");
        assert_problem(&h.act(mac, "retire", None).await, 409, "authority_disallows_action");
        assert_eq!(h.act(phone, "retire", None).await.0, 202, "office365 keeps retire");

        h.set_authority(MdmAuthority::Hybrid).await;
        let other = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        assert_problem(&h.act(other, "remoteLock", None).await, 409, "hybrid_authority_read_only");
        let connector = h.token(Role::Connector, None).await;
        assert_eq!(h.act_as(&connector, other, "remoteLock", None).await.0, 202, "the connector acts under hybrid");

        h.set_authority(MdmAuthority::None).await;
        assert_problem(&h.act(other, "syncDevice", None).await, 409, "authority_disallows_action");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn users_act_on_their_own_devices(db) {
        let h = Harness::start(db).await;
        let ada = h.user("ada@contoso.example", true).await;
        let grace = h.user("grace@contoso.example", true).await;
        let own_phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios).user(ada).personal());
        let company_mac = h.fakes.add(h.tenant, NewDevice::new(Platform::MacOs).user(ada));
        let not_mine = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios).user(grace).personal());
        let token = h.token(Role::User, Some(ada)).await;
        let me = |device: mdm_domain::DeviceId, action: &'static str| {
            let path = format!("/api/v1/me/managedDevices/{device}/{action}");
            let (h, token) = (&h, token.clone());
            async move { h.call(Method::POST, &path, &token, None).await }
        };

        assert_eq!(me(own_phone, "remoteLock").await.0, 202);
        assert_eq!(me(own_phone, "retire").await.0, 202);
        assert_problem(&me(company_mac, "wipe").await, 422, "self_service_not_allowed");
        let (status, locked) = me(company_mac, "remoteLock").await;
        assert_eq!(status, 202);
        assert_eq!(locked["lockPin"].as_str().unwrap().len(), 6, "the user sees their Mac's PIN");
        assert_problem(&me(not_mine, "remoteLock").await, 404, "not_found");
        // Self-service is not a way into the admin API.
        // The admin routes refuse the role before looking at the device: 403, whatever the
        // device, with nothing about it (not even whether it exists) in the answer.
        for (device, action) in [(own_phone, "syncDevice"), (own_phone, "remoteLock"), (company_mac, "wipe"), (not_mine, "retire"), (mdm_domain::DeviceId::new(), "remoteLock")] {
            let (status, problem) = h.act_as(&token, device, action, None).await;
            assert_eq!((status.as_u16(), problem["code"].as_str()), (403, Some("forbidden_for_role")), "{action} {problem}");
            assert!(!problem["detail"].as_str().unwrap().contains("iOS"), "{problem}");
        }
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn previews_show_what_this_device_keeps(db) {
        let h = Harness::start(db).await;
        let windows = h.fakes.add(h.tenant, NewDevice::new(Platform::Windows).os("10.0.19045"));
        let (status, preview) = h.call(Method::GET, &format!("/api/v1/deviceManagement/managedDevices/{windows}/wipePreview?keepEnrollmentData=true&keepUserData=true"), &h.admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(preview["supported"], true);
        assert_eq!(preview["staysUnderManagement"], true);
        let work_profile = h.fakes.add(h.tenant, NewDevice::new(Platform::Android).mode(ManagementMode::WorkProfile).personal());
        let (_, retire) = h.call(Method::GET, &format!("/api/v1/deviceManagement/managedDevices/{work_profile}/retirePreview"), &h.admin, None).await;
        assert_eq!(retire["column"], "androidWorkProfile");
        assert_eq!(retire["personalDataStays"], true);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn an_action_and_its_idempotent_answer_are_one_write(db) {
        let h = Harness::start(db).await;
        let device = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let post = || {
            h.http.post(h.url(&format!("/api/v1/deviceManagement/managedDevices/{device}/remoteLock")))
                .bearer_auth(&h.admin)
                .header("Idempotency-Key", "lock-the-lost-phone")
                .send()
        };
        let actions = || async {
            use diesel::prelude::*;
            h.app.context.store.read(|c| mdm_store::schema::dsp_actions::table.count().get_result::<i64>(c).map_err(mdm_store::StoreError::from)).await.unwrap()
        };

        // The answer cannot be stored: no action may be made without it.
        mdm_store::testing::refuse_updates(&h.app.context.store, "rt_idempotency", "NEW.status IS NOT NULL").await;
        let first = post().await.unwrap();
        assert!(first.status().is_server_error(), "{}", first.status());
        assert_eq!(actions().await, 0);
        mdm_store::testing::stop_refusing_updates(&h.app.context.store, "rt_idempotency").await;

        // Tried again (after the reservation would have lapsed): one action, however often.
        h.app.clock.advance(chrono::Duration::minutes(3));
        let second = post().await.unwrap();
        assert_eq!(second.status(), 202);
        let action: serde_json::Value = second.json().await.unwrap();
        let replay = post().await.unwrap();
        assert_eq!(replay.status(), 202);
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(replay.json::<serde_json::Value>().await.unwrap()["id"], action["id"]);
        assert_eq!(actions().await, 1);
        h.app.stop().await;
    }
}
