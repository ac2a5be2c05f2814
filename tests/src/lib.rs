#![doc = include_str!("../README.md")]

pub mod android;
pub mod apple;
pub mod windows;
