//! `mdm cleanup`, `mdm authority`, and tokens through the API.

use std::io::Write;

use clap::Subcommand;
use mdm_api::public::{
    CreateToken, CreatedToken, ManagedDeviceCleanupSettings, MdmAuthorityBody, Page, Token,
};
use mdm_domain::{MdmAuthority, TokenId};

use super::client::{ApiClient, CliError};
use super::output::{Out, or_dash, table};

#[derive(Subcommand, Debug)]
pub enum CleanupCommand {
    /// Show the clean-up rule.
    Show,
    /// Delete devices that have not checked in for DAYS (90 to 270).
    Set { days: u16 },
    /// Turn the rule off.
    Off,
}

#[derive(Subcommand, Debug)]
pub enum AuthorityCommand {
    /// Show the MDM authority.
    Show,
    /// Set it: none, standalone, hybrid or office365.
    Set { authority: MdmAuthority },
}

const CLEANUP: &str = "/api/v1/deviceManagement/managedDeviceCleanupSettings";
const AUTHORITY: &str = "/api/v1/organization/mdmAuthority";

pub async fn cleanup(
    client: &ApiClient,
    out: &Out,
    command: CleanupCommand,
) -> Result<(), CliError> {
    let settings: ManagedDeviceCleanupSettings = match command {
        CleanupCommand::Show => client.get(CLEANUP).await?,
        CleanupCommand::Set { days } => {
            client
                .put(
                    CLEANUP,
                    &ManagedDeviceCleanupSettings {
                        device_inactivity_before_retirement_in_days: Some(days),
                    },
                )
                .await?
        }
        CleanupCommand::Off => {
            client
                .put(
                    CLEANUP,
                    &ManagedDeviceCleanupSettings {
                        device_inactivity_before_retirement_in_days: None,
                    },
                )
                .await?
        }
    };
    out.emit(&settings, |w| {
        match settings.device_inactivity_before_retirement_in_days {
            Some(days) => writeln!(
                w,
                "devices that have not checked in for {days} days are deleted"
            ),
            None => writeln!(w, "the clean-up rule is off"),
        }
    })
}

pub async fn authority(
    client: &ApiClient,
    out: &Out,
    command: AuthorityCommand,
) -> Result<(), CliError> {
    let body: MdmAuthorityBody = match command {
        AuthorityCommand::Show => client.get(AUTHORITY).await?,
        AuthorityCommand::Set { authority } => {
            client
                .put(
                    AUTHORITY,
                    &MdmAuthorityBody {
                        mobile_device_management_authority: authority,
                    },
                )
                .await?
        }
    };
    out.emit(&body, |w| {
        writeln!(
            w,
            "MDM authority: {}",
            body.mobile_device_management_authority
        )
    })
}

/// Token management through the API.
pub enum TokensViaApi {
    Create(CreateToken),
    List,
    Revoke(TokenId),
}

pub async fn tokens_via_api(
    client: &ApiClient,
    out: &Out,
    command: TokensViaApi,
) -> Result<(), CliError> {
    match command {
        TokensViaApi::Create(request) => {
            let created: CreatedToken = client.post("/api/v1/tokens", &request).await?;
            out.emit(&created, |w| writeln!(w, "{}", created.secret))?;
            let _ = writeln!(
                std::io::stderr(),
                "created {} token {} (the secret is shown only once)",
                created.token.role,
                created.token.id
            );
            Ok(())
        }
        TokensViaApi::List => {
            let page: Page<Token> = client.get("/api/v1/tokens").await?;
            out.emit(&page, |w| {
                let rows: Vec<Vec<String>> = page
                    .value
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.role.to_string(),
                            or_dash(&t.tenant_id),
                            t.description.clone(),
                            if t.revoked_date_time.is_some() {
                                "revoked".into()
                            } else {
                                "active".into()
                            },
                        ]
                    })
                    .collect();
                table(w, &["ID", "ROLE", "TENANT", "DESCRIPTION", "STATE"], &rows)
            })
        }
        TokensViaApi::Revoke(id) => {
            let token: Token = client.delete(&format!("/api/v1/tokens/{id}")).await?;
            out.emit(&token, |w| writeln!(w, "token {} revoked", token.id))
        }
    }
}
