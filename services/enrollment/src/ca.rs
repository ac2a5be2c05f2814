//! The device-identity CA: created at first start (its key sealed at rest), it signs the
//! CSRs the adapters pass on (Windows WSTEP, Apple SCEP or identity issuance) and keeps
//! every certificate it issued, for revocation and the certificate-expiry clean-up.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_api::internal::enrollment::{SignRequest, SignedCertificate};
use mdm_runtime::crypto::{SecretBox, random_bytes};
use mdm_store::models::enrollment::{CaRow, IssuedCertificateRow};
use mdm_store::schema::{enr_ca, enr_issued_certificates};
use mdm_store::{DbConnection, StoreError, to_millis};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509Req};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

const CA_ID: &str = "device-identity";
const KEY_PURPOSE: &str = "device-identity-ca-key";
const CA_YEARS: i64 = 10;
/// Issued certificates start a little in the past, for devices whose clocks run behind.
const BACKDATE_MINUTES: i64 = 5;
/// The longest common name a certificate subject may carry (RFC 5280 ub-common-name).
const MAX_COMMON_NAME: usize = 64;
/// CSRs larger than this are refused before parsing.
const MAX_CSR_BYTES: usize = 16 * 1024;

/// The CA in memory.
pub struct Ca {
    certificate: X509,
    key: PKey<Private>,
    der: Vec<u8>,
}

impl Ca {
    pub fn certificate_der(&self) -> &[u8] {
        &self.der
    }
}

fn crypto(error: openssl::error::ErrorStack) -> Error {
    Error::Store(StoreError::Config(format!("CA operation failed: {error}")))
}

/// Loads the CA once per process; creates it on first use in a new database.
#[derive(Default)]
pub struct CaCache(OnceCell<Arc<Ca>>);

impl CaCache {
    pub async fn get(
        &self,
        store: &mdm_store::Store,
        secrets: &SecretBox,
        now: DateTime<Utc>,
    ) -> Result<Arc<Ca>> {
        self.0
            .get_or_try_init(|| async {
                // Two processes creating the CA at once: the loser's insert fails on the
                // key, and its second attempt loads the winner's CA.
                let mut attempt = 0;
                let row = loop {
                    let sealer = secrets.clone();
                    match store.write(move |c| load_or_create(c, &sealer, now)).await {
                        Ok(row) => break row,
                        Err(Error::Store(e)) if e.is_unique_violation() && attempt == 0 => {
                            attempt += 1
                        }
                        Err(e) => return Err(e),
                    }
                };
                open(&row, secrets).map(Arc::new)
            })
            .await
            .cloned()
    }
}

/// The stored CA, created (RSA 2048, self-signed, ten years) when there is none.
pub fn load_or_create(
    conn: &mut DbConnection,
    secrets: &SecretBox,
    now: DateTime<Utc>,
) -> Result<CaRow> {
    if let Some(row) = enr_ca::table
        .find(CA_ID)
        .select(CaRow::as_select())
        .first(conn)
        .optional()?
    {
        return Ok(row);
    }
    let key = PKey::from_rsa(Rsa::generate(2048).map_err(crypto)?).map_err(crypto)?;
    let mut name = X509NameBuilder::new().map_err(crypto)?;
    name.append_entry_by_text("O", "mdm").map_err(crypto)?;
    name.append_entry_by_text("CN", "mdm device identity CA")
        .map_err(crypto)?;
    let name = name.build();
    let mut builder = X509Builder::new().map_err(crypto)?;
    builder.set_version(2).map_err(crypto)?;
    let serial = random_serial()?.to_asn1_integer().map_err(crypto)?;
    builder.set_serial_number(&serial).map_err(crypto)?;
    builder.set_subject_name(&name).map_err(crypto)?;
    builder.set_issuer_name(&name).map_err(crypto)?;
    builder.set_pubkey(&key).map_err(crypto)?;
    let not_after = now + Duration::days(365 * CA_YEARS);
    let (start, end) = (
        asn1(now - Duration::minutes(BACKDATE_MINUTES))?,
        asn1(not_after)?,
    );
    builder.set_not_before(&start).map_err(crypto)?;
    builder.set_not_after(&end).map_err(crypto)?;
    builder
        .append_extension(
            BasicConstraints::new()
                .critical()
                .ca()
                .pathlen(0)
                .build()
                .map_err(crypto)?,
        )
        .map_err(crypto)?;
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .digital_signature()
                .build()
                .map_err(crypto)?,
        )
        .map_err(crypto)?;
    let ski = SubjectKeyIdentifier::new()
        .build(&builder.x509v3_context(None, None))
        .map_err(crypto)?;
    builder.append_extension(ski).map_err(crypto)?;
    builder
        .sign(&key, MessageDigest::sha256())
        .map_err(crypto)?;
    let certificate = builder.build();
    let sealed = secrets
        .seal(KEY_PURPOSE, &key.private_key_to_der().map_err(crypto)?)
        .map_err(|e| Error::Store(StoreError::Config(e.to_string())))?;
    let row = CaRow {
        id: CA_ID.to_owned(),
        certificate_der: certificate.to_der().map_err(crypto)?,
        sealed_private_key: sealed,
        not_after: to_millis(not_after),
        created_at: to_millis(now),
    };
    diesel::insert_into(enr_ca::table)
        .values(&row)
        .execute(conn)?;
    tracing::info!("created the device-identity CA");
    Ok(row)
}

/// Opens the stored CA.
pub fn open(row: &CaRow, secrets: &SecretBox) -> Result<Ca> {
    let key_der = secrets
        .open(KEY_PURPOSE, &row.sealed_private_key)
        .map_err(|e| {
            Error::Store(StoreError::Config(format!(
                "the CA key cannot be opened (was secret_key changed?): {e}"
            )))
        })?;
    Ok(Ca {
        certificate: X509::from_der(&row.certificate_der).map_err(crypto)?,
        key: PKey::private_key_from_der(&key_der).map_err(crypto)?,
        der: row.certificate_der.clone(),
    })
}

/// Signs a device's CSR: the CSR's signature is checked (proof that the device holds the
/// key), the subject is the requested common name, the serial is 128 random bits, the
/// certificate is for client authentication only.
pub fn sign(
    ca: &Ca,
    request: &SignRequest,
    validity_days: u32,
    now: DateTime<Utc>,
) -> Result<(IssuedCertificateRow, SignedCertificate)> {
    let refused = |detail: &str| Error::refused(ErrorCode::ValidationFailed, detail.to_owned());
    let csr_der = STANDARD
        .decode(request.csr.trim())
        .map_err(|_| refused("csr must be base64 of a DER PKCS#10 request"))?;
    if csr_der.len() > MAX_CSR_BYTES {
        return Err(refused("the CSR is too large"));
    }
    let csr = X509Req::from_der(&csr_der).map_err(|_| refused("the CSR cannot be parsed"))?;
    let public = csr
        .public_key()
        .map_err(|_| refused("the CSR has no usable public key"))?;
    if !csr.verify(&public).unwrap_or(false) {
        return Err(refused("the CSR's signature does not verify"));
    }
    let common_name = request.common_name.trim();
    if common_name.is_empty() || common_name.len() > MAX_COMMON_NAME || common_name.contains('\0') {
        return Err(refused("commonName must be 1 to 64 characters"));
    }
    let mut subject = X509NameBuilder::new().map_err(crypto)?;
    subject
        .append_entry_by_text("CN", common_name)
        .map_err(crypto)?;
    let subject = subject.build();

    let serial = random_serial()?;
    let not_before = now - Duration::minutes(BACKDATE_MINUTES);
    let not_after = now + Duration::days(i64::from(validity_days.max(1)));
    let mut builder = X509Builder::new().map_err(crypto)?;
    builder.set_version(2).map_err(crypto)?;
    let serial_asn1 = serial.to_asn1_integer().map_err(crypto)?;
    builder.set_serial_number(&serial_asn1).map_err(crypto)?;
    builder.set_subject_name(&subject).map_err(crypto)?;
    builder
        .set_issuer_name(ca.certificate.subject_name())
        .map_err(crypto)?;
    builder.set_pubkey(&public).map_err(crypto)?;
    let (start, end) = (asn1(not_before)?, asn1(not_after)?);
    builder.set_not_before(&start).map_err(crypto)?;
    builder.set_not_after(&end).map_err(crypto)?;
    builder
        .append_extension(BasicConstraints::new().critical().build().map_err(crypto)?)
        .map_err(crypto)?;
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()
                .map_err(crypto)?,
        )
        .map_err(crypto)?;
    builder
        .append_extension(
            ExtendedKeyUsage::new()
                .client_auth()
                .build()
                .map_err(crypto)?,
        )
        .map_err(crypto)?;
    let ski = SubjectKeyIdentifier::new()
        .build(&builder.x509v3_context(Some(&ca.certificate), None))
        .map_err(crypto)?;
    builder.append_extension(ski).map_err(crypto)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&builder.x509v3_context(Some(&ca.certificate), None))
        .map_err(crypto)?;
    builder.append_extension(aki).map_err(crypto)?;
    builder
        .sign(&ca.key, MessageDigest::sha256())
        .map_err(crypto)?;
    let certificate = builder.build();

    let serial_hex = serial.to_hex_str().map_err(crypto)?.to_lowercase();
    let row = IssuedCertificateRow {
        serial: serial_hex.clone(),
        tenant_id: request.tenant_id,
        device_id: request.device_id,
        enrollment_id: request.enrollment_id,
        subject: format!("CN={common_name}"),
        not_before: to_millis(not_before),
        not_after: to_millis(not_after),
        issued_at: to_millis(now),
        revoked_at: None,
        revocation_reason: None,
    };
    let signed = SignedCertificate {
        serial: serial_hex,
        certificate: STANDARD.encode(certificate.to_der().map_err(crypto)?),
        ca_certificate: STANDARD.encode(&ca.der),
        not_before,
        not_after,
    };
    Ok((row, signed))
}

pub fn record(conn: &mut DbConnection, row: &IssuedCertificateRow) -> Result<()> {
    diesel::insert_into(enr_issued_certificates::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Revokes an issued certificate; a second revocation keeps the first one's time.
pub fn revoke(
    conn: &mut DbConnection,
    serial: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<IssuedCertificateRow> {
    let serial = serial.trim().to_lowercase();
    let mut row = enr_issued_certificates::table
        .find(&serial)
        .select(IssuedCertificateRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("certificate"))?;
    if row.revoked_at.is_none() {
        row.revoked_at = Some(to_millis(now));
        row.revocation_reason = Some(reason.chars().take(200).collect());
        diesel::update(enr_issued_certificates::table.find(&serial))
            .set((
                enr_issued_certificates::revoked_at.eq(row.revoked_at),
                enr_issued_certificates::revocation_reason.eq(&row.revocation_reason),
            ))
            .execute(conn)?;
    }
    Ok(row)
}

fn random_serial() -> Result<BigNum> {
    let mut bytes = random_bytes::<16>();
    // Positive, and never with a leading zero byte (some parsers dislike it).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    BigNum::from_slice(&bytes).map_err(crypto)
}

fn asn1(time: DateTime<Utc>) -> Result<Asn1Time> {
    Asn1Time::from_unix(time.timestamp()).map_err(crypto)
}
