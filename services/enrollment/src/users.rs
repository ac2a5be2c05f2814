//! Directory users and their licences.
//!
//! Removing a licence unenrols every device of the user: dispatch hears of it through the
//! outbox (`UnenrollUser`) and, from then on, the capability check refuses every remote
//! action on those devices. Deleting a user who still has managed devices is refused unless
//! forced.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_api::internal::dispatch::UnenrollUser;
use mdm_api::internal::enrollment::{ResolvedUser, UserState};
use mdm_api::public::{CreateUser, UpdateUser, User};
use mdm_domain::{Role, TenantId, UserId};
use mdm_runtime::outbox::Outbox;
use mdm_store::models::enrollment::UserRow;
use mdm_store::schema::{enr_api_tokens, enr_users};
use mdm_store::{DbConnection, StoreError, from_millis, to_millis};

use crate::error::{Error, Result};
use crate::password;

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Users per page at most.
pub const MAX_PAGE: i64 = 1000;

pub fn create(
    conn: &mut DbConnection,
    tenant: TenantId,
    request: CreateUser,
    iterations: u32,
    now: DateTime<Utc>,
) -> Result<User> {
    let upn = request.user_principal_name.trim().to_owned();
    validate_upn(&upn)?;
    let display_name = validate_display_name(&request.display_name)?;
    let password_hash = request
        .password
        .as_deref()
        .map(|p| hash_password(p, iterations))
        .transpose()?;
    let row = UserRow {
        id: UserId::new(),
        tenant_id: tenant,
        user_principal_name: upn.clone(),
        display_name,
        licensed: request.licensed,
        password_hash,
        created_at: to_millis(now),
        licence_changed_at: request.licensed.then(|| to_millis(now)),
    };
    match diesel::insert_into(enr_users::table)
        .values(&row)
        .execute(conn)
        .map_err(StoreError::from)
    {
        Ok(_) => Ok(to_wire(row)),
        Err(e) if e.is_unique_violation() => Err(Error::refused(
            ErrorCode::UserExists,
            format!("a user named {upn} exists"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub fn update(
    conn: &mut DbConnection,
    tenant: TenantId,
    id: UserId,
    request: UpdateUser,
    iterations: u32,
) -> Result<User> {
    let mut row = find(conn, tenant, id)?;
    if let Some(name) = request.display_name {
        row.display_name = validate_display_name(&name)?;
    }
    if let Some(password) = request.password {
        row.password_hash = Some(hash_password(&password, iterations)?);
    }
    diesel::update(enr_users::table.find(id))
        .set((
            enr_users::display_name.eq(&row.display_name),
            enr_users::password_hash.eq(&row.password_hash),
        ))
        .execute(conn)?;
    Ok(to_wire(row))
}

pub fn get(conn: &mut DbConnection, tenant: TenantId, id: UserId) -> Result<User> {
    find(conn, tenant, id).map(to_wire)
}

/// A page of the tenant's users in id order, starting after `after`.
pub fn list(
    conn: &mut DbConnection,
    tenant: TenantId,
    after: Option<UserId>,
    top: i64,
) -> Result<Vec<User>> {
    let mut query = enr_users::table
        .filter(enr_users::tenant_id.eq(tenant))
        .order(enr_users::id)
        .limit(top.clamp(1, MAX_PAGE))
        .select(UserRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(enr_users::id.gt(after));
    }
    Ok(query.load(conn)?.into_iter().map(to_wire).collect())
}

/// Gives the user a licence; answers whether it changed anything.
pub fn assign_licence(
    conn: &mut DbConnection,
    tenant: TenantId,
    id: UserId,
    now: DateTime<Utc>,
) -> Result<(User, bool)> {
    set_licence(conn, tenant, id, true, now)
}

/// Takes the licence away and asks dispatch to unenrol all of the user's devices.
pub fn remove_licence(
    conn: &mut DbConnection,
    outbox: &Outbox,
    tenant: TenantId,
    id: UserId,
    now: DateTime<Utc>,
) -> Result<(User, bool)> {
    let (user, changed) = set_licence(conn, tenant, id, false, now)?;
    if changed {
        let message = UnenrollUser {
            tenant_id: tenant,
            user_id: id,
            at: now,
        };
        outbox.enqueue(
            conn,
            &format!("enrollment:unenroll-user:{id}:{}", to_millis(now)),
            Some(&id.to_string()),
            &message,
        )?;
    }
    Ok((user, changed))
}

fn set_licence(
    conn: &mut DbConnection,
    tenant: TenantId,
    id: UserId,
    licensed: bool,
    now: DateTime<Utc>,
) -> Result<(User, bool)> {
    let mut row = find(conn, tenant, id)?;
    let changed = row.licensed != licensed;
    if changed {
        row.licensed = licensed;
        row.licence_changed_at = Some(to_millis(now));
        diesel::update(enr_users::table.find(id))
            .set((
                enr_users::licensed.eq(licensed),
                enr_users::licence_changed_at.eq(row.licence_changed_at),
            ))
            .execute(conn)?;
    }
    Ok((to_wire(row), changed))
}

/// Deletes the user and the tokens that act for them. The caller has checked the user's
/// managed devices first.
pub fn delete(conn: &mut DbConnection, tenant: TenantId, id: UserId) -> Result<User> {
    let row = find(conn, tenant, id)?;
    diesel::delete(
        enr_api_tokens::table
            .filter(enr_api_tokens::user_id.eq(id))
            .filter(enr_api_tokens::role.eq(Role::User)),
    )
    .execute(conn)?;
    diesel::delete(enr_users::table.find(id)).execute(conn)?;
    Ok(to_wire(row))
}

/// The licence state of those of `ids` that exist in the tenant.
pub fn lookup(conn: &mut DbConnection, tenant: TenantId, ids: &[UserId]) -> Result<Vec<UserState>> {
    let rows: Vec<UserRow> = enr_users::table
        .filter(enr_users::tenant_id.eq(tenant))
        .filter(enr_users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| UserState {
            user_id: r.id,
            user_principal_name: r.user_principal_name,
            licensed: r.licensed,
        })
        .collect())
}

/// The user with this principal name, in whichever tenant.
pub fn resolve(conn: &mut DbConnection, upn: &str) -> Result<ResolvedUser> {
    find_by_upn(conn, upn)?
        .map(resolved)
        .ok_or(Error::NotFound("user"))
}

/// The user, when `password` is their enrollment password. Wrong passwords, unknown users
/// and users without a password are all answered the same way.
pub fn authenticate(
    conn: &mut DbConnection,
    upn: &str,
    password: &str,
) -> Result<Option<ResolvedUser>> {
    let user = find_by_upn(conn, upn)?;
    let matches = user
        .as_ref()
        .and_then(|u| u.password_hash.as_deref())
        .is_some_and(|stored| password::verify(password, stored));
    Ok(user.filter(|_| matches).map(resolved))
}

fn find_by_upn(conn: &mut DbConnection, upn: &str) -> Result<Option<UserRow>> {
    // Principal names compare without regard to case, as the unique index does.
    let wanted = upn.trim().to_lowercase();
    Ok(enr_users::table
        .filter(lower(enr_users::user_principal_name).eq(wanted))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

fn resolved(row: UserRow) -> ResolvedUser {
    ResolvedUser {
        tenant_id: row.tenant_id,
        user_id: row.id,
        user_principal_name: row.user_principal_name,
        licensed: row.licensed,
    }
}

fn find(conn: &mut DbConnection, tenant: TenantId, id: UserId) -> Result<UserRow> {
    enr_users::table
        .find(id)
        .filter(enr_users::tenant_id.eq(tenant))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("user"))
}

fn validate_upn(upn: &str) -> Result<()> {
    let valid = upn.len() <= 256
        && upn.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
        && !upn.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "userPrincipalName must look like name@domain.example",
        ))
    }
}

fn validate_display_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 256 {
        return Err(Error::invalid("displayName must be 1 to 256 characters"));
    }
    Ok(name.to_owned())
}

fn hash_password(password: &str, iterations: u32) -> Result<String> {
    if password.chars().count() < 8 || password.len() > 256 {
        return Err(Error::invalid("password must be 8 to 256 characters"));
    }
    password::hash(password, iterations)
        .map_err(|e| Error::Store(StoreError::Config(format!("hashing failed: {e}"))))
}

fn to_wire(row: UserRow) -> User {
    User {
        id: row.id,
        user_principal_name: row.user_principal_name,
        display_name: row.display_name,
        licensed: row.licensed,
        created_date_time: from_millis(row.created_at),
    }
}
