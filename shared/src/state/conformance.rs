//! The one test suite every [`StateStore`] adapter passes. It is test
//! support, not part of the library's API: compiled for this crate's own
//! tests, and for another crate's tests when its dev-dependency on
//! `memory-connector-core` enables the `test-support` feature:
//!
//! ```ignore
//! let fresh: StoreFactory = Box::new(move || Box::pin(async move { /* a new, empty store */ }));
//! conformance::run_all(&fresh).await;
//! ```
//!
//! Every check panics with a message naming the check and the store. Test
//! timestamps are whole milliseconds: that is the precision every store must
//! keep (SQLite keeps no more).

mod cache;
pub(crate) mod data;
mod digest;
mod history;
mod lease;
mod ledger;
mod names;
mod storage;

pub use cache::cache_round_trip;
pub use digest::ledger_digest;
pub use history::{connectors_listing, overviews, prune_runs, reset, runs_history, status_snapshot};
pub use lease::{lease_checkpoint_guard, lease_lifecycle, lease_single_flight};
pub use ledger::{
    checkpoint_round_trip, connectors_isolated, entries_lookup, entries_with_status, marks_apart, odd_memory_ids,
    sending_marks, status_counts, upsert_replaces,
};
pub use names::entries_by_name;
pub use storage::check_persistence;

use super::{StateError, StateStore};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A store, once opened.
pub type StoreFuture = Pin<Box<dyn Future<Output = Arc<dyn StateStore>> + Send>>;

/// Opens a store. For [`run_all`]: a fresh, empty store on every call. For
/// [`check_persistence`]: the same (initially empty) storage on every call,
/// as a second process would open it.
pub type StoreFactory = Box<dyn Fn() -> StoreFuture + Send + Sync>;

/// Runs every check of the suite, each on a fresh store from `fresh`.
pub async fn run_all(fresh: &StoreFactory) {
    lease_lifecycle(fresh().await).await;
    lease_single_flight(fresh().await).await;
    lease_checkpoint_guard(fresh().await).await;
    checkpoint_round_trip(fresh().await).await;
    entries_lookup(fresh().await).await;
    upsert_replaces(fresh().await).await;
    status_counts(fresh().await).await;
    entries_with_status(fresh().await).await;
    sending_marks(fresh().await).await;
    marks_apart(fresh().await).await;
    entries_by_name(fresh().await).await;
    connectors_isolated(fresh().await).await;
    odd_memory_ids(fresh().await).await;
    runs_history(fresh().await).await;
    status_snapshot(fresh().await).await;
    reset(fresh().await).await;
    prune_runs(fresh().await).await;
    connectors_listing(fresh().await).await;
    overviews(fresh().await).await;
    cache_round_trip(fresh().await).await;
    ledger_digest(fresh().await).await;
}

/// The value of `result`, or a panic naming the check, the store and the error.
#[track_caller]
fn ok<T>(result: Result<T, StateError>, store: &dyn StateStore, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{store:?}: {what}: unexpected error: {error}"),
    }
}
