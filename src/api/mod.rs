//! The hub's API: gRPC (`EventService`, `ConnectorAdmin`, `DossierService`, `AuditService`,
//! health, reflection) and HTTP (`/metrics`, `/healthz`, `/readyz`, the Confluent-compatible schema registry). Handlers convert between wire types and
//! the parts' types and map errors to status codes; they hold no business rules.

pub mod audit;
pub mod connectors;
pub mod convert;
pub mod dossiers;
pub mod grpc;
pub mod http;
pub mod schema_registry;
mod status;
pub mod tls;
mod webhooks;
