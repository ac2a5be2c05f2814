//! The enrollment gate: the one check every adapter runs before it accepts a device.
//!
//! A device may enrol when the tenant's MDM authority allows enrollment, the platform's
//! prerequisite is in place, the platform is allowed, a personal device is allowed where
//! the device is personal, and its user (if it has one) exists, is licensed, and has a free
//! slot under the device limit. The slots a user holds are counted by inventory (the
//! user's directory records); a batch of checks asks once per tenant.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::internal::enrollment::{GateCheck, GateDecision, GateDenial, PlatformRestriction};
use mdm_api::internal::inventory::{DeviceCounts, DeviceCountsResponse};
use mdm_api::{InternalClient, Service};
use mdm_domain::{MdmAuthority, Ownership, Platform, PlatformFamily, TenantId, UserId};
use mdm_store::models::enrollment::UserRow;
use mdm_store::schema::enr_users;
use mdm_store::{DbConnection, Store};

use crate::error::{Error, Result};
use crate::{policy, tenants};

/// What the gate needs to know of a tenant.
#[derive(Debug, Clone)]
pub struct TenantFacts {
    pub authority: MdmAuthority,
    pub restrictions: Vec<PlatformRestriction>,
    pub device_limit: u32,
    /// A valid APNs certificate is uploaded.
    pub apple_ready: bool,
    /// An Android Enterprise is bound.
    pub android_ready: bool,
    /// User-driven Windows enrollment is on.
    pub windows_enabled: bool,
    /// Windows bulk-enrollment credentials are set up.
    pub windows_bulk: bool,
}

fn load_tenant(
    conn: &mut DbConnection,
    id: TenantId,
    now: DateTime<Utc>,
) -> Result<Option<TenantFacts>> {
    let Some(tenant) = tenants::find(conn, id)? else {
        return Ok(None);
    };
    Ok(Some(TenantFacts {
        authority: tenant.mdm_authority,
        restrictions: policy::restrictions(conn, &tenant)?,
        device_limit: u32::try_from(tenant.device_limit_per_user).unwrap_or(5),
        apple_ready: policy::valid_push_topic(conn, id, now)?.is_some(),
        android_ready: policy::bound_enterprise(conn, id)?.is_some(),
        windows_enabled: policy::windows_enrollment_enabled(conn, id)?,
        windows_bulk: policy::windows_bulk_configured(conn, id)?,
    }))
}

/// Decides one check. `held` is the number of slots the user holds already.
pub fn decide(
    check: &GateCheck,
    tenant: Option<&TenantFacts>,
    user: Option<&UserRow>,
    held: u32,
) -> GateDecision {
    let Some(tenant) = tenant else {
        return GateDecision::deny(GateDenial::TenantUnknown, "the tenant does not exist");
    };
    if !tenant.authority.allows_enrollment() {
        return GateDecision::deny(
            GateDenial::AuthorityDisallowsEnrollment,
            "the tenant's MDM authority is not set: set it to standalone, hybrid or office365 first",
        );
    }
    if tenant.authority == MdmAuthority::Office365 && check.platform == Platform::MacOs {
        return GateDecision::deny(
            GateDenial::PlatformNotAllowed,
            "macOS devices cannot be managed under the office365 authority",
        );
    }
    if let Some(missing) = missing_prerequisite(check, tenant) {
        return GateDecision::deny(GateDenial::PrerequisiteMissing, missing);
    }
    let restriction = tenant
        .restrictions
        .iter()
        .find(|r| r.platform == check.platform);
    if restriction.is_some_and(|r| !r.allowed) {
        return GateDecision::deny(
            GateDenial::PlatformNotAllowed,
            format!(
                "the tenant's enrollment restrictions block {} devices",
                check.platform
            ),
        );
    }
    if check.ownership == Ownership::Personal && restriction.is_some_and(|r| !r.personal_allowed) {
        return GateDecision::deny(
            GateDenial::PersonalDevicesNotAllowed,
            format!(
                "the tenant does not allow personal {} devices",
                check.platform
            ),
        );
    }
    let Some(user_id) = check.user_id else {
        return GateDecision::allow(None);
    };
    let Some(user) = user.filter(|u| u.tenant_id == check.tenant_id) else {
        return GateDecision::deny(
            GateDenial::UserUnknown,
            format!("user {user_id} does not exist in the tenant"),
        );
    };
    if !user.licensed {
        return GateDecision::deny(
            GateDenial::UserNotLicensed,
            format!("{} has no licence", user.user_principal_name),
        );
    }
    if held >= tenant.device_limit {
        return GateDecision::deny(
            GateDenial::DeviceLimitReached,
            format!(
                "{} already has {held} devices; the limit is {}",
                user.user_principal_name, tenant.device_limit
            ),
        );
    }
    GateDecision::allow(Some(user.user_principal_name.clone()))
}

fn missing_prerequisite(check: &GateCheck, tenant: &TenantFacts) -> Option<&'static str> {
    match check.platform.family() {
        PlatformFamily::Apple if !tenant.apple_ready => {
            Some("no valid Apple MDM push certificate is uploaded for the tenant")
        }
        PlatformFamily::Android if !tenant.android_ready => {
            Some("Android Enterprise is not bound for the tenant")
        }
        PlatformFamily::Windows if check.user_id.is_some() && !tenant.windows_enabled => {
            Some("Windows enrollment is turned off for the tenant")
        }
        PlatformFamily::Windows if check.user_id.is_none() && !tenant.windows_bulk => {
            Some("Windows bulk enrollment is not set up for the tenant")
        }
        _ => None,
    }
}

/// Evaluates a batch of checks in order. Allowed checks of one user in the batch take
/// slots one after another.
pub async fn evaluate(
    store: &Store,
    client: &InternalClient,
    checks: Vec<GateCheck>,
    now: DateTime<Utc>,
) -> Result<Vec<GateDecision>> {
    let tenant_ids: BTreeSet<TenantId> = checks.iter().map(|c| c.tenant_id).collect();
    let user_ids: BTreeSet<UserId> = checks.iter().filter_map(|c| c.user_id).collect();
    let (tenant_facts, users) = store
        .read(move |c| {
            let mut facts = HashMap::new();
            for id in tenant_ids {
                if let Some(f) = load_tenant(c, id, now)? {
                    facts.insert(id, f);
                }
            }
            let users: Vec<UserRow> = if user_ids.is_empty() {
                Vec::new()
            } else {
                enr_users::table
                    .filter(enr_users::id.eq_any(user_ids.into_iter().collect::<Vec<_>>()))
                    .select(UserRow::as_select())
                    .load(c)?
            };
            Ok::<_, Error>((
                facts,
                users
                    .into_iter()
                    .map(|u| (u.id, u))
                    .collect::<HashMap<_, _>>(),
            ))
        })
        .await?;

    // Slots held, asked of inventory once per tenant, for users that could enrol at all.
    let mut wanted: BTreeMap<TenantId, (BTreeSet<UserId>, BTreeSet<mdm_domain::DeviceId>)> =
        BTreeMap::new();
    for check in &checks {
        if let Some(user) = check.user_id.and_then(|id| users.get(&id))
            && user.tenant_id == check.tenant_id
            && user.licensed
            && tenant_facts.contains_key(&check.tenant_id)
        {
            let entry = wanted.entry(check.tenant_id).or_default();
            entry.0.insert(user.id);
            entry.1.extend(check.device_id);
        }
    }
    let mut held: HashMap<UserId, u32> = HashMap::new();
    for (tenant_id, (user_ids, exclude)) in wanted {
        let request = DeviceCounts {
            tenant_id,
            user_ids: user_ids.into_iter().collect(),
            exclude: exclude.into_iter().collect(),
        };
        let answer: DeviceCountsResponse = client
            .post(Service::Inventory, "/users/deviceCounts", &request)
            .await?;
        held.extend(answer.counts.into_iter().map(|c| (c.user_id, c.count)));
    }

    Ok(checks
        .iter()
        .map(|check| {
            let user = check.user_id.and_then(|id| users.get(&id));
            let slots = check
                .user_id
                .and_then(|id| held.get(&id).copied())
                .unwrap_or(0);
            let decision = decide(check, tenant_facts.get(&check.tenant_id), user, slots);
            if decision.allowed
                && let Some(id) = check.user_id
            {
                *held.entry(id).or_default() += 1;
            }
            decision
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use mdm_domain::TenantId;

    use super::*;

    fn tenant() -> TenantFacts {
        TenantFacts {
            authority: MdmAuthority::Standalone,
            restrictions: Platform::ALL
                .iter()
                .map(|&platform| PlatformRestriction {
                    platform,
                    allowed: true,
                    personal_allowed: true,
                })
                .collect(),
            device_limit: 2,
            apple_ready: true,
            android_ready: true,
            windows_enabled: true,
            windows_bulk: false,
        }
    }

    fn check(platform: Platform, user: Option<&UserRow>) -> GateCheck {
        GateCheck {
            tenant_id: user.map_or_else(TenantId::new, |u| u.tenant_id),
            platform,
            ownership: Ownership::Company,
            management_mode: None,
            user_id: user.map(|u| u.id),
            device_id: None,
        }
    }

    fn user(licensed: bool) -> UserRow {
        UserRow {
            id: UserId::new(),
            tenant_id: TenantId::new(),
            user_principal_name: "ada@contoso.example".into(),
            display_name: "Ada".into(),
            licensed,
            password_hash: None,
            created_at: 0,
            licence_changed_at: None,
        }
    }

    fn denial(decision: GateDecision) -> Option<GateDenial> {
        decision.denial
    }

    #[test]
    fn every_denial_has_its_reason() {
        let ada = user(true);
        let t = tenant();
        assert!(decide(&check(Platform::Ios, Some(&ada)), Some(&t), Some(&ada), 0).allowed);
        assert_eq!(
            denial(decide(&check(Platform::Ios, None), None, None, 0)),
            Some(GateDenial::TenantUnknown)
        );

        let none = TenantFacts {
            authority: MdmAuthority::None,
            ..tenant()
        };
        assert_eq!(
            denial(decide(
                &check(Platform::Android, None),
                Some(&none),
                None,
                0
            )),
            Some(GateDenial::AuthorityDisallowsEnrollment)
        );
        let o365 = TenantFacts {
            authority: MdmAuthority::Office365,
            ..tenant()
        };
        assert_eq!(
            denial(decide(&check(Platform::MacOs, None), Some(&o365), None, 0)),
            Some(GateDenial::PlatformNotAllowed)
        );
        assert!(decide(&check(Platform::Ios, None), Some(&o365), None, 0).allowed);

        let no_apns = TenantFacts {
            apple_ready: false,
            ..tenant()
        };
        assert_eq!(
            denial(decide(
                &check(Platform::IPadOs, None),
                Some(&no_apns),
                None,
                0
            )),
            Some(GateDenial::PrerequisiteMissing)
        );
        let no_android = TenantFacts {
            android_ready: false,
            ..tenant()
        };
        assert_eq!(
            denial(decide(
                &check(Platform::Android, None),
                Some(&no_android),
                None,
                0
            )),
            Some(GateDenial::PrerequisiteMissing)
        );
        let windows_off = TenantFacts {
            windows_enabled: false,
            ..tenant()
        };
        assert_eq!(
            denial(decide(
                &check(Platform::Windows, Some(&ada)),
                Some(&windows_off),
                Some(&ada),
                0
            )),
            Some(GateDenial::PrerequisiteMissing)
        );
        // A userless Windows device is a bulk enrollment: it needs bulk credentials.
        assert_eq!(
            denial(decide(
                &check(Platform::Windows, None),
                Some(&tenant()),
                None,
                0
            )),
            Some(GateDenial::PrerequisiteMissing)
        );
        let bulk = TenantFacts {
            windows_bulk: true,
            ..tenant()
        };
        assert!(decide(&check(Platform::Windows, None), Some(&bulk), None, 0).allowed);

        let mut blocked = tenant();
        blocked.restrictions[0].allowed = false; // iOS
        assert_eq!(
            denial(decide(&check(Platform::Ios, None), Some(&blocked), None, 0)),
            Some(GateDenial::PlatformNotAllowed)
        );
        let mut no_personal = tenant();
        no_personal.restrictions[3].personal_allowed = false; // Android
        let mut personal = check(Platform::Android, None);
        personal.ownership = Ownership::Personal;
        assert_eq!(
            denial(decide(&personal, Some(&no_personal), None, 0)),
            Some(GateDenial::PersonalDevicesNotAllowed)
        );

        assert_eq!(
            denial(decide(&check(Platform::Ios, Some(&ada)), Some(&t), None, 0)),
            Some(GateDenial::UserUnknown)
        );
        let unlicensed = user(false);
        assert_eq!(
            denial(decide(
                &check(Platform::Ios, Some(&unlicensed)),
                Some(&t),
                Some(&unlicensed),
                0
            )),
            Some(GateDenial::UserNotLicensed)
        );
        assert_eq!(
            denial(decide(
                &check(Platform::Ios, Some(&ada)),
                Some(&t),
                Some(&ada),
                2
            )),
            Some(GateDenial::DeviceLimitReached)
        );
    }

    #[test]
    fn a_user_of_another_tenant_is_unknown() {
        let ada = user(true);
        let mut foreign = check(Platform::Ios, Some(&ada));
        foreign.tenant_id = TenantId::new();
        assert_eq!(
            denial(decide(&foreign, Some(&tenant()), Some(&ada), 0)),
            Some(GateDenial::UserUnknown)
        );
    }
}
