//! OAuth access tokens for service accounts, through yup-oauth2: the JWT bearer grant
//! POSTed to the key file's `token_uri` (so a key that names a local token server is
//! served by it). One authenticator per key, cached; tokens are cached by yup-oauth2
//! until a minute before they expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use yup_oauth2::authenticator::DefaultAuthenticator;
use yup_oauth2::{ServiceAccountAuthenticator, ServiceAccountKey};

use super::error::AmapiError;

/// The scope of the Android Management API.
pub const SCOPE: &str = "https://www.googleapis.com/auth/androidmanagement";

/// A Google Cloud service account, from its key file.
#[derive(Clone)]
pub struct Account {
    pub project_id: String,
    pub client_email: String,
    key: Arc<ServiceAccountKey>,
    /// SHA-256 of the key file: which authenticator serves it.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// Reads a key file (JSON). The project comes from `project_id`, or from the
    /// account's e-mail address (`name@<project>.iam.gserviceaccount.com`).
    pub fn parse(key_json: &str) -> Result<Self, AmapiError> {
        if key_json.len() > 64 * 1024 {
            return Err(AmapiError::InvalidKey("the key file is too large".into()));
        }
        let key: ServiceAccountKey = serde_json::from_str(key_json)
            .map_err(|e| AmapiError::InvalidKey(format!("not a service-account key file ({e})")))?;
        if !key.private_key.contains("PRIVATE KEY") {
            return Err(AmapiError::InvalidKey(
                "private_key is not a PEM key".into(),
            ));
        }
        if !(key.token_uri.starts_with("https://") || key.token_uri.starts_with("http://")) {
            return Err(AmapiError::InvalidKey("token_uri is not a URL".into()));
        }
        let project_id = key
            .project_id
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| {
                key.client_email
                    .split_once('@')
                    .and_then(|(_, domain)| domain.strip_suffix(".iam.gserviceaccount.com"))
                    .map(str::to_owned)
            })
            .ok_or_else(|| AmapiError::InvalidKey("the key names no project".into()))?;
        Ok(Self {
            project_id,
            client_email: key.client_email.clone(),
            fingerprint: openssl::sha::sha256(key_json.as_bytes()),
            key: Arc::new(key),
        })
    }
}

/// Authenticators by key.
pub struct Tokens {
    timeout: Duration,
    /// Held while an authenticator is built, so that concurrent first calls build one.
    authenticators: tokio::sync::Mutex<HashMap<[u8; 32], Arc<DefaultAuthenticator>>>,
}

const MAX_AUTHENTICATORS: usize = 1024;

impl Tokens {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            authenticators: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// An access token for `account`; `fresh` asks the OAuth server for a new one even
    /// when the cached token has not expired (after a 401).
    pub async fn token(&self, account: &Account, fresh: bool) -> Result<String, AmapiError> {
        let authenticator = self.authenticator(account).await?;
        let token = if fresh {
            authenticator.force_refreshed_token(&[SCOPE]).await
        } else {
            authenticator.token(&[SCOPE]).await
        }
        .map_err(|e| refusal(account, &e).unwrap_or_else(|| AmapiError::Token(describe(&e))))?;
        token
            .token()
            .map(str::to_owned)
            .ok_or_else(|| AmapiError::Token("the OAuth server sent no access token".into()))
    }

    async fn authenticator(
        &self,
        account: &Account,
    ) -> Result<Arc<DefaultAuthenticator>, AmapiError> {
        let mut authenticators = self.authenticators.lock().await;
        if let Some(found) = authenticators.get(&account.fingerprint) {
            return Ok(found.clone());
        }
        let built = ServiceAccountAuthenticator::builder((*account.key).clone())
            .with_timeout(self.timeout)
            .build()
            .await
            .map_err(|e| AmapiError::InvalidKey(format!("the private key cannot sign ({e})")))?;
        if authenticators.len() >= MAX_AUTHENTICATORS {
            authenticators.clear();
        }
        let built = Arc::new(built);
        authenticators.insert(account.fingerprint, built.clone());
        Ok(built)
    }
}

/// The OAuth server's answer when it refused the key itself, rather than failing to
/// answer: nothing will change that but another key.
fn refusal(account: &Account, error: &yup_oauth2::Error) -> Option<AmapiError> {
    use yup_oauth2::error::AuthErrorCode;
    let yup_oauth2::Error::AuthError(refused) = error else {
        return None;
    };
    match refused.error {
        AuthErrorCode::Other(_) => None,
        _ => Some(AmapiError::KeyRefused {
            key: account.client_email.clone(),
            reason: describe(error),
        }),
    }
}

/// yup-oauth2's error, without anything secret (its messages carry the OAuth server's
/// error code and description, never the assertion or a token).
fn describe(error: &yup_oauth2::Error) -> String {
    let text = error.to_string();
    text.chars().take(300).collect()
}
