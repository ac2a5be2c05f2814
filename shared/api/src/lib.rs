#![doc = include_str!("../README.md")]

pub mod cache;
pub mod client;
pub mod internal;
pub mod problem;
pub mod public;
pub mod service;

pub use client::{ClientError, InternalClient, ServiceUrls};
pub use problem::{ErrorCode, PROBLEM_JSON, Problem};
pub use service::Service;
