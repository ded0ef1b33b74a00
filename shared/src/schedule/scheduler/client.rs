//! The EventBridge Scheduler calls of `schedules apply` (`aws` feature):
//! read the stack's wiring from its schedule group, read every schedule of
//! the group (one `ListSchedules` page per 100, one `GetSchedule` each),
//! then write only what differs.
//!
//! Rate limits: every call waits for a slot of one [`Pacer`] (default
//! [`DEFAULT_REQUESTS_PER_SECOND`], below the lowest default request-rate
//! quota of `Create/Get/Update/DeleteSchedule` in any Region), at most
//! [`CONCURRENCY`] calls are in flight, and a throttled call is retried by
//! the SDK's standard retry (exponential backoff with jitter,
//! [`MAX_ATTEMPTS`] attempts). Nothing is written before everything was read
//! and the whole plan is known.

use super::{
    Change, CurrentSchedule, Deployment, MAX_EVENT_AGE_SECONDS, MAX_RETRY_ATTEMPTS, ScheduleSpec, SchedulerError,
    differences, tags,
};
use crate::pacing::Pacer;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::config::retry::RetryConfig;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState,
    SqsParameters, Target,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests per second across all calls of one apply (`--requests-per-second`).
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 200.0;
/// Calls in flight at once.
pub const CONCURRENCY: usize = 16;
/// Attempts of one call (the SDK backs off between them on throttling and 5xx).
pub const MAX_ATTEMPTS: u32 = 8;
/// `ListSchedules` page size (the API's largest).
const PAGE: i32 = 100;

/// Calls made, by operation (the figures of `make bench`).
#[derive(Debug, Default)]
pub struct CallCounts {
    counts: std::sync::Mutex<BTreeMap<&'static str, u64>>,
    total: AtomicU64,
}

impl CallCounts {
    fn add(&self, operation: &'static str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(operation).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn by_operation(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// One step of a plan.
#[derive(Debug, Clone)]
enum Step {
    Create(ScheduleSpec),
    Update(ScheduleSpec, Vec<String>),
    Unchanged(String),
    Delete(String),
}

impl Step {
    fn change(&self) -> Change {
        match self {
            Step::Create(spec) => Change::Create {
                schedule: spec.name.clone(),
                expression: spec.expression.clone(),
                timezone: spec.timezone.clone(),
                enabled: spec.enabled,
            },
            Step::Update(spec, what) => Change::Update { schedule: spec.name.clone(), what: what.clone() },
            Step::Unchanged(name) => Change::Unchanged { schedule: name.clone() },
            Step::Delete(name) => Change::Delete { schedule: name.clone() },
        }
    }
}

/// The schedules of one schedule group, reconciled through `client`.
pub struct Schedules {
    client: Client,
    deployment: Deployment,
    pacer: Arc<Pacer>,
    calls: Arc<CallCounts>,
}

fn aws_error<'a, E: std::error::Error>(
    operation: &'static str,
    name: &'a str,
) -> impl FnOnce(E) -> SchedulerError + 'a {
    move |e| SchedulerError::Aws { operation, name: name.to_owned(), detail: crate::errors::error_chain(&e) }
}

/// A Scheduler client that backs off and retries throttled calls.
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    recorded_client(sdk, None)
}

/// [`client`], recording its calls when `recorder` is given (the `api`
/// function's pause/resume: the template check).
pub fn recorded_client(sdk: &aws_config::SdkConfig, recorder: Option<&crate::aws::record::CallRecorder>) -> Client {
    let mut config = aws_sdk_scheduler::config::Builder::from(sdk).retry_config(
        RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS).with_initial_backoff(Duration::from_millis(200)),
    );
    if let Some(recorder) = recorder {
        config = config.interceptor(recorder.clone());
    }
    Client::from_conf(config.build())
}

impl Deployment {
    /// The stack's wiring, from the tags of its schedule group.
    pub async fn from_group(client: &Client, group: &str) -> Result<Self, SchedulerError> {
        let found = client.get_schedule_group().name(group).send().await.map_err(|e| {
            let missing = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
            SchedulerError::Deployment {
                group: group.to_owned(),
                detail: if missing {
                    "no such schedule group; deploy infra/template.yaml (its ScheduleGroupName output) or pass --group"
                        .into()
                } else {
                    format!("GetScheduleGroup: {}", crate::errors::error_chain(&e))
                },
            }
        })?;
        let arn = found.arn.ok_or_else(|| SchedulerError::Deployment {
            group: group.to_owned(),
            detail: "GetScheduleGroup answered without an ARN".into(),
        })?;
        let listed = client
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(aws_error("ListTagsForResource", group))?;
        let tags: BTreeMap<String, String> =
            listed.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect();
        let required = |key: &str| {
            tags.get(key).filter(|v| !v.trim().is_empty()).cloned().ok_or_else(|| SchedulerError::Deployment {
                group: group.to_owned(),
                detail: format!("the group has no tag {key:?}; it is made by infra/template.yaml, which tags it"),
            })
        };
        let max_concurrency = match tags.get(tags::MAX_CONCURRENCY) {
            None => None,
            Some(text) => Some(text.trim().parse::<u32>().map_err(|_| SchedulerError::Deployment {
                group: group.to_owned(),
                detail: format!("tag {:?} is {text:?}, not a number", tags::MAX_CONCURRENCY),
            })?),
        };
        Ok(Self {
            group: group.to_owned(),
            queue_arn: required(tags::QUEUE_ARN)?,
            role_arn: required(tags::ROLE_ARN)?,
            dead_letter_arn: required(tags::DEAD_LETTER_ARN)?,
            config_uri: tags.get(tags::CONFIG_URI).filter(|v| !v.trim().is_empty()).cloned(),
            max_concurrency,
        })
    }
}

impl Schedules {
    pub fn new(client: Client, deployment: Deployment, requests_per_second: f64) -> Self {
        Self {
            client,
            deployment,
            pacer: Arc::new(Pacer::per_second(requests_per_second)),
            calls: Arc::new(CallCounts::default()),
        }
    }

    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    pub fn calls(&self) -> &CallCounts {
        &self.calls
    }

    /// Waits for a request slot and counts the call.
    async fn slot(&self, operation: &'static str) {
        self.pacer.wait().await;
        self.calls.add(operation);
    }

    /// The names of every schedule in the group.
    async fn names(&self) -> Result<BTreeSet<String>, SchedulerError> {
        let mut names = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            self.slot("ListSchedules").await;
            let page = self
                .client
                .list_schedules()
                .group_name(&self.deployment.group)
                .max_results(PAGE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(aws_error("ListSchedules", &self.deployment.group))?;
            names.extend(page.schedules.into_iter().filter_map(|s| s.name));
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(names),
            }
        }
    }

    /// One schedule as it is; `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<CurrentSchedule>, SchedulerError> {
        Ok(self.get_raw(name).await?.map(|got| current_of(&got)))
    }

    async fn get_raw(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput>, SchedulerError> {
        self.slot("GetSchedule").await;
        match self.client.get_schedule().group_name(&self.deployment.group).name(name).send().await {
            Ok(got) => Ok(Some(got)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(aws_error("GetSchedule", name)(e)),
        }
    }

    /// What it takes to make the group match `desired`: reads only.
    async fn plan(&self, desired: &[ScheduleSpec]) -> Result<Vec<Step>, SchedulerError> {
        let existing = self.names().await?;
        let wanted: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
        // Every schedule of the group is read: the desired ones to compare,
        // the others to see whether they are ours to delete.
        let read: Vec<(String, Option<CurrentSchedule>)> = stream::iter(existing.iter().cloned())
            .map(|name| async move {
                let current = self.get(&name).await?;
                Ok::<_, SchedulerError>((name, current))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let read: BTreeMap<String, Option<CurrentSchedule>> = read.into_iter().collect();
        let mut steps = Vec::with_capacity(desired.len());
        for spec in desired {
            match read.get(&spec.name) {
                // Listed then gone (deleted meanwhile), or never there.
                None | Some(None) => steps.push(Step::Create(spec.clone())),
                Some(Some(current)) if !current.is_managed() => {
                    return Err(SchedulerError::Foreign {
                        group: self.deployment.group.clone(),
                        name: spec.name.clone(),
                    });
                }
                Some(Some(current)) => {
                    let what = differences(spec, current, &self.deployment);
                    steps.push(if what.is_empty() {
                        Step::Unchanged(spec.name.clone())
                    } else {
                        Step::Update(spec.clone(), what)
                    });
                }
            }
        }
        for (name, current) in &read {
            if !wanted.contains(name.as_str()) && current.as_ref().is_some_and(CurrentSchedule::is_managed) {
                steps.push(Step::Delete(name.clone()));
            }
        }
        Ok(steps)
    }

    /// Makes the group match `desired`; with `dry_run` only says what it
    /// would do. Schedules that are not ours are never touched.
    pub async fn reconcile(&self, desired: &[ScheduleSpec], dry_run: bool) -> Result<Vec<Change>, SchedulerError> {
        let steps = self.plan(desired).await?;
        let changes = steps.iter().map(Step::change).collect();
        if dry_run {
            return Ok(changes);
        }
        stream::iter(steps.into_iter().filter(|s| !matches!(s, Step::Unchanged(_))))
            .map(|step| async move { self.write(step).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(changes)
    }

    async fn write(&self, step: Step) -> Result<(), SchedulerError> {
        match step {
            Step::Create(spec) => self.put(&spec, true).await,
            Step::Update(spec, _) => self.put(&spec, false).await,
            Step::Delete(name) => {
                self.slot("DeleteSchedule").await;
                match self.client.delete_schedule().group_name(&self.deployment.group).name(&name).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
                    Err(e) => Err(aws_error("DeleteSchedule", &name)(e)),
                }
            }
            Step::Unchanged(_) => Ok(()),
        }
    }

    async fn put(&self, spec: &ScheduleSpec, create: bool) -> Result<(), SchedulerError> {
        let operation = if create { "CreateSchedule" } else { "UpdateSchedule" };
        let window = match spec.window_minutes {
            None => FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off),
            Some(minutes) => FlexibleTimeWindow::builder()
                .mode(FlexibleTimeWindowMode::Flexible)
                .maximum_window_in_minutes(minutes as i32),
        }
        .build()
        .map_err(aws_error(operation, &spec.name))?;
        let target = Target::builder()
            .arn(&self.deployment.queue_arn)
            .role_arn(&self.deployment.role_arn)
            .input(&spec.input)
            .sqs_parameters(SqsParameters::builder().message_group_id(&spec.message_group).build())
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS)
                    .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
                    .build(),
            )
            .dead_letter_config(DeadLetterConfig::builder().arn(&self.deployment.dead_letter_arn).build())
            .build()
            .map_err(aws_error(operation, &spec.name))?;
        let state = if spec.enabled { ScheduleState::Enabled } else { ScheduleState::Disabled };
        self.slot(operation).await;
        // Create and Update take the same definition through two builder types.
        macro_rules! define {
            ($request:expr) => {
                $request
                    .group_name(&self.deployment.group)
                    .name(&spec.name)
                    .schedule_expression(&spec.expression)
                    .schedule_expression_timezone(&spec.timezone)
                    .flexible_time_window(window)
                    .target(target)
                    .state(state)
                    .description(&spec.description)
                    .action_after_completion(ActionAfterCompletion::None)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(aws_error(operation, &spec.name))
            };
        }
        if create { define!(self.client.create_schedule()) } else { define!(self.client.update_schedule()) }
    }
}

/// Turns one connector's schedule in `group` on or off (pause/resume in the
/// `api` function), leaving the rest of it as it is. `Ok(false)`: nothing to
/// do (no schedule yet, or already in that state).
pub async fn set_enabled(client: &Client, group: &str, name: &str, enabled: bool) -> Result<bool, SchedulerError> {
    let got = match client.get_schedule().group_name(group).name(name).send().await {
        Ok(got) => got,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => return Ok(false),
        Err(e) => return Err(aws_error("GetSchedule", name)(e)),
    };
    if !current_of(&got).is_managed() {
        return Err(SchedulerError::Foreign { group: group.to_owned(), name: name.to_owned() });
    }
    let state = if enabled { ScheduleState::Enabled } else { ScheduleState::Disabled };
    if got.state.as_ref() == Some(&state) {
        return Ok(false);
    }
    client
        .update_schedule()
        .group_name(group)
        .name(name)
        .set_schedule_expression(got.schedule_expression)
        .set_schedule_expression_timezone(got.schedule_expression_timezone)
        .set_flexible_time_window(got.flexible_time_window)
        .set_target(got.target)
        .set_description(got.description)
        .set_start_date(got.start_date)
        .set_end_date(got.end_date)
        .set_kms_key_arn(got.kms_key_arn)
        .set_action_after_completion(got.action_after_completion)
        .state(state)
        .send()
        .await
        .map_err(aws_error("UpdateSchedule", name))?;
    Ok(true)
}

/// Makes the schedule group of `deployment`, tagged the way
/// `infra/template.yaml` tags it: for the tests and the bench (an emulator
/// runs no CloudFormation).
#[doc(hidden)]
pub async fn create_group_like_the_template(client: &Client, deployment: &Deployment) -> Result<(), SchedulerError> {
    let group = &deployment.group;
    let mut tags_of = vec![
        (tags::QUEUE_ARN, deployment.queue_arn.clone()),
        (tags::ROLE_ARN, deployment.role_arn.clone()),
        (tags::DEAD_LETTER_ARN, deployment.dead_letter_arn.clone()),
    ];
    tags_of.extend(deployment.config_uri.clone().map(|uri| (tags::CONFIG_URI, uri)));
    tags_of.extend(deployment.max_concurrency.map(|max| (tags::MAX_CONCURRENCY, max.to_string())));
    let mut request = client.create_schedule_group().name(group);
    for (key, value) in tags_of {
        request = request.tags(
            aws_sdk_scheduler::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(aws_error("CreateScheduleGroup", group))?,
        );
    }
    request.send().await.map_err(aws_error("CreateScheduleGroup", group))?;
    Ok(())
}

/// The fields `apply` owns, out of a `GetSchedule` answer.
fn current_of(got: &aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput) -> CurrentSchedule {
    let target = got.target.as_ref();
    CurrentSchedule {
        expression: got.schedule_expression.clone(),
        timezone: got.schedule_expression_timezone.clone(),
        window_minutes: got
            .flexible_time_window
            .as_ref()
            .filter(|w| w.mode == FlexibleTimeWindowMode::Flexible)
            .and_then(|w| w.maximum_window_in_minutes)
            .and_then(|m| u32::try_from(m).ok()),
        enabled: got.state == Some(ScheduleState::Enabled),
        description: got.description.clone(),
        target_arn: target.map(|t| t.arn.clone()),
        role_arn: target.map(|t| t.role_arn.clone()),
        input: target.and_then(|t| t.input.clone()),
        message_group: target.and_then(|t| t.sqs_parameters.as_ref()).and_then(|p| p.message_group_id.clone()),
        dead_letter_arn: target.and_then(|t| t.dead_letter_config.as_ref()).and_then(|d| d.arn.clone()),
        retry: target
            .and_then(|t| t.retry_policy.as_ref())
            .map(|r| (r.maximum_event_age_in_seconds.unwrap_or(-1), r.maximum_retry_attempts.unwrap_or(-1))),
    }
}
