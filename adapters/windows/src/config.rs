//! `[windows]`: the Windows adapter's configuration.

use mdm_api::internal::enrollment::WindowsAuthPolicy;
use mdm_runtime::config::Secret;
use serde::Deserialize;

use crate::xml::Limits;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The management server's ProviderID on devices (w7 APPLICATION `PROVIDER-ID`, the
    /// DMClient `Provider/<id>` node). Changing it orphans enrolled devices.
    pub provider_id: String,
    /// The name Windows shows for the management server (w7 APPLICATION `NAME`).
    pub provider_name: String,
    /// The HTTP header in which the TLS-terminating ingress forwards the client certificate
    /// of management sessions and certificate renewals (URL-encoded PEM as nginx's
    /// `$ssl_client_escaped_cert`, PEM, or base64 DER). Only set it when the ingress
    /// strips this header from what clients send; unset, the header is ignored.
    pub client_cert_header: Option<String>,
    /// The authentication policy discovery announces for an e-mail address that belongs
    /// to no known user (provisioning packages use arbitrary names).
    pub default_auth_policy: WindowsAuthPolicy,
    /// The smallest RSA key accepted in a certificate request (XCEP `minimalKeyLength`).
    pub min_key_bits: u32,
    /// The certificate lifetime announced in the enrollment policy, in days (the CA
    /// decides the real one).
    pub certificate_validity_days: u32,
    /// Days before the client certificate expires from which the device renews it
    /// (CertificateStore `WSTEP/Renew/RenewPeriod`); renewals earlier are refused.
    pub renewal_window_days: u32,
    /// Days between the device's renewal attempts (`WSTEP/Renew/RetryInterval`).
    pub renewal_retry_days: u32,
    /// Minutes between the first polls after enrollment (DMClient `Poll`).
    pub poll_first_interval_minutes: u32,
    /// How many first polls.
    pub poll_first_count: u32,
    /// Minutes between the second set of polls.
    pub poll_second_interval_minutes: u32,
    /// How many polls in the second set.
    pub poll_second_count: u32,
    /// Minutes between the polls after that, for good (push makes them rare).
    pub poll_interval_minutes: u32,
    /// The largest SyncML or SOAP body accepted, in bytes.
    pub max_message_bytes: usize,
    /// The deepest XML nesting accepted.
    pub max_xml_depth: usize,
    /// The most XML elements accepted in one message.
    pub max_xml_elements: usize,
    /// The most commands the server sends in one message; more follow in the next.
    pub max_commands_per_message: usize,
    /// The most management sessions kept in memory; the least recently used go first.
    pub max_sessions: usize,
    /// Seconds after which an idle management session is forgotten.
    pub session_idle_secs: u64,
    /// The largest object a device may upload in chunks (Alert 1222 / MoreData), bytes.
    pub max_large_object_bytes: usize,
    /// Hours between full inventories (DevDetail, DeviceStatus) of a device.
    pub inventory_interval_hours: u32,
    /// Minutes a token from the Federated sign-in page stays valid.
    pub federated_token_minutes: u32,
    /// Seconds between flushes of the devices seen (one `DevicesSeen` message each).
    pub seen_flush_secs: u64,
    /// Milliseconds between looks for commands queued by other replicas; 0 turns it off
    /// (one replica).
    pub replica_sync_ms: u64,
    /// Writes recorded together in one transaction at most (group commit).
    pub group_commit_batch: usize,
    /// The WNS OAuth token endpoint.
    pub wns_token_url: String,
    /// The WNS client id (the package SID, `ms-app://S-1-15-2-...`).
    pub wns_client_id: Option<String>,
    /// The WNS client secret.
    pub wns_client_secret: Option<Secret>,
    /// The package family name devices register their push channel for (DMClient
    /// `Push/PFN`). Push is on when this, the client id and the secret are set.
    pub push_pfn: Option<String>,
    /// Hosts a device's push channel may point at (the host or a subdomain of it).
    /// Channels elsewhere are ignored, so that a device cannot make the server post to
    /// arbitrary addresses.
    pub wns_channel_hosts: Vec<String>,
    /// Allow `http://` channels and token URL (tests against a local mock only).
    pub wns_allow_http: bool,
    /// Seconds a WNS request may take.
    pub wns_timeout_secs: u64,
    /// The first delay before a failed push is retried, in milliseconds (it doubles).
    pub wns_retry_base_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            provider_id: "MDMServer".into(),
            provider_name: "Device management".into(),
            client_cert_header: None,
            default_auth_policy: WindowsAuthPolicy::OnPremise,
            min_key_bits: 2048,
            certificate_validity_days: 365,
            renewal_window_days: 60,
            renewal_retry_days: 4,
            poll_first_interval_minutes: 3,
            poll_first_count: 5,
            poll_second_interval_minutes: 15,
            poll_second_count: 8,
            poll_interval_minutes: 480,
            max_message_bytes: 512 * 1024,
            max_xml_depth: 24,
            max_xml_elements: 10_000,
            max_commands_per_message: 16,
            max_sessions: 100_000,
            session_idle_secs: 300,
            max_large_object_bytes: 1024 * 1024,
            inventory_interval_hours: 24,
            federated_token_minutes: 15,
            seen_flush_secs: 5,
            replica_sync_ms: 1000,
            group_commit_batch: 512,
            wns_token_url: "https://login.live.com/accesstoken.srf".into(),
            wns_client_id: None,
            wns_client_secret: None,
            push_pfn: None,
            wns_channel_hosts: vec!["notify.windows.com".into()],
            wns_allow_http: false,
            wns_timeout_secs: 10,
            wns_retry_base_ms: 1000,
        }
    }
}

impl Config {
    /// The XML limits of one message.
    pub fn xml_limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_message_bytes,
            max_depth: self.max_xml_depth,
            max_elements: self.max_xml_elements,
            max_attributes: 32,
            max_text: self.max_message_bytes,
        }
    }

    /// Push is configured.
    pub fn push_enabled(&self) -> bool {
        self.wns_client_id.is_some() && self.wns_client_secret.is_some() && self.push_pfn.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_and_secrets_hidden() {
        let config: Config =
            toml::from_str("push_pfn = \"x\"\nwns_client_secret = \"hunter2\"").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let policy: Config = toml::from_str("default_auth_policy = \"Federated\"").unwrap();
        assert_eq!(policy.default_auth_policy, WindowsAuthPolicy::Federated);
    }
}
