//! Enrollment profiles (`.mobileconfig`): the MDM payload and the device's identity, a
//! SCEP payload or a PKCS#12 identity made for the profile; signed when a signing
//! certificate is configured.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::{X509, X509NameBuilder, X509Req, X509ReqBuilder};
use plist::{Dictionary, Value};

/// Every MDM access right (Apple's AccessRights bits 1 through 4096).
pub const ALL_ACCESS_RIGHTS: i64 = 8191;

/// The identifier of the top-level profile an enrollment installed: what RemoveProfile
/// removes to end management.
pub fn mdm_profile_identifier(prefix: &str, profile_id: &str) -> String {
    format!("{prefix}.enrollment.{profile_id}")
}

/// How the device gets its identity.
pub enum IdentityPayload {
    Scep {
        url: String,
        challenge: String,
        subject: String,
    },
    Pkcs12 {
        data: Vec<u8>,
        password: String,
    },
}

/// What goes into a profile.
pub struct ProfileSpec<'a> {
    pub profile_id: &'a str,
    pub prefix: &'a str,
    pub organization: &'a str,
    pub server_url: String,
    pub check_in_url: String,
    pub topic: String,
    pub identity: IdentityPayload,
    pub user_channels: bool,
}

fn payload_uuid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// The profile as an XML property list.
pub fn build(spec: &ProfileSpec<'_>) -> Vec<u8> {
    let root_id = mdm_profile_identifier(spec.prefix, spec.profile_id);
    let identity_uuid = payload_uuid();
    let identity = match &spec.identity {
        IdentityPayload::Scep {
            url,
            challenge,
            subject,
        } => {
            let mut content = Dictionary::new();
            content.insert("URL".into(), url.clone().into());
            content.insert("Name".into(), spec.organization.into());
            content.insert(
                "Subject".into(),
                Value::Array(vec![Value::Array(vec![Value::Array(vec![
                    "CN".into(),
                    subject.clone().into(),
                ])])]),
            );
            content.insert("Challenge".into(), challenge.clone().into());
            content.insert("Keysize".into(), 2048.into());
            content.insert("Key Type".into(), "RSA".into());
            // Signing and encryption.
            content.insert("Key Usage".into(), 5.into());
            let mut payload = base_payload(
                "com.apple.security.scep",
                &format!("{root_id}.scep"),
                &identity_uuid,
                "Device identity (SCEP)",
            );
            payload.insert("PayloadContent".into(), Value::Dictionary(content));
            payload
        }
        IdentityPayload::Pkcs12 { data, password } => {
            let mut payload = base_payload(
                "com.apple.security.pkcs12",
                &format!("{root_id}.identity"),
                &identity_uuid,
                "Device identity",
            );
            payload.insert("PayloadContent".into(), Value::Data(data.clone()));
            payload.insert("Password".into(), password.clone().into());
            payload.insert("PayloadCertificateFileName".into(), "identity.p12".into());
            payload
        }
    };
    let mut mdm = base_payload(
        "com.apple.mdm",
        &format!("{root_id}.mdm"),
        &payload_uuid(),
        "Device management",
    );
    mdm.insert("ServerURL".into(), spec.server_url.clone().into());
    mdm.insert("CheckInURL".into(), spec.check_in_url.clone().into());
    mdm.insert("Topic".into(), spec.topic.clone().into());
    mdm.insert("IdentityCertificateUUID".into(), identity_uuid.into());
    mdm.insert("SignMessage".into(), true.into());
    mdm.insert("CheckOutWhenRemoved".into(), true.into());
    mdm.insert("AccessRights".into(), ALL_ACCESS_RIGHTS.into());
    let mut capabilities = vec![Value::from("com.apple.mdm.bootstraptoken")];
    if spec.user_channels {
        capabilities.push("com.apple.mdm.per-user-connections".into());
    }
    mdm.insert("ServerCapabilities".into(), Value::Array(capabilities));
    let mut root = Dictionary::new();
    root.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(identity), Value::Dictionary(mdm)]),
    );
    root.insert(
        "PayloadDisplayName".into(),
        format!("{} device management", spec.organization).into(),
    );
    root.insert("PayloadIdentifier".into(), root_id.into());
    root.insert("PayloadOrganization".into(), spec.organization.into());
    root.insert("PayloadType".into(), "Configuration".into());
    root.insert("PayloadUUID".into(), payload_uuid().into());
    root.insert("PayloadVersion".into(), 1.into());
    root.insert("PayloadScope".into(), "System".into());
    let mut out = Vec::new();
    let _ = Value::Dictionary(root).to_writer_xml(&mut out);
    out
}

fn base_payload(kind: &str, identifier: &str, uuid: &str, name: &str) -> Dictionary {
    let mut payload = Dictionary::new();
    payload.insert("PayloadType".into(), kind.into());
    payload.insert("PayloadIdentifier".into(), identifier.into());
    payload.insert("PayloadUUID".into(), uuid.into());
    payload.insert("PayloadVersion".into(), 1.into());
    payload.insert("PayloadDisplayName".into(), name.into());
    payload
}

/// A key and CSR made for a PKCS#12 identity.
pub fn identity_request(common_name: &str) -> anyhow::Result<(PKey<Private>, X509Req)> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    let name = name.build();
    let mut req = X509ReqBuilder::new()?;
    req.set_subject_name(&name)?;
    req.set_pubkey(&key)?;
    req.sign(&key, MessageDigest::sha256())?;
    Ok((key, req.build()))
}

/// Packs the identity with a password.
pub fn pkcs12(
    key: &PKey<Private>,
    cert: &X509,
    ca: &X509,
    password: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut chain = Stack::new()?;
    chain.push(ca.clone())?;
    let mut builder = Pkcs12::builder();
    builder.name("Device identity");
    builder.pkey(key);
    builder.cert(cert);
    builder.ca(chain);
    // Apple's profile installer reads 3DES-protected PKCS#12 reliably.
    builder.key_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC);
    builder.cert_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC);
    builder.mac_md(MessageDigest::sha1());
    Ok(builder.build2(password)?.to_der()?)
}

/// Signs profiles.
pub struct ProfileSigner {
    cert: X509,
    chain: Stack<X509>,
    key: PKey<Private>,
}

impl ProfileSigner {
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read(cert_file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert_file.display()))?;
        let mut certs = X509::stack_from_pem(&pem)?.into_iter();
        let cert = certs
            .next()
            .ok_or_else(|| anyhow::anyhow!("no certificate in {}", cert_file.display()))?;
        let mut chain = Stack::new()?;
        for extra in certs {
            chain.push(extra)?;
        }
        let key_pem = std::fs::read(key_file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key_file.display()))?;
        let key = PKey::private_key_from_pem(&key_pem)?;
        Ok(Self { cert, chain, key })
    }

    /// The profile wrapped in a CMS signature (the content attached).
    pub fn sign(&self, profile: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(Pkcs7::sign(
            &self.cert,
            &self.key,
            &self.chain,
            profile,
            Pkcs7Flags::BINARY,
        )?
        .to_der()?)
    }
}

/// A random text for passwords and challenges.
pub fn random_secret() -> String {
    mdm_runtime::crypto::random_token::<24>()
}

/// Base64 of DER.
pub fn b64(der: &[u8]) -> String {
    STANDARD.encode(der)
}
