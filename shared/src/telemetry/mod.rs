//! What the service tells the outside world: logs ([`logging`]), Prometheus
//! metrics ([`metrics`]), CloudWatch metrics of the Lambda functions
//! ([`emf`]) and alert webhooks ([`alerts`]).

pub mod alerts;
pub mod emf;
pub mod logging;
pub mod metrics;
