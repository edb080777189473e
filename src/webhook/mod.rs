//! GitHub webhooks: signature check and envelope parsing (pure), and the
//! intake handler that makes a delivery durable before acknowledging it, and
//! gap recovery from the App's deliveries API.

pub mod envelope;
pub mod intake;
pub mod recovery;
pub mod signature;
pub mod store;
