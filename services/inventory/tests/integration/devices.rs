//! The registry fed by the adapters' messages, the list with its filters and paging, one
//! device with dispatch's summary, users' devices, and the internal API.

use chrono::Duration;
use mdm_api::Service;
use mdm_api::internal::dispatch::DeviceActionsSummary;
use mdm_api::internal::inventory::{DeviceFacts, DeviceFactsReported, DevicesSeen, Seen};
use mdm_api::public::{DeviceActionResult, LockPin};
use mdm_domain::{ActionId, ActionKind, ActionState, DeviceId, OsVersion, Platform, Role};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::json;

use crate::{Enrol, Harness, assert_problem, ids};

const DEVICES: &str = "/api/v1/deviceManagement/managedDevices";

test_on_both_backends! {
    async fn an_enrolled_device_is_registered_with_its_facts(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let ada = h.fakes.user(tenant, "ada@contoso.example");
        let mut enrol = Enrol::new(tenant, Platform::Ios).user(ada, "ada@contoso.example");
        enrol.facts.os_version = Some("17.4.1".parse().unwrap());
        enrol.facts.model = Some("iPhone 15".into());
        let id = h.enrol(enrol).await;

        let (status, device) = h.get(&format!("{DEVICES}/{id}"), &admin).await;
        assert_eq!(status, 200, "{device}");
        assert_eq!(device["operatingSystem"], "iOS");
        assert_eq!(device["osVersion"], "17.4.1");
        assert_eq!(device["model"], "iPhone 15");
        assert_eq!(device["managementState"], "managed");
        assert_eq!(device["managedDeviceOwnerType"], "company");
        assert_eq!(device["userPrincipalName"], "ada@contoso.example");
        assert_eq!(device["enrolledDateTime"], device["lastSyncDateTime"], "enrolling is a contact");
        assert!(device["isPasscodePresent"].is_null());

        // Facts change only where the message has them.
        let facts = DeviceFactsReported {
            device_id: id,
            facts: DeviceFacts {
                device_name: Some("  Ada's phone ".into()),
                is_passcode_present: Some(true),
                serial_number: Some("F2LXK1ABC".into()),
                ..DeviceFacts::default()
            },
            at: h.now(),
        };
        h.send(Service::Apple, &[facts]).await;
        let (_, device) = h.get(&format!("{DEVICES}/{id}"), &admin).await;
        assert_eq!(device["deviceName"], "Ada's phone");
        assert_eq!(device["isPasscodePresent"], true);
        assert_eq!(device["serialNumber"], "F2LXK1ABC");
        assert_eq!(device["model"], "iPhone 15", "kept");
        assert_eq!(device["osVersion"], "17.4.1", "kept");

        // Facts about a device the registry does not hold are applied as nothing.
        let stray = DeviceFactsReported { device_id: DeviceId::new(), facts: DeviceFacts::default(), at: h.now() };
        h.send(Service::Apple, &[stray]).await;
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn enrolling_again_brings_the_device_back_under_management(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let enrol = Enrol::new(tenant, Platform::MacOs);
        let id = h.enrol(enrol.clone()).await;
        let unenrolled = mdm_api::internal::inventory::DeviceUnenrolled {
            device_id: id,
            reason: mdm_api::internal::inventory::UnenrollReason::RemovedOnDevice,
            at: h.now(),
        };
        h.send(Service::Apple, &[unenrolled]).await;
        let (_, device) = h.get(&format!("{DEVICES}/{id}"), &admin).await;
        assert_eq!(device["managementState"], "unenrolled");

        h.app.clock.advance(Duration::days(1));
        let mut again = enrol.clone();
        again.ownership = mdm_domain::Ownership::Personal;
        again.facts = DeviceFacts::default();
        h.send(Service::Apple, &[again.message(id, h.now())]).await;
        let (_, device) = h.get(&format!("{DEVICES}/{id}"), &admin).await;
        assert_eq!(device["managementState"], "managed");
        assert_eq!(device["managedDeviceOwnerType"], "personal");
        assert_eq!(device["deviceName"], "macOS device", "facts not in the message are kept");
        assert_eq!(device["enrolledDateTime"], device["lastSyncDateTime"]);

        // The same device id enrolled in another tenant is refused (a dead letter).
        let elsewhere = Enrol::new(h.fakes.tenant(mdm_domain::MdmAuthority::Standalone), Platform::MacOs);
        let outcome = h.deliver(Service::Apple, &[elsewhere.message(id, h.now())]).await;
        assert_eq!(outcome.outcomes[0].result, mdm_api::internal::DeliveryResult::Rejected);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn check_ins_only_move_last_sync_forward(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let a = h.enrol(Enrol::new(tenant, Platform::Android)).await;
        let b = h.enrol(Enrol::new(tenant, Platform::Windows)).await;
        let t0 = h.now();
        let seen = |id, minutes| Seen { device_id: id, at: t0 + Duration::minutes(minutes) };
        // One batch: a twice (the later time wins), b in the past, a device nobody knows.
        let batch = DevicesSeen { seen: vec![seen(a, 10), seen(a, 30), seen(b, -60), seen(DeviceId::new(), 5)] };
        h.send(Service::Android, &[batch]).await;
        let last_sync = |v: serde_json::Value| v["lastSyncDateTime"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert_eq!(last_sync(h.get(&format!("{DEVICES}/{a}"), &admin).await.1), t0 + Duration::minutes(30));
        assert_eq!(last_sync(h.get(&format!("{DEVICES}/{b}"), &admin).await.1), t0, "an older check-in changes nothing");
        h.send(Service::Android, &[DevicesSeen { seen: vec![seen(a, 20)] }]).await;
        assert_eq!(last_sync(h.get(&format!("{DEVICES}/{a}"), &admin).await.1), t0 + Duration::minutes(30));

        // A large batch lands in one message.
        let many: Vec<DeviceId> = {
            let mut ids = Vec::new();
            for _ in 0..50 {
                ids.push(h.enrol(Enrol::new(tenant, Platform::Ios)).await);
            }
            ids
        };
        let batch = DevicesSeen { seen: many.iter().map(|&id| seen(id, 90)).collect() };
        h.send(Service::Apple, &[batch]).await;
        for id in many.iter().step_by(7) {
            assert_eq!(last_sync(h.get(&format!("{DEVICES}/{id}"), &admin).await.1), t0 + Duration::minutes(90));
        }
        let metrics = h.http.get(format!("{}/metrics", h.app.url)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("mdm_inventory_checkins_total 55"), "{metrics}");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn the_list_filters_and_pages(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let ada = h.fakes.user(tenant, "Ada@Contoso.example");
        let mut expected_windows = Vec::new();
        let mut all = Vec::new();
        for i in 0..12 {
            let platform = [Platform::Windows, Platform::Ios, Platform::Android][i % 3];
            let mut enrol = Enrol::new(tenant, platform);
            if i % 4 == 0 {
                enrol = enrol.personal();
            }
            if i % 5 == 0 {
                enrol = enrol.user(ada, "Ada@Contoso.example");
            }
            let id = h.enrol(enrol).await;
            all.push(id.to_string());
            if platform == Platform::Windows {
                expected_windows.push(id.to_string());
            }
        }
        // Another tenant's devices never show.
        let other = h.fakes.tenant(mdm_domain::MdmAuthority::Standalone);
        h.enrol(Enrol::new(other, Platform::Windows)).await;

        let (status, page) = h.get(DEVICES, &admin).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(ids(&page), all, "id order is enrollment order");
        assert!(page["nextLink"].is_null());
        assert!(page["value"][0].get("deviceActionResults").is_none(), "the list omits actions");

        let (_, page) = h.get(&format!("{DEVICES}?operatingSystem=windows"), &admin).await;
        assert_eq!(ids(&page), expected_windows);
        let (_, page) = h.get(&format!("{DEVICES}?ownerType=personal"), &admin).await;
        assert_eq!(ids(&page), vec![all[0].clone(), all[4].clone(), all[8].clone()]);
        let (_, page) = h.get(&format!("{DEVICES}?userPrincipalName=ada%40contoso.EXAMPLE"), &admin).await;
        assert_eq!(ids(&page), vec![all[0].clone(), all[5].clone(), all[10].clone()]);

        // lastSyncBefore: devices 0..6 checked in an hour ago; 6..12 just now.
        h.app.clock.advance(Duration::hours(2));
        let now = h.now();
        let seen: Vec<Seen> = all.iter().enumerate().map(|(i, id)| Seen {
            device_id: id.parse().unwrap(),
            at: if i < 6 { now - Duration::hours(1) } else { now },
        }).collect();
        h.send(Service::Windows, &[DevicesSeen { seen }]).await;
        let before = (now - Duration::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (status, page) = h.get(&format!("{DEVICES}?lastSyncBefore={before}&operatingSystem=Windows"), &admin).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(ids(&page), vec![all[0].clone(), all[3].clone()]);

        // Paging: keyset pages of 5 carry the filters in nextLink and cover everything once.
        let mut seen_ids = Vec::new();
        let mut next = Some(format!("{DEVICES}?top=5&managementState=managed"));
        let mut pages = 0;
        while let Some(link) = next {
            let (status, page) = h.get(&link, &admin).await;
            assert_eq!(status, 200, "{page}");
            seen_ids.extend(ids(&page));
            next = page["nextLink"].as_str().map(str::to_owned);
            if let Some(link) = &next {
                assert!(link.contains("managementState=managed") && link.contains("top=5"), "{link}");
            }
            pages += 1;
        }
        assert_eq!(seen_ids, all);
        assert_eq!(pages, 3);
        let (_, page) = h.get(&format!("{DEVICES}?top=5000"), &admin).await;
        assert_eq!(ids(&page).len(), 12, "top is capped, not refused");

        assert_problem(&h.get(&format!("{DEVICES}?operatingSystem=symbian"), &admin).await, 400, "invalid_request");
        assert_problem(&h.get(&format!("{DEVICES}?colour=blue"), &admin).await, 400, "invalid_request");
        assert_problem(&h.get(&format!("{DEVICES}?skipToken=nope"), &admin).await, 400, "invalid_request");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn one_device_shows_its_actions_and_the_pin_to_those_allowed(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let id = h.enrol(Enrol::new(tenant, Platform::MacOs)).await;
        let action = ActionId::new();
        let summary = DeviceActionsSummary {
            device_action_results: vec![DeviceActionResult {
                id: action,
                action_name: ActionKind::RemoteLock,
                action_state: ActionState::Done,
                start_date_time: h.now(),
                last_updated_date_time: h.now(),
                error_code: None,
                error_detail: None,
            }],
            lock_pin: Some(LockPin { pin: "123456".into(), action_id: action, expiration_date_time: h.now() + Duration::days(30) }),
        };
        h.fakes.summaries.lock().unwrap().insert(id, summary);
        let path = format!("{DEVICES}/{id}");

        let (status, device) = h.get(&path, &admin).await;
        assert_eq!(status, 200);
        assert_eq!(device["deviceActionResults"][0]["actionName"], "remoteLock");
        assert_eq!(device["lockPin"]["pin"], "123456");

        let helpdesk = h.token(Role::Helpdesk, tenant);
        assert_eq!(h.get(&path, &helpdesk).await.1["lockPin"]["pin"], "123456", "helpdesk may read PINs");
        let reader = h.token(Role::Reader, tenant);
        let (_, device) = h.get(&path, &reader).await;
        assert_eq!(device["deviceActionResults"][0]["actionState"], "done");
        assert!(device.get("lockPin").is_none(), "readers do not see PINs: {device}");

        // Dispatch unreachable: the device is answered without the two fields.
        *h.fakes.dispatch_down.lock().unwrap() = true;
        let (status, device) = h.get(&path, &admin).await;
        assert_eq!(status, 200);
        assert_eq!(device["id"], id.to_string());
        assert!(device.get("deviceActionResults").is_none() && device.get("lockPin").is_none(), "{device}");

        // Another tenant's device, or none at all: 404.
        let (_, stranger) = h.admin();
        assert_problem(&h.get(&path, &stranger).await, 404, "not_found");
        assert_problem(&h.get(&format!("{DEVICES}/{}", DeviceId::new()), &admin).await, 404, "not_found");
        assert_problem(&h.get(&format!("{DEVICES}/not-an-id"), &admin).await, 404, "not_found");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn users_see_their_own_devices(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let ada = h.fakes.user(tenant, "ada@contoso.example");
        let grace = h.fakes.user(tenant, "grace@contoso.example");
        let mine = h.enrol(Enrol::new(tenant, Platform::Ios).user(ada, "ada@contoso.example").personal()).await;
        let theirs = h.enrol(Enrol::new(tenant, Platform::Android).user(grace, "grace@contoso.example")).await;

        let (status, page) = h.get(&format!("/api/v1/users/{ada}/managedDevices"), &admin).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(ids(&page), vec![mine.to_string()]);
        assert_problem(&h.get(&format!("/api/v1/users/{}/managedDevices", mdm_domain::UserId::new()), &admin).await, 404, "not_found");
        let outsider = h.fakes.user(h.fakes.tenant(mdm_domain::MdmAuthority::Standalone), "x@y.example");
        assert_problem(&h.get(&format!("/api/v1/users/{outsider}/managedDevices"), &admin).await, 404, "not_found");

        let me = h.fakes.token(Role::User, Some(tenant), Some(ada));
        let (status, page) = h.get("/api/v1/me/managedDevices", &me).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(ids(&page), vec![mine.to_string()]);
        assert_eq!(h.get(&format!("/api/v1/me/managedDevices/{mine}"), &me).await.0, 200);
        assert_problem(&h.get(&format!("/api/v1/me/managedDevices/{theirs}"), &me).await, 404, "not_found");
        // A user token reads nothing of the tenant; an admin has no devices of its own.
        assert_problem(&h.get(DEVICES, &me).await, 403, "forbidden");
        assert_problem(&h.get("/api/v1/me/managedDevices", &admin).await, 403, "forbidden");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn the_internal_api_answers_records_filters_and_lookups(db) {
        let h = Harness::start(db).await;
        let (tenant, _) = h.admin();
        let mut enrol = Enrol::new(tenant, Platform::Windows);
        enrol.facts.os_version = Some(OsVersion::windows_build(22631));
        let windows = h.enrol(enrol).await;
        let ios = h.enrol(Enrol::new(tenant, Platform::Ios).personal()).await;
        let other = h.enrol(Enrol::new(h.fakes.tenant(mdm_domain::MdmAuthority::Standalone), Platform::Ios)).await;

        let (status, record) = h.internal(Method::GET, &format!("/devices/{windows}?tenantId={tenant}"), None).await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["platform"], "Windows");
        assert_eq!(record["osVersion"], "10.0.22631");
        assert_eq!(record["managementMode"], "desktop");
        assert_eq!(h.internal(Method::GET, &format!("/devices/{other}?tenantId={tenant}"), None).await.0, 404);

        let (_, found) = h.internal(Method::POST, "/devices/lookup", Some(json!({ "tenantId": tenant, "deviceIds": [windows, ios, other, DeviceId::new()] }))).await;
        let mut found: Vec<String> = found["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();
        found.sort();
        let mut expected = vec![windows.to_string(), ios.to_string()];
        expected.sort();
        assert_eq!(found, expected);

        let (_, selected) = h.internal(Method::POST, "/devices/select", Some(json!({ "tenantId": tenant, "filter": { "ownerType": "personal" } }))).await;
        assert_eq!(selected["deviceIds"], json!([ios]));
        let (_, selected) = h.internal(Method::POST, "/devices/select", Some(json!({ "tenantId": tenant, "filter": {} }))).await;
        assert_eq!(selected["deviceIds"], json!([windows, ios]));
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn routes_of_other_services_under_the_same_prefix_are_not_hidden(db) {
        let h = Harness::start(db).await;
        let (_, admin) = h.admin();
        // Dispatch owns `.../managedDevices/bulkAction`: without dispatch in this process
        // the path is unknown (404), not a wrong method on inventory's `{id}` resource (405).
        let answer = h.call(Method::POST, &format!("{DEVICES}/bulkAction"), &admin, Some(json!({}))).await;
        assert_problem(&answer, 404, "not_found");
        let answer = h.call(Method::PATCH, &format!("{DEVICES}/{}", DeviceId::new()), &admin, Some(json!({}))).await;
        assert_problem(&answer, 405, "method_not_allowed");
        h.app.stop().await;
    }
}
