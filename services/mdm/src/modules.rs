//! Which module each service contributes to the process.

use mdm_api::Service;
use mdm_runtime::{ApiRoutesFn, Context, Module};
use utoipa::openapi::OpenApi;

use crate::config::MdmConfig;

/// The modules of `services`, in the order given.
pub fn build(
    context: &Context,
    config: &MdmConfig,
    services: &[Service],
) -> anyhow::Result<Vec<Module>> {
    let mut modules = Vec::new();
    for service in services {
        match service {
            Service::Enrollment => {
                modules.push(mdm_enrollment::module(context, &config.enrollment))
            }
            Service::Dispatch => modules.push(mdm_dispatch::module(context, &config.dispatch)),
            Service::Apple => modules.push(mdm_apple::module(context, &config.apple)?.0),
            Service::Inventory => modules.push(mdm_inventory::module(context, &config.inventory)),
            Service::Android => modules.push(mdm_android::module(context, &config.android)?),
            Service::Windows => modules.push(mdm_windows::module(context, &config.windows)?),
        }
    }
    Ok(modules)
}

/// The admin API routes of every service and adapter, as their modules register them.
const API_ROUTES: &[ApiRoutesFn] = &[
    mdm_enrollment::api,
    mdm_inventory::api,
    mdm_dispatch::api,
    mdm_apple::api,
    mdm_android::api,
];

/// The OpenAPI document of a process that runs every service.
pub fn api_document() -> OpenApi {
    mdm_runtime::openapi::document(API_ROUTES)
}
