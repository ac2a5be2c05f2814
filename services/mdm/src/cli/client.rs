//! The admin API as the command line calls it, and the exit codes its answers map to.

use std::process::ExitCode;

use mdm_api::Problem;
use mdm_domain::TenantId;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a command failed, and the exit code scripts can branch on.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Exit 1: anything not listed below.
    #[error("{0}")]
    Failed(String),
    /// Exit 3: the object does not exist (or belongs to another tenant).
    #[error("{0}")]
    NotFound(String),
    /// Exit 4: the server refused: the action is not allowed, or a value is invalid.
    #[error("{0}")]
    Refused(String),
    /// Exit 5: no valid token, or the role may not do this.
    #[error("{0}")]
    Unauthorized(String),
    /// Exit 6: the server could not be reached or failed.
    #[error("{0}")]
    Unavailable(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Failed(_) => 1,
            Self::NotFound(_) => 3,
            Self::Refused(_) => 4,
            Self::Unauthorized(_) => 5,
            Self::Unavailable(_) => 6,
        })
    }

    fn from_answer(status: StatusCode, problem: Option<Problem>, body: &str) -> Self {
        let message = match &problem {
            Some(p) => match (cli_hint(&p.code), &p.detail) {
                (Some(hint), _) => format!("{hint} ({})", p.code),
                (None, Some(detail)) => format!("{} ({}): {detail}", p.title, p.code),
                (None, None) => format!("{} ({})", p.title, p.code),
            },
            None => format!(
                "the server answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ),
        };
        match status.as_u16() {
            401 | 403 => Self::Unauthorized(message),
            404 => Self::NotFound(message),
            400 | 409 | 413 | 415 | 422 => Self::Refused(message),
            s if s >= 500 => Self::Unavailable(message),
            _ => Self::Failed(message),
        }
    }
}

/// A refusal in the command line's words, where the API's own title or detail names a
/// header or a body member (`X-Mdm-Tenant`, `force`).
fn cli_hint(code: &str) -> Option<&'static str> {
    match code {
        "tenant_required" => {
            Some("An operator token must name the tenant: add --tenant ID or set MDM_TENANT")
        }
        "unlock_pin_outstanding" => Some(
            "The Mac's unlock PIN from an earlier lock has not been used: add --force to lock it again",
        ),
        _ => None,
    }
}

/// A client of one server, with one token.
pub struct ApiClient {
    http: reqwest::Client,
    server: String,
    token: String,
    tenant: Option<TenantId>,
}

impl ApiClient {
    pub fn new(
        server: &str,
        token: Option<&str>,
        tenant: Option<TenantId>,
    ) -> Result<Self, CliError> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            CliError::Unauthorized("no token: pass --token or set MDM_TOKEN".into())
        })?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::Failed(e.to_string()))?;
        Ok(Self {
            http,
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            tenant,
        })
    }

    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, CliError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, CliError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, CliError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete<R: DeserializeOwned>(&self, path: &str) -> Result<R, CliError> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, CliError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server))
            .bearer_auth(&self.token);
        if let Some(tenant) = self.tenant {
            request = request.header("X-Mdm-Tenant", tenant.to_string());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Unavailable(format!("cannot reach {}: {e}", self.server)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::Unavailable(e.to_string()))?;
        if !status.is_success() {
            return Err(CliError::from_answer(
                status,
                serde_json::from_str(&text).ok(),
                &text,
            ));
        }
        let text = if text.is_empty() {
            "null"
        } else {
            text.as_str()
        };
        serde_json::from_str(text)
            .map_err(|e| CliError::Failed(format!("unexpected answer from the server: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use mdm_api::ErrorCode;

    use super::*;

    #[test]
    fn answers_map_to_exit_codes() {
        let code = |status: u16, code: ErrorCode| {
            let problem = Problem::new(code, Some("why".into()));
            let error =
                CliError::from_answer(StatusCode::from_u16(status).unwrap(), Some(problem), "");
            assert!(error.to_string().contains(code.as_str()));
            error.exit_code()
        };
        assert_eq!(code(404, ErrorCode::NotFound), ExitCode::from(3));
        assert_eq!(
            code(409, ErrorCode::UnlockPinOutstanding),
            ExitCode::from(4)
        );
        assert_eq!(code(422, ErrorCode::ActionNotSupported), ExitCode::from(4));
        assert_eq!(code(401, ErrorCode::Unauthorized), ExitCode::from(5));
        assert_eq!(code(403, ErrorCode::ForbiddenForRole), ExitCode::from(5));
        assert_eq!(code(503, ErrorCode::Unavailable), ExitCode::from(6));
        let bare = CliError::from_answer(StatusCode::IM_A_TEAPOT, None, "teapot");
        assert_eq!(bare.exit_code(), ExitCode::from(1));
    }

    #[test]
    fn refusals_name_the_command_line_options_not_the_api() {
        let said = |status: u16, code: ErrorCode| {
            let problem = Problem::new(code, Some("the API's words".into()));
            CliError::from_answer(StatusCode::from_u16(status).unwrap(), Some(problem), "")
                .to_string()
        };
        let tenant = said(400, ErrorCode::TenantRequired);
        assert!(
            tenant.contains("--tenant") && tenant.contains("MDM_TENANT"),
            "{tenant}"
        );
        assert!(!tenant.contains("X-Mdm-Tenant"), "{tenant}");
        let pin = said(409, ErrorCode::UnlockPinOutstanding);
        assert!(
            pin.contains("--force") && pin.contains("unlock_pin_outstanding"),
            "{pin}"
        );
        // Other refusals keep the server's detail.
        assert!(said(422, ErrorCode::ActionNotSupported).contains("the API's words"));
    }
}
