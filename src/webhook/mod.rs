//! GitHub webhooks: signature check and envelope parsing (pure), and the
//! intake handler that makes a delivery durable before acknowledging it; the
//! stored deliveries as operators list, show and replay them.

pub mod deliveries;
pub mod envelope;
pub mod intake;
pub mod signature;
pub mod store;
