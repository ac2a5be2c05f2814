//! Management sessions: the real first message, ids and order, multi-message sessions,
//! large objects (1222), user unenrollment (1226), certificate authentication, and bad
//! input.

use mdm_api::internal::inventory::UnenrollReason;
use mdm_e2e::windows::{
    CAPTURE_SESSION, CAPTURE_UNENROLL, CAPTURED_DEVICE_ID, Edition, Lifecycle, WindowsDevice, tree,
};
use mdm_store::test_on_both_backends;

use crate::*;

impl Harness {
    /// POSTs a SyncML body with a certificate header.
    pub async fn syncml(&self, body: String, cert: Option<String>) -> (u16, String) {
        let mut request = self
            .http
            .post(self.url("/ManagementServer/MDM.svc?mode=Maintenance&Platform=WoA"))
            .header("Content-Type", "application/vnd.syncml.dm+xml")
            .body(body);
        if let Some(cert) = cert {
            request = request.header(CERT_HEADER, cert);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(response.content_length().is_some(), "no Content-Length");
        (status, response.text().await.unwrap())
    }

    pub async fn captured_device(&self) -> WindowsDevice {
        self.fixture.add_user("demio", "demo");
        let mut device = WindowsDevice::captured(&self.app.url, CERT_HEADER).unwrap();
        device
            .enroll_with_captured_csr("demio", "demo")
            .await
            .unwrap();
        device
    }
}

fn capture_for(h: &Harness, capture: &str) -> String {
    capture.replace(
        "https://windows.fleetdm.ngrok.io/ManagementServer/MDM.svc",
        &h.url("/ManagementServer/MDM.svc"),
    )
}

test_on_both_backends! {
    async fn the_real_first_message_is_answered_in_order(db) {
        let h = Harness::start(db).await;
        let device = h.captured_device().await;
        let (status, text) = h.syncml(capture_for(&h, CAPTURE_SESSION), Some(device.certificate_header().unwrap())).await;
        assert_eq!(status, 200, "{text}");
        let root = tree::parse(&text).unwrap();
        assert_eq!(root.name, "SyncML");
        let header = root.child("SyncHdr").unwrap();
        assert_eq!(header.text_at(&["SessionID"]).as_deref(), Some("1"));
        assert_eq!(header.text_at(&["MsgID"]).as_deref(), Some("1"));
        assert_eq!(header.text_at(&["Target", "LocURI"]).as_deref(), Some(CAPTURED_DEVICE_ID));
        let body = root.child("SyncBody").unwrap();
        let statuses: Vec<(String, String, String, String)> = body
            .all("Status")
            .map(|s| (s.text_at(&["MsgRef"]).unwrap(), s.text_at(&["CmdRef"]).unwrap(), s.text_at(&["Cmd"]).unwrap(), s.text_at(&["Data"]).unwrap()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("1".into(), "0".into(), "SyncHdr".into(), "200".into()),
                ("1".into(), "2".into(), "Alert".into(), "200".into()),
                ("1".into(), "3".into(), "Alert".into(), "200".into()),
                ("1".into(), "4".into(), "Replace".into(), "200".into()),
            ]
        );
        // Statuses first, then the server's Gets (inventory, push channel); no CmdID is "0"
        // and none repeats.
        let names: Vec<&str> = body.children.iter().map(|c| c.name.as_str()).collect();
        let first_get = names.iter().position(|n| *n == "Get").unwrap();
        assert!(names[..first_get].iter().all(|n| *n == "Status"));
        assert_eq!(names.last(), Some(&"Final"));
        let ids: Vec<String> = body.children.iter().filter_map(|c| c.text_at(&["CmdID"])).collect();
        assert!(ids.iter().all(|id| !id.is_empty() && id != "0"));
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        let targets: Vec<String> = body.all("Get").filter_map(|g| g.text_at(&["Item", "Target", "LocURI"])).collect();
        assert!(targets.contains(&"./DevDetail/SwV".to_owned()));
        assert!(targets.iter().any(|t| t.ends_with("/Push/ChannelURI")));

        // DevInfo of the capture reached inventory.
        let facts = wait_for(|| h.fixture.inventory().into_iter().find_map(|r| match r {
            Recorded::Facts(f) if f.facts.manufacturer.is_some() => Some(f),
            _ => None,
        })).await;
        assert_eq!(facts.facts.manufacturer.as_deref(), Some("VMware, Inc."));
        assert_eq!(facts.facts.model.as_deref(), Some("VMware7,1"));

        // The same message again gets the same answer (a retransmission).
        let (_, again) = h.syncml(capture_for(&h, CAPTURE_SESSION), Some(device.certificate_header().unwrap())).await;
        let ids_again: Vec<String> = tree::parse(&again).unwrap().child("SyncBody").unwrap().children.iter().filter_map(|c| c.text_at(&["CmdID"])).collect();
        assert_eq!(ids_again.len(), ids.len());
    }
}

test_on_both_backends! {
    async fn a_full_session_takes_inventory_and_ends_when_nothing_is_left(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        device.name = "LAPTOP-INVENTORY".into();
        let report = device.sync().await.unwrap();
        // Opening, then the answers to the server's Gets; the last answer had only Statuses.
        assert_eq!(report.messages, 2, "{report:?}");
        assert_eq!(report.server_msg_ids, [1, 2]);
        assert!(report.executed.iter().all(|e| e.verb == "Get"));
        let id = Harness::device_id(&device);
        let facts = wait_for(|| h.fixture.inventory().into_iter().find_map(|r| match r {
            Recorded::Facts(f) if f.device_id == id && f.facts.device_name.is_some() => Some(f),
            _ => None,
        })).await;
        assert_eq!(facts.facts.device_name.as_deref(), Some("LAPTOP-INVENTORY"));
        // The version came with the enrollment: unchanged facts are not sent again.
        assert_eq!(facts.facts.os_version, None);
        assert_eq!(facts.facts.serial_number.as_deref(), Some(device.serial.as_str()));
        assert_eq!(facts.facts.is_encrypted, Some(true));

        // The next session: inventory is fresh; only the push channel is read again.
        let report = device.sync().await.unwrap();
        assert_eq!(report.executed.len(), 1);
        assert!(report.executed[0].loc_uri.ends_with("/Push/ChannelURI"));
        // Check-ins reach inventory in a batch.
        wait_for(|| h.fixture.inventory().into_iter().find_map(|r| match r {
            Recorded::Seen(s) if s.seen.iter().any(|s| s.device_id == id) => Some(()),
            _ => None,
        })).await;
    }
}

test_on_both_backends! {
    async fn a_session_spans_several_messages(db) {
        let h = Harness::with(db, Options { max_commands_per_message: 3, ..Options::default() }).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        device.sync().await.unwrap();
        let mut actions = Vec::new();
        for _ in 0..7 {
            actions.push(h.act(&device, "rebootNow", serde_json::json!({})).await);
        }
        for action in &actions {
            h.queued(*action).await;
        }
        let report = device.sync().await.unwrap();
        let reboots: Vec<_> = report.executed.iter().filter(|e| e.loc_uri.ends_with("Reboot/RebootNow")).collect();
        assert_eq!(reboots.len(), 7);
        assert!(report.messages >= 4, "{report:?}");
        let mut ids: Vec<_> = reboots.iter().map(|e| e.cmd_id.clone()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 7);
        for action in actions {
            h.action_state(action, mdm_domain::ActionState::Done).await;
        }
        // Each command was sent once: the queue is empty now.
        let report = device.sync().await.unwrap();
        assert!(report.executed.iter().all(|e| !e.loc_uri.ends_with("RebootNow")));
    }
}

test_on_both_backends! {
    async fn large_objects_arrive_in_chunks(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        device.name = format!("LONG-{}", "N".repeat(900));
        device.max_chunk = Some(200);
        let report = device.sync().await.unwrap();
        assert!(report.next_message_alerts >= 4, "{report:?}");
        assert!(report.statuses.iter().any(|(_, cmd, code)| cmd == "Results" && *code == 213));
        let id = Harness::device_id(&device);
        let facts = wait_for(|| h.fixture.inventory().into_iter().find_map(|r| match r {
            Recorded::Facts(f) if f.device_id == id && f.facts.device_name.is_some() => Some(f),
            _ => None,
        })).await;
        assert_eq!(facts.facts.device_name, Some(device.name.clone()));
    }
}

test_on_both_backends! {
    async fn the_user_unenrolling_ends_management(db) {
        let h = Harness::start(db).await;
        let device = h.captured_device().await;
        let header = device.certificate_header().unwrap();
        // A pending action fails with the unenrollment.
        let action = h.act(&device, "rebootNow", serde_json::json!({})).await;
        h.queued(action).await;
        let (status, text) = h.syncml(capture_for(&h, CAPTURE_UNENROLL), Some(header.clone())).await;
        assert_eq!(status, 200, "{text}");
        let body = tree::parse(&text).unwrap();
        let body = body.child("SyncBody").unwrap();
        assert!(body.all("Status").any(|s| s.text_at(&["CmdRef"]).as_deref() == Some("4") && s.text_at(&["Data"]).as_deref() == Some("200")));
        // Nothing else is sent to a device that left.
        assert!(body.children.iter().all(|c| c.name == "Status" || c.name == "Final"));
        let id = Harness::device_id(&device);
        let unenrolled = wait_for(|| h.fixture.inventory().into_iter().find_map(|r| match r {
            Recorded::Unenrolled(u) if u.device_id == id => Some(u),
            _ => None,
        })).await;
        assert_eq!(unenrolled.reason, UnenrollReason::RemovedOnDevice);
        let failed = h.action_state(action, mdm_domain::ActionState::Failed).await;
        assert!(failed.error_detail.unwrap().contains("removed management"));
        let (status, _) = h.syncml(capture_for(&h, mdm_e2e::windows::CAPTURE_SESSION), Some(header)).await;
        assert_eq!(status, 401);

        // A simulated device does the same through Settings.
        let mut other = h.enrolled(Edition::Mobile).await;
        other.unenroll_from_settings().await.unwrap();
        assert_eq!(other.lifecycle, Lifecycle::Unenrolled);
    }
}

test_on_both_backends! {
    async fn only_the_enrolled_certificate_opens_a_session(db) {
        let h = Harness::start(db).await;
        let a = h.enrolled(Edition::Desktop).await;
        let b = h.enrolled(Edition::Desktop).await;
        let opening = |device_id: &str| format!(r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>5</SessionID><MsgID>1</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{device_id}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#);
        let (status, text) = h.syncml(opening(&a.device_id), None).await;
        assert_eq!(status, 401);
        assert!(text.contains("windows_device_unauthenticated"));
        // Another device's certificate for this DeviceID.
        let (status, _) = h.syncml(opening(&a.device_id), Some(b.certificate_header().unwrap())).await;
        assert_eq!(status, 401);
        // A certificate our CA never issued for an enrollment (the CA's own).
        let ca = url_encode(&String::from_utf8(h.fixture.ca_cert.to_pem().unwrap()).unwrap());
        let (status, _) = h.syncml(opening(&a.device_id), Some(ca)).await;
        assert_eq!(status, 401);
        let (status, _) = h.syncml(opening(&a.device_id), Some("garbage%%".into())).await;
        assert_eq!(status, 401);
        let (status, _) = h.syncml(opening(&a.device_id), Some(a.certificate_header().unwrap())).await;
        assert_eq!(status, 200);
        let messages = |outcome: &str| h.adapter.metrics.messages.with_label_values(&[outcome]).get();
        assert_eq!((messages("unauthenticated"), messages("answered")), (4, 1));
        // After a restart-like loss of memory the database still knows the device.
        let fresh = h.adapter.devices_in_memory();
        assert!(fresh >= 2);
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

test_on_both_backends! {
    async fn bad_messages_get_clear_4xx(db) {
        let h = Harness::with(db, Options { max_message_bytes: 64 * 1024, ..Options::default() }).await;
        let device = h.enrolled(Edition::Desktop).await;
        let cert = Some(device.certificate_header().unwrap());
        let (status, text) = h.syncml("<SyncML><oops".into(), cert.clone()).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("windows_malformed_message"));
        let (status, _) = h.syncml("<SyncML><SyncBody/></SyncML>".into(), cert.clone()).await;
        assert_eq!(status, 400);
        let (status, _) = h.syncml(format!("<SyncML>{}</SyncML>", "<a>".repeat(100) + &"</a>".repeat(100)), cert.clone()).await;
        assert_eq!(status, 400);
        let (status, _) = h.syncml(format!("<SyncML>{}</SyncML>", "x".repeat(70 * 1024)), cert.clone()).await;
        assert_eq!(status, 413);
        let (status, _) = h.syncml(format!("<SyncML>{}</SyncML>", "<a/>".repeat(12_000)), cert.clone()).await;
        assert_eq!(status, 400);
        let bomb = r#"<!DOCTYPE SyncML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><SyncML>&b;</SyncML>"#;
        let (status, _) = h.syncml(bomb.into(), cert.clone()).await;
        assert_eq!(status, 400);
        let response = h.http.post(h.url("/ManagementServer/MDM.svc")).header("Content-Type", "application/vnd.syncml.dm+wbxml").header(CERT_HEADER, cert.clone().unwrap()).body(vec![0x02u8, 0x00]).send().await.unwrap();
        assert_eq!(response.status(), 415);
        // A version the server does not speak: a SyncML answer with the header refused.
        let old = format!(r#"<SyncML xmlns="SYNCML:SYNCML1.1"><SyncHdr><VerDTD>1.1</VerDTD><VerProto>DM/1.1</VerProto><SessionID>9</SessionID><MsgID>1</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{}</LocURI></Source></SyncHdr><SyncBody><Final/></SyncBody></SyncML>"#, device.device_id);
        let (status, text) = h.syncml(old, cert.clone()).await;
        assert_eq!(status, 200);
        assert!(text.contains("<Data>505</Data>"), "{text}");
        // Commands without CmdID, unknown elements and client Exec get their Status codes.
        let odd = format!(r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>10</SessionID><MsgID>1</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{}</LocURI></Source></SyncHdr><SyncBody><Alert><Data>1201</Data></Alert><Bogus><CmdID>2</CmdID></Bogus><Exec><CmdID>3</CmdID><Item><Target><LocURI>./x</LocURI></Target></Item></Exec><Final/></SyncBody></SyncML>"#, device.device_id);
        let (status, text) = h.syncml(odd, cert).await;
        assert_eq!(status, 200);
        let root = tree::parse(&text).unwrap();
        let codes: Vec<(String, String)> = root.child("SyncBody").unwrap().all("Status").map(|s| (s.text_at(&["CmdRef"]).unwrap(), s.text_at(&["Data"]).unwrap())).collect();
        assert_eq!(codes, [("0".into(), "200".into()), ("".into(), "400".into()), ("2".into(), "400".into()), ("3".into(), "406".into())]);
    }
}
