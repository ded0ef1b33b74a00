//! The run-history chart of a connector's page: new and failed memories per
//! run ([`RunCounts::failed_memories`](crate::state::RunCounts::failed_memories))
//! as inline SVG bars, oldest run on the left (no script, no image
//! request; colours come from the stylesheet).

use crate::state::RunRecord;
use maud::{Markup, html};

/// At most this many runs are drawn.
pub(super) const CHART_RUNS: usize = 30;
/// Bars are as narrow as this many runs would make them, at the widest.
const MIN_SLOTS: usize = 12;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;
/// Room above the bars for the scale label.
const TOP: f64 = 16.0;

/// `runs` newest first, as the store lists them.
pub(super) fn runs_chart(runs: &[RunRecord]) -> Markup {
    let shown: Vec<&RunRecord> = runs.iter().take(CHART_RUNS).rev().collect();
    let peak = shown.iter().map(|r| r.counts.new.max(r.counts.failed_memories())).max().unwrap_or(0).max(1);
    let slot = WIDTH / shown.len().max(MIN_SLOTS) as f64;
    let bar = (slot - 4.0) / 2.0;
    let height = |value: u64| (value as f64 / peak as f64) * (HEIGHT - TOP);
    let label =
        format!("New and failed memories of the last {} runs, oldest first; the scale's top is {peak}", shown.len());
    html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {}", HEIGHT + 1.0)) width=(WIDTH) height=(HEIGHT + 1.0)
            role="img" aria-label=(label) {
            title { (label) }
            line class="axis" x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
            text class="scale" x="2" y="11" { (peak) }
            @for (i, run) in shown.iter().enumerate() {
                @let x = i as f64 * slot + 2.0;
                @let (new, failed) = (height(run.counts.new), height(run.counts.failed_memories()));
                g {
                    title {
                        (run.started_at.format("%Y-%m-%d %H:%M UTC")) " (" (run.status.as_str()) "): "
                        (run.counts.new) " new, " (run.counts.failed_memories()) " failed"
                    }
                    rect class="bar-new" x=(x) y=(HEIGHT - new) width=(bar) height=(new) {}
                    rect class="bar-failed" x=(x + bar) y=(HEIGHT - failed) width=(bar) height=(failed) {}
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::{ConnectorId, RunId};
    use crate::state::{RunCounts, RunStatus, Trigger};

    fn run(new: u64, failed: u64) -> RunRecord {
        RunRecord {
            run_id: RunId::new("r"),
            connector_id: ConnectorId::new("c"),
            trigger: Trigger::Api,
            started_at: chrono::Utc::now(),
            finished_at: None,
            status: RunStatus::Completed,
            counts: RunCounts { new, failed, ..Default::default() },
            possibly_truncated: false,
            error: None,
        }
    }

    #[test]
    fn bars_scale_to_the_peak_and_stay_inside() {
        let runs: Vec<RunRecord> = (0..40).map(|i| run(i, 40 - i)).collect();
        let svg = runs_chart(&runs).into_string();
        assert_eq!(svg.matches("<rect class=\"bar-new\"").count(), CHART_RUNS);
        assert!(svg.contains("the scale&#39;s top is 40") || svg.contains("the scale's top is 40"), "{svg}");
        assert!(!svg.contains("height=\"-"), "{svg}");
        let empty = runs_chart(&[]).into_string();
        assert!(empty.contains("last 0 runs") && !empty.contains("<rect"), "{empty}");
    }
}
