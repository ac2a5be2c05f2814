//! `[apple]`: the adapter's configuration section.

use std::path::PathBuf;

use mdm_domain::TenantId;
use serde::Deserialize;

/// The Apple adapter's settings. Every field has a default; see the README for a full
/// example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Base URL of the APNs provider API (Apple's production service by default; point it
    /// at a mock in tests, or at `https://api.sandbox.push.apple.com` for development
    /// push certificates).
    pub apns_url: String,
    /// Extra PEM root certificates the APNs client trusts besides the system's (a mock's
    /// test CA). Apple's own service needs none.
    pub apns_ca_file: Option<PathBuf>,
    /// HTTP/2 connections kept open per push certificate; pushes are multiplexed on them.
    pub apns_connections: usize,
    /// Seconds a push may wait for APNs' answer before it counts as a transient failure.
    pub apns_timeout_secs: u64,
    /// Seconds APNs keeps trying to deliver a push the device could not receive at once
    /// (`apns-expiration`); 0 asks APNs not to store it.
    pub push_expiration_secs: u64,
    /// Attempts for a push that fails transiently (429, 5xx, GOAWAY, timeouts) before it is
    /// given up; the periodic re-push tries again later.
    pub push_max_attempts: u32,
    /// The first retry delay of a failed push in milliseconds; it doubles per attempt,
    /// scaled by a random factor in [0.5, 1].
    pub push_retry_base_ms: u64,
    /// The longest delay between two attempts of one push, in seconds.
    pub push_retry_max_secs: u64,
    /// Seconds after which a device with commands waiting that has not checked in since
    /// its last push is pushed again.
    pub repush_after_secs: u64,
    /// Name of the header in which a TLS-terminating ingress forwards the device's client
    /// certificate: RFC 9440 `Client-Cert` (`:base64 DER:`) or URL-escaped PEM
    /// (nginx's `$ssl_client_escaped_cert`).
    pub client_cert_header: String,
    /// Accept the forwarded client certificate header. Turn on only behind an ingress that
    /// sets (and strips incoming copies of) this header; otherwise devices must sign
    /// every request (Mdm-Signature).
    pub trust_forwarded_client_cert: bool,
    /// Further CAs whose certificates identify devices (an enterprise SCEP or PKI), each
    /// bound to the tenant whose devices it identifies.
    pub trusted_identity_cas: Vec<TrustedCa>,
    /// Issue device identities through the built-in SCEP endpoint (the key stays on the
    /// device). When off, each profile carries a PKCS#12 identity made for it.
    pub scep: bool,
    /// Sign enrollment profiles with this PEM certificate (chain, leaf first) ...
    pub profile_signing_cert_file: Option<PathBuf>,
    /// ... and this PEM private key.
    pub profile_signing_key_file: Option<PathBuf>,
    /// The organisation name shown in enrollment profiles.
    pub organization: String,
    /// The reverse-DNS prefix of profile payload identifiers.
    pub payload_identifier_prefix: String,
    /// Hours an enrollment profile's one-time URL and SCEP challenge stay valid.
    pub profile_lifetime_hours: u64,
    /// Accept macOS user channels (UserAuthenticate and per-user TokenUpdate); when off,
    /// UserAuthenticate is declined with 410 and no per-user capability is announced.
    pub user_channels: bool,
    /// Hours a command from an inventory query or a retire step may wait for the device
    /// before it expires (actions carry their own expiry from dispatch).
    pub command_expiry_hours: u64,
    /// Days command results are kept.
    pub result_retention_days: u64,
    /// Largest command result kept in full, in bytes (larger answers are summarised).
    pub result_max_bytes: usize,
    /// Hours between inventory queries of a device (DeviceInformation, SecurityInfo,
    /// ProfileList, InstalledApplicationList).
    pub inventory_interval_hours: u64,
    /// Commands that may wait in one channel's queue.
    pub max_queue_per_device: usize,
    /// Largest check-in body accepted, in bytes.
    pub max_checkin_bytes: usize,
    /// Largest command-report body accepted, in bytes (app lists of a Mac run large).
    pub max_report_bytes: usize,
    /// Seconds between flushes of the devices seen (one `DevicesSeen` message per flush).
    pub seen_flush_secs: u64,
    /// Writes batched into one transaction at most (command results, deliveries).
    pub batch_max: usize,
    /// The fallback of EraseDevice on Macs: Default, DoNotObliterate,
    /// ObliterateWithWarning or Always.
    pub erase_obliteration_behavior: String,
    /// Send DisallowProximitySetup with EraseDevice on iOS 11.3 and later.
    pub erase_disallow_proximity_setup: bool,
}

/// A CA that issues device identities outside this server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedCa {
    /// PEM file with the CA certificate(s).
    pub file: PathBuf,
    /// The tenant whose devices carry identities from this CA.
    pub tenant_id: TenantId,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            apns_url: "https://api.push.apple.com".into(),
            apns_ca_file: None,
            apns_connections: 2,
            apns_timeout_secs: 10,
            push_expiration_secs: 86_400,
            push_max_attempts: 5,
            push_retry_base_ms: 500,
            push_retry_max_secs: 60,
            repush_after_secs: 900,
            client_cert_header: "Client-Cert".into(),
            trust_forwarded_client_cert: false,
            trusted_identity_cas: Vec::new(),
            scep: true,
            profile_signing_cert_file: None,
            profile_signing_key_file: None,
            organization: "MDM".into(),
            payload_identifier_prefix: "org.mdm".into(),
            profile_lifetime_hours: 24 * 7,
            user_channels: false,
            command_expiry_hours: 24 * 14,
            result_retention_days: 30,
            result_max_bytes: 64 * 1024,
            inventory_interval_hours: 24,
            max_queue_per_device: 500,
            max_checkin_bytes: 64 * 1024,
            max_report_bytes: 4 * 1024 * 1024,
            seen_flush_secs: 5,
            batch_max: 512,
            erase_obliteration_behavior: "Default".into(),
            erase_disallow_proximity_setup: false,
        }
    }
}

impl Config {
    /// Refuses values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !matches!(
            self.erase_obliteration_behavior.as_str(),
            "Default" | "DoNotObliterate" | "ObliterateWithWarning" | "Always"
        ) {
            anyhow::bail!(
                "apple.erase_obliteration_behavior must be Default, DoNotObliterate, ObliterateWithWarning or Always"
            );
        }
        if self.profile_signing_cert_file.is_some() != self.profile_signing_key_file.is_some() {
            anyhow::bail!(
                "apple.profile_signing_cert_file and apple.profile_signing_key_file go together"
            );
        }
        if ::http::HeaderName::from_bytes(self.client_cert_header.as_bytes()).is_err() {
            anyhow::bail!("apple.client_cert_header is not a valid header name");
        }
        if !self.apns_url.starts_with("https://") {
            anyhow::bail!("apple.apns_url must be an https:// URL");
        }
        Ok(())
    }
}
