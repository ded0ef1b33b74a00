//! `lookup resolve|by-entity|by-memory` and `ask`: thin calls of
//! `connector_core::provenance::Lookup`, with a readable listing for people
//! (date, place, first line of the transcript) or `--json`.

use crate::Common;
use crate::commands::{EXIT_OK, Failure, finish, load, store};
use crate::output;
use connector_core::ids::{ConnectorId, MemoryId};
use connector_core::provenance::{AskAnswer, EntityLookup, Lookup, LookupError, MemoryLookup, MemoryView, Resolution};
use serde::Serialize;
use std::sync::Arc;

fn failure(e: LookupError) -> Failure {
    match e {
        LookupError::BadRequest(_) => Failure::usage(e.to_string()),
        _ => Failure::failed(e.to_string()),
    }
}

/// Loads the config and the store, runs `op` on the look-ups, prints its
/// answer as JSON or with `human`.
async fn run<T, F>(common: &Common, op: F, human: fn(&T)) -> u8
where
    T: Serialize,
    F: AsyncFnOnce(&Lookup) -> Result<T, LookupError>,
{
    let result = async {
        let config = Arc::new(load(common)?);
        let store = store(&config).await?;
        let lookup = Lookup::new(config, store);
        let answer = op(&lookup).await.map_err(failure)?;
        if common.json {
            output::print_json(&answer);
        } else {
            human(&answer);
        }
        Ok(EXIT_OK)
    }
    .await;
    finish(common, result)
}

pub async fn resolve(common: &Common, name: &str, fetch: bool) -> u8 {
    run(common, async |lookup: &Lookup| lookup.resolve(name, fetch).await, print_resolution).await
}

pub async fn by_entity(common: &Common, name: &str, target: Option<&str>) -> u8 {
    run(common, async |lookup: &Lookup| lookup.by_entity(name, target).await, print_entity).await
}

pub async fn by_memory(common: &Common, connector_id: &str, memory_id: &str) -> u8 {
    let (connector, memory) = (ConnectorId::new(connector_id), MemoryId::new(memory_id));
    run(common, async |lookup: &Lookup| lookup.by_memory(&connector, &memory).await, print_memory).await
}

pub async fn ask(common: &Common, connector_id: &str, question: &str, mode: Option<&str>) -> u8 {
    let connector = ConnectorId::new(connector_id);
    run(common, async |lookup: &Lookup| lookup.ask(&connector, question, mode).await, print_answer).await
}

/// `2025-12-18 14:30 UTC · Berlin (52.52000, 13.40500) · "Met Anna…" · personal-memories/42`
fn line(view: &MemoryView) -> String {
    let mut parts = Vec::new();
    parts.push(view.created_at.map_or_else(|| "date unknown".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()));
    let point = view.location.map(|p| format!("({:.5}, {:.5})", p.lat, p.lon));
    match (&view.place, point) {
        (Some(place), Some(point)) => parts.push(format!("{place} {point}")),
        (Some(place), None) => parts.push(place.clone()),
        (None, Some(point)) => parts.push(point),
        (None, None) => {}
    }
    if let Some(headline) = &view.headline {
        parts.push(format!("\"{headline}\""));
    }
    parts.push(format!("{}/{}", view.connector_id, view.memory_id));
    parts.join(" · ")
}

/// `1 memory`, `2 memories`.
fn memories(n: usize) -> String {
    if n == 1 { "1 memory".into() } else { format!("{n} memories") }
}

fn details(view: &MemoryView) {
    let context = view.context_id.as_deref().map(|c| format!(" · context {c}")).unwrap_or_default();
    println!("  {} · {}{context}", view.file_source, view.status);
    if !view.tags.is_empty() {
        println!("  tags: {}", view.tags.iter().map(|t| format!("#{t}")).collect::<Vec<_>>().join(" "));
    }
    for (what, url) in [("audio", &view.audio_url), ("image", &view.image_url)] {
        if let Some(url) = url {
            println!("  {what}: {url}");
        }
    }
    if !view.recorded {
        println!("  (delivered before provenance records: date and place come with its next sync)");
    }
}

fn print_resolution(answer: &Resolution) {
    for view in &answer.memories {
        println!("{}", line(view));
        details(view);
        match &view.live {
            Some(Some(live)) => println!(
                "  live: {}",
                live.transcript.as_deref().and_then(|t| t.lines().next()).unwrap_or("(no transcript)")
            ),
            Some(None) => println!("  live: not in the Memory API's current list"),
            None => {}
        }
    }
    for name in &answer.unresolved {
        println!("{name}: not in the ledger");
    }
    for note in &answer.notes {
        println!("note: {note}");
    }
}

fn print_entity(answer: &EntityLookup) {
    let what = match &answer.related {
        Some(other) => format!("{} — {other}", answer.entity),
        None => answer.entity.clone(),
    };
    let kind = answer.entity_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
    let span = match (answer.first_mentioned, answer.last_mentioned) {
        (Some(first), Some(last)) => {
            format!(", first {}, last {}", first.format("%Y-%m-%d %H:%M UTC"), last.format("%Y-%m-%d %H:%M UTC"))
        }
        _ => String::new(),
    };
    println!("{what}{kind}: {} of {} mentions{span}", memories(answer.memory_count), answer.mentions);
    if answer.names_truncated {
        println!("  (LightRAG lists only the first names of this entity: later memories are not shown)");
    }
    for view in &answer.memories {
        println!("  {}", line(view));
    }
    for name in &answer.unresolved {
        println!("  {name}: not in the ledger");
    }
    if answer.related.is_none() && !answer.relations.is_empty() {
        println!("Relations:");
        for relation in &answer.relations {
            let keywords = relation.keywords.as_deref().map(|k| format!(" ({k})")).unwrap_or_default();
            println!("  {} — {}{keywords}: {}", relation.source, relation.target, memories(relation.memory_count));
        }
    }
}

fn print_memory(answer: &MemoryLookup) {
    for view in &answer.memories {
        println!("{}", line(view));
        details(view);
    }
    let names: Vec<&str> = answer.entities.iter().map(|e| e.name.as_str()).collect();
    println!("Entities ({}): {}", names.len(), names.join(", "));
    let relations: Vec<String> = answer.relations.iter().map(|r| format!("{} — {}", r.source, r.target)).collect();
    println!("Relations ({}): {}", relations.len(), relations.join(", "));
    for note in &answer.notes {
        println!("note: {note}");
    }
}

fn print_answer(answer: &AskAnswer) {
    println!("{}", answer.answer.trim());
    if answer.references.is_empty() {
        return;
    }
    println!();
    println!("References:");
    for reference in &answer.references {
        let views: Vec<&MemoryView> =
            reference.memories.iter().filter_map(|key| answer.memories.iter().find(|m| m.key() == *key)).collect();
        if views.is_empty() {
            println!("  [{}] {} (not in the ledger)", reference.reference_id, reference.file_path);
        }
        for view in views {
            println!("  [{}] {}", reference.reference_id, line(view));
        }
    }
}
