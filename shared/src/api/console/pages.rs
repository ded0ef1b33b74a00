//! The console's pages (maud: every `(value)` is HTML-escaped; nothing here
//! writes pre-escaped text but the doctype). Untrusted text goes through
//! [`crate::text`] first, so that control and bidi characters show as
//! escapes, and sits in `<bdi>` so that right-to-left text cannot reorder
//! what surrounds it. Links are relative (`root`), so the console also
//! works below a path prefix.

use super::chart::runs_chart;
use crate::state::{EntryStatus, LedgerEntry, RunRecord};
use crate::status::{ConnectorStatus, DisplayStatus};
use crate::text;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

/// Failed memories listed on a connector's page (the API's `failed` has them all).
pub(super) const FAILED_SHOWN: usize = 500;
/// Runs listed in a connector's history table.
pub(super) const HISTORY_RUNS: usize = 50;
/// A memory id is cut after this many characters (its full form is in the title).
const ID_CHARS: usize = 120;

/// What every page shares: where the root is (relative), the CSRF token of
/// the session (none on the login page), the title.
pub(super) struct Frame<'a> {
    pub root: &'a str,
    pub csrf: Option<&'a str>,
    pub title: &'a str,
    /// Reload after this many seconds (while a run is going).
    pub refresh: Option<u32>,
}

/// What the last action did, shown above a connector's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    Triggered,
    Paused,
    Resumed,
    Retried(u64),
    Reset,
    ResetAccepted,
}

impl Done {
    /// The query of the page shown after the action (`?done=...`).
    pub(super) fn query(self) -> String {
        match self {
            Done::Triggered => "done=triggered".into(),
            Done::Paused => "done=paused".into(),
            Done::Resumed => "done=resumed".into(),
            Done::Retried(n) => format!("done=retried&count={n}"),
            Done::Reset => "done=reset".into(),
            Done::ResetAccepted => "done=reset-accepted".into(),
        }
    }

    /// Back from [`Done::query`]; anything else shows no notice.
    pub(super) fn parse(done: Option<&str>, count: Option<&str>) -> Option<Self> {
        Some(match done? {
            "triggered" => Done::Triggered,
            "paused" => Done::Paused,
            "resumed" => Done::Resumed,
            "retried" => Done::Retried(count?.parse().ok()?),
            "reset" => Done::Reset,
            "reset-accepted" => Done::ResetAccepted,
            _ => return None,
        })
    }

    fn message(self) -> String {
        match self {
            Done::Triggered => "Run started; it shows in the history below (the page reloads while it runs).".into(),
            Done::Paused => "Paused: the schedule skips this connector until it is resumed.".into(),
            Done::Resumed => "Resumed: the schedule runs this connector again.".into(),
            Done::Retried(n) => format!("{n} failed or dead memories are eligible again on the next run."),
            Done::Reset => "Reset: the ledger and state are gone; the next run sends every memory again.".into(),
            Done::ResetAccepted => {
                "Reset accepted: it runs in the background (the connector shows running until done).".into()
            }
        }
    }
}

pub(super) fn layout(frame: &Frame<'_>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                @if let Some(seconds) = frame.refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (frame.title) " · memory-connector" }
                link rel="stylesheet" href=(format!("{}console.css", frame.root));
            }
            body {
                header {
                    a class="brand" href=(frame.root) { "memory-connector" }
                    span class="version" { "v" (crate::VERSION) }
                    @if let Some(csrf) = frame.csrf {
                        form class="logout" method="post" action=(format!("{}logout", frame.root)) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (main) }
            }
        }
    }
}

/// Why the login form is shown again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoginProblem {
    WrongKey,
    /// Plain http to a network address: the key is not taken.
    PlainHttp,
    /// A POST without a valid session (expired, logged out, forged).
    SessionEnded,
}

pub(super) fn login(frame: &Frame<'_>, problem: Option<LoginProblem>, host: &str) -> Markup {
    layout(
        frame,
        html! {
            section class="login" {
                h1 { "Log in" }
                @match problem {
                    Some(LoginProblem::WrongKey) => p class="alert" role="alert" { "That key is not the API key." },
                    Some(LoginProblem::SessionEnded) => p class="alert" role="alert" { "Your session has ended; log in again." },
                    Some(LoginProblem::PlainHttp) => p class="alert" role="alert" {
                        "This console is reached over plain http at " code { (text::shown_cut(host, 100)) }
                        ", so the key would cross the network in clear text. Open it over https (a TLS proxy that sets "
                        code { "X-Forwarded-Proto: https" } ") or through a loopback tunnel, e.g. "
                        code { "ssh -L 9622:127.0.0.1:9622 host" } " and " code { "http://127.0.0.1:9622/" } "."
                    },
                    None => {},
                }
                form method="post" action=(format!("{}login", frame.root)) {
                    label for="key" { "API key (" code { "api.api_key" } ")" }
                    input id="key" name="key" type="password" autocomplete="current-password" required autofocus;
                    button type="submit" { "Log in" }
                }
                p class="hint" { "The key is checked once; the browser then keeps a session cookie (HttpOnly, SameSite=Strict), not the key." }
            }
        },
    )
}

pub(super) fn overview(frame: &Frame<'_>, connectors: &[ConnectorStatus], now: DateTime<Utc>) -> Markup {
    layout(
        frame,
        html! {
            h1 { "Connectors" }
            @if connectors.is_empty() {
                p { "No connectors are configured." }
            } @else {
                table class="overview" {
                    thead { tr {
                        th { "Connector" } th { "Status" } th { "Last run" } th class="num" { "Processed" }
                        th class="num" { "Failed" } th { "Next run" } th { "Paused" } th class="num" { "Consecutive failures" }
                    } }
                    tbody {
                        @for c in connectors {
                            tr {
                                td {
                                    a href=(connector_url(frame.root, c)) { (c.connector_id) }
                                    @if let Some(description) = &c.description {
                                        div class="muted" { bdi { (text::shown_cut(description, 200)) } }
                                    }
                                }
                                td { (badge(c.status)) }
                                td { (last_run(c.last_run.as_ref(), now)) }
                                td class="num" { (c.processed) }
                                td class="num" { (c.failed) }
                                td { (maybe_when(c.next_run, now)) }
                                td { @if c.paused { "yes" } @else { "no" } }
                                td class="num" { (c.consecutive_failures) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Everything a connector's page shows.
pub(super) struct ConnectorPage<'a> {
    pub status: &'a ConnectorStatus,
    pub runs: &'a [RunRecord],
    pub failed: &'a [LedgerEntry],
    pub done: Option<Done>,
    /// An action that did not happen: its HTTP status and message.
    pub problem: Option<(u16, &'a str)>,
    pub now: DateTime<Utc>,
}

pub(super) fn connector(frame: &Frame<'_>, page: &ConnectorPage<'_>) -> Markup {
    let c = page.status;
    let csrf = frame.csrf.unwrap_or_default();
    let here = connector_url(frame.root, c);
    layout(
        frame,
        html! {
            nav { a href=(frame.root) { "← All connectors" } }
            h1 { (c.connector_id) " " (badge(c.status)) }
            @if let Some(description) = &c.description {
                p class="muted" { bdi { (text::shown_cut(description, 500)) } }
            }
            @if let Some(done) = page.done {
                p class="notice" role="status" { (done.message()) }
            }
            @if let Some((status, message)) = page.problem {
                p class="alert" role="alert" { "Not done (HTTP " (status) "): " (text::escape_shown(message)) }
            }
            section class="actions" {
                form method="post" action=(format!("{here}/trigger")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label class="inline" { input type="checkbox" name="force" value="1"; " re-send every memory (force)" }
                    button type="submit" { "Trigger a run" }
                }
                @let (verb, label) = if c.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                form method="post" action=(format!("{here}/{verb}")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { (label) }
                }
                form method="post" action=(format!("{here}/retry-failed")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Retry failed (" (c.failed) ")" }
                }
                a class="button danger" href=(format!("{here}/reset")) { "Reset…" }
            }
            section class="facts" {
                dl {
                    dt { "Enabled" } dd { @if c.enabled { "yes" } @else { "no (enabled: false)" } }
                    dt { "Paused" } dd { @if c.paused { "yes" } @else { "no" } }
                    dt { "Last run" } dd { (last_run(c.last_run.as_ref(), page.now)) }
                    dt { "Last successful sync" } dd { (maybe_when(c.last_sync, page.now)) }
                    dt { "Next run" } dd { (maybe_when(c.next_run, page.now)) }
                    dt { "Consecutive failures" } dd { (c.consecutive_failures) }
                    @if let Some(lease) = &c.lease {
                        dt { "Running" } dd { code { (lease.owner) } " until " (when(lease.expires_at, page.now)) }
                    }
                }
                table class="counts" {
                    caption { "Memories by status" }
                    tbody {
                        @for (status, count) in c.ledger.iter() {
                            tr class=[status.is_failed().then_some("attention")] { th { (status.as_str()) } td class="num" { (count) } }
                        }
                        tr class="total" { th { "total" } td class="num" { (c.ledger.total()) } }
                    }
                }
            }
            h2 { "Runs" }
            @if page.runs.is_empty() {
                p { "No run yet." }
            } @else {
                figure {
                    (runs_chart(page.runs))
                    figcaption { span class="key-new" { "■" } " new  " span class="key-failed" { "■" } " failed (here or in LightRAG), per run, oldest left" }
                }
                (history(page.runs, page.now))
            }
            h2 { "Failed and dead memories (" (page.status.failed.max(page.failed.len() as u64)) ")" }
            (failed(page.failed, page.status.failed, page.now))
        },
    )
}

fn history(runs: &[RunRecord], now: DateTime<Utc>) -> Markup {
    html! {
        table class="runs" {
            thead { tr {
                th { "Started" } th { "Trigger" } th { "Status" } th { "Duration" } th class="num" { "Fetched" }
                th class="num" { "New" } th class="num" { "Updated" } th class="num" { "Unchanged" }
                th class="num" { "Failed" } th class="num" { "LightRAG failed" } th class="num" { "Dead" } th { "Error" }
            } }
            tbody {
                @for run in runs.iter().take(HISTORY_RUNS) {
                    tr {
                        td title=(run.run_id.as_str()) { (when(run.started_at, now)) }
                        td { (run.trigger.as_str()) }
                        td { span class=(format!("badge s-{}", run.status.as_str())) { (run.status.as_str()) } }
                        td { (duration(run)) }
                        td class="num" { (run.counts.fetched) }
                        td class="num" { (run.counts.new) }
                        td class="num" { (run.counts.updated) }
                        td class="num" { (run.counts.unchanged) }
                        td class="num" { (run.counts.failed) }
                        td class="num" { (run.counts.lightrag_failed) }
                        td class="num" { (run.counts.dead) }
                        td class="error" { @if let Some(error) = &run.error { bdi { (text::escape_shown_lines(error)) } } }
                    }
                }
            }
        }
    }
}

/// The first failed entries (at most [`FAILED_SHOWN`]) of `total`.
fn failed(entries: &[LedgerEntry], total: u64, now: DateTime<Utc>) -> Markup {
    let more = total.saturating_sub(entries.len() as u64);
    html! {
        @if entries.is_empty() {
            p { "None." }
        } @else {
            table class="failed" {
                thead { tr {
                    th { "Memory id" } th { "Status" } th class="num" { "Attempts" } th { "Next attempt" } th { "Last error" }
                } }
                tbody {
                    @for entry in entries.iter().take(FAILED_SHOWN) {
                        tr {
                            td class="memory-id" title=(text::escape_shown(entry.memory_id.as_str())) {
                                bdi { code { (text::shown_cut(entry.memory_id.as_str(), ID_CHARS)) } }
                            }
                            td { span class=(entry_class(entry.status)) { (entry.status.as_str()) } }
                            td class="num" { (entry.attempts) }
                            td { (maybe_when(entry.next_attempt_at, now)) }
                            td class="error" { @if let Some(error) = &entry.last_error { bdi { (text::escape_shown_lines(error)) } } }
                        }
                    }
                }
            }
            @if more > 0 {
                p class="muted" { "… and " (more) " more (" code { "memory-connector failed" } " or " code { "GET /connectors/{id}/failed" } " lists them all)." }
            }
        }
    }
}

/// The confirmation step of a reset.
pub(super) fn confirm_reset(frame: &Frame<'_>, c: &ConnectorStatus, mismatch: bool) -> Markup {
    let here = connector_url(frame.root, c);
    layout(
        frame,
        html! {
            nav { a href=(here) { "← Back to " (c.connector_id) } }
            h1 { "Reset " (c.connector_id) "?" }
            p {
                "This forgets the ledger (" (c.ledger.total()) " memories) and the state of the connector; the run history stays. "
                "The next run sends every memory to LightRAG again."
            }
            @if mismatch {
                p class="alert" role="alert" { "The connector id you typed does not match; nothing was reset." }
            }
            form class="confirm" method="post" action=(format!("{here}/reset")) {
                input type="hidden" name="csrf" value=(frame.csrf.unwrap_or_default());
                label for="confirm" { "Type " code { (c.connector_id) } " to confirm" }
                input id="confirm" name="confirm" type="text" autocomplete="off" required;
                button class="danger" type="submit" { "Reset " (c.connector_id) }
            }
        },
    )
}

/// A page that only says what went wrong.
pub(super) fn problem(frame: &Frame<'_>, status: u16, message: &str) -> Markup {
    layout(
        frame,
        html! {
            h1 { "HTTP " (status) }
            p class="alert" role="alert" { (text::escape_shown(message)) }
            p { a href=(frame.root) { "Back to the connectors" } }
        },
    )
}

/// A connector's page, relative to `root` (connector ids are URL-safe:
/// `[A-Za-z0-9][A-Za-z0-9._-]*`, checked when the config loads).
fn connector_url(root: &str, c: &ConnectorStatus) -> String {
    format!("{root}console/{}", c.connector_id)
}

fn badge(status: DisplayStatus) -> Markup {
    html! { span class=(format!("badge s-{}", status.as_str())) { (status.as_str()) } }
}

fn entry_class(status: EntryStatus) -> String {
    format!("badge e-{}", status.as_str())
}

fn last_run(run: Option<&RunRecord>, now: DateTime<Utc>) -> Markup {
    html! {
        @match run {
            None => span class="muted" { "never" },
            Some(run) => {
                (when(run.started_at, now)) " "
                span class=(format!("badge s-{}", run.status.as_str())) { (run.status.as_str()) }
                " " span class="muted" { (run.counts.new) " new, " (run.counts.failed_memories()) " failed" }
            }
        }
    }
}

fn maybe_when(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match at {
        Some(at) => when(at, now),
        None => html! { span class="muted" { "—" } },
    }
}

fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) title=(at.format("%Y-%m-%d %H:%M:%S UTC")) { (relative(at, now)) }
    }
}

/// "3 min ago", "in 2 h", "just now".
pub(super) fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let span = seconds.unsigned_abs();
    let amount = match span {
        0..=9 => return "just now".into(),
        10..=119 => format!("{span} s"),
        120..=7_199 => format!("{} min", span / 60),
        7_200..=172_799 => format!("{} h", span / 3600),
        _ => format!("{} days", span / 86_400),
    };
    if seconds >= 0 { format!("{amount} ago") } else { format!("in {amount}") }
}

fn duration(run: &RunRecord) -> String {
    let Some(finished) = run.finished_at else {
        return "running".into();
    };
    let ms = (finished - run.started_at).num_milliseconds().max(0);
    match ms {
        0..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..=119_999 => format!("{} s", ms / 1000),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_round_trips_and_ignores_the_rest() {
        for done in [Done::Triggered, Done::Paused, Done::Resumed, Done::Retried(7), Done::Reset, Done::ResetAccepted] {
            let query = done.query();
            let mut pairs = query.split('&').map(|p| p.split_once('=').map_or("", |(_, v)| v));
            assert_eq!(Done::parse(pairs.next(), pairs.next()), Some(done), "{query}");
        }
        assert_eq!(Done::parse(Some("<script>"), None), None);
        assert_eq!(Done::parse(Some("retried"), Some("x")), None);
    }

    #[test]
    fn relative_times() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - chrono::TimeDelta::seconds(300), now), "5 min ago");
        assert_eq!(relative(now + chrono::TimeDelta::seconds(3 * 3600), now), "in 3 h");
    }
}
