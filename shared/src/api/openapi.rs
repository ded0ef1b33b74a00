//! The OpenAPI 3.0 document of the management API (`GET /openapi.json`).
//!
//! Built from [`ROUTES`], one table; a test calls every route of the table
//! against the router, so the document cannot list a route the router lacks.
//! The web console's routes ([`CONSOLE_ROUTES`]) are left out on purpose:
//! HTML pages and form posts for a browser with a session cookie, not an
//! API for clients with the key (their test checks each one answers HTML).

use axum::Json;
use serde_json::{Value, json};

/// Method, path, summary, success status, and whether the route needs the key.
pub(super) const ROUTES: &[(&str, &str, &str, u16, bool)] = &[
    ("get", "/health", "Liveness and readiness", 200, false),
    ("get", "/connectors", "List connectors", 200, true),
    ("get", "/connectors/{id}", "A connector's configuration (secrets redacted) and status", 200, true),
    ("get", "/connectors/{id}/status", "A connector's status", 200, true),
    ("get", "/connectors/{id}/history", "Run history, newest first", 200, true),
    ("get", "/connectors/{id}/failed", "Failed and dead memories", 200, true),
    ("post", "/connectors/{id}/trigger", "Start a run now (asynchronous)", 202, true),
    ("post", "/connectors/{id}/reset", "Forget the ledger and state", 200, true),
    ("post", "/connectors/{id}/pause", "Stop scheduled runs", 200, true),
    ("post", "/connectors/{id}/resume", "Resume scheduled runs", 200, true),
    ("post", "/connectors/{id}/retry-failed", "Make failed and dead memories eligible again", 200, true),
    ("post", "/connectors/{id}/ask", "Ask LightRAG; each reference resolved to its memory", 200, true),
    ("get", "/lookup/resolve", "LightRAG document names to their memories", 200, true),
    ("get", "/lookup/by-entity", "The memories an entity (or a relation) came from", 200, true),
    ("get", "/lookup/by-memory", "The entities and relations LightRAG extracted from a memory", 200, true),
    ("get", "/openapi.json", "This document", 200, true),
];

/// The routes of the router that the document leaves out: the web console
/// (`super::console`), method and path.
#[cfg(test)]
pub(super) const CONSOLE_ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/login"),
    ("post", "/login"),
    ("post", "/logout"),
    ("get", "/console.css"),
    ("get", "/console/{id}"),
    ("post", "/console/{id}/trigger"),
    ("post", "/console/{id}/pause"),
    ("post", "/console/{id}/resume"),
    ("post", "/console/{id}/retry-failed"),
    ("get", "/console/{id}/reset"),
    ("post", "/console/{id}/reset"),
];

pub(super) async fn document(axum::extract::State(state): axum::extract::State<super::ApiState>) -> Json<Value> {
    let ids: Vec<&str> = state.config.connectors.iter().map(|c| c.id.as_str()).collect();
    Json(build(&ids))
}

/// The document; `connector_ids` become the examples of the `{id}` parameter
/// (so clients and fuzzers reach real connectors).
pub(super) fn build(connector_ids: &[&str]) -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, ok, secured) in ROUTES {
        let mut responses = serde_json::Map::new();
        let ok_schema = if *path == "/health" {
            json!({"$ref": "#/components/schemas/Health"})
        } else if *ok == 202 {
            json!({"$ref": "#/components/schemas/LaunchOutcome"})
        } else if super::lookup::openapi(path).is_some() {
            json!({"$ref": "#/components/schemas/Memories"})
        } else if *path == "/connectors" || path.ends_with("/history") || path.ends_with("/failed") {
            json!({"type": "array", "items": {"type": "object"}})
        } else {
            json!({"type": "object"})
        };
        responses.insert(
            ok.to_string(),
            json!({"description": "OK", "content": {"application/json": {"schema": ok_schema}}}),
        );
        let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        if *secured {
            responses.insert("401".into(), error("Missing or wrong API key"));
            responses.insert("429".into(), error("Rate limited (see Retry-After)"));
        }
        if path.contains("{id}") {
            responses.insert("404".into(), error("Unknown connector"));
        }
        if path.ends_with("/reset") {
            responses.insert(
                "202".into(),
                json!({"description": "Accepted: a large reset runs in the background (serverless)",
                       "content": {"application/json": {"schema": {"type": "object"}}}}),
            );
        }
        if path.ends_with("/trigger") || path.ends_with("/reset") {
            responses.insert("409".into(), error("The connector is running"));
        }
        if *path != "/health" && *path != "/openapi.json" {
            responses.insert("503".into(), error("State store or launcher unavailable"));
        }
        let mut parameters = Vec::new();
        if path.contains("{id}") {
            let mut parameter = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
            if let Some(first) = connector_ids.first() {
                parameter["example"] = json!(first);
            }
            parameters.push(parameter);
        }
        if path.ends_with("/history") {
            parameters.push(json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}));
        }
        if path.ends_with("/trigger") {
            parameters.push(json!({"name": "force", "in": "query", "required": false, "schema": {"type": "boolean"}}));
        }
        let mut request_body = None;
        if let Some(details) = super::lookup::openapi(path) {
            parameters.extend(details.parameters);
            request_body = details.request_body;
            for (code, description) in details.errors {
                responses.insert((*code).into(), error(description));
            }
        }
        let mut operation = json!({
            "summary": summary,
            "operationId": format!("{method}{}", path.replace(['/', '{', '}', '.', '-'], "_")),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(body) = request_body {
            operation["requestBody"] = body;
        }
        if !*secured {
            operation["security"] = json!([]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "memory-connector management API", "version": crate::VERSION},
        "paths": paths,
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}}}},
                },
                "Health": {
                    "type": "object",
                    "description": "uptime_seconds, active_jobs and last_error only for a request with the key (or with auth off)",
                    "required": ["status", "version"],
                    "properties": {
                        "status": {"type": "string"}, "version": {"type": "string"},
                        "uptime_seconds": {"type": "integer"}, "active_jobs": {"type": "integer"},
                        "last_error": {"type": "string", "nullable": true},
                    },
                },
                "Memories": super::lookup::memories_schema(),
                "LaunchOutcome": {
                    "type": "object",
                    "required": ["connector_id", "run_id", "status"],
                    "properties": {"connector_id": {"type": "string"}, "run_id": {"type": "string"}, "status": {"type": "string"}},
                },
            },
        },
    })
}
