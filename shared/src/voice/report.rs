//! The `voice_report` job: an ended call's post-processing, once (`post_processed`, checked under
//! the call's row lock).
//!
//! 1. Transcript lines from the report (`artifact.messages`, else the `artifact.transcript` text),
//!    replacing the live ones; else the live lines stay. The whole text is kept, cut at
//!    [`MAX_TRANSCRIPT`] characters.
//! 2. A summary: the LLM when one is configured (its cost in `llm_calls`), else VAPI's own
//!    analysis summary, else an extractive one (the lead's informative lines and the facts found).
//! 3. The conversation extractor of the chat turn ([`crate::chat::engine::extract`]) over each of the
//!    lead's lines, with what the assistant asked just before as its expectation, merged into the
//!    lead's profile like a chat message (name, email, comuna, income, DICOM, appointment intent…),
//!    plus what the capture tools reported; then the lead rules (score, status, calificación,
//!    stage) and their events after commit.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::{Value, json};

use super::model::{TranscriptLine, speaker_from_role};
use super::service::{stmt, transcript_lines};
use crate::Infra;
use crate::chat::engine::extract::{DicomStatus, ExtractCtx, Extraction, Field, extract};
use crate::chat::engine::{Profile, merge};
use crate::chat::{ledger, store};
use crate::entities::{activity_log, leads, voice_calls};
use crate::error::{Error, Result};
use crate::integrations::llm::{self, CallType, Message, Router};
use crate::jobs::voice_report::VoiceReport;
use crate::leads::model::{open_metadata, seal_metadata, search_text};
use crate::leads::repo as lead_repo;
use crate::leads::rules_service as rules;
use crate::text::fold;

/// Longest transcript text kept on the call (reference §7.2).
pub const MAX_TRANSCRIPT: usize = 12_000;
/// Report lines read at most.
const MAX_LINES: usize = 2_000;

/// What [`run`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Processed {
    Done { fields: Vec<String>, score_delta: f64 },
    Skipped(&'static str),
}

/// The conversation lines of a VAPI end-of-call report.
pub fn lines_from_report(report: &Value) -> Vec<TranscriptLine> {
    let messages = report.pointer("/artifact/messages").or_else(|| report.get("messages")).and_then(Value::as_array);
    if let Some(items) = messages {
        let lines: Vec<TranscriptLine> = items
            .iter()
            .filter_map(|m| {
                let speaker = speaker_from_role(m.get("role")?.as_str()?)?;
                let text = clean(m.get("message").or_else(|| m.get("content"))?.as_str()?);
                (!text.is_empty()).then(|| TranscriptLine {
                    speaker: speaker.to_string(),
                    text,
                    timestamp: m.get("secondsFromStart").and_then(Value::as_f64).unwrap_or(0.0).max(0.0),
                    confidence: m.get("confidence").and_then(Value::as_f64),
                })
            })
            .take(MAX_LINES)
            .collect();
        if !lines.is_empty() {
            return lines;
        }
    }
    let text = report.pointer("/artifact/transcript").or_else(|| report.get("transcript")).and_then(Value::as_str);
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (who, said) = l.split_once(':')?;
            let speaker = match fold(who.trim()).as_str() {
                "ai" | "assistant" | "bot" | "asistente" => "bot",
                "user" | "customer" | "cliente" => "customer",
                _ => return None,
            };
            let text = clean(said);
            (!text.is_empty()).then(|| TranscriptLine {
                speaker: speaker.into(),
                text,
                timestamp: 0.0,
                confidence: None,
            })
        })
        .take(MAX_LINES)
        .collect()
}

fn clean(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control() || *c == '\n').collect();
    s.trim().chars().take(5_000).collect()
}

/// What the assistant asked in `bot_line`, as the extractor's expectation for the next answer.
pub fn asked_in(bot_line: &str) -> Vec<Field> {
    let t = fold(bot_line);
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    let mut out = Vec::new();
    if has(&["tu nombre", "su nombre", "como te llamas", "como se llama", "con quien hablo"]) {
        out.push(Field::Name);
    }
    if has(&["correo", "email", "mail"]) {
        out.push(Field::Email);
    }
    if has(&["comuna", "sector", "que zona", "donde busca"]) {
        out.push(Field::Location);
    }
    if has(&["ingreso", "renta", "sueldo", "cuanto gana"]) {
        out.push(Field::MonthlyIncome);
    }
    if has(&["dicom", "deuda", "moros"]) {
        out.push(Field::Dicom);
    }
    if has(&["presupuesto"]) {
        out.push(Field::Budget);
    }
    if has(&["dormitorio", "habitacion", "pieza"]) {
        out.push(Field::Bedrooms);
    }
    out
}

/// Speaker-labelled text, cut at [`MAX_TRANSCRIPT`] characters.
pub fn transcript_text(lines: &[TranscriptLine]) -> String {
    let mut out = String::new();
    for l in lines {
        let who = match l.speaker.as_str() {
            "bot" => "Asistente",
            "agent" => "Ejecutivo",
            _ => "Cliente",
        };
        out.push_str(&format!("{who}: {}\n", l.text));
    }
    let out = out.trim_end().to_string();
    if out.chars().count() > MAX_TRANSCRIPT {
        let cut: String = out.chars().take(MAX_TRANSCRIPT).collect();
        format!("{cut}\n[… transcripción truncada]")
    } else {
        out
    }
}

/// The profile after every line of the lead, each read with what the assistant had just asked.
pub fn extract_call(
    before: &Profile,
    lines: &[TranscriptLine],
    now: chrono::DateTime<Utc>,
) -> (Profile, Vec<crate::chat::engine::profile::Change>, Vec<(String, Extraction)>) {
    let mut profile = before.clone();
    let mut changes = Vec::new();
    let mut hits = Vec::new();
    let mut expecting: Vec<Field> = Vec::new();
    for line in lines {
        if line.speaker != "customer" {
            expecting = asked_in(&line.text);
            continue;
        }
        let ex = extract(&line.text, &ExtractCtx { now, expecting: &expecting, offered_slots: &[] });
        if ex != Extraction::default() {
            hits.push((line.text.clone(), ex.clone()));
        }
        let (p, ch) = merge(&profile, &ex, &line.text, &expecting);
        profile = p;
        for c in ch {
            changes.retain(|o: &crate::chat::engine::profile::Change| o.field != c.field);
            changes.push(c);
        }
        expecting.clear();
    }
    (profile, changes, hits)
}

/// What the capture tools reported, read by the same extractor (each value as the answer to its
/// question, so it is validated the same way as a spoken one).
fn tool_answers(call_output: &Value) -> Vec<TranscriptLine> {
    let pairs: [(&[&str], &str); 5] = [
        (&["name", "nombre", "full_name"], "¿Cuál es tu nombre?"),
        (&["email", "correo"], "¿Cuál es tu correo?"),
        (&["comuna", "location", "sector"], "¿En qué comuna buscas?"),
        (&["monthly_income", "ingreso", "renta", "income"], "¿Cuál es tu ingreso mensual?"),
        (&["dicom", "dicom_status"], "¿Estás en DICOM?"),
    ];
    let mut out = Vec::new();
    for (keys, question) in pairs {
        let value = keys.iter().find_map(|k| call_output.get(*k)).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(true) => Some("sí".into()),
            Value::Bool(false) => Some("no".into()),
            _ => None,
        });
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            let line = |speaker: &str, text: &str| TranscriptLine {
                speaker: speaker.into(),
                text: text.chars().take(500).collect(),
                timestamp: 0.0,
                confidence: None,
            };
            out.push(line("bot", question));
            out.push(line("customer", &v));
        }
    }
    out
}

/// An extractive summary: how the call went, the facts found, and the lead's most telling lines.
pub fn extractive_summary(status: &str, duration: Option<i32>, lines: &[TranscriptLine], profile: &Profile) -> String {
    let word = match status {
        "completed" => "completada",
        "failed" => "fallida",
        "no_answer" => "sin respuesta",
        "busy" => "ocupada",
        "cancelled" => "cancelada",
        _ => "en curso",
    };
    let mut parts = vec![match duration {
        Some(d) => format!("Llamada {word} ({d} s)."),
        None => format!("Llamada {word}."),
    }];
    let mut facts = Vec::new();
    if let Some(n) = profile.real_name() {
        facts.push(format!("nombre {n}"));
    }
    if let Some(e) = profile.real_email() {
        facts.push(format!("correo {e}"));
    }
    if let Some(l) = &profile.location {
        facts.push(format!("comuna {l}"));
    }
    if let Some(i) = profile.monthly_income {
        facts.push(format!("ingreso mensual {i} CLP"));
    }
    if let Some(d) = profile.dicom_status {
        facts.push(
            match d {
                DicomStatus::Clean => "sin DICOM",
                DicomStatus::HasDebt => "en DICOM",
                DicomStatus::Unknown => "DICOM por verificar",
            }
            .to_string(),
        );
    }
    if let Some(i) = profile.intent {
        facts.push(format!("intención {}", i.as_str()));
    }
    if !facts.is_empty() {
        parts.push(format!("Datos: {}.", facts.join(", ")));
    }
    let said: Vec<&str> = lines.iter().filter(|l| l.speaker == "customer").map(|l| l.text.as_str()).collect();
    if said.is_empty() {
        parts.push("El cliente no habló.".into());
    } else {
        let mut longest: Vec<&str> = said.clone();
        longest.sort_by_key(|s| std::cmp::Reverse(s.chars().count()));
        let quotes: Vec<String> =
            longest.into_iter().take(3).map(|s| format!("«{}»", s.chars().take(200).collect::<String>())).collect();
        parts.push(format!("El cliente dijo: {}", quotes.join(" ")));
    }
    parts.join(" ")
}

/// The LLM's summary, when one is configured and answers (every attempt goes to the ledger).
async fn llm_summary(infra: &Infra, call: &voice_calls::Model, text: &str) -> Option<String> {
    let router = match Router::from_settings(&infra.settings) {
        Ok(Some(r)) => r,
        _ => return None,
    };
    let req = llm::Request::new(
        CallType::Summary,
        vec![
            Message::system(
                "Resume en español, en dos o tres frases, esta llamada de una corredora de propiedades con un \
                 cliente: qué busca, sus datos financieros si los dio y el siguiente paso acordado.",
            ),
            Message::user(text.to_string()),
        ],
    );
    let (records, answer) = router.complete(infra, &req).await;
    for r in &records {
        if let Err(e) = ledger::record(&infra.db, Some(call.broker_id), Some(call.lead_id), r, None).await {
            tracing::warn!(error = %e, "could not record the summary's LLM call");
        }
    }
    match answer {
        Ok(c) if !c.text.trim().is_empty() => Some(c.text.trim().chars().take(4_000).collect()),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the LLM summary failed; using the extractive one");
            None
        }
    }
}

/// The `voice_report` job (see the module docs).
#[tracing::instrument(skip_all, fields(call_id = job.call_id, broker_id = job.broker_id))]
pub async fn run(infra: &Infra, job: &VoiceReport) -> Result<Processed> {
    let call = voice_calls::Entity::find_by_id(job.call_id)
        .one(&infra.db)
        .await?
        .filter(|c| c.broker_id == job.broker_id)
        .ok_or(Error::NotFound("Call"))?;
    if call.post_processed {
        return Ok(Processed::Skipped("already processed"));
    }
    let report = call.report.clone().unwrap_or(Value::Null);
    let from_report = lines_from_report(&report);
    let lines = if from_report.is_empty() { transcript_lines(&infra.db, call.id).await? } else { from_report.clone() };
    let text = transcript_text(&lines);
    let now = Utc::now();

    // The summary first, outside the transaction (an LLM answer takes seconds).
    let lead_now = leads::Entity::find_by_id(call.lead_id).one(&infra.db).await?.ok_or(Error::NotFound("Lead"))?;
    let preview = {
        let meta = open_metadata(&infra.cipher, lead_now.metadata.clone());
        extract_call(&store::profile_of(&lead_now, &meta), &lines, now).0
    };
    let vapi_summary = report
        .pointer("/analysis/summary")
        .or_else(|| report.get("summary"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(4_000).collect::<String>());
    let summary = match if lines.is_empty() { None } else { llm_summary(infra, &call, &text).await } {
        Some(s) => s,
        None => vapi_summary.unwrap_or_else(|| extractive_summary(&call.status, call.duration, &lines, &preview)),
    };

    let txn = infra.db.begin().await?;
    let locked = voice_calls::Entity::find_by_id(call.id).lock_exclusive().one(&txn).await?;
    let Some(locked) = locked.filter(|c| !c.post_processed) else {
        return Ok(Processed::Skipped("already processed"));
    };
    if !from_report.is_empty() {
        txn.execute_raw(stmt("DELETE FROM call_transcripts WHERE voice_call_id = $1", vec![call.id.into()])).await?;
        for (i, l) in from_report.iter().enumerate() {
            txn.execute_raw(stmt(
                "INSERT INTO call_transcripts (voice_call_id, speaker, text, \"timestamp\", confidence, source_key) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    call.id.into(),
                    l.speaker.clone().into(),
                    l.text.clone().into(),
                    l.timestamp.into(),
                    l.confidence.into(),
                    format!("report:{i}").into(),
                ],
            ))
            .await?;
        }
    }
    let lead = leads::Entity::find_by_id(call.lead_id)
        .filter(leads::Column::BrokerId.eq(call.broker_id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("Lead"))?;
    let old_score = lead.lead_score;
    let mut meta = open_metadata(&infra.cipher, lead.metadata.clone());
    let before = store::profile_of(&lead, &meta);
    let mut all_lines = lines.clone();
    all_lines.extend(tool_answers(&locked.call_output));
    let (profile, changes, _) = extract_call(&before, &all_lines, now);
    store::store_profile(&mut meta, &profile);
    meta.insert(
        "last_call".into(),
        json!({"call_id": call.id, "status": locked.status, "summary": summary, "at": now}),
    );
    let fields: Vec<String> = changes.iter().map(|c| c.field.as_str().to_string()).collect();
    let mut am = lead.clone().into_active_model();
    let (mut name, mut email) = (lead.name.clone(), lead.email.clone());
    if fields.iter().any(|f| f == "name")
        && let Some(n) = profile.real_name()
    {
        name = Some(n.to_string());
        am.name = Set(name.clone());
    }
    if fields.iter().any(|f| f == "email")
        && let Some(e) = profile.real_email()
    {
        let taken =
            lead_repo::find_by_contact(&txn, lead.broker_id, None, Some(e)).await?.is_some_and(|id| id != lead.id);
        if taken {
            meta.insert("contact_email".into(), json!(e));
        } else {
            email = Some(e.to_string());
            am.email = Set(email.clone());
        }
    }
    am.search_text = Set(search_text(name.as_deref(), lead.phone.as_deref(), email.as_deref()));
    am.metadata = Set(seal_metadata(&infra.cipher, meta));
    // Only a call the lead spoke in counts as contact (inactivity rules read `last_contacted`).
    if lines.iter().any(|l| l.speaker == "customer") {
        am.last_contacted = Set(Some(now));
    }
    am.updated_at = Set(now);
    let lead = am.update(&txn).await?;
    let row = |action: &str, details: Value| crate::leads::repo::activity_row(&lead, None, action, details);
    let mut rows = vec![row(
        "call_ended",
        json!({"call_id": call.id, "status": locked.status, "duration": locked.duration, "summary": summary}),
    )];
    if !fields.is_empty() {
        rows.push(row("data_extracted", json!({"fields": fields, "source": "voice", "call_id": call.id})));
    }
    activity_log::Entity::insert_many(rows).exec(&txn).await?;
    let outcome = rules::apply(infra, &txn, lead, now).await?;
    let score_delta = outcome.lead.lead_score - old_score;
    txn.execute_raw(stmt(
        "UPDATE voice_calls SET transcript = $2, summary = $3, post_processed = true, score_delta = $4, \
           stage_after_call = $5, updated_at = now() WHERE id = $1",
        vec![
            call.id.into(),
            Some(text).filter(|t| !t.is_empty()).into(),
            summary.into(),
            score_delta.into(),
            outcome.lead.pipeline_stage.clone().into(),
        ],
    ))
    .await?;
    txn.commit().await?;
    rules::publish(infra, &outcome).await;
    tracing::info!(call_id = call.id, fields = ?fields, score_delta, "call post-processed");
    Ok(Processed::Done { fields, score_delta })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(speaker: &str, text: &str) -> TranscriptLine {
        TranscriptLine { speaker: speaker.into(), text: text.into(), timestamp: 0.0, confidence: None }
    }

    #[test]
    fn report_lines_come_from_messages_else_from_the_transcript_text() {
        let report = json!({"artifact": {"messages": [
            {"role": "system", "message": "prompt"},
            {"role": "bot", "message": "Hola", "secondsFromStart": 0.4},
            {"role": "user", "message": " Hola \u{0} ", "secondsFromStart": 2.0},
            {"role": "tool_call_result", "message": "ok"},
        ]}});
        let lines = lines_from_report(&report);
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1].speaker.as_str(), lines[1].text.as_str(), lines[1].timestamp), ("customer", "Hola", 2.0));
        let text_only = json!({"artifact": {"transcript": "AI: Buenas\nUser: Me llamo Ana\nruido sin hablante"}});
        let lines = lines_from_report(&text_only);
        assert_eq!(lines.iter().map(|l| l.speaker.as_str()).collect::<Vec<_>>(), ["bot", "customer"]);
        assert!(lines_from_report(&Value::Null).is_empty());
    }

    #[test]
    fn a_bare_answer_is_read_as_the_answer_to_what_was_asked() {
        assert_eq!(asked_in("¿Con quién hablo?"), vec![Field::Name]);
        assert_eq!(asked_in("¿Estás en DICOM?"), vec![Field::Dicom]);
        let lines = [
            line("bot", "¿Cuál es tu nombre?"),
            line("customer", "Carla Muñoz"),
            line("bot", "¿Estás en DICOM?"),
            line("customer", "no"),
        ];
        let (p, changes, _) = extract_call(&Profile::default(), &lines, Utc::now());
        assert_eq!(p.name.as_deref(), Some("Carla Muñoz"));
        assert_eq!(p.dicom_status, Some(DicomStatus::Clean));
        assert!(changes.iter().any(|c| c.field == Field::Name));
        // The assistant's own words are never read as the lead's.
        let (p, _, _) = extract_call(&Profile::default(), &[line("bot", "Me llamo Sofía, vivo en Ñuñoa")], Utc::now());
        assert_eq!(p, Profile::default());
    }

    #[test]
    fn transcripts_are_labelled_and_cut() {
        assert_eq!(transcript_text(&[line("bot", "Hola"), line("customer", "Hola")]), "Asistente: Hola\nCliente: Hola");
        let long = transcript_text(&[line("customer", &"a".repeat(MAX_TRANSCRIPT + 10))]);
        assert!(long.ends_with("[… transcripción truncada]"));
        assert!(long.chars().count() < MAX_TRANSCRIPT + 40);
    }

    #[test]
    fn the_extractive_summary_names_the_facts_and_quotes_the_lead() {
        let p = Profile { location: Some("Ñuñoa".into()), monthly_income: Some(900_000), ..Profile::default() };
        let s = extractive_summary("completed", Some(40), &[line("customer", "Busco algo en Ñuñoa")], &p);
        assert!(s.starts_with("Llamada completada (40 s)."), "{s}");
        assert!(s.contains("comuna Ñuñoa") && s.contains("«Busco algo en Ñuñoa»"), "{s}");
        assert!(extractive_summary("no_answer", None, &[], &Profile::default()).contains("no habló"));
    }
}
