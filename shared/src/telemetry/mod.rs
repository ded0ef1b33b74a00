//! What the service tells the outside world: logs ([`logging`]), Prometheus
//! metrics ([`metrics`]) and alert webhooks ([`alerts`]).

pub mod alerts;
pub mod logging;
pub mod metrics;
