//! Device groups.

use mdm_domain::{DeviceId, Platform, Role};
use mdm_store::test_on_both_backends;
use reqwest::Method;
use serde_json::json;

use crate::{Enrol, Harness, assert_problem, ids};

test_on_both_backends! {
    async fn groups_hold_devices_of_their_tenant(db) {
        let h = Harness::start(db).await;
        let (tenant, admin) = h.admin();
        let (status, group) = h.call(Method::POST, "/api/v1/groups", &admin, Some(json!({ "displayName": " Kiosks " }))).await;
        assert_eq!(status, 201, "{group}");
        assert_eq!((group["displayName"].clone(), group["memberCount"].clone()), (json!("Kiosks"), json!(0)));
        let path = format!("/api/v1/groups/{}", group["id"].as_str().unwrap());
        let a = h.enrol(Enrol::new(tenant, Platform::Android)).await;
        let b = h.enrol(Enrol::new(tenant, Platform::Android)).await;
        let (_, stranger) = h.admin();
        let foreign = h.enrol(Enrol::new(h.fakes.tenant(mdm_domain::MdmAuthority::Standalone), Platform::Android)).await;

        for device in [a, b] {
            assert_eq!(h.call(Method::POST, &format!("{path}/members/{device}"), &admin, None).await.0, 204);
        }
        assert_problem(&h.call(Method::POST, &format!("{path}/members/{a}"), &admin, None).await, 409, "already_a_group_member");
        assert_problem(&h.call(Method::POST, &format!("{path}/members/{foreign}"), &admin, None).await, 404, "not_found");
        assert_problem(&h.call(Method::POST, &format!("{path}/members/{}", DeviceId::new()), &admin, None).await, 404, "not_found");
        assert_problem(&h.call(Method::POST, &format!("{path}/members/{a}"), &h.token(Role::Reader, tenant), None).await, 403, "forbidden");
        assert_problem(&h.get(&path, &stranger).await, 404, "not_found");

        assert_eq!(h.get(&path, &admin).await.1["memberCount"], 2);
        let (_, members) = h.get(&format!("{path}/members?top=1"), &admin).await;
        assert_eq!(ids(&members), vec![a.to_string()]);
        let (_, rest) = h.get(members["nextLink"].as_str().unwrap(), &admin).await;
        assert_eq!(ids(&rest), vec![b.to_string()]);

        assert_eq!(h.call(Method::DELETE, &format!("{path}/members/{a}"), &admin, None).await.0, 204);
        assert_problem(&h.call(Method::DELETE, &format!("{path}/members/{a}"), &admin, None).await, 404, "not_found");
        let (_, list) = h.get("/api/v1/groups", &admin).await;
        assert_eq!(list["value"][0]["memberCount"], 1);
        assert_problem(&h.call(Method::POST, "/api/v1/groups", &admin, Some(json!({ "displayName": "  " }))).await, 422, "validation_failed");

        assert_eq!(h.call(Method::DELETE, &path, &admin, None).await.0, 204);
        assert_problem(&h.get(&path, &admin).await, 404, "not_found");
        h.app.stop().await;
    }
}
