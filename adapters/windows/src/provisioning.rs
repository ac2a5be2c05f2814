//! The wap-provisioningdoc answered with the client certificate: the trust root, the
//! certificate, the w7 APPLICATION (where and how to reach the management server) and the
//! DMClient provider (poll schedule, push).

use crate::config::Config;
use crate::xml::escape_into;

/// Where the client certificate goes on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `MY\User`: user-driven enrollments.
    User,
    /// `MY\System`: device enrollments (bulk, directory join).
    System,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::System => "System",
        }
    }
}

/// What goes into the document.
pub struct Document<'a> {
    pub root_thumbprint: &'a str,
    pub root_base64: &'a str,
    pub client_thumbprint: &'a str,
    pub client_base64: &'a str,
    /// The issued certificate's subject, as `CN=...`.
    pub client_subject: &'a str,
    pub store: Store,
    pub management_url: &'a str,
    /// The device's id in our records (DMClient `EntDMID`).
    pub device_id: &'a str,
    pub user_principal_name: Option<&'a str>,
    /// A renewal only carries the new certificate.
    pub renewal: bool,
}

fn parm(out: &mut String, name: &str, value: &str, datatype: Option<&str>) {
    out.push_str("<parm name=\"");
    out.push_str(name);
    out.push_str("\" value=\"");
    escape_into(out, value);
    out.push('"');
    if let Some(datatype) = datatype {
        out.push_str(" datatype=\"");
        out.push_str(datatype);
        out.push('"');
    }
    out.push_str("/>");
}

/// URL-encodes everything but unreserved characters (the search criteria are a query).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The search criteria that select exactly the issued certificate.
pub fn search_criteria(subject: &str, store: Store) -> String {
    format!(
        "Subject={}&Stores=MY%5C{}",
        url_encode(subject),
        store.name()
    )
}

impl Document<'_> {
    pub fn render(&self, config: &Config) -> String {
        let mut x = String::with_capacity(4096);
        x.push_str(r#"<wap-provisioningdoc version="1.1"><characteristic type="CertificateStore"><characteristic type="Root"><characteristic type="System"><characteristic type=""#);
        escape_into(&mut x, self.root_thumbprint);
        x.push_str("\">");
        parm(&mut x, "EncodedCertificate", self.root_base64, None);
        x.push_str("</characteristic></characteristic></characteristic><characteristic type=\"My\"><characteristic type=\"");
        x.push_str(self.store.name());
        x.push_str("\"><characteristic type=\"");
        escape_into(&mut x, self.client_thumbprint);
        x.push_str("\">");
        parm(&mut x, "EncodedCertificate", self.client_base64, None);
        x.push_str(
            r#"</characteristic><characteristic type="PrivateKeyContainer"/></characteristic>"#,
        );
        if !self.renewal {
            x.push_str(r#"<characteristic type="WSTEP"><characteristic type="Renew">"#);
            parm(&mut x, "ROBOSupport", "true", Some("boolean"));
            parm(
                &mut x,
                "RenewPeriod",
                &config.renewal_window_days.to_string(),
                Some("integer"),
            );
            parm(
                &mut x,
                "RetryInterval",
                &config.renewal_retry_days.to_string(),
                Some("integer"),
            );
            x.push_str("</characteristic></characteristic>");
        }
        x.push_str(r#"</characteristic></characteristic><characteristic type="APPLICATION">"#);
        if self.renewal {
            parm(&mut x, "PROVIDER-ID", &config.provider_id, None);
            x.push_str("</characteristic></wap-provisioningdoc>");
            return x;
        }
        parm(&mut x, "APPID", "w7", None);
        parm(&mut x, "PROVIDER-ID", &config.provider_id, None);
        parm(&mut x, "NAME", &config.provider_name, None);
        parm(&mut x, "ADDR", self.management_url, None);
        parm(&mut x, "CONNRETRYFREQ", "6", None);
        parm(&mut x, "INITIALBACKOFFTIME", "30000", None);
        parm(&mut x, "MAXBACKOFFTIME", "120000", None);
        x.push_str(r#"<parm name="BACKCOMPATRETRYDISABLED"/>"#);
        parm(
            &mut x,
            "DEFAULTENCODING",
            "application/vnd.syncml.dm+xml",
            None,
        );
        parm(
            &mut x,
            "SSLCLIENTCERTSEARCHCRITERIA",
            &search_criteria(self.client_subject, self.store),
            None,
        );
        x.push_str(r#"</characteristic><characteristic type="DMClient"><characteristic type="Provider"><characteristic type=""#);
        escape_into(&mut x, &config.provider_id);
        x.push_str("\">");
        parm(&mut x, "EntDMID", self.device_id, Some("string"));
        if let Some(upn) = self.user_principal_name {
            parm(&mut x, "UPN", upn, Some("string"));
        }
        x.push_str(r#"<characteristic type="Poll">"#);
        let n = |v: u32| v.to_string();
        parm(
            &mut x,
            "IntervalForFirstSetOfRetries",
            &n(config.poll_first_interval_minutes),
            Some("integer"),
        );
        parm(
            &mut x,
            "NumberOfFirstRetries",
            &n(config.poll_first_count),
            Some("integer"),
        );
        parm(
            &mut x,
            "IntervalForSecondSetOfRetries",
            &n(config.poll_second_interval_minutes),
            Some("integer"),
        );
        parm(
            &mut x,
            "NumberOfSecondRetries",
            &n(config.poll_second_count),
            Some("integer"),
        );
        parm(
            &mut x,
            "IntervalForRemainingScheduledRetries",
            &n(config.poll_interval_minutes),
            Some("integer"),
        );
        parm(
            &mut x,
            "NumberOfRemainingScheduledRetries",
            "0",
            Some("integer"),
        );
        parm(&mut x, "PollOnLogin", "true", Some("boolean"));
        parm(&mut x, "AllUsersPollOnFirstLogin", "true", Some("boolean"));
        x.push_str("</characteristic>");
        if let (true, Some(pfn)) = (config.push_enabled(), config.push_pfn.as_deref()) {
            x.push_str(r#"<characteristic type="Push">"#);
            parm(&mut x, "PFN", pfn, Some("string"));
            x.push_str("</characteristic>");
        }
        x.push_str("</characteristic></characteristic></characteristic></wap-provisioningdoc>");
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Document as Xml, Limits};

    fn doc(renewal: bool) -> Document<'static> {
        Document {
            root_thumbprint: "AA11",
            root_base64: "Uk9PVA==",
            client_thumbprint: "BB22",
            client_base64: "Q0xJRU5U",
            client_subject: "CN=B5B954E81FBCB94EB79BD08BE625F4EE",
            store: Store::User,
            management_url: "https://mdm.example.com/ManagementServer/MDM.svc",
            device_id: "0190f7a2-0000-7000-8000-000000000001",
            user_principal_name: Some("demo@example.com"),
            renewal,
        }
    }

    #[test]
    fn selects_exactly_the_issued_certificate() {
        assert_eq!(
            search_criteria("CN=B5B954E8", Store::System),
            "Subject=CN%3DB5B954E8&Stores=MY%5CSystem"
        );
    }

    #[test]
    fn renders_a_well_formed_document() {
        let mut config = Config {
            push_pfn: Some("Contoso.MDM_8wekyb3d8bbwe".into()),
            wns_client_id: Some("ms-app://s-1".into()),
            wns_client_secret: Some(mdm_runtime::config::Secret::new("x")),
            ..Config::default()
        };
        let xml = doc(false).render(&config);
        let parsed = Xml::parse(xml.as_bytes(), &Limits::default()).unwrap();
        let root = parsed.root();
        assert_eq!(root.name(), "wap-provisioningdoc");
        assert!(xml.contains(r#"<parm name="SSLCLIENTCERTSEARCHCRITERIA" value="Subject=CN%3DB5B954E81FBCB94EB79BD08BE625F4EE&amp;Stores=MY%5CUser"/>"#));
        assert!(
            xml.contains(
                r#"<parm name="PFN" value="Contoso.MDM_8wekyb3d8bbwe" datatype="string"/>"#
            )
        );
        assert!(xml.contains(
            r#"<parm name="ADDR" value="https://mdm.example.com/ManagementServer/MDM.svc"/>"#
        ));
        config.push_pfn = None;
        assert!(!doc(false).render(&config).contains("PFN"));
        let renewal = doc(true).render(&config);
        assert!(!renewal.contains("ADDR"));
        assert!(renewal.contains("PROVIDER-ID"));
        Xml::parse(renewal.as_bytes(), &Limits::default()).unwrap();
    }
}
