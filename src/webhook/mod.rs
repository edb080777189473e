//! GitHub webhooks: signature check and envelope parsing (pure), and the
//! intake handler that makes a delivery durable before acknowledging it; gap
//! recovery from the App's deliveries API; the stored deliveries as operators
//! list, show and replay them.

pub mod deliveries;
pub mod envelope;
pub mod intake;
pub mod recovery;
pub mod signature;
pub mod store;
