//! End-to-end scenarios: the whole server (enrollment, inventory, dispatch and the Apple,
//! Android and Windows adapters) in one process, on both backends, against the vendor
//! mocks with simulated devices of every platform. Each scenario acts as an admin through
//! the public API and checks both what the admin sees and what the devices received.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abrupt_departure;
mod authority;
mod cleanup;
mod lost_device;
mod managed_desktop;
mod offline;
mod planned_departure;
mod repurposing;
mod world;
