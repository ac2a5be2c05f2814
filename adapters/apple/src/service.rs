//! The adapter's state and its device-facing logic: check-ins and the command endpoint.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mdm_api::internal::dispatch::ActionReport;
use mdm_api::internal::enrollment::GateCheck;
use mdm_api::internal::inventory::{DeviceEnrolled, DeviceFacts, DeviceUnenrolled, UnenrollReason};
use mdm_domain::{ActionId, ActionState, DeviceId, EnrollmentId, OsVersion, Ownership, Platform};
use mdm_runtime::SharedClock;
use mdm_runtime::crypto::SecretBox;
use mdm_runtime::group_commit::GroupCommit;
use mdm_runtime::outbox::Outbox;
use mdm_store::models::apple::{CommandResultRow, DeviceInfoRow, EnrollmentRow, NewCommandRow};
use mdm_store::{DbConnection, Store, StoreError, to_millis};
use tokio::sync::mpsc;

use crate::auth::{Authenticator, DeviceCert, Issuer};
use crate::batch::{Batcher, FollowUp};
use crate::config::Config;
use crate::error::DeviceError;
use crate::metrics::AppleMetrics;
use crate::protocol::command::{self, Command};
use crate::protocol::{self, Authenticate, ChannelId, CheckIn, Status, TokenUpdate};
use crate::push::PushRequest;
use crate::seen::Seen;
use crate::state::{self, Channel, ChannelRef, Channels, Phase, Purpose, PushTarget, Queued};
use crate::upstream::Upstream;
use crate::{followup, store};

/// `SecretBox` purposes of the secrets this adapter keeps.
pub const UNLOCK_TOKEN_PURPOSE: &str = "apple-unlock-token";
pub const BOOTSTRAP_TOKEN_PURPOSE: &str = "apple-bootstrap-token";

/// What a device endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 with no body: nothing to do.
    Empty,
    /// 200 with a property list (a command, or a check-in answer).
    Plist(Bytes),
    /// 200 with JSON (declarative management).
    Json(Vec<u8>),
}

/// The Apple adapter.
pub struct Apple {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: SharedClock,
    pub secrets: SecretBox,
    pub outbox: Outbox,
    pub public_url: String,
    pub auth: Authenticator,
    pub channels: Channels,
    pub batch: Batcher,
    pub group: GroupCommit,
    pub upstream: Upstream,
    pub pushes: mpsc::Sender<PushRequest>,
    pub seen: Seen,
    pub metrics: AppleMetrics,
    pub active: followup::ActiveTracker,
    /// The SCEP registration authority, loaded or made on first use.
    pub ra: tokio::sync::OnceCell<Arc<crate::scep::Ra>>,
    /// Signs enrollment profiles, when configured.
    pub signer: Option<crate::profile::ProfileSigner>,
}

impl Apple {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn now_millis(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Makes sure the device-identity CA is trusted (fetched once from enrollment).
    pub async fn ensure_ca(&self) {
        if self.auth.has_our_ca() {
            return;
        }
        match self.upstream.ca_certificate().await {
            Ok(ca) => {
                if let Err(error) = self.auth.set_our_ca(ca) {
                    tracing::warn!(%error, "the device-identity CA cannot be used");
                }
            }
            Err(error) => tracing::warn!(%error, "the device-identity CA is not available yet"),
        }
    }

    async fn authenticate(
        &self,
        headers: &actix_web::http::header::HeaderMap,
        body: &[u8],
    ) -> Result<Arc<DeviceCert>, DeviceError> {
        match self.auth.authenticate(headers, body) {
            Ok(cert) => Ok(cert),
            Err(crate::auth::AuthError::Untrusted) if !self.auth.has_our_ca() => {
                self.ensure_ca().await;
                Ok(self.auth.authenticate(headers, body)?)
            }
            Err(error) => {
                self.metrics.auth_failures.inc();
                Err(error.into())
            }
        }
    }

    // ---- loading channels ---------------------------------------------------------

    /// Loads a channel row and its queue from the database into memory.
    async fn load(&self, row: EnrollmentRow) -> Result<ChannelRef, DeviceError> {
        let key = row.channel_id.clone();
        let (commands, info) = self
            .store
            .read(move |c| {
                Ok::<_, StoreError>((store::commands_of(c, &key)?, store::device_info(c, &key)?))
            })
            .await?;
        let os = info
            .and_then(|i| i.os_version)
            .and_then(|v| v.parse::<OsVersion>().ok());
        Ok(self
            .channels
            .insert_loaded(Channel::from_row(&row, os, commands)))
    }

    /// The channel with this key, from memory or the database.
    pub async fn channel(&self, key: &str) -> Result<Option<ChannelRef>, DeviceError> {
        if let Some(channel) = self.channels.get(key) {
            return Ok(Some(channel));
        }
        let owned = key.to_owned();
        let row = self
            .store
            .read(move |c| store::enrollment(c, &owned))
            .await?;
        match row {
            Some(row) => Ok(Some(self.load(row).await?)),
            None => Ok(None),
        }
    }

    /// The device channel of a device, from memory or the database.
    pub async fn device_channel(
        &self,
        device: DeviceId,
    ) -> Result<Option<ChannelRef>, DeviceError> {
        if let Some(channel) = self.channels.by_device(device) {
            return Ok(Some(channel));
        }
        let rows = self
            .store
            .read(move |c| store::enrollments_of_device(c, device))
            .await?;
        match rows.into_iter().find(|r| r.channel_id == r.device_channel) {
            Some(row) => Ok(Some(self.load(row).await?)),
            None => Ok(None),
        }
    }

    /// The device channel bound to a certificate.
    async fn bound_channel(&self, cert: &DeviceCert) -> Result<Option<ChannelRef>, DeviceError> {
        if let Some(channel) = self.channels.by_cert(&cert.hash) {
            return Ok(Some(channel));
        }
        let hash = cert.hash.to_vec();
        let row = self
            .store
            .read(move |c| store::enrollment_by_cert(c, &hash))
            .await?;
        match row {
            Some(row) => Ok(Some(self.load(row).await?)),
            None => Ok(None),
        }
    }

    /// The channel a message is for, after checking the certificate is bound to its
    /// device. A renewed certificate (same subject and issuer as the bound one, newer) is
    /// bound in place of the old one.
    async fn resolve(&self, cert: &DeviceCert, id: &ChannelId) -> Result<ChannelRef, DeviceError> {
        let device = match self.bound_channel(cert).await? {
            Some(device) => device,
            None => self.rebind(cert, id).await?,
        };
        {
            let device = state::lock(&device);
            if *device.key != id.device {
                return Err(DeviceError::NotBound);
            }
        }
        if !id.is_user_channel() {
            return Ok(device);
        }
        let key = id.key();
        match self.channel(&key).await? {
            Some(user) if *state::lock(&user).device_channel == id.device => Ok(user),
            Some(_) => Err(DeviceError::NotBound),
            None => Err(DeviceError::Unrecognized),
        }
    }

    /// Binds a renewed identity certificate to the device channel named in the message.
    async fn rebind(&self, cert: &DeviceCert, id: &ChannelId) -> Result<ChannelRef, DeviceError> {
        let key = id.device.clone();
        let Some(channel) = self.channel(&key).await? else {
            return Err(DeviceError::NotBound);
        };
        let (old_hash, old_subject, tenant) = {
            let c = state::lock(&channel);
            (c.cert_hash, None::<String>, c.tenant_id)
        };
        let _ = old_subject;
        let owned = key.clone();
        let row = self
            .store
            .read(move |c| store::enrollment(c, &owned))
            .await?
            .ok_or(DeviceError::NotBound)?;
        let same_subject =
            row.cert_subject.as_deref() == Some(cert.subject.as_str()) && !cert.subject.is_empty();
        let newer = row.cert_not_after.is_some_and(|old| cert.not_after > old);
        let issuer_fits = match cert.issuer {
            Issuer::Ours => true,
            Issuer::Enterprise(t) => t == tenant,
        };
        if !(same_subject && newer && issuer_fits) {
            return Err(DeviceError::NotBound);
        }
        let hash = cert.hash.to_vec();
        let now = self.now_millis();
        let not_after = cert.not_after;
        let facts_device = row.device_id;
        let outbox = self.outbox.clone();
        self.group
            .write(move |c| {
                store::clear_cert(c, &hash, &key)?;
                diesel::update(mdm_store::schema::apl_enrollments::table.find(&key))
                    .set((
                        mdm_store::schema::apl_enrollments::cert_hash.eq(Some(hash.clone())),
                        mdm_store::schema::apl_enrollments::cert_not_after.eq(Some(not_after)),
                        mdm_store::schema::apl_enrollments::updated_at.eq(now),
                    ))
                    .execute(c)?;
                let message = mdm_api::internal::inventory::DeviceFactsReported {
                    device_id: facts_device,
                    facts: DeviceFacts {
                        identity_certificate_expires_at: Some(mdm_store::from_millis(not_after)),
                        ..Default::default()
                    },
                    at: mdm_store::from_millis(now),
                };
                outbox.enqueue(
                    c,
                    &format!("apple:renewed:{}", hex::encode(&hash)),
                    Some(&facts_device.to_string()),
                    &message,
                )?;
                Ok(())
            })
            .await?;
        self.channels
            .bind_cert(old_hash, cert.hash, id.device.as_str().into());
        state::lock(&channel).cert_hash = Some(cert.hash);
        tracing::info!(channel = %id.device, "renewed identity certificate bound");
        Ok(channel)
    }

    // ---- check-in -----------------------------------------------------------------

    /// Handles a check-in message.
    pub async fn check_in(
        &self,
        headers: &actix_web::http::header::HeaderMap,
        body: &[u8],
    ) -> Result<Reply, DeviceError> {
        let cert = self.authenticate(headers, body).await?;
        let message = protocol::parse_check_in(body)?;
        self.metrics
            .check_ins
            .with_label_values(&[kind_name(&message.message)])
            .inc();
        match message.message {
            CheckIn::Authenticate(auth) => {
                self.authenticate_device(&cert, &message.channel, message.topic, auth)
                    .await
            }
            CheckIn::TokenUpdate(update) => {
                self.token_update(&cert, &message.channel, message.topic, update)
                    .await
            }
            CheckIn::CheckOut => self.check_out(&cert, &message.channel).await,
            CheckIn::SetBootstrapToken { token } => {
                self.set_bootstrap_token(&cert, &message.channel, token)
                    .await
            }
            CheckIn::GetBootstrapToken => self.get_bootstrap_token(&cert, &message.channel).await,
            CheckIn::UserAuthenticate { digest_response } => {
                if !self.config.user_channels {
                    return Err(DeviceError::UserChannelsDisabled);
                }
                self.resolve(
                    &cert,
                    &ChannelId {
                        user: None,
                        ..message.channel.clone()
                    },
                )
                .await?;
                Ok(match digest_response {
                    // No directory password to check: an empty challenge lets the user
                    // channel proceed to its TokenUpdate.
                    None => {
                        Reply::Plist(plist_dict(&[("DigestChallenge", plist::Value::from(""))]))
                    }
                    Some(_) => Reply::Empty,
                })
            }
            CheckIn::DeclarativeManagement { endpoint, .. } => {
                let channel = self.resolve(&cert, &message.channel).await?;
                if state::lock(&channel).phase == Phase::Ended {
                    return Err(DeviceError::Unrecognized);
                }
                declarative_management(&endpoint)
            }
            CheckIn::GetToken { .. } => {
                self.resolve(&cert, &message.channel).await?;
                Err(DeviceError::Unsupported)
            }
        }
    }

    async fn authenticate_device(
        &self,
        cert: &Arc<DeviceCert>,
        id: &ChannelId,
        topic: Option<String>,
        auth: Authenticate,
    ) -> Result<Reply, DeviceError> {
        if id.is_user_channel() {
            return Err(protocol::ProtocolError::Invalid("Authenticate on a user channel").into());
        }
        let topic = topic.ok_or(protocol::ProtocolError::Missing("Topic"))?;
        let key = id.device.clone();
        let hash = cert.hash.to_vec();
        // What the store knows: the identity's profile, this channel's row, and who holds
        // the certificate now.
        let (identity, existing, holder) = self
            .store
            .read({
                let key = key.clone();
                move |c| {
                    let identity = store::identity(c, &hash)?;
                    let profile = match &identity {
                        Some(identity) => store::profile(c, identity.profile_id)?,
                        None => None,
                    };
                    Ok::<_, StoreError>((
                        profile,
                        store::enrollment(c, &key)?,
                        store::enrollment_by_cert(c, &hash)?,
                    ))
                }
            })
            .await?;
        if let Some(holder) = &holder
            && holder.channel_id != key
        {
            tracing::warn!(channel = %key, "Authenticate with a certificate bound to another device");
            return Err(DeviceError::NotBound);
        }
        let (tenant, profile) = match (cert.issuer, identity) {
            (Issuer::Enterprise(tenant), _) => (tenant, None),
            (Issuer::Ours, Some(profile)) => (profile.tenant_id, Some(profile)),
            // Our CA but not issued through a profile of this adapter: only a device
            // enrolled before may authenticate again with it.
            (Issuer::Ours, None) => match &existing {
                Some(row) => (row.tenant_id, None),
                None => return Err(DeviceError::NotBound),
            },
        };
        let existing = existing.filter(|row| row.tenant_id == tenant);
        // A device that names another topic than the push certificate's could never be
        // pushed: refused, like the gate's misfits, rather than enrolled unreachable.
        let push = self
            .upstream
            .push_certificate(tenant)
            .await
            .map_err(|e| DeviceError::Upstream(e.to_string()))?;
        if let Some(push) = push.filter(|push| push.topic != topic) {
            self.metrics.enrollments_refused.inc();
            tracing::warn!(channel = %key, device_topic = %topic, certificate_topic = %push.topic,
                "enrollment refused: the device's Topic is not the push certificate's");
            return Err(DeviceError::Refused("push_topic_mismatch".into()));
        }
        let platform = infer_platform(
            &auth,
            profile.as_ref().and_then(|p| p.platform),
            existing.as_ref().map(|r| r.platform),
        );
        let ownership = profile
            .as_ref()
            .map(|p| p.ownership)
            .or(existing.as_ref().map(|r| r.ownership))
            .unwrap_or(Ownership::Company);
        let user_id = profile
            .as_ref()
            .and_then(|p| p.user_id)
            .or(existing.as_ref().and_then(|r| r.user_id));
        let device_id = existing
            .as_ref()
            .map(|r| r.device_id)
            .or(profile.as_ref().map(|p| p.device_id))
            .unwrap_or_default();
        let decision = self
            .upstream
            .gate(GateCheck {
                tenant_id: tenant,
                platform,
                ownership,
                management_mode: None,
                user_id,
                device_id: existing.as_ref().map(|r| r.device_id),
            })
            .await
            .map_err(DeviceError::Upstream)?;
        if !decision.allowed {
            self.metrics.enrollments_refused.inc();
            let why = decision
                .denial
                .map(|d| d.as_str().to_owned())
                .unwrap_or_else(|| "refused".into());
            tracing::info!(channel = %key, reason = %why, "enrollment refused by the gate");
            return Err(DeviceError::Refused(why));
        }
        let now = self.now_millis();
        let row = EnrollmentRow {
            channel_id: key.clone(),
            device_channel: key.clone(),
            user_enrollment: id.user_enrollment,
            tenant_id: tenant,
            device_id,
            enrollment_id: EnrollmentId::new(),
            profile_id: profile
                .as_ref()
                .map(|p| p.id)
                .or(existing.as_ref().and_then(|r| r.profile_id)),
            platform,
            ownership,
            user_id,
            user_principal_name: decision.user_principal_name,
            state: "authenticated".into(),
            cert_hash: Some(cert.hash.to_vec()),
            cert_subject: Some(cert.subject.clone()),
            cert_not_after: Some(cert.not_after),
            topic,
            push_token: None,
            push_magic: None,
            push_state: "none".into(),
            push_error: None,
            sealed_unlock_token: existing
                .as_ref()
                .and_then(|r| r.sealed_unlock_token.clone()),
            sealed_bootstrap_token: existing
                .as_ref()
                .and_then(|r| r.sealed_bootstrap_token.clone()),
            user_guid: None,
            user_short_name: None,
            awaiting_configuration: false,
            authenticated_at: now,
            enrolled_at: None,
            ended_at: None,
            inventory_at: None,
            updated_at: now,
        };
        let info = DeviceInfoRow {
            channel_id: key.clone(),
            udid: (!id.user_enrollment).then(|| key.clone()),
            serial_number: auth.serial_number.clone(),
            imei: auth.imei.clone(),
            meid: auth.meid.clone(),
            model: auth.model.clone(),
            model_name: auth.model_name.clone(),
            product_name: auth.product_name.clone(),
            device_name: auth.device_name.clone(),
            os_version: auth.os_version.clone(),
            build_version: auth.build_version.clone(),
            updated_at: now,
            ..Default::default()
        };
        let commands = {
            let row = row.clone();
            self.group
                .write(move |c| {
                    store::upsert_enrollment(c, &row)?;
                    store::upsert_device_info(c, &info)?;
                    store::commands_of(c, &row.channel_id)
                })
                .await?
        };
        let os = auth.os_version.as_deref().and_then(|v| v.parse().ok());
        self.channels.replace(Channel::from_row(&row, os, commands));
        self.metrics.authenticated.inc();
        tracing::info!(channel = %key, device = %device_id, %platform, "device authenticated");
        Ok(Reply::Empty)
    }

    async fn token_update(
        &self,
        cert: &Arc<DeviceCert>,
        id: &ChannelId,
        topic: Option<String>,
        update: TokenUpdate,
    ) -> Result<Reply, DeviceError> {
        let topic = topic.ok_or(protocol::ProtocolError::Missing("Topic"))?;
        if id.is_user_channel() {
            return self.user_token_update(cert, id, topic, update).await;
        }
        let channel = self.resolve(cert, id).await?;
        let (phase, device_id, tenant_id, enrollment_id, platform, ownership, user_id) = {
            let c = state::lock(&channel);
            (
                c.phase,
                c.device_id,
                c.tenant_id,
                c.enrollment_id,
                c.platform,
                c.ownership,
                c.user_id,
            )
        };
        if phase == Phase::Ended {
            return Err(DeviceError::Unrecognized);
        }
        let first = phase == Phase::Authenticated;
        let now = self.now();
        let now_ms = to_millis(now);
        let sealed_unlock = match &update.unlock_token {
            Some(token) => Some(
                self.secrets
                    .seal(UNLOCK_TOKEN_PURPOSE, token)
                    .map_err(|e| DeviceError::Store(StoreError::Config(e.to_string())))?,
            ),
            None => None,
        };
        let inventory = if first {
            self.inventory_commands(&id.device, platform, now_ms)
        } else {
            Vec::new()
        };
        let key = id.device.clone();
        let outbox = self.outbox.clone();
        let token = update.token.clone();
        let magic = update.push_magic.clone();
        let awaiting = update.awaiting_configuration;
        let cert_expiry = cert.not_after;
        let has_unlock = sealed_unlock.is_some();
        let topic_for_row = topic.clone();
        let enqueued = self
            .group
            .write(move |c| {
                use diesel::prelude::*;
                use mdm_store::schema::apl_enrollments as e;
                let mut changes = diesel::update(e::table.find(&key))
                    .set((
                        e::push_token.eq(Some(token)),
                        e::push_magic.eq(Some(magic)),
                        e::topic.eq(&topic_for_row),
                        e::push_state.eq("ok"),
                        e::push_error.eq(None::<String>),
                        e::awaiting_configuration.eq(awaiting),
                        e::state.eq("enrolled"),
                        e::updated_at.eq(now_ms),
                    ))
                    .execute(c)?;
                if let Some(sealed) = sealed_unlock {
                    changes += diesel::update(e::table.find(&key))
                        .set(e::sealed_unlock_token.eq(Some(sealed)))
                        .execute(c)?;
                }
                let _ = changes;
                if !first {
                    return Ok(Vec::new());
                }
                diesel::update(e::table.find(&key))
                    .set((
                        e::enrolled_at.eq(Some(now_ms)),
                        e::inventory_at.eq(Some(now_ms)),
                    ))
                    .execute(c)?;
                let row = store::enrollment(c, &key)?
                    .ok_or(StoreError::Query(diesel::result::Error::NotFound))?;
                let info = store::device_info(c, &key)?.unwrap_or_default();
                let message = DeviceEnrolled {
                    device_id,
                    tenant_id,
                    enrollment_id,
                    platform,
                    ownership,
                    management_mode: None,
                    user_id,
                    user_principal_name: row.user_principal_name.clone(),
                    directory_joined: false,
                    facts: facts_of(&info, Some(cert_expiry)),
                    enrolled_at: now,
                };
                outbox.enqueue(
                    c,
                    &format!("apple:enrolled:{enrollment_id}"),
                    Some(&device_id.to_string()),
                    &message,
                )?;
                store::insert_commands(c, &inventory)
            })
            .await?;
        let push = {
            let mut c = state::lock(&channel);
            c.phase = Phase::Enrolled;
            c.push = Some(PushTarget {
                token: update.token,
                magic: update.push_magic,
                topic,
            });
            c.push_state = "ok".into();
            if has_unlock {
                c.has_unlock_token = true;
            }
            for row in enqueued {
                c.queue.push(Queued::from_row(row));
            }
            first && !c.queue.is_empty()
        };
        if first {
            self.metrics.enrolled.inc();
            tracing::info!(channel = %id.device, device = %device_id, "device enrolled");
        }
        if push {
            self.push(&channel).await;
        }
        Ok(Reply::Empty)
    }

    async fn user_token_update(
        &self,
        cert: &Arc<DeviceCert>,
        id: &ChannelId,
        topic: String,
        update: TokenUpdate,
    ) -> Result<Reply, DeviceError> {
        if !self.config.user_channels {
            return Err(DeviceError::UserChannelsDisabled);
        }
        let device = self
            .resolve(
                cert,
                &ChannelId {
                    user: None,
                    ..id.clone()
                },
            )
            .await?;
        let (tenant_id, device_id, platform, ownership, user_id, phase) = {
            let d = state::lock(&device);
            (
                d.tenant_id,
                d.device_id,
                d.platform,
                d.ownership,
                d.user_id,
                d.phase,
            )
        };
        if phase != Phase::Enrolled {
            return Err(DeviceError::Unrecognized);
        }
        let now = self.now_millis();
        let row = EnrollmentRow {
            channel_id: id.key(),
            device_channel: id.device.clone(),
            user_enrollment: id.user_enrollment,
            tenant_id,
            device_id,
            enrollment_id: EnrollmentId::new(),
            profile_id: None,
            platform,
            ownership,
            user_id,
            user_principal_name: None,
            state: "enrolled".into(),
            cert_hash: None,
            cert_subject: None,
            cert_not_after: None,
            topic,
            push_token: Some(update.token),
            push_magic: Some(update.push_magic),
            push_state: "ok".into(),
            push_error: None,
            sealed_unlock_token: None,
            sealed_bootstrap_token: None,
            user_guid: id.user.clone(),
            user_short_name: update.user_short_name,
            awaiting_configuration: update.awaiting_configuration,
            authenticated_at: now,
            enrolled_at: Some(now),
            ended_at: None,
            inventory_at: None,
            updated_at: now,
        };
        let commands = {
            let row = row.clone();
            self.group
                .write(move |c| {
                    store::upsert_enrollment(c, &row)?;
                    store::commands_of(c, &row.channel_id)
                })
                .await?
        };
        self.channels
            .replace(Channel::from_row(&row, None, commands));
        Ok(Reply::Empty)
    }

    async fn check_out(
        &self,
        cert: &Arc<DeviceCert>,
        id: &ChannelId,
    ) -> Result<Reply, DeviceError> {
        let channel = self.resolve(cert, id).await?;
        let (device_id, phase, keys) = {
            let c = state::lock(&channel);
            (c.device_id, c.phase, vec![c.key.to_string()])
        };
        if phase == Phase::Ended {
            return Ok(Reply::Empty);
        }
        let device_channel = id.device.clone();
        let user_channel = id.is_user_channel();
        let now = self.now();
        let outbox = self.outbox.clone();
        let ended = self
            .group
            .write(move |c| {
                followup::end_enrollment(
                    c,
                    &outbox,
                    &device_channel,
                    user_channel.then_some(&keys[0]),
                    "checkedOut",
                    now,
                    EndCause::CheckOut(device_id),
                )
            })
            .await?;
        self.apply_ended(&ended);
        tracing::info!(channel = %id.key(), "device checked out");
        Ok(Reply::Empty)
    }

    /// Marks ended channels in memory and empties their queues.
    pub fn apply_ended(&self, channel_keys: &[String]) {
        for key in channel_keys {
            if let Some(channel) = self.channels.get(key) {
                let mut c = state::lock(&channel);
                c.phase = Phase::Ended;
                c.queue.drain();
                c.push = None;
                if let Some(hash) = c.cert_hash.take() {
                    self.channels.forget_cert(&hash);
                }
            }
        }
    }

    async fn set_bootstrap_token(
        &self,
        cert: &Arc<DeviceCert>,
        id: &ChannelId,
        token: Option<Vec<u8>>,
    ) -> Result<Reply, DeviceError> {
        let channel = self.resolve(cert, id).await?;
        if state::lock(&channel).phase == Phase::Ended {
            return Err(DeviceError::Unrecognized);
        }
        let sealed = match token {
            Some(token) => Some(
                self.secrets
                    .seal(BOOTSTRAP_TOKEN_PURPOSE, &token)
                    .map_err(|e| DeviceError::Store(StoreError::Config(e.to_string())))?,
            ),
            None => None,
        };
        let key = id.device.clone();
        let now = self.now_millis();
        self.group
            .write(move |c| {
                use diesel::prelude::*;
                use mdm_store::schema::apl_enrollments as e;
                diesel::update(e::table.find(&key))
                    .set((e::sealed_bootstrap_token.eq(sealed), e::updated_at.eq(now)))
                    .execute(c)?;
                Ok(())
            })
            .await?;
        Ok(Reply::Empty)
    }

    async fn get_bootstrap_token(
        &self,
        cert: &Arc<DeviceCert>,
        id: &ChannelId,
    ) -> Result<Reply, DeviceError> {
        let channel = self.resolve(cert, id).await?;
        if state::lock(&channel).phase == Phase::Ended {
            return Err(DeviceError::Unrecognized);
        }
        let key = id.device.clone();
        let row = self.store.read(move |c| store::enrollment(c, &key)).await?;
        let token = match row.and_then(|r| r.sealed_bootstrap_token) {
            Some(sealed) => Some(
                self.secrets
                    .open(BOOTSTRAP_TOKEN_PURPOSE, &sealed)
                    .map_err(|e| DeviceError::Store(StoreError::Config(e.to_string())))?,
            ),
            None => None,
        };
        Ok(Reply::Plist(match token {
            Some(token) => plist_dict(&[("BootstrapToken", plist::Value::Data(token))]),
            None => plist_dict(&[]),
        }))
    }

    // ---- the command endpoint -------------------------------------------------------

    /// Handles a command report and answers the next command (or nothing).
    pub async fn report(
        &self,
        headers: &actix_web::http::header::HeaderMap,
        body: &[u8],
    ) -> Result<Reply, DeviceError> {
        let cert = self.authenticate(headers, body).await?;
        let report = protocol::parse_report(body)?;
        let channel = self.resolve(&cert, &report.channel).await?;
        let now = self.now_millis();
        let device = {
            let mut c = state::lock(&channel);
            if c.phase != Phase::Enrolled {
                return Err(DeviceError::Unrecognized);
            }
            c.last_seen_at = now;
            if report.status == Status::Idle {
                c.queue.new_exchange();
            }
            c.device_id
        };
        self.seen.touch(device, now);
        self.metrics
            .reports
            .with_label_values(&[report.status.as_str()])
            .inc();
        match report.status {
            Status::Idle => {}
            Status::NotNow => {
                let uuid = report.command_uuid.clone().unwrap_or_default();
                let known = {
                    let mut c = state::lock(&channel);
                    let known = c.queue.get(&uuid).map(|q| q.uuid.clone());
                    if known.is_some() {
                        c.queue.mark_not_now(&uuid);
                    }
                    known
                };
                if let Some(uuid) = known {
                    self.batch.requeue(uuid).await?;
                }
            }
            Status::Acknowledged | Status::Error | Status::CommandFormatError => {
                let ended = self.complete(&channel, &report, body).await?;
                if ended {
                    return Ok(Reply::Empty);
                }
            }
        }
        self.next_command(&channel).await
    }

    /// Records a command's answer and its effects; true when the enrollment ended.
    async fn complete(
        &self,
        channel: &ChannelRef,
        report: &protocol::Report,
        body: &[u8],
    ) -> Result<bool, DeviceError> {
        let uuid = report.command_uuid.clone().unwrap_or_default();
        let (queued, key, context) = {
            let c = state::lock(channel);
            (
                c.queue.get(&uuid).cloned(),
                c.key.clone(),
                followup::ChannelContext::of(&c),
            )
        };
        let Some(queued) = queued else {
            // Not waiting here: answered before (a repeat), expired or canceled. Nothing
            // to record.
            self.metrics.duplicate_reports.inc();
            return Ok(false);
        };
        let now = self.now();
        let result = CommandResultRow {
            command_uuid: uuid.clone(),
            channel_id: key.to_string(),
            request_type: queued.request_type.to_string(),
            action_id: queued.action_id,
            status: report.status.as_str().into(),
            error_chain: (!report.error_chain.is_empty())
                .then(|| serde_json::to_string(&report.error_chain).unwrap_or_default()),
            result: (body.len() <= self.config.result_max_bytes).then(|| body.to_vec()),
            completed_at: to_millis(now),
        };
        let follow_up = followup::for_answer(self, &queued, report, body, context, now);
        let outcome = self.batch.complete(result, follow_up).await?;
        let Some(outcome) = outcome else {
            let mut c = state::lock(channel);
            c.queue.remove(&uuid);
            self.metrics.duplicate_reports.inc();
            return Ok(false);
        };
        self.after_follow_up(channel, &[uuid.as_str()], outcome)
            .await;
        Ok(state::lock(channel).phase == Phase::Ended)
    }

    /// Applies a committed follow-up in memory.
    pub async fn after_follow_up(&self, channel: &ChannelRef, removed: &[&str], outcome: FollowUp) {
        let push = {
            let mut c = state::lock(channel);
            for uuid in removed {
                c.queue.remove(uuid);
            }
            for row in outcome.enqueued {
                c.queue.push(Queued::from_row(row));
            }
            outcome.push
        };
        if outcome.ended {
            let key = state::lock(channel).key.to_string();
            let device_channel = state::lock(channel).device_channel.to_string();
            let mut keys = vec![key];
            if let Ok(rows) = {
                let dc = device_channel.clone();
                self.store.read(move |c| store::channels_of(c, &dc)).await
            } {
                keys.extend(rows.into_iter().map(|r| r.channel_id));
            }
            self.apply_ended(&keys);
        } else if push {
            self.push(channel).await;
        }
    }

    /// Picks the next command for the device, marks it delivered, and answers it.
    async fn next_command(&self, channel: &ChannelRef) -> Result<Reply, DeviceError> {
        loop {
            let now = self.now_millis();
            let (next, expired, context) = {
                let c = state::lock(channel);
                let (next, expired) = c.queue.next(now);
                (next, expired, followup::ChannelContext::of(&c))
            };
            for command in expired {
                self.expire(channel, &command, &context).await?;
            }
            let Some(command) = next else {
                return Ok(Reply::Empty);
            };
            if self.batch.deliver(command.uuid.clone()).await? {
                self.metrics.commands_delivered.inc();
                if let Some(action) = command.action_id {
                    followup::note_active(self, action, context.device_id, now);
                }
                return Ok(Reply::Plist(command.payload.clone()));
            }
            // Canceled or expired meanwhile: forget it and look again.
            state::lock(channel).queue.remove(&command.uuid);
        }
    }

    /// Records that a command's time ran out.
    pub async fn expire(
        &self,
        channel: &ChannelRef,
        command: &Queued,
        context: &followup::ChannelContext,
    ) -> Result<(), DeviceError> {
        let now = self.now();
        let result = CommandResultRow {
            command_uuid: command.uuid.to_string(),
            channel_id: context.key.clone(),
            request_type: command.request_type.to_string(),
            action_id: command.action_id,
            status: "Expired".into(),
            error_chain: None,
            result: None,
            completed_at: to_millis(now),
        };
        let follow_up = followup::for_expiry(self, command, context.clone(), now);
        let outcome = self.batch.complete(result, follow_up).await?;
        state::lock(channel).queue.remove(&command.uuid);
        if let Some(outcome) = outcome {
            self.metrics.commands_expired.inc();
            if !outcome.enqueued.is_empty() || outcome.ended {
                Box::pin(self.after_follow_up(channel, &[], outcome)).await;
            }
        }
        Ok(())
    }

    // ---- queueing -----------------------------------------------------------------

    /// The inventory queries run after enrollment and periodically.
    pub fn inventory_commands(
        &self,
        channel: &str,
        platform: Platform,
        now: i64,
    ) -> Vec<NewCommandRow> {
        let expires = now + hours(self.config.command_expiry_hours);
        let mut commands = vec![
            command::device_information(),
            command::security_info(),
            command::profile_list(),
            command::installed_application_list(false),
        ];
        if platform != Platform::MacOs {
            commands.push(command::managed_application_list());
        }
        commands
            .into_iter()
            .map(|cmd| new_command(channel, &cmd, Purpose::Inventory, None, false, now, expires))
            .collect()
    }

    /// Sends a push to a channel now (unless it cannot take pushes).
    pub async fn push(&self, channel: &ChannelRef) {
        let request = {
            let mut c = state::lock(channel);
            let Some(target) = c.push.clone() else { return };
            if c.phase != Phase::Enrolled || (c.push_state != "ok" && c.push_state != "none") {
                return;
            }
            c.last_push_at = self.now_millis();
            PushRequest {
                channel: c.key.clone(),
                tenant: c.tenant_id,
                device: c.device_id,
                target,
            }
        };
        self.metrics.pushes.with_label_values(&["requested"]).inc();
        if self.pushes.try_send(request).is_err() {
            self.metrics.pushes.with_label_values(&["dropped"]).inc();
        }
    }
}

/// Why an enrollment ends.
#[derive(Debug, Clone, Copy)]
pub enum EndCause {
    /// The device checked out: complete an open retire, or tell inventory it left.
    CheckOut(DeviceId),
    /// An action (wipe, retire) completed; the action report is sent by the caller.
    Action,
    /// Inventory removed the record.
    Removed,
}

/// A new command row, rendered.
pub fn new_command(
    channel: &str,
    command: &Command,
    purpose: Purpose,
    action_id: Option<ActionId>,
    priority: bool,
    now: i64,
    expires_at: i64,
) -> NewCommandRow {
    let uuid = uuid::Uuid::new_v4().to_string().to_uppercase();
    NewCommandRow {
        payload: command.render(&uuid),
        command_uuid: uuid,
        channel_id: channel.to_owned(),
        request_type: command.request_type.to_owned(),
        priority,
        purpose: purpose.as_str().to_owned(),
        action_id,
        state: store::QUEUED.to_owned(),
        attempts: 0,
        created_at: now,
        sent_at: None,
        expires_at,
    }
}

pub fn hours(h: u64) -> i64 {
    i64::try_from(h)
        .unwrap_or(i64::MAX / 7_200_000)
        .saturating_mul(3_600_000)
}

/// What Apple's Authenticate fields say about the platform: Macs send DeviceName and
/// ModelName; ProductName says iPhone or iPad.
pub fn infer_platform(
    auth: &Authenticate,
    from_profile: Option<Platform>,
    known: Option<Platform>,
) -> Platform {
    let product = auth
        .product_name
        .as_deref()
        .or(auth.model.as_deref())
        .unwrap_or("");
    if product.starts_with("iPhone") || product.starts_with("iPod") {
        return Platform::Ios;
    }
    if product.starts_with("iPad") {
        return Platform::IPadOs;
    }
    if product.starts_with("Mac")
        || product.starts_with("iMac")
        || product.contains("Book")
        || auth
            .model_name
            .as_deref()
            .is_some_and(|m| m.starts_with("Mac") || m.starts_with("iMac"))
        || (auth.device_name.is_some() && auth.model_name.is_some())
    {
        return Platform::MacOs;
    }
    from_profile.or(known).unwrap_or(Platform::Ios)
}

/// DeviceFacts from what the adapter stored.
pub fn facts_of(info: &DeviceInfoRow, cert_expiry: Option<i64>) -> DeviceFacts {
    DeviceFacts {
        device_name: info.device_name.clone(),
        os_version: info.os_version.as_deref().and_then(|v| v.parse().ok()),
        model: info.product_name.clone().or(info.model.clone()),
        manufacturer: Some("Apple".into()),
        serial_number: info.serial_number.clone(),
        imei: info.imei.clone(),
        is_passcode_present: info.passcode_present,
        is_supervised: info.is_supervised,
        is_encrypted: None,
        identity_certificate_expires_at: cert_expiry.map(mdm_store::from_millis),
    }
}

/// An action report.
pub fn report_action(
    outbox: &Outbox,
    c: &mut DbConnection,
    action: ActionId,
    device: DeviceId,
    state: ActionState,
    error: Option<(String, String)>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (error_code, error_detail) = match error {
        Some((code, detail)) => (Some(code), Some(detail)),
        None => (None, None),
    };
    let report = ActionReport {
        action_id: action,
        device_id: device,
        state,
        error_code,
        error_detail,
        at,
    };
    outbox.enqueue(
        c,
        &format!("apple:action:{action}:{state}"),
        Some(&device.to_string()),
        &report,
    )
}

/// Tells inventory a device left management from its side.
pub fn report_unenrolled(
    outbox: &Outbox,
    c: &mut DbConnection,
    device: DeviceId,
    reason: UnenrollReason,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    outbox.enqueue(
        c,
        &format!("apple:unenrolled:{device}:{}", at.timestamp_millis()),
        Some(&device.to_string()),
        &DeviceUnenrolled {
            device_id: device,
            reason,
            at,
        },
    )
}

pub fn plist_dict(entries: &[(&str, plist::Value)]) -> Bytes {
    let mut dict = plist::Dictionary::new();
    for (key, value) in entries {
        dict.insert((*key).to_owned(), value.clone());
    }
    let mut out = Vec::new();
    let _ = plist::Value::Dictionary(dict).to_writer_xml(&mut out);
    Bytes::from(out)
}

fn kind_name(message: &CheckIn) -> &'static str {
    match message {
        CheckIn::Authenticate(_) => "Authenticate",
        CheckIn::TokenUpdate(_) => "TokenUpdate",
        CheckIn::CheckOut => "CheckOut",
        CheckIn::SetBootstrapToken { .. } => "SetBootstrapToken",
        CheckIn::GetBootstrapToken => "GetBootstrapToken",
        CheckIn::UserAuthenticate { .. } => "UserAuthenticate",
        CheckIn::DeclarativeManagement { .. } => "DeclarativeManagement",
        CheckIn::GetToken { .. } => "GetToken",
    }
}

/// Declarative management, supported with nothing declared: the device learns there are
/// no declarations, and its status reports are accepted.
fn declarative_management(endpoint: &str) -> Result<Reply, DeviceError> {
    const TOKEN: &str = "none";
    let body = match endpoint {
        "tokens" => serde_json::json!({
            "SyncTokens": { "DeclarationsToken": TOKEN, "Timestamp": "2026-01-01T00:00:00Z" }
        }),
        "declaration-items" => serde_json::json!({
            "Declarations": { "Activations": [], "Assets": [], "Configurations": [], "Management": [] },
            "DeclarationsToken": TOKEN
        }),
        "status" => return Ok(Reply::Empty),
        other if other.starts_with("declaration/") => {
            return Err(DeviceError::Malformed(protocol::ProtocolError::Invalid(
                "declaration",
            )));
        }
        _ => {
            return Err(DeviceError::Malformed(protocol::ProtocolError::Invalid(
                "Endpoint",
            )));
        }
    };
    Ok(Reply::Json(serde_json::to_vec(&body).unwrap_or_default()))
}

use diesel::prelude::*;
