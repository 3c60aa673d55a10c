//! The connector runtime: declarative connectors (manifests in `connectors/`) that move events
//! between the hub and external systems. Work is spread across hub processes by Kafka
//! consumer-group assignment; shared state (paused, stopped) lives in PostgreSQL.

pub mod admin;
pub mod effect;
pub mod http_sink;
pub mod manifest;
pub mod mapping;
pub mod mapping_tests;
pub mod postgres_sink;
pub mod reload;
pub mod resilience;
pub mod runtime;
pub mod source;
pub mod state;
pub mod stats;
pub mod webhook;
pub mod worker;
