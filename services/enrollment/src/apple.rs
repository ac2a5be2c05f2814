//! The Apple MDM push certificate: parsed from PKCS#12 or PEM, its topic read from the
//! subject's UID attribute, its key sealed at rest.

use chrono::{DateTime, Duration, TimeZone, Utc};
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_api::internal::enrollment::PushCertificate;
use mdm_api::public::{
    ApplePushNotificationCertificate, DataSharingConsent, UploadPushCertificate,
};
use mdm_domain::TenantId;
use mdm_runtime::crypto::SecretBox;
use mdm_store::models::enrollment::ApplePushCertificateRow;
use mdm_store::schema::enr_apple_push_certificates;
use mdm_store::{DbConnection, from_millis, to_millis};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::error::{Error, Result};

/// The `SecretBox` purpose of the sealed key.
const KEY_PURPOSE: &str = "apns-push-certificate-key";
/// Apple's MDM push topics start with this.
const TOPIC_PREFIX: &str = "com.apple.mgmt";

/// What an uploaded certificate holds.
pub struct ParsedCertificate {
    pub topic: String,
    pub serial_number: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub certificate_pem: String,
    pub private_key_pem: Vec<u8>,
}

fn invalid(detail: impl Into<String>) -> Error {
    Error::refused(ErrorCode::InvalidCertificate, detail)
}

/// Reads the certificate and key of an upload: PKCS#12 (base64) with its password, or PEM
/// (the key in `private_key` or after the certificate).
pub fn parse(upload: &UploadPushCertificate) -> Result<ParsedCertificate> {
    let text = upload.certificate.trim();
    let (certificate, key): (X509, PKey<Private>) = if text.starts_with("-----BEGIN") {
        let certificate = X509::from_pem(text.as_bytes())
            .map_err(|_| invalid("the PEM certificate cannot be read"))?;
        let key_pem = upload.private_key.as_deref().unwrap_or(text);
        let key = PKey::private_key_from_pem(key_pem.as_bytes()).map_err(|_| {
            invalid(
                "a PEM certificate needs its private key (privateKey, or after the certificate)",
            )
        })?;
        (certificate, key)
    } else {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.split_whitespace().collect::<String>())
            .map_err(|_| invalid("certificate must be PEM text or base64 of a PKCS#12 file"))?;
        let pkcs12 =
            Pkcs12::from_der(&der).map_err(|_| invalid("the PKCS#12 file cannot be read"))?;
        let parsed = pkcs12
            .parse2(upload.password.as_deref().unwrap_or(""))
            .map_err(|_| invalid("the PKCS#12 password is wrong or the file is damaged"))?;
        match (parsed.cert, parsed.pkey) {
            (Some(certificate), Some(key)) => (certificate, key),
            _ => {
                return Err(invalid(
                    "the PKCS#12 file must hold the certificate and its private key",
                ));
            }
        }
    };
    let public = certificate
        .public_key()
        .map_err(|_| invalid("the certificate has no usable public key"))?;
    if !public.public_eq(&key) {
        return Err(invalid(
            "the private key does not belong to the certificate",
        ));
    }
    let topic = certificate
        .subject_name()
        .entries_by_nid(Nid::USERID)
        .next()
        .and_then(|entry| entry.data().to_string().ok())
        .ok_or_else(|| invalid("the certificate's subject has no UID (topic): is it an Apple MDM push certificate?"))?;
    if !topic.starts_with(TOPIC_PREFIX) {
        return Err(invalid(format!(
            "the topic {topic} is not an MDM push topic (com.apple.mgmt...)"
        )));
    }
    let serial_number = certificate
        .serial_number()
        .to_bn()
        .and_then(|bn| bn.to_hex_str().map(|h| h.to_string()))
        .map_err(|_| invalid("the certificate's serial number cannot be read"))?;
    Ok(ParsedCertificate {
        topic,
        serial_number,
        not_before: asn1_time(certificate.not_before())?,
        not_after: asn1_time(certificate.not_after())?,
        certificate_pem: String::from_utf8(
            certificate
                .to_pem()
                .map_err(|_| invalid("cannot encode the certificate"))?,
        )
        .map_err(|_| invalid("cannot encode the certificate"))?,
        private_key_pem: key
            .private_key_to_pem_pkcs8()
            .map_err(|_| invalid("cannot encode the private key"))?,
    })
}

/// An ASN.1 time as a UTC instant.
pub fn asn1_time(time: &Asn1TimeRef) -> Result<DateTime<Utc>> {
    let epoch = Asn1Time::from_unix(0).map_err(|_| invalid("cannot read a certificate time"))?;
    let diff = epoch
        .diff(time)
        .map_err(|_| invalid("cannot read a certificate time"))?;
    let seconds = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Utc.timestamp_opt(seconds, 0)
        .single()
        .ok_or_else(|| invalid("a certificate time is out of range"))
}

/// The tenant's current certificate row.
pub fn current(
    conn: &mut DbConnection,
    tenant: TenantId,
) -> Result<Option<ApplePushCertificateRow>> {
    Ok(enr_apple_push_certificates::table
        .find(tenant)
        .select(ApplePushCertificateRow::as_select())
        .first(conn)
        .optional()?)
}

/// Replaces the tenant's certificate.
pub fn store(
    conn: &mut DbConnection,
    secrets: &SecretBox,
    tenant: TenantId,
    parsed: &ParsedCertificate,
    consented_by: &str,
    now: DateTime<Utc>,
) -> Result<ApplePushCertificateRow> {
    let sealed = secrets
        .seal(KEY_PURPOSE, &parsed.private_key_pem)
        .map_err(|e| Error::Store(mdm_store::StoreError::Config(e.to_string())))?;
    let row = ApplePushCertificateRow {
        tenant_id: tenant,
        topic: parsed.topic.clone(),
        serial_number: parsed.serial_number.clone(),
        not_before: to_millis(parsed.not_before),
        not_after: to_millis(parsed.not_after),
        certificate_pem: parsed.certificate_pem.clone(),
        sealed_private_key: sealed,
        uploaded_at: to_millis(now),
        consented_by: consented_by.to_owned(),
        consented_at: to_millis(now),
    };
    diesel::delete(enr_apple_push_certificates::table.find(tenant)).execute(conn)?;
    diesel::insert_into(enr_apple_push_certificates::table)
        .values(&row)
        .execute(conn)?;
    Ok(row)
}

/// The certificate with its key, for the Apple adapter's push client.
pub fn with_key(row: &ApplePushCertificateRow, secrets: &SecretBox) -> Result<PushCertificate> {
    let key = secrets
        .open(KEY_PURPOSE, &row.sealed_private_key)
        .map_err(|e| {
            Error::Store(mdm_store::StoreError::Config(format!(
                "the push certificate key cannot be opened: {e}"
            )))
        })?;
    Ok(PushCertificate {
        topic: row.topic.clone(),
        certificate_pem: row.certificate_pem.clone(),
        private_key_pem: String::from_utf8_lossy(&key).into_owned(),
        not_after: from_millis(row.not_after),
    })
}

/// Whole days from `now` until the certificate expires (negative after).
pub fn days_to_expiry(row: &ApplePushCertificateRow, now: DateTime<Utc>) -> i64 {
    (from_millis(row.not_after) - now).num_days()
}

pub fn to_wire(
    row: &ApplePushCertificateRow,
    now: DateTime<Utc>,
    warning_days: u32,
) -> ApplePushNotificationCertificate {
    let days = days_to_expiry(row, now);
    ApplePushNotificationCertificate {
        topic_identifier: row.topic.clone(),
        certificate_serial_number: row.serial_number.clone(),
        expiration_date_time: from_millis(row.not_after),
        last_modified_date_time: from_millis(row.uploaded_at),
        days_to_expiry: days,
        expiring_soon: from_millis(row.not_after) - now < Duration::days(i64::from(warning_days)),
        data_sharing_consent: DataSharingConsent {
            consented_by: row.consented_by.clone(),
            consented_date_time: from_millis(row.consented_at),
        },
    }
}

/// Every tenant's certificate, for the expiry gauge.
pub fn all(conn: &mut DbConnection) -> Result<Vec<ApplePushCertificateRow>> {
    Ok(enr_apple_push_certificates::table
        .select(ApplePushCertificateRow::as_select())
        .load(conn)?)
}
