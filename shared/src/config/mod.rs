//! The configuration: schema, loading, `${VAR}` interpolation, `.env`
//! layering and validation.
//!
//! [`load`] is the entry point: it returns a [`Config`] that has passed every
//! rule, or a [`ConfigError`] listing every [`Problem`] with its field path.
//! The YAML contract is `config/config.example.yaml` at the repository root
//! (every section, with its defaults) and the README's "Configuration".

mod cron;
mod env;
mod error;
mod interpolate;
pub(crate) mod lenient;
mod load;
mod path;
mod scalars;
mod schema;
mod validate;

pub use cron::{is_utc, parse_unix_cron, time_zone};
pub use env::Environment;
pub use error::{ConfigError, Problem};
pub use load::{load, load_str, load_str_for, load_with_env, redacted_yaml};
pub use path::SECRET_FIELDS;
pub use schema::*;
pub use validate::{
    API_ROUTE_PREFIXES, MAX_CONNECTOR_ID_LEN, MIN_ENCRYPTION_KEY_CHARS, api_auth_problem, exposure_warnings,
    health_endpoint_problem, is_valid_connector_id, route_path_problem, validate,
};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod hostile_tests;
