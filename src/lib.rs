//! lienthong: a data integration hub that lets provincial and national government systems in
//! Viet Nam exchange life-event data (birth, death) through Kafka topics with validated schemas.
//!
//! The folders show the architecture (see `docs/decisions/` and the README):
//! `api` (gRPC and HTTP, no business rules) → `events` (the publish and subscribe paths) and
//! `access` (who is calling) → `registry` (schemas, validation, Avro wire format), `bus` (Kafka),
//! `db` (PostgreSQL), `domain` (typed identifiers); `audit` records every crossing in the transfer
//! ledger and its tamper-evident log, which `lineage` feeds to OpenLineage. `app` wires them into one running hub; `cli` holds one thin
//! module per subcommand.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod bus;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod db;
pub mod domain;
pub mod events;
pub mod lineage;
pub mod procedures;
pub mod registry;
pub mod sandbox;
pub mod telemetry;

/// Code generated from `schemas/proto/lienthong/v1/` (events and connector administration).
pub mod proto {
    tonic::include_proto!("lienthong.v1");

    /// The encoded descriptors of the API, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/lienthong_descriptor.bin"));
}
