//! Alert webhooks: a JSON POST (Slack-compatible `text` plus structured
//! fields) when a connector has failed `consecutive_failures` runs in a row or
//! has not synced for `no_sync_for_hours`; one alert per incident and a
//! recovery message when it clears. Incidents are remembered in memory: a
//! restarted service alerts again once for an incident still open.

use crate::config::{AlertRule, MonitoringConfig};
use crate::ids::ConnectorId;
use crate::secrets::Secret;
use crate::state::ConnectorState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    ConsecutiveFailures,
    NoSync,
}

/// The webhook body.
#[derive(Debug, Clone, Serialize)]
pub struct AlertMessage {
    /// For Slack and compatible receivers.
    pub text: String,
    pub alert: AlertKind,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub connector_id: ConnectorId,
    pub consecutive_failures: u32,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub at: DateTime<Utc>,
    pub service: &'static str,
}

pub struct Alerter {
    url: Secret,
    rules: Vec<AlertRule>,
    client: reqwest::Client,
    firing: Mutex<HashSet<(ConnectorId, AlertKind)>>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl Alerter {
    /// `None` when alerts are off or have no webhook.
    pub fn from_config(config: &MonitoringConfig) -> Option<Self> {
        let alerts = &config.alerts;
        let url = alerts.webhook_url.clone().filter(|u| alerts.enabled && !u.is_empty())?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().ok()?;
        Some(Self { url, rules: alerts.alert_on.clone(), client, firing: Mutex::new(HashSet::new()) })
    }

    /// The staleness threshold, when a `no_sync_for_hours` rule exists.
    pub fn no_sync_threshold(&self) -> Option<chrono::Duration> {
        self.rules.iter().find_map(|r| match r {
            AlertRule::NoSyncForHours(h) => chrono::Duration::try_milliseconds((h * 3_600_000.0) as i64),
            _ => None,
        })
    }

    fn failure_threshold(&self) -> Option<u32> {
        self.rules.iter().find_map(|r| match r {
            AlertRule::ConsecutiveFailures(n) => Some(*n),
            _ => None,
        })
    }

    /// Evaluates every rule for a connector; `since` is when watching began
    /// (the service start), the reference point of a connector that never synced.
    pub async fn evaluate(
        &self,
        state: &ConnectorState,
        last_error: Option<String>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if let Some(n) = self.failure_threshold() {
            let failing = state.consecutive_failures >= n;
            self.transition(AlertKind::ConsecutiveFailures, failing, state, last_error.clone(), now).await;
        }
        if let Some(limit) = self.no_sync_threshold() {
            let reference = state.last_success.unwrap_or(since);
            let stale = now - reference >= limit;
            self.transition(AlertKind::NoSync, stale, state, last_error, now).await;
        }
    }

    async fn transition(
        &self,
        kind: AlertKind,
        active: bool,
        state: &ConnectorState,
        last_error: Option<String>,
        now: DateTime<Utc>,
    ) {
        let key = (state.connector_id.clone(), kind);
        let changed = {
            let mut firing = self.firing.lock().unwrap_or_else(|p| p.into_inner());
            if active { firing.insert(key) } else { firing.remove(&key) }
        };
        if changed {
            self.send(&Self::message(kind, active, state, last_error, now)).await;
        }
    }

    /// The stateless form for the Lambda function, where no process lives
    /// from one run to the next: compares the connector's state before and
    /// after one run, and sends an alert (or its recovery) only when this
    /// run crossed a rule's threshold. `no_sync_for_hours` is judged at the
    /// end of each run of a connector that has synced at least once (a
    /// connector whose runs never happen is the schedule's failure, which
    /// the template's alarms watch).
    pub async fn evaluate_run(
        &self,
        before: Option<&ConnectorState>,
        after: &ConnectorState,
        last_error: Option<String>,
        now: DateTime<Utc>,
    ) {
        for (kind, was, is) in self.crossings(before, after, now) {
            if was != is {
                self.send(&Self::message(kind, is, after, last_error.clone(), now)).await;
            }
        }
    }

    /// Each rule: whether it held before the run and whether it holds after.
    fn crossings(
        &self,
        before: Option<&ConnectorState>,
        after: &ConnectorState,
        now: DateTime<Utc>,
    ) -> Vec<(AlertKind, bool, bool)> {
        let mut out = Vec::new();
        if let Some(n) = self.failure_threshold() {
            let was = before.is_some_and(|b| b.consecutive_failures >= n);
            out.push((AlertKind::ConsecutiveFailures, was, after.consecutive_failures >= n));
        }
        if let (Some(limit), Some(success)) = (self.no_sync_threshold(), after.last_success) {
            // Before: as it stood when the previous run ended.
            let was = before.is_some_and(|b| match (b.last_success, b.last_run_finished) {
                (Some(s), Some(ended)) => ended - s >= limit,
                _ => false,
            });
            out.push((AlertKind::NoSync, was, now - success >= limit));
        }
        out
    }

    fn message(
        kind: AlertKind,
        active: bool,
        state: &ConnectorState,
        last_error: Option<String>,
        now: DateTime<Utc>,
    ) -> AlertMessage {
        let id = &state.connector_id;
        let text = match (kind, active) {
            (AlertKind::ConsecutiveFailures, true) => format!(
                ":rotating_light: memory-connector: connector `{id}` failed {} runs in a row{}",
                state.consecutive_failures,
                last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
            (AlertKind::ConsecutiveFailures, false) => {
                format!(":white_check_mark: memory-connector: connector `{id}` recovered: a run succeeded")
            }
            (AlertKind::NoSync, true) => format!(
                ":warning: memory-connector: connector `{id}` has not synced successfully since {}",
                state.last_success.map_or_else(|| "the service started".into(), |t| t.to_rfc3339())
            ),
            (AlertKind::NoSync, false) => format!(":white_check_mark: memory-connector: connector `{id}` synced again"),
        };
        AlertMessage {
            text,
            alert: kind,
            state: if active { "firing" } else { "resolved" },
            connector_id: id.clone(),
            consecutive_failures: state.consecutive_failures,
            last_success: state.last_success,
            last_error,
            at: now,
            service: "memory-connector",
        }
    }

    async fn send(&self, message: &AlertMessage) {
        // The webhook URL carries a token: it is never logged.
        match self.client.post(self.url.expose()).json(message).send().await {
            Ok(r) if r.status().is_success() => {
                info!(target: "connector_core::telemetry::alerts", connector_id = %message.connector_id, alert = ?message.alert, state = message.state, "alert sent");
            }
            Ok(r) => {
                warn!(connector_id = %message.connector_id, status = r.status().as_u16(), "the alert webhook refused the alert")
            }
            Err(e) => {
                warn!(connector_id = %message.connector_id, error = %e.without_url(), "the alert webhook could not be reached")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertsConfig;
    use std::sync::Arc;

    async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let sink = Arc::clone(&sink);
                async move {
                    sink.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, got)
    }

    #[tokio::test]
    async fn no_sync_alerts_once_and_recovers_once() {
        let (url, got) = receiver().await;
        let config = MonitoringConfig {
            alerts: AlertsConfig {
                enabled: true,
                webhook_url: Some(Secret::new(url)),
                alert_on: vec![AlertRule::NoSyncForHours(1.0)],
            },
            ..Default::default()
        };
        let alerter = Alerter::from_config(&config).unwrap();
        let now = Utc::now();
        let mut state = ConnectorState::new(ConnectorId::new("c1"));
        state.last_success = Some(now - chrono::Duration::hours(2));
        alerter.evaluate(&state, None, now - chrono::Duration::hours(5), now).await;
        alerter.evaluate(&state, None, now - chrono::Duration::hours(5), now).await;
        // Never synced, watched for 30 min only: not stale yet.
        let fresh = ConnectorState::new(ConnectorId::new("c2"));
        alerter.evaluate(&fresh, None, now - chrono::Duration::minutes(30), now).await;
        state.last_success = Some(now);
        alerter.evaluate(&state, None, now - chrono::Duration::hours(5), now).await;
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0]["alert"].as_str(), got[0]["state"].as_str()), (Some("no_sync"), Some("firing")));
        assert_eq!(got[1]["state"], "resolved");
        assert!(got[0]["text"].as_str().unwrap().contains("c1"));
    }

    /// The Lambda form: an alert when a run crosses the threshold, none
    /// while the incident stays open, a recovery when a run clears it;
    /// nothing is remembered between runs but the connector's state.
    #[tokio::test]
    async fn runs_alert_when_they_cross_a_threshold() {
        let (url, got) = receiver().await;
        let config = MonitoringConfig {
            alerts: AlertsConfig {
                enabled: true,
                webhook_url: Some(Secret::new(url)),
                alert_on: vec![AlertRule::ConsecutiveFailures(2), AlertRule::NoSyncForHours(24.0)],
            },
            ..Default::default()
        };
        let alerter = Alerter::from_config(&config).unwrap();
        let now = Utc::now();
        let state = |failures: u32, success_hours_ago: i64| {
            let mut s = ConnectorState::new(ConnectorId::new("c1"));
            s.consecutive_failures = failures;
            s.last_success = Some(now - chrono::Duration::hours(success_hours_ago));
            s.last_run_finished = Some(now - chrono::Duration::hours(1));
            s
        };
        let error = Some("LightRAG answered 503".to_owned());
        alerter.evaluate_run(Some(&state(0, 2)), &state(1, 2), error.clone(), now).await;
        assert!(got.lock().unwrap().is_empty(), "one failure is below the threshold");
        alerter.evaluate_run(Some(&state(1, 2)), &state(2, 2), error.clone(), now).await;
        alerter.evaluate_run(Some(&state(2, 2)), &state(3, 2), error.clone(), now).await;
        alerter.evaluate_run(Some(&state(3, 2)), &state(0, 0), None, now).await;
        // The last success 30 h ago, 23 h before the previous run ended.
        let mut before = state(0, 30);
        before.last_run_finished = Some(now - chrono::Duration::hours(7));
        alerter.evaluate_run(Some(&before), &state(1, 30), error.clone(), now).await;
        alerter.evaluate_run(Some(&state(1, 30)), &state(1, 31), error, now).await;
        let got = got.lock().unwrap().clone();
        let seen: Vec<(&str, &str)> =
            got.iter().map(|m| (m["alert"].as_str().unwrap(), m["state"].as_str().unwrap())).collect();
        assert_eq!(
            seen,
            [("consecutive_failures", "firing"), ("consecutive_failures", "resolved"), ("no_sync", "firing")],
            "{got:?}"
        );
        assert!(got[0]["text"].as_str().unwrap().contains("LightRAG answered 503"));
    }
}
