//! What berthctl's binaries share: the container unit files' one parser
//! (unit_config.rs), read by `berthctl run-unit` and by berth-generator.

pub mod generator;
pub mod genlog;
pub mod unit_config;
