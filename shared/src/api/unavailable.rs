//! The management API of a function that could not start (its config is
//! wrong): `/health` answers 503 with status `degraded`, every other route
//! 503 with code `misconfigured`. The reason is in the function's log only:
//! it may name internal URLs and fields, and the caller has no key yet.

use super::{ApiError, Health};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

pub fn unavailable_router() -> Router {
    Router::new().route("/health", get(health)).fallback(misconfigured)
}

async fn health() -> impl IntoResponse {
    let body = Health { status: "degraded".into(), version: crate::VERSION.into(), details: None };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

async fn misconfigured() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "misconfigured",
        "the service could not start with its configuration; its log says why",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_is_degraded_and_every_route_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, unavailable_router()).await });
        for (path, expected) in [("/health", "degraded"), ("/connectors", "misconfigured"), ("/", "misconfigured")] {
            let answer = reqwest::get(format!("{url}{path}")).await.unwrap();
            assert_eq!(answer.status().as_u16(), 503, "{path}");
            let body: serde_json::Value = answer.json().await.unwrap();
            let found = if path == "/health" { &body["status"] } else { &body["error"]["code"] };
            assert_eq!(found, expected, "{path}: {body}");
        }
    }
}
