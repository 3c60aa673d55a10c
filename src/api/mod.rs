//! The hub's API: gRPC (`EventService`, health, reflection) and HTTP (`/metrics`, `/healthz`,
//! `/readyz`). Handlers convert between wire types and the parts' types and map errors to
//! status codes; they hold no business rules.

pub mod convert;
pub mod grpc;
pub mod http;
