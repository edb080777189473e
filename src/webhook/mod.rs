//! GitHub webhooks: signature check and envelope parsing (pure), and the
//! intake handler that makes a delivery durable before acknowledging it.

pub mod envelope;
pub mod intake;
pub mod signature;
pub mod store;
