//! API tokens: creation (the secret is shown once), verification, listing, revocation.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use mdm_api::ErrorCode;
use mdm_api::internal::Grant;
use mdm_api::public::{CreateToken, CreatedToken, Token};
use mdm_domain::{Role, TenantId, TokenId};
use mdm_runtime::crypto::{constant_time_eq, random_token, sha256};
use mdm_store::models::enrollment::ApiTokenRow;
use mdm_store::schema::enr_api_tokens;
use mdm_store::{DbConnection, from_millis, to_millis};

use crate::error::{Error, Result};
use crate::{tenants, users};

const PREFIX: &str = "mdm_";
const ID_LEN: usize = 32;

/// Who is creating a token: an authenticated caller, or the command line (which may
/// create anything, since it has the database).
#[derive(Clone, Copy, Debug)]
pub enum Issuer {
    Caller {
        role: Role,
        tenant: Option<TenantId>,
    },
    CommandLine,
}

/// Creates a token as `issuer` allows; answers it with its secret.
pub fn create(
    conn: &mut DbConnection,
    issuer: Issuer,
    request: CreateToken,
    now: DateTime<Utc>,
) -> Result<CreatedToken> {
    let required = || Error::invalid("tenantId is required for this role");
    let tenant_id = if request.role == Role::Operator {
        if request.tenant_id.is_some() {
            return Err(Error::invalid("operator tokens are not bound to a tenant"));
        }
        None
    } else {
        match issuer {
            // Within one tenant: naming another tenant finds nothing.
            Issuer::Caller {
                role,
                tenant: Some(own),
            } if role.is_tenant_scoped() => match request.tenant_id {
                Some(named) if named != own => return Err(Error::NotFound("tenant")),
                _ => Some(own),
            },
            // An operator names the tenant in the body or with X-Mdm-Tenant.
            Issuer::Caller { tenant, .. } => {
                Some(request.tenant_id.or(tenant).ok_or_else(required)?)
            }
            Issuer::CommandLine => Some(request.tenant_id.ok_or_else(required)?),
        }
    };
    if let Issuer::Caller { role, .. } = issuer
        && !role.may_grant(request.role)
    {
        return Err(Error::refused(
            ErrorCode::RoleNotGrantable,
            format!("the {role} role may not create {} tokens", request.role),
        ));
    }
    if let Some(tenant) = tenant_id {
        tenants::find(conn, tenant)?.ok_or(Error::NotFound("tenant"))?;
    }
    if (request.role == Role::User) != request.user_id.is_some() {
        return Err(Error::invalid(
            "userId is required for the user role, and only for it",
        ));
    }
    // A user of another tenant, like one that exists nowhere, is not found.
    if let (Some(tenant), Some(user)) = (tenant_id, request.user_id) {
        users::get(conn, tenant, user)?;
    }
    if request.description.chars().count() > 500 {
        return Err(Error::invalid("description must be at most 500 characters"));
    }
    let secret = random_token::<32>();
    let row = ApiTokenRow {
        id: TokenId::new(),
        tenant_id,
        role: request.role,
        user_id: request.user_id,
        description: request.description,
        secret_hash: sha256(secret.as_bytes()).to_vec(),
        created_at: to_millis(now),
        expires_at: request
            .expires_in_days
            .map(|days| to_millis(now + Duration::days(i64::from(days)))),
        revoked_at: None,
    };
    diesel::insert_into(enr_api_tokens::table)
        .values(&row)
        .execute(conn)?;
    let bearer = format!("{PREFIX}{}_{secret}", row.id.as_uuid().simple());
    Ok(CreatedToken {
        token: to_wire(row),
        secret: bearer,
    })
}

/// What `bearer` grants now, or `None` when it is malformed, unknown, revoked or expired.
pub fn introspect(
    conn: &mut DbConnection,
    bearer: &str,
    now: DateTime<Utc>,
) -> Result<Option<Grant>> {
    let Some((id, secret)) = parse(bearer) else {
        return Ok(None);
    };
    let Some(row) = enr_api_tokens::table
        .find(id)
        .select(ApiTokenRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let now = to_millis(now);
    let live = row.revoked_at.is_none() && row.expires_at.is_none_or(|at| at > now);
    if !live || !constant_time_eq(&row.secret_hash, &sha256(secret.as_bytes())) {
        return Ok(None);
    }
    Ok(Some(Grant {
        token_id: row.id,
        role: row.role,
        tenant_id: row.tenant_id,
        user_id: row.user_id,
    }))
}

fn parse(bearer: &str) -> Option<(TokenId, &str)> {
    let rest = bearer.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?.strip_prefix('_')?);
    if secret.is_empty() {
        return None;
    }
    let id = uuid::Uuid::try_parse(id).ok()?;
    Some((TokenId::from_uuid(id), secret))
}

/// The tokens of `tenant`, or every token for `None` (operators).
pub fn list(conn: &mut DbConnection, tenant: Option<TenantId>) -> Result<Vec<Token>> {
    let mut query = enr_api_tokens::table
        .select(ApiTokenRow::as_select())
        .order(enr_api_tokens::created_at)
        .into_boxed();
    if let Some(tenant) = tenant {
        query = query.filter(enr_api_tokens::tenant_id.eq(tenant));
    }
    Ok(query.load(conn)?.into_iter().map(to_wire).collect())
}

/// A token that `tenant` may see (`None`: any).
pub fn get(conn: &mut DbConnection, tenant: Option<TenantId>, id: TokenId) -> Result<Token> {
    find_visible(conn, tenant, id).map(to_wire)
}

/// Revokes a token; it stops working at once here and within the verification cache's
/// lifetime elsewhere.
pub fn revoke(
    conn: &mut DbConnection,
    tenant: Option<TenantId>,
    id: TokenId,
    now: DateTime<Utc>,
) -> Result<Token> {
    let mut row = find_visible(conn, tenant, id)?;
    if row.revoked_at.is_none() {
        let at = to_millis(now);
        diesel::update(enr_api_tokens::table.find(id))
            .set(enr_api_tokens::revoked_at.eq(at))
            .execute(conn)?;
        row.revoked_at = Some(at);
    }
    Ok(to_wire(row))
}

fn find_visible(
    conn: &mut DbConnection,
    tenant: Option<TenantId>,
    id: TokenId,
) -> Result<ApiTokenRow> {
    let row = enr_api_tokens::table
        .find(id)
        .select(ApiTokenRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("token"))?;
    match tenant {
        Some(tenant) if row.tenant_id != Some(tenant) => Err(Error::NotFound("token")),
        _ => Ok(row),
    }
}

fn to_wire(row: ApiTokenRow) -> Token {
    Token {
        id: row.id,
        role: row.role,
        tenant_id: row.tenant_id,
        user_id: row.user_id,
        description: row.description,
        created_date_time: from_millis(row.created_at),
        expiration_date_time: row.expires_at.map(from_millis),
        revoked_date_time: row.revoked_at.map(from_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_well_formed_tokens() {
        let id = TokenId::new();
        let good = format!("mdm_{}_abc-def", id.as_uuid().simple());
        assert_eq!(parse(&good), Some((id, "abc-def")));
        assert_eq!(parse("mdm_short_x"), None);
        assert_eq!(parse(&format!("mdm_{}_", id.as_uuid().simple())), None);
        assert_eq!(parse(&format!("xyz_{}_abc", id.as_uuid().simple())), None);
        assert_eq!(parse(&format!("mdm_{}abc", id.as_uuid().simple())), None);
        assert_eq!(parse("mdm_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz_abc"), None);
        assert_eq!(parse(""), None);
    }
}
