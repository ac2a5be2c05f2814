//! MS-MDE2 enrollment: the real captured requests, simulated desktops and mobiles, the
//! three authentication policies, every SOAP fault, renewal.

use mdm_api::internal::enrollment::{GateDenial, WindowsAuthPolicy};
use mdm_domain::{ManagementMode, Ownership, Platform};
use mdm_e2e::windows::{
    CAPTURE_DISCOVERY, CAPTURE_ENROLLMENT, CAPTURE_POLICY, CAPTURED_DEVICE_ID, Edition,
    EnrollError, WindowsDevice, tree,
};
use mdm_store::test_on_both_backends;

use crate::*;

impl Harness {
    /// POSTs a SOAP body; answers status, Content-Length and text.
    pub async fn soap(&self, path: &str, body: String) -> (u16, Option<u64>, String) {
        let response = self
            .http
            .post(self.url(path))
            .header("Content-Type", "application/soap+xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let length = response.content_length();
        (status, length, response.text().await.unwrap())
    }
}

fn fault_of(error: EnrollError) -> (u16, String, Option<String>) {
    let fault = error
        .fault()
        .cloned()
        .unwrap_or_else(|| panic!("not a fault: {error}"));
    (fault.status, fault.subcode, fault.error_type)
}

test_on_both_backends! {
    async fn the_real_discovery_request_is_answered(db) {
        let h = Harness::start(db).await;
        let probe = h.http.get(h.url("/EnrollmentServer/Discovery.svc")).send().await.unwrap();
        assert_eq!(probe.status(), 200);
        assert_eq!(probe.content_length(), Some(0));
        assert!(probe.text().await.unwrap().is_empty());

        // The capture as recorded: an address nobody has gets the default policy.
        let (status, length, text) = h.soap("/EnrollmentServer/Discovery.svc", CAPTURE_DISCOVERY.into()).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(length, Some(text.len() as u64));
        let root = tree::parse(&text).unwrap();
        assert_eq!(
            root.text_at(&["Header", "RelatesTo"]).as_deref(),
            Some("urn:uuid:748132ec-a575-4329-b01b-6171a9cf8478")
        );
        assert!(root.text_at(&["Header", "Action"]).unwrap().ends_with("IDiscoveryService/DiscoverResponse"));
        let result = root.find("DiscoverResult").unwrap();
        assert_eq!(result.text_at(&["AuthPolicy"]).as_deref(), Some("OnPremise"));
        assert_eq!(result.text_at(&["EnrollmentVersion"]).as_deref(), Some("4.0"));
        assert_eq!(result.text_at(&["EnrollmentPolicyServiceUrl"]), Some(h.url("/EnrollmentServer/Policy.svc")));
        assert_eq!(result.text_at(&["EnrollmentServiceUrl"]), Some(h.url("/EnrollmentServer/Enrollment.svc")));
        assert!(result.child("AuthenticationServiceUrl").is_none());

        // A known user of a Federated tenant gets the sign-in page.
        h.user("demo@fleetdm.ngrok.io");
        set_policy(&h, WindowsAuthPolicy::Federated);
        let (_, _, text) = h.soap("/EnrollmentServer/Discovery.svc", CAPTURE_DISCOVERY.into()).await;
        let result = tree::parse(&text).unwrap().find("DiscoverResult").cloned().unwrap();
        assert_eq!(result.text_at(&["AuthPolicy"]).as_deref(), Some("Federated"));
        assert_eq!(result.text_at(&["AuthenticationServiceUrl"]), Some(h.url("/EnrollmentServer/Authenticate")));

        // The capture offers OnPremise and Federated only: Certificate cannot be asked of it.
        set_policy(&h, WindowsAuthPolicy::Certificate);
        let (status, _, text) = h.soap("/EnrollmentServer/Discovery.svc", CAPTURE_DISCOVERY.into()).await;
        assert_eq!(status, 403);
        assert!(text.contains("s:DeviceNotSupported"), "{text}");
    }
}

test_on_both_backends! {
    async fn the_real_policy_request_is_answered(db) {
        let h = Harness::start(db).await;
        h.fixture.add_user("demio", "demo");
        let (status, length, text) = h.soap("/EnrollmentServer/Policy.svc", CAPTURE_POLICY.into()).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(length, Some(text.len() as u64));
        let root = tree::parse(&text).unwrap();
        assert_eq!(root.find("minimalKeyLength").unwrap().text.trim(), "2048");
        let oid = root.find("oID").unwrap();
        assert_eq!(oid.text_at(&["value"]).as_deref(), Some("2.16.840.1.101.3.4.2.1"));
        assert_eq!(oid.text_at(&["oIDReferenceID"]), root.find("hashAlgorithmOIDReference").map(|n| n.text.trim().to_owned()));
        assert_eq!(
            root.text_at(&["Header", "RelatesTo"]).as_deref(),
            Some("urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0")
        );

        // The same request with a wrong password.
        let wrong = CAPTURE_POLICY.replace(">demo</wsse:Password>", ">wrong</wsse:Password>");
        let (status, _, text) = h.soap("/EnrollmentServer/Policy.svc", wrong).await;
        assert_eq!(status, 401);
        assert!(text.contains("<s:Value>s:Authentication</s:Value>"), "{text}");
    }
}

test_on_both_backends! {
    async fn the_real_enrollment_request_gets_a_certificate(db) {
        let h = Harness::start(db).await;
        h.fixture.add_user("demio", "demo");
        // The captured request, untouched but for nothing: its CSR, its DeviceID, its
        // UsernameToken.
        let (status, length, text) = h.soap("/EnrollmentServer/Enrollment.svc", CAPTURE_ENROLLMENT.into()).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(length, Some(text.len() as u64));

        // The same through the simulator, which checks the provisioning document.
        let mut device = WindowsDevice::captured(&h.app.url, CERT_HEADER).unwrap();
        device.enroll_with_captured_csr("demio", "demo").await.unwrap();
        let enrollment = device.enrollment.clone().unwrap();
        let cert = &enrollment.certificate;
        let cn = cert.subject_name().entries_by_nid(openssl::nid::Nid::COMMONNAME).next().unwrap();
        assert_eq!(cn.data().as_slice(), CAPTURED_DEVICE_ID.as_bytes());
        let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert_eq!(enrollment.management_url, h.url("/ManagementServer/MDM.svc"));
        assert_eq!(enrollment.search_criteria, format!("Subject=CN%3D{CAPTURED_DEVICE_ID}&Stores=MY%5CUser"));
        assert_eq!(enrollment.pfn.as_deref(), Some("Contoso.MDM_8wekyb3d8bbwe"));
        assert_eq!(enrollment.poll.get("PollOnLogin").map(String::as_str), Some("true"));
        assert_eq!(enrollment.renew_period_days, Some(60));
        // Both enrollments were signed; the second replaced the first, and the two
        // certificates have different random serials.
        let signed = h.fixture.state.lock().unwrap().signed.clone();
        assert_eq!(signed.len(), 2);
        assert!(signed.iter().all(|s| s.common_name == CAPTURED_DEVICE_ID));
        assert_eq!(signed[0].device_id, signed[1].device_id, "a device enrolling again keeps its id");
        assert_ne!(signed[0].enrollment_id, signed[1].enrollment_id);

        let device_id = Harness::device_id(&device);
        let enrolled = wait_for(|| h.fixture.enrolled(device_id)).await;
        assert_eq!(enrolled.platform, Platform::Windows);
        assert_eq!(enrolled.management_mode, Some(ManagementMode::Desktop));
        assert_eq!(enrolled.ownership, Ownership::Personal);
        assert!(!enrolled.directory_joined);
        assert_eq!(enrolled.facts.device_name.as_deref(), Some("DESKTOP-28FGAI6"));
        assert_eq!(enrolled.facts.os_version.unwrap().to_string(), "10.0.19043.2364");
        assert!(enrolled.facts.identity_certificate_expires_at.is_some());
        let checks = h.fixture.state.lock().unwrap().gate_checks.clone();
        assert_eq!(checks[0].platform, Platform::Windows);
        assert_eq!(checks[0].device_id, None);
        assert_eq!(checks[1].device_id, Some(device_id), "the second enrollment holds its slot");

        // The captured device then manages: its certificate opens a session.
        device.sync().await.unwrap();
    }
}

test_on_both_backends! {
    async fn simulated_desktops_and_mobiles_enrol(db) {
        let h = Harness::start(db).await;
        let desktop = h.enrolled(Edition::Desktop).await;
        let mobile = h.enrolled(Edition::Mobile).await;
        for (device, mode) in [(&desktop, ManagementMode::Desktop), (&mobile, ManagementMode::Mobile)] {
            let id = Harness::device_id(device);
            let enrolled = wait_for(|| h.fixture.enrolled(id)).await;
            assert_eq!(enrolled.management_mode, Some(mode));
            assert!(enrolled.user_id.is_some());
            assert_eq!(enrolled.user_principal_name.as_deref(), Some(format!("user-{}@contoso.com", device.device_id.to_lowercase()).as_str()));
        }
        assert_ne!(
            desktop.certificate().unwrap().serial_number().to_bn().unwrap(),
            mobile.certificate().unwrap().serial_number().to_bn().unwrap()
        );
        let enrollments = |kind: &str, outcome: &str| {
            h.adapter.metrics.enrollments.with_label_values(&[kind, outcome]).get()
        };
        assert_eq!(enrollments("new", "issued"), 2);
        assert_eq!(enrollments("new", "refused"), 0);
    }
}

test_on_both_backends! {
    async fn federated_sign_in_gives_a_token_the_enrollment_accepts(db) {
        let h = Harness::start(db).await;
        set_policy(&h, WindowsAuthPolicy::Federated);
        let upn = h.user("fed@contoso.com");
        let mut device = h.device(Edition::Desktop);
        let discovery = device.enroll(&upn, PASSWORD).await.unwrap();
        assert_eq!(discovery.auth_policy, "Federated");
        assert!(device.enrollment.is_some());

        // A wrong password on the page.
        let mut other = h.device(Edition::Desktop);
        let error = other.enroll(&upn, "wrong").await.unwrap_err();
        assert_eq!(error.fault().unwrap().status, 401);

        // A token the page never issued.
        let page = h.url("/EnrollmentServer/Authenticate");
        let forged = other.enrollment_request(&h.url("/EnrollmentServer/Enrollment.svc"),
            &format!(r#"<wsse:Security><wsse:BinarySecurityToken ValueType="http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken" EncodingType="x">{}</wsse:BinarySecurityToken></wsse:Security>"#, "Zm9yZ2Vk"),
            &mdm_e2e::windows::windows_csr(&openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(), &other.device_id, mdm_e2e::windows::SignatureOid::OiwSha1Rsa).unwrap());
        let (status, _, text) = h.soap("/EnrollmentServer/Enrollment.svc", forged).await;
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("s:Authentication"));

        // The page refuses to post anywhere but back to a Windows app.
        let response = h.http.get(&page).query(&[("appru", "https://evil.example.com"), ("login_hint", "x")]).send().await.unwrap();
        assert_eq!(response.status(), 400);

        // A token expires.
        let token = other.sign_in(&page, &upn, PASSWORD).await.unwrap();
        h.app.clock.advance(chrono::Duration::minutes(20));
        let body = other.enrollment_request(&h.url("/EnrollmentServer/Enrollment.svc"),
            &format!(r#"<wsse:Security><wsse:BinarySecurityToken ValueType="http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken" EncodingType="x">{}</wsse:BinarySecurityToken></wsse:Security>"#,
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &token)),
            &mdm_e2e::windows::windows_csr(&openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(), &other.device_id, mdm_e2e::windows::SignatureOid::OiwSha1Rsa).unwrap());
        let (status, _, text) = h.soap("/EnrollmentServer/Enrollment.svc", body).await;
        assert_eq!(status, 401, "{text}");
    }
}

test_on_both_backends! {
    async fn bulk_enrollment_by_secret_and_by_certificate(db) {
        let h = Harness::start(db).await;
        let secret = h.fixture.state.lock().unwrap().bulk_secret.clone();
        let mut device = h.device(Edition::Desktop);
        device.enroll("package@contoso.com", &secret).await.unwrap();
        let enrolled = wait_for(|| h.fixture.enrolled(Harness::device_id(&device))).await;
        assert_eq!(enrolled.ownership, Ownership::Company);
        assert_eq!(enrolled.user_id, None);
        assert!(device.enrollment.as_ref().unwrap().search_criteria.ends_with("MY%5CSystem"));

        // The Certificate policy: the package's certificate, known by its thumbprint.
        let package = h.enrolled(Edition::Desktop).await;
        let package_cert = package.certificate().unwrap().clone();
        set_policy(&h, WindowsAuthPolicy::Certificate);
        let mut other = h.device(Edition::Desktop);
        let error = other.enroll_with_certificate("package@contoso.com", &package_cert).await.unwrap_err();
        assert_eq!(error.fault().unwrap().subcode, "s:Authentication");
        let thumbprint = hex::encode_upper(openssl::sha::sha1(&package_cert.to_der().unwrap()));
        h.fixture.state.lock().unwrap().bulk_thumbprints.push(thumbprint);
        other.enroll_with_certificate("package@contoso.com", &package_cert).await.unwrap();
        let enrolled = wait_for(|| h.fixture.enrolled(Harness::device_id(&other))).await;
        assert_eq!(enrolled.ownership, Ownership::Company);
    }
}

test_on_both_backends! {
    async fn every_fault_has_its_code(db) {
        let h = Harness::start(db).await;
        let upn = h.user("faults@contoso.com");
        let enroll = "/EnrollmentServer/Enrollment.svc";

        // Malformed, oversized, wrong action.
        let (status, length, text) = h.soap(enroll, "<s:Envelope><oops".into()).await;
        assert_eq!((status, length.is_some()), (400, true));
        assert!(text.contains("s:MessageFormat"), "{text}");
        let (status, _, text) = h.soap(enroll, format!("<a>{}</a>", "x".repeat(600 * 1024))).await;
        assert_eq!(status, 413);
        assert!(text.contains("s:MessageFormat"));
        let (status, _, text) = h.soap(enroll, CAPTURE_POLICY.into()).await;
        assert_eq!(status, 400);
        assert!(text.contains("s:MessageFormat"));
        let deep = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
        let (status, _, _) = h.soap("/EnrollmentServer/Discovery.svc", deep).await;
        assert_eq!(status, 400);

        // No credential at all.
        let device = h.device(Edition::Desktop);
        let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let csr = mdm_e2e::windows::windows_csr(&key, &device.device_id, mdm_e2e::windows::SignatureOid::OiwSha1Rsa).unwrap();
        let body = device.enrollment_request(&h.url(enroll), "<wsse:Security></wsse:Security>", &csr);
        let (status, _, text) = h.soap(enroll, body).await;
        assert_eq!(status, 401);
        assert!(text.contains("a:InvalidSecurity"), "{text}");

        // A CSR whose signature does not verify.
        let security = format!(r#"<wsse:Security><wsse:UsernameToken><wsse:Username>{upn}</wsse:Username><wsse:Password>{PASSWORD}</wsse:Password></wsse:UsernameToken></wsse:Security>"#);
        let mut broken = csr.clone();
        let last = broken.len() - 1;
        broken[last] ^= 0xff;
        let (status, _, text) = h.soap(enroll, device.enrollment_request(&h.url(enroll), &security, &broken)).await;
        assert_eq!(status, 400);
        assert!(text.contains("s:CertificateRequest"), "{text}");

        // A context DeviceID that is not the CSR's.
        let other = mdm_e2e::windows::windows_csr(&key, "0123456789ABCDEF0123456789ABCDEF", mdm_e2e::windows::SignatureOid::OiwSha1Rsa).unwrap();
        let (status, _, text) = h.soap(enroll, device.enrollment_request(&h.url(enroll), &security, &other)).await;
        assert_eq!(status, 400);
        assert!(text.contains("InvalidEnrollmentData"), "{text}");

        // Every refusal of the gate.
        for (denial, subcode, error_type) in [
            (GateDenial::DeviceLimitReached, "s:DeviceCapReached", Some("DeviceCapReached")),
            (GateDenial::UserNotLicensed, "s:UserLicense", Some("UserLicense")),
            (GateDenial::AuthorityDisallowsEnrollment, "s:NotSupported", Some("NotSupported")),
            (GateDenial::PlatformNotAllowed, "s:DeviceNotSupported", Some("DeviceNotSupported")),
            (GateDenial::PersonalDevicesNotAllowed, "s:Authorization", None),
        ] {
            h.fixture.state.lock().unwrap().denial = Some(denial);
            let mut device = h.device(Edition::Desktop);
            let (status, got, got_type) = fault_of(device.enroll(&upn, PASSWORD).await.unwrap_err());
            assert_eq!(status, 403, "{denial:?}");
            assert_eq!(got, subcode);
            assert_eq!(got_type.as_deref(), error_type);
        }
        h.fixture.state.lock().unwrap().denial = None;
        assert_eq!(h.fixture.state.lock().unwrap().signed.len(), 0, "nothing was signed for refused devices");
    }
}

test_on_both_backends! {
    async fn certificates_renew_in_their_window_only(db) {
        let h = Harness::start(db).await;
        let mut device = h.enrolled(Edition::Desktop).await;
        let old = device.certificate().unwrap().clone();
        // Too early: outside the 60-day window of a 365-day certificate.
        let error = device.renew().await.unwrap_err();
        let (status, subcode, error_type) = fault_of(error);
        assert_eq!((status, subcode.as_str(), error_type.as_deref()), (403, "s:NotEligibleToRenew", Some("NotEligibleToRenew")));

        h.app.clock.advance(chrono::Duration::days(320));
        let old_header = device.certificate_header().unwrap();
        device.renew().await.unwrap();
        let new = device.certificate().unwrap().clone();
        assert_ne!(old.to_der().unwrap(), new.to_der().unwrap());
        let facts = wait_for(|| {
            h.fixture.inventory().into_iter().find_map(|r| match r {
                Recorded::Facts(f) if f.facts.identity_certificate_expires_at.is_some() => Some(f),
                _ => None,
            })
        })
        .await;
        assert_eq!(facts.device_id, Harness::device_id(&device));

        // The old certificate still works until the new one is used...
        let device_id = device.device_id.clone();
        let opening = |header: String| {
            let h = &h;
            let device_id = device_id.clone();
            async move {
                let body = format!(r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>77</SessionID><MsgID>1</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{device_id}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#);
                h.http.post(h.url("/ManagementServer/MDM.svc"))
                    .header("Content-Type", "application/vnd.syncml.dm+xml")
                    .header(CERT_HEADER, header)
                    .body(body).send().await.unwrap().status().as_u16()
            }
        };
        assert_eq!(opening(old_header.clone()).await, 200);
        device.sync().await.unwrap();
        // ...and not after.
        assert_eq!(opening(old_header).await, 401);
        assert_eq!(opening(device.certificate_header().unwrap()).await, 200);

        // Past its end a certificate opens nothing.
        h.app.clock.advance(chrono::Duration::days(400));
        assert!(device.sync().await.is_err());
    }
}

test_on_both_backends! {
    async fn a_password_enrols_only_under_the_on_premise_policy(db) {
        let h = Harness::start(db).await;
        let upn = h.user("policy@contoso.com");
        let password = format!(
            r#"<wsse:Security s:mustUnderstand="1"><wsse:UsernameToken u:Id="uuid-1"><wsse:Username>{upn}</wsse:Username><wsse:Password wsse:Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">{PASSWORD}</wsse:Password></wsse:UsernameToken></wsse:Security>"#
        );
        for policy in [WindowsAuthPolicy::Certificate, WindowsAuthPolicy::Federated] {
            set_policy(&h, policy);
            let device = h.device(Edition::Desktop);
            let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
            let csr = mdm_e2e::windows::windows_csr(&key, &device.device_id, mdm_e2e::windows::SignatureOid::OiwSha1Rsa).unwrap();
            let body = device.enrollment_request(&h.url("/EnrollmentServer/Enrollment.svc"), &password, &csr);
            let (status, _, text) = h.soap("/EnrollmentServer/Enrollment.svc", body).await;
            assert_eq!(status, 401, "{policy:?}: {text}");
            assert!(text.contains("s:Authentication"), "{text}");
            assert!(!text.contains("BinarySecurityToken"), "no certificate was issued: {text}");
        }
        // The policy chosen now applies to the next enrollment.
        set_policy(&h, WindowsAuthPolicy::OnPremise);
        let mut device = h.device(Edition::Desktop);
        device.enroll(&upn, PASSWORD).await.unwrap();
        wait_for(|| h.fixture.enrolled(Harness::device_id(&device))).await;
    }
}
