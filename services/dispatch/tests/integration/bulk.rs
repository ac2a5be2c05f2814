//! Bulk actions and the tenant-wide device actions view.

use mdm_domain::{DeviceId, ManagementMode, Platform, Role};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::fakes::NewDevice;
use crate::{Harness, assert_problem, eventually};

async fn wait_completed(h: &Harness, job: &str) -> Value {
    for _ in 0..300 {
        let (status, view) = h
            .call(
                Method::GET,
                &format!("/api/v1/deviceManagement/bulkActions/{job}?top=1000"),
                &h.admin,
                None,
            )
            .await;
        assert_eq!(status, 200, "{view}");
        if view["state"] == "completed" {
            return view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    panic!("the bulk action never completed");
}

test_on_both_backends! {
    async fn a_bulk_lock_checks_every_device_and_queues_the_rest(db) {
        let h = Harness::start(db).await;
        let mut ids: Vec<DeviceId> = (0..100).map(|_| h.fakes.add(h.tenant, NewDevice::new(Platform::Ios))).collect();
        let desktops: Vec<DeviceId> = (0..10).map(|_| h.fakes.add(h.tenant, NewDevice::new(Platform::Windows))).collect();
        ids.extend(&desktops);
        ids.extend((0..5).map(|_| DeviceId::new()));
        ids.extend((0..5).map(|_| h.fakes.add(h.tenant, NewDevice::new(Platform::Android).mode(ManagementMode::Dedicated))));

        let (status, job) = h
            .call(Method::POST, "/api/v1/deviceManagement/managedDevices/bulkAction", &h.admin, Some(json!({
                "action": "remoteLock", "deviceIds": ids, "parameters": { "message": "Call IT" }
            })))
            .await;
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["totalDevices"], 120);
        let view = wait_completed(&h, job["id"].as_str().unwrap()).await;
        assert_eq!((view["accepted"].clone(), view["refused"].clone(), view["pending"].clone()), (json!(105), json!(15), json!(0)));
        assert_eq!(view["refusals"], json!({ "action_not_supported": 10, "not_found": 5 }));
        let devices = view["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 120);
        let desktop = devices.iter().find(|d| d["deviceId"] == desktops[0].to_string()).unwrap();
        assert_eq!(desktop["outcome"], "refused");
        assert!(desktop["refusalDetail"].as_str().unwrap().contains("Windows"));
        eventually("105 deliveries", || h.fakes.delivered.lock().unwrap().len() == 105).await;
        assert!(h.fakes.delivered.lock().unwrap().iter().all(|d| d.params.message.as_deref() == Some("Call IT")));

        // Progress follows the actions' states.
        let first: mdm_domain::ActionId = devices.iter().find(|d| d["outcome"] == "accepted").unwrap()["actionId"].as_str().unwrap().parse().unwrap();
        let first_device: DeviceId = devices.iter().find(|d| d["actionId"] == first.to_string()).unwrap()["deviceId"].as_str().unwrap().parse().unwrap();
        h.report(first, first_device, mdm_domain::ActionState::Done, None).await;
        let view = wait_completed(&h, job["id"].as_str().unwrap()).await;
        assert_eq!(view["actionStates"]["done"], 1);
        assert_eq!(view["actionStates"]["pending"], 104);

        // Pages of devices.
        let (_, page) = h.call(Method::GET, &format!("/api/v1/deviceManagement/bulkActions/{}?top=50", job["id"].as_str().unwrap()), &h.admin, None).await;
        assert_eq!(page["devices"].as_array().unwrap().len(), 50);
        let (_, next) = h.call(Method::GET, page["nextLink"].as_str().unwrap(), &h.admin, None).await;
        assert_eq!(next["devices"].as_array().unwrap().len(), 50);
        assert_ne!(next["devices"][0], page["devices"][0]);
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_bulk_action_over_a_filter(db) {
        let h = Harness::start(db).await;
        for _ in 0..7 {
            h.fakes.add(h.tenant, NewDevice::new(Platform::Android));
            h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        }
        let (status, job) = h
            .call(Method::POST, "/api/v1/deviceManagement/managedDevices/bulkAction", &h.admin, Some(json!({
                "action": "syncDevice", "filter": { "operatingSystem": "Android" }
            })))
            .await;
        assert_eq!(status, 202, "{job}");
        let view = wait_completed(&h, job["id"].as_str().unwrap()).await;
        assert_eq!((view["totalDevices"].clone(), view["accepted"].clone()), (json!(7), json!(7)));

        // The audit trail says what the job covered: the filter when it was asked, the
        // devices once it had checked them all, in the admin's name.
        let url = |activity: &str| format!("/api/v1/auditEvents?activity={activity}");
        let created = h.call(Method::GET, &url("bulkAction.created"), &h.admin, None).await.1["value"][0].clone();
        assert_eq!(created["detail"]["filter"], json!({ "operatingSystem": "Android" }), "{created}");
        let completed = h.call(Method::GET, &url("bulkAction.completed"), &h.admin, None).await.1["value"][0].clone();
        assert_eq!(completed["targetId"], job["id"], "{completed}");
        assert_eq!(completed["actor"], created["actor"]);
        assert_eq!(
            (completed["detail"]["devices"].clone(), completed["detail"]["accepted"].clone(), completed["detail"]["refused"].clone()),
            (json!(7), json!(7), json!(0))
        );
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn bulk_requests_are_validated(db) {
        let h = Harness::start(db).await;
        let path = "/api/v1/deviceManagement/managedDevices/bulkAction";
        let too_many: Vec<DeviceId> = (0..100_001).map(|_| DeviceId::new()).collect();
        assert_problem(&h.call(Method::POST, path, &h.admin, Some(json!({ "action": "remoteLock", "deviceIds": too_many }))).await, 422, "too_many_devices");
        assert_problem(&h.call(Method::POST, path, &h.admin, Some(json!({ "action": "remoteLock", "deviceIds": [] }))).await, 422, "validation_failed");
        let both = json!({ "action": "remoteLock", "deviceIds": [DeviceId::new()], "filter": {} });
        assert_problem(&h.call(Method::POST, path, &h.admin, Some(both)).await, 422, "validation_failed");
        let helpdesk = h.token(Role::Helpdesk, None).await;
        assert_problem(&h.call(Method::POST, path, &helpdesk, Some(json!({ "action": "wipe", "filter": {} }))).await, 403, "forbidden");
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn the_device_actions_view_lists_the_tenants_actions_newest_first(db) {
        let h = Harness::start(db).await;
        let phone = h.fakes.add(h.tenant, NewDevice::new(Platform::Ios));
        let mut made = Vec::new();
        for action in ["syncDevice", "remoteLock", "rebootNow", "syncDevice"] {
            made.push(h.act(phone, action, None).await.1["id"].as_str().unwrap().to_owned());
        }
        let (_, all) = h.call(Method::GET, "/api/v1/deviceManagement/deviceActions?top=3", &h.admin, None).await;
        let ids: Vec<_> = all["value"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, [made[3].clone(), made[2].clone(), made[1].clone()]);
        let (_, rest) = h.call(Method::GET, all["nextLink"].as_str().unwrap(), &h.admin, None).await;
        assert_eq!(rest["value"][0]["id"], made[0]);
        let (_, syncs) = h.call(Method::GET, "/api/v1/deviceManagement/deviceActions?action=syncDevice", &h.admin, None).await;
        assert_eq!(syncs["value"].as_array().unwrap().len(), 2);
        let (_, pending) = h.call(Method::GET, "/api/v1/deviceManagement/deviceActions?state=pending", &h.admin, None).await;
        assert!(pending["value"].as_array().unwrap().iter().all(|a| a["actionState"] == "pending"));
        h.app.stop().await;
    }
}

test_on_both_backends! {
    async fn a_bulk_job_and_its_idempotent_answer_are_one_write(db) {
        let h = Harness::start(db).await;
        let ids: Vec<DeviceId> = (0..3).map(|_| h.fakes.add(h.tenant, NewDevice::new(Platform::Ios))).collect();
        let post = || {
            h.http.post(h.url("/api/v1/deviceManagement/managedDevices/bulkAction"))
                .bearer_auth(&h.admin)
                .header("Idempotency-Key", "lock-the-lost-phones")
                .json(&json!({ "action": "remoteLock", "deviceIds": ids }))
                .send()
        };
        let jobs = || async {
            use diesel::prelude::*;
            h.app.context.store.read(|c| mdm_store::schema::dsp_bulk_jobs::table.count().get_result::<i64>(c).map_err(mdm_store::StoreError::from)).await.unwrap()
        };

        // The answer cannot be stored: no job may be made without it.
        mdm_store::testing::refuse_updates(&h.app.context.store, "rt_idempotency", "NEW.status IS NOT NULL").await;
        let first = post().await.unwrap();
        assert!(first.status().is_server_error(), "{}", first.status());
        assert_eq!(jobs().await, 0);
        mdm_store::testing::stop_refusing_updates(&h.app.context.store, "rt_idempotency").await;

        // Tried again (after the reservation would have lapsed): one job, whatever the retries.
        h.app.clock.advance(chrono::Duration::minutes(3));
        let second = post().await.unwrap();
        assert_eq!(second.status(), 202);
        let location = second.headers()["location"].to_str().unwrap().to_owned();
        let job: Value = second.json().await.unwrap();
        let replay = post().await.unwrap();
        assert_eq!(replay.status(), 202);
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(replay.headers()["location"].to_str().unwrap(), location, "the first answer's Location");
        assert_eq!(replay.json::<Value>().await.unwrap()["id"], job["id"]);
        assert_eq!(jobs().await, 1);
        h.app.stop().await;
    }
}
