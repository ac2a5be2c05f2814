//! HTTP routes of the dispatch service.

mod actions;
mod internal;
mod views;

use std::sync::Arc;

use actix_web::web;
use mdm_runtime::ApiRoutes;
use serde::de::DeserializeOwned;

use crate::dispatcher::Dispatcher;

pub type Shared = web::Data<Arc<Dispatcher>>;

/// The state the admin API's handlers share.
pub fn public(
    dispatcher: Arc<Dispatcher>,
) -> impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static {
    move |cfg| {
        cfg.app_data(web::Data::new(dispatcher.clone()));
    }
}

/// The admin API's routes. A device id in a path matches only a UUID's characters, so
/// that fixed segments beside it (`managedDevices/bulkAction`) are not taken for ids.
pub fn api(routes: &mut ApiRoutes) {
    actions::routes(routes);
    views::routes(routes);
}

pub fn internal(
    dispatcher: Arc<Dispatcher>,
) -> impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static {
    move |cfg| {
        cfg.app_data(web::Data::new(dispatcher.clone()));
        internal::routes(cfg);
    }
}

/// A JSON body that may be absent (actions without parameters).
pub fn optional_json<T: DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, mdm_runtime::ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            mdm_runtime::ApiError::invalid(e.to_string())
        } else {
            mdm_runtime::ApiError::new(
                mdm_api::ErrorCode::InvalidRequest,
                format!("malformed JSON: {e}"),
            )
        }
    })
}
