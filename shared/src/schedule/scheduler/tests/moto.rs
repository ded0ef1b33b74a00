//! `reconcile` against moto's EventBridge Scheduler (`AWS_ENDPOINT_URL`);
//! skipped loudly without it. moto stores schedules and never fires them,
//! and validates almost nothing (not the expression, the zone, the window
//! or the target): what AWS would refuse is checked by the unit tests.

use super::super::client::{Schedules, client, create_group_like_the_template, set_enabled};
use super::*;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target};

async fn scheduler(test: &str) -> Option<Client> {
    crate::aws::emulator_endpoint("AWS_ENDPOINT_URL", test)?;
    Some(client(&crate::aws::sdk_config().await))
}

/// A schedule group tagged the way `infra/template.yaml` tags it.
pub(crate) async fn stack_group(client: &Client, max_concurrency: u32) -> String {
    let group = format!("mc-{:08x}", fastrand::u32(..));
    let wiring = Deployment { max_concurrency: Some(max_concurrency), ..deployment(&group) };
    create_group_like_the_template(client, &wiring).await.expect("create schedule group in moto");
    group
}

/// A schedule someone else made in the group.
async fn foreign_schedule(client: &Client, group: &str, name: &str) {
    client
        .create_schedule()
        .group_name(group)
        .name(name)
        .schedule_expression("rate(5 minutes)")
        .flexible_time_window(FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().expect("window"))
        .target(
            Target::builder()
                .arn(deployment(group).queue_arn)
                .role_arn(deployment(group).role_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("foreign schedule");
}

fn summary(changes: &[Change]) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = changes
        .iter()
        .map(|c| {
            let action = match c {
                Change::Create { .. } => "create",
                Change::Update { .. } => "update",
                Change::Delete { .. } => "delete",
                Change::Unchanged { .. } => "unchanged",
                Change::DeleteRule { .. } => "delete_rule",
            };
            (c.name().to_owned(), action)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn reads_the_wiring_from_the_group_tags() {
    let Some(client) = scheduler("scheduler::reads_the_wiring_from_the_group_tags").await else { return };
    let group = stack_group(&client, 3).await;
    let read = Deployment::from_group(&client, &group).await.unwrap();
    assert_eq!(read, Deployment { max_concurrency: Some(3), ..deployment(&group) });
    let missing = Deployment::from_group(&client, "no-such-group-9f3").await.unwrap_err().to_string();
    assert!(missing.contains("no such schedule group"), "{missing}");
    let bare = format!("bare-{:08x}", fastrand::u32(..));
    client.create_schedule_group().name(&bare).send().await.unwrap();
    let untagged = Deployment::from_group(&client, &bare).await.unwrap_err().to_string();
    assert!(untagged.contains(tags::QUEUE_ARN) && untagged.contains("infra/template.yaml"), "{untagged}");
}

#[tokio::test]
async fn reconcile_creates_updates_deletes_and_never_touches_others() {
    let test = "scheduler::reconcile_creates_updates_deletes_and_never_touches_others";
    let Some(client) = scheduler(test).await else { return };
    let group = stack_group(&client, 2).await;
    foreign_schedule(&client, &group, "someone-elses").await;
    let schedules = Schedules::new(client.clone(), deployment(&group), 500.0);

    let first = config(
        &(connector("alpha", "{type: interval, interval_hours: 1}", true)
            + &connector(
                "beta",
                "{type: cron, cron: \"30 2 * * *\", timezone: Europe/Paris, jitter_seconds: 300}",
                true,
            )
            + &connector("gamma", "{type: interval, interval_minutes: 15}", false)
            + &connector("delta", "{type: cron, cron: \"0 */6 * * *\"}", true)),
        2,
    );
    let paused = BTreeSet::from([ConnectorId::new("delta")]);
    let desired = desired_schedules(&first, &paused).unwrap();
    let planned = schedules.reconcile(&desired, true).await.unwrap();
    assert!(planned.iter().all(|c| matches!(c, Change::Create { .. })), "{planned:?}");
    let listed = client.list_schedules().group_name(&group).send().await.unwrap().schedules;
    assert_eq!(listed.len(), 1, "a dry run writes nothing");

    let created = schedules.reconcile(&desired, false).await.unwrap();
    assert_eq!(summary(&created).iter().filter(|(_, a)| *a == "create").count(), 4, "{created:?}");
    let beta = client.get_schedule().group_name(&group).name("beta").send().await.unwrap();
    assert_eq!(beta.schedule_expression.as_deref(), Some("cron(30 2 * * ? *)"));
    assert_eq!(beta.schedule_expression_timezone.as_deref(), Some("Europe/Paris"));
    let window = beta.flexible_time_window.unwrap();
    assert_eq!((window.mode, window.maximum_window_in_minutes), (FlexibleTimeWindowMode::Flexible, Some(5)));
    assert_eq!(beta.state, Some(ScheduleState::Enabled));
    let target = beta.target.unwrap();
    let d = deployment(&group);
    assert_eq!((target.arn.as_str(), target.role_arn.as_str()), (d.queue_arn.as_str(), d.role_arn.as_str()));
    assert_eq!(target.sqs_parameters.and_then(|p| p.message_group_id).as_deref(), Some("beta"));
    assert_eq!(target.dead_letter_config.and_then(|d| d.arn), Some(d.dead_letter_arn.clone()));
    let retry = target.retry_policy.unwrap();
    assert_eq!(
        (retry.maximum_event_age_in_seconds, retry.maximum_retry_attempts),
        (Some(MAX_EVENT_AGE_SECONDS), Some(MAX_RETRY_ATTEMPTS))
    );
    let input: serde_json::Value = serde_json::from_str(target.input.as_deref().unwrap()).unwrap();
    assert_eq!(input["connector_id"], "beta");
    for (name, state) in [("gamma", ScheduleState::Disabled), ("delta", ScheduleState::Disabled)] {
        let got = client.get_schedule().group_name(&group).name(name).send().await.unwrap();
        assert_eq!(got.state, Some(state), "{name}: disabled or paused");
        assert_eq!(got.flexible_time_window.map(|w| w.mode), Some(FlexibleTimeWindowMode::Off));
    }

    let before = schedules.calls().total();
    let again = schedules.reconcile(&desired, false).await.unwrap();
    assert!(again.iter().all(|c| !c.is_change()), "the second apply changes nothing: {again:?}");
    let calls = schedules.calls().total() - before;
    assert_eq!(calls, 1 + 5, "one ListSchedules page and one GetSchedule per schedule of the group, no writes");

    // alpha every 2 hours, beta in Tokyo, gamma gone, delta resumed, epsilon new.
    let second = config(
        &(connector("alpha", "{type: interval, interval_hours: 2}", true)
            + &connector(
                "beta",
                "{type: cron, cron: \"30 2 * * *\", timezone: Asia/Tokyo, jitter_seconds: 300}",
                true,
            )
            + &connector("delta", "{type: cron, cron: \"0 */6 * * *\"}", true)
            + &connector("epsilon", "{type: cron, cron: \"0 12 * * */2\"}", true)),
        2,
    );
    let desired = desired_schedules(&second, &no_pause()).unwrap();
    let changed = schedules.reconcile(&desired, false).await.unwrap();
    assert_eq!(
        summary(&changed),
        [
            ("alpha".to_owned(), "update"),
            ("beta".to_owned(), "update"),
            ("delta".to_owned(), "update"),
            ("epsilon".to_owned(), "create"),
            ("gamma".to_owned(), "delete"),
        ]
    );
    let Some(Change::Update { what, .. }) = changed.iter().find(|c| c.name() == "alpha") else { panic!("alpha") };
    assert_eq!(what, &["expression rate(1 hour) -> rate(2 hours)"]);
    let Some(Change::Update { what, .. }) = changed.iter().find(|c| c.name() == "delta") else { panic!("delta") };
    assert_eq!(what, &["enable"]);
    let epsilon = client.get_schedule().group_name(&group).name("epsilon").send().await.unwrap();
    assert_eq!(epsilon.schedule_expression.as_deref(), Some("cron(0 12 ? * SUN,TUE,THU,SAT *)"));
    assert!(client.get_schedule().group_name(&group).name("gamma").send().await.is_err(), "gamma deleted");
    let foreign = client.get_schedule().group_name(&group).name("someone-elses").send().await.unwrap();
    assert_eq!(foreign.schedule_expression.as_deref(), Some("rate(5 minutes)"), "not ours: untouched");
    let settled = schedules.reconcile(&desired, false).await.unwrap();
    assert!(settled.iter().all(|c| !c.is_change()), "{settled:?}");

    // A schedule that is not ours but has a connector's name: refused before any write.
    foreign_schedule(&client, &group, "zeta").await;
    let third = config(
        &(connector("alpha", "{type: interval, interval_hours: 3}", true)
            + &connector("zeta", "{type: interval, interval_hours: 1}", true)),
        2,
    );
    let error = schedules.reconcile(&desired_schedules(&third, &no_pause()).unwrap(), false).await.unwrap_err();
    assert!(matches!(error, SchedulerError::Foreign { ref name, .. } if name == "zeta"), "{error}");
    let alpha = client.get_schedule().group_name(&group).name("alpha").send().await.unwrap();
    assert_eq!(alpha.schedule_expression.as_deref(), Some("rate(2 hours)"), "nothing was written");
}

#[tokio::test]
async fn pause_and_resume_switch_only_the_state() {
    let Some(client) = scheduler("scheduler::pause_and_resume_switch_only_the_state").await else { return };
    let group = stack_group(&client, 2).await;
    let schedules = Schedules::new(client.clone(), deployment(&group), 500.0);
    let cfg = config(
        &connector("a", "{type: cron, cron: \"0 9 * * 1-5\", timezone: America/New_York, jitter_seconds: 120}", true),
        2,
    );
    let desired = desired_schedules(&cfg, &no_pause()).unwrap();
    schedules.reconcile(&desired, false).await.unwrap();
    assert!(set_enabled(&client, &group, "a", false).await.unwrap(), "paused");
    assert!(!set_enabled(&client, &group, "a", false).await.unwrap(), "already paused: no call");
    let got = client.get_schedule().group_name(&group).name("a").send().await.unwrap();
    assert_eq!(got.state, Some(ScheduleState::Disabled));
    assert_eq!(got.schedule_expression_timezone.as_deref(), Some("America/New_York"), "the rest is kept");
    // While paused, apply (which reads the pause from the state) keeps it disabled.
    let paused = BTreeSet::from([ConnectorId::new("a")]);
    let kept = schedules.reconcile(&desired_schedules(&cfg, &paused).unwrap(), false).await.unwrap();
    assert!(kept.iter().all(|c| !c.is_change()), "{kept:?}");
    assert!(set_enabled(&client, &group, "a", true).await.unwrap(), "resumed");
    let resumed = schedules.reconcile(&desired, true).await.unwrap();
    assert!(resumed.iter().all(|c| !c.is_change()), "resume restored exactly what apply wants: {resumed:?}");
    assert!(!set_enabled(&client, &group, "nobody", false).await.unwrap(), "no schedule: nothing to do");
    foreign_schedule(&client, &group, "theirs").await;
    assert!(matches!(set_enabled(&client, &group, "theirs", false).await, Err(SchedulerError::Foreign { .. })));
}

/// More connectors than an event bus held rules (300): paginated listing,
/// and a no-change apply that writes nothing.
#[tokio::test]
async fn beyond_the_old_rule_quota() {
    let Some(client) = scheduler("scheduler::beyond_the_old_rule_quota").await else { return };
    let group = stack_group(&client, 4).await;
    let schedules =
        Schedules::new(client.clone(), Deployment { max_concurrency: Some(4), ..deployment(&group) }, 2_000.0);
    let connectors: String = (0..350)
        .map(|i| connector(&format!("person-{i:04}"), "{type: interval, interval_hours: 1, jitter_seconds: 600}", true))
        .collect();
    let cfg = config(&connectors, 4);
    let desired = desired_schedules(&cfg, &no_pause()).unwrap();
    let created = schedules.reconcile(&desired, false).await.unwrap();
    assert_eq!(created.iter().filter(|c| matches!(c, Change::Create { .. })).count(), 350);
    let before = schedules.calls().by_operation();
    let again = schedules.reconcile(&desired, false).await.unwrap();
    assert!(again.iter().all(|c| !c.is_change()));
    let after = schedules.calls().by_operation();
    let delta = |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    assert_eq!((delta("ListSchedules"), delta("GetSchedule")), (4, 350), "100 per page");
    assert_eq!(delta("CreateSchedule") + delta("UpdateSchedule") + delta("DeleteSchedule"), 0);
}
