//! One turn of Sofía's conversation (SPEC §6 step 7, reference §5.3–5.6): [`plan`] decides what to
//! do next from what is known — the state is derived every turn, so it always advances — and
//! [`reply`] writes the message once the service has done the I/O the plan asked for.
//!
//! The service's loop for one inbound message:
//! 1. `extract(text, ExtractCtx { expecting: &memory.asked, offered_slots: &memory.offered_slots, .. })`;
//! 2. `merge(profile, &extraction, text, &memory.asked)`, then set `profile.calificacion`;
//! 3. `plan(&input)` (with `kb_hits` searched when `extraction.question`), then do `plan.action`:
//!    - `OfferSlots { day, near }`: up to 3 free slots on `day`, else from `near` (or now) →
//!      `Outcome::Slots` (an empty list is fine; a calendar failure is `Outcome::Nothing`);
//!    - `Book { start }`: a 60-minute appointment → `Outcome::Booked` or `BookFailed` with up to 3
//!      free alternatives near `start`. Planned while `input.state` is `completed` (or with
//!      `memory.booked` set) it is a reschedule: the previous appointment is replaced;
//!    - `Escalate { reason }`: human mode → `Outcome::Escalated`; `OptOut`: tag, stop campaigns;
//! 4. `reply(&input, &plan, &outcome)` with the same `input`; store `reply.memory` (lead_metadata
//!    `engine`) and `reply.next_state` (`conversation_state`), send `reply.text`.
//!
//! Order of the rules: opt-out, explicit request for a person, loops and frustration; a booked lead's
//! follow-up; "ya te lo dije"; no income; the DICOM guard; name; interest; contact block; financial
//! block; calificación; scheduling.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::extract::{AppointmentChoice, DicomStatus, Extraction, Field, Intent};
use super::profile::{Change, Profile, padded_words};
use super::state::ConversationState;
use crate::leads::model::{Calificacion, TZ};
use crate::text::fold;

/// A debt above this (CLP) means: regularise first, follow-up, lost (reference §4.3).
pub const MANAGEABLE_DEBT: i64 = 500_000;

/// Unanswered asks of one field before Sofía moves on.
pub const MAX_ASKS: u32 = 2;

/// Asks for the name, phone or email a chosen slot needs before Sofía stops insisting.
pub const MAX_BOOKING_ASKS: u32 = 3;

/// Inbound message fingerprints kept for loop detection.
const INBOUND_MEMORY: usize = 5;

/// Who Sofía is for this broker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub agent_name: String,
    pub broker_name: String,
}

/// The engine's own memory, persisted by the service in lead_metadata under "engine".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// What the last reply asked for: the next turn's `expecting`.
    pub asked: Vec<Field>,
    /// The slots the last reply offered, in order: the next turn's `offered_slots`.
    pub offered_slots: Vec<DateTime<Utc>>,
    /// Unanswered asks per field (`Field::as_str`): an ask counts when the next message states
    /// nothing at all. Plus `interest` and `dicom_recheck`: how often those were asked.
    pub ask_counts: BTreeMap<String, u32>,
    pub dicom_guidance_given: bool,
    pub dicom_check_suggested: bool,
    /// Replies sent so far.
    pub turns: u32,
    /// The appointment booked through the conversation (replaced on a reschedule).
    pub booked: Option<Booking>,
    /// Recent phrase ids (`move:index`), so a move does not repeat its last phrasing.
    pub last_moves: Vec<String>,
    /// Fingerprints of the last inbound messages (loop detection).
    pub inbound_hashes: Vec<String>,
    /// The lead declined the offered slots; Sofía asked which days suit.
    pub awaiting_preference: bool,
    /// A slot the lead chose while name, phone or email were still missing for the booking.
    pub pending_slot: Option<DateTime<Utc>>,
    /// The lead was told to regularise a DICOM debt and write back (follow-up).
    pub dicom_followup_scheduled: bool,
    pub opted_out: bool,
}

impl Memory {
    pub fn asks(&self, key: &str) -> u32 {
        self.ask_counts.get(key).copied().unwrap_or(0)
    }
}

/// An appointment as the confirmation needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    pub appointment_id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub location: Option<String>,
    pub meet_url: Option<String>,
    /// The executive who attends.
    pub agent_name: Option<String>,
}

/// A knowledge-base search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KbHit {
    pub title: String,
    pub snippet: String,
    pub similarity: f64,
}

/// Everything one turn looks at.
#[derive(Clone, Copy, Debug)]
pub struct TurnInput<'a> {
    pub now: DateTime<Utc>,
    pub state: ConversationState,
    pub first_contact: bool,
    /// The inbound message as sanitised (for "ya te lo dije", reschedules, loops).
    pub text: &'a str,
    /// Already merged with this turn.
    pub profile: &'a Profile,
    /// What this turn added or changed.
    pub changes: &'a [Change],
    /// This turn's raw extraction.
    pub extraction: &'a Extraction,
    pub memory: &'a Memory,
    pub identity: &'a Identity,
    /// For questions; the service fills it when `extraction.question`.
    pub kb_hits: &'a [KbHit],
    pub kb_min_similarity: f64,
    /// The lead id: variety is deterministic per lead.
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    None,
    /// The service fetches up to 3 free slots (on `day` if given, else from now / from `near`) and calls `reply` with `Outcome::Slots`.
    OfferSlots {
        day: Option<NaiveDate>,
        near: Option<DateTime<Utc>>,
    },
    /// The service books this start (duration 60) and calls `reply` with `Booked` or `BookFailed`.
    /// When `memory.booked` is set this is a reschedule: the service replaces that appointment.
    Book {
        start: DateTime<Utc>,
    },
    /// Hand over to a person (human mode). `reason`: "explicit_request" | "frustration" | "loop_detected".
    Escalate {
        reason: &'static str,
    },
    /// The lead asked not to be contacted (opt-out): tag, stop campaigns.
    OptOut,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub action: Action,
    /// The state if the action goes as planned; `Reply::next_state` is the one to store.
    pub next_state: ConversationState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotOffer {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What the service got doing the plan's action.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Nothing,
    Slots(Vec<SlotOffer>),
    Booked(Booking),
    BookFailed { alternatives: Vec<SlotOffer> },
    Escalated,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub text: String,
    pub next_state: ConversationState,
    /// `memory.asked` = what this reply asks.
    pub memory: Memory,
}

/// What to do this turn.
pub fn plan(input: &TurnInput) -> Plan {
    let d = decide(input);
    Plan { action: d.action, next_state: d.next_state }
}

/// The message for this turn, once the plan's action is done.
pub fn reply(input: &TurnInput, plan: &Plan, outcome: &Outcome) -> Reply {
    super::reply::compose(input, &decide(input), plan, outcome)
}

/// The move Sofía makes this turn; [`super::reply`] writes it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    OptOut,
    Escalate(&'static str),
    AskName,
    AskInterest,
    AskContact(Vec<Field>),
    AskFinancial(Vec<Field>),
    /// "Ya te lo dije": apologise, ask only this field.
    Repeat(Field),
    AskDebtAmount,
    /// DICOM unknown: suggest checking (first time) or ask again (later); may ask the income too.
    DicomCheck {
        again: bool,
        also: Vec<Field>,
    },
    /// A manageable debt, first time: advise regularising, offer guidance.
    DicomGuidance {
        also: Vec<Field>,
    },
    /// A manageable debt after the guidance, still not qualified: steps + write back. Lost.
    DebtFollowUp,
    /// Debt above 500 000: regularise first, write back. Lost.
    DebtTooHigh,
    /// Income too low (or none). Lost.
    NotQualified,
    /// Nothing left to ask and not qualified yet.
    Nurture,
    Offer {
        day: Option<NaiveDate>,
        near: Option<DateTime<Utc>>,
    },
    Book(DateTime<Utc>),
    /// A slot was chosen but the booking needs these first.
    ContactForBooking(Vec<Field>, DateTime<Utc>),
    /// The lead declined the slots: ask which days and hours suit.
    AskPreference,
    /// Slots are on the table and the lead said something else.
    RemindOffer,
    /// A booked lead writes again.
    AfterBooking,
    /// A lost lead writes again.
    LostFollowUp,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decision {
    pub step: Step,
    pub action: Action,
    pub next_state: ConversationState,
}

fn decision(step: Step, state: ConversationState) -> Decision {
    let action = match &step {
        Step::OptOut => Action::OptOut,
        Step::Escalate(reason) => Action::Escalate { reason },
        Step::Offer { day, near } => Action::OfferSlots { day: *day, near: *near },
        Step::Book(start) => Action::Book { start: *start },
        _ => Action::None,
    };
    Decision { step, action, next_state: state }
}

pub(crate) fn decide(inp: &TurnInput) -> Decision {
    use ConversationState::*;
    let ex = inp.extraction;
    // A reply is being sent, so the conversation is past its greeting.
    let current = if inp.state == Greeting { InterestCheck } else { inp.state };
    if ex.opt_out {
        return decision(Step::OptOut, Lost);
    }
    if ex.wants_human {
        return decision(Step::Escalate("explicit_request"), current);
    }
    if repeats_itself(inp) {
        return decision(Step::Escalate("loop_detected"), current);
    }
    if frustrated(inp.text) {
        return decision(Step::Escalate("frustration"), current);
    }
    // Booked through this conversation or by a person (then `memory.booked` is empty).
    if inp.state == Completed {
        return after_booking(inp);
    }
    let next = flow(inp);
    // A lost lead hears the whole advice once; afterwards a short reminder, unless the news
    // changes the outcome.
    let advised = inp.memory.dicom_followup_scheduled && matches!(next.step, Step::DebtTooHigh | Step::DebtFollowUp);
    if inp.state == Lost && next.next_state == Lost && (advised || !qualifying_change(inp)) {
        return decision(Step::LostFollowUp, Lost);
    }
    next
}

/// The data-driven conversation: the first thing still missing decides the step.
fn flow(inp: &TurnInput) -> Decision {
    use ConversationState::*;
    let (p, m) = (inp.profile, inp.memory);
    let askable = |f: Field| !p.knows(f) && unanswered(inp, f) < MAX_ASKS;

    if already_told(inp.text) {
        let field =
            m.asked.iter().copied().find(|f| is_data_field(*f) && !p.knows(*f) && unanswered(inp, *f) <= MAX_ASKS);
        if let Some(field) = field {
            return decision(Step::Repeat(field), state_of_field(field));
        }
    }

    if no_income(p) {
        return decision(Step::NotQualified, Lost);
    }
    if p.dicom_status == Some(DicomStatus::HasDebt) {
        let qualified = matches!(p.calificacion, Some(Calificacion::Calificado | Calificacion::Potencial));
        // After the advice, a lead the broker's criteria do not accept is told to write back once.
        let follow_up = || {
            let step = if m.dicom_followup_scheduled { Step::LostFollowUp } else { Step::DebtFollowUp };
            decision(step, Lost)
        };
        match p.morosidad_amount {
            Some(debt) if debt > MANAGEABLE_DEBT => return decision(Step::DebtTooHigh, Lost),
            None if askable(Field::DebtAmount) => return decision(Step::AskDebtAmount, FinancialQualification),
            None if !qualified => return follow_up(),
            Some(_) if !m.dicom_guidance_given => {
                let also = if askable(Field::MonthlyIncome) { vec![Field::MonthlyIncome] } else { vec![] };
                return decision(Step::DicomGuidance { also }, FinancialQualification);
            }
            Some(_) if !qualified => return follow_up(),
            // The broker's criteria accept this debt: carry on.
            _ => {}
        }
    }

    if askable(Field::Name) {
        return decision(Step::AskName, InterestCheck);
    }
    if !interest_known(p) && m.asks("interest") < 1 {
        return decision(Step::AskInterest, InterestCheck);
    }
    // "No tengo correo": not asked in the contact block (the booking may still need it).
    let declined = |f: Field| f == Field::Email && p.key_points.iter().any(|k| k == "no tiene email");
    let contact: Vec<Field> =
        [Field::Phone, Field::Email, Field::Location].into_iter().filter(|f| askable(*f) && !declined(*f)).collect();
    if !contact.is_empty() {
        return decision(Step::AskContact(contact), DataCollection);
    }
    if p.dicom_status == Some(DicomStatus::Unknown) {
        let also = if askable(Field::MonthlyIncome) { vec![Field::MonthlyIncome] } else { vec![] };
        if !m.dicom_check_suggested {
            return decision(Step::DicomCheck { again: false, also }, FinancialQualification);
        }
        if m.asks("dicom_recheck") < 1 {
            return decision(Step::DicomCheck { again: true, also }, FinancialQualification);
        }
        if !also.is_empty() {
            return decision(Step::AskFinancial(also), FinancialQualification);
        }
        return nurture(inp);
    }
    let financial: Vec<Field> = [Field::MonthlyIncome, Field::Dicom].into_iter().filter(|f| askable(*f)).collect();
    if !financial.is_empty() {
        return decision(Step::AskFinancial(financial), FinancialQualification);
    }
    match p.calificacion {
        Some(Calificacion::Calificado | Calificacion::Potencial) => scheduling(inp),
        Some(Calificacion::NoCalificado) if p.dicom_status == Some(DicomStatus::HasDebt) => {
            decision(Step::DebtFollowUp, Lost)
        }
        Some(Calificacion::NoCalificado) => decision(Step::NotQualified, Lost),
        None => nurture(inp),
    }
}

/// Nothing left that may be asked. A lead who is still engaged — who just gave data or wants a
/// visit — is asked once more for what qualification still lacks; a silent one is left in peace.
fn nurture(inp: &TurnInput) -> Decision {
    use ConversationState::*;
    let p = inp.profile;
    let engaged = !inp.changes.is_empty() || inp.extraction.intent == Some(Intent::ScheduleVisit);
    let missing: Vec<Field> = [Field::MonthlyIncome, Field::Dicom].into_iter().filter(|f| !p.knows(*f)).collect();
    if engaged && !missing.is_empty() && p.dicom_status != Some(DicomStatus::Unknown) {
        return decision(Step::AskFinancial(missing), FinancialQualification);
    }
    decision(Step::Nurture, FinancialQualification)
}

/// Qualified: offer slots, book the one chosen.
fn scheduling(inp: &TurnInput) -> Decision {
    use ConversationState::*;
    let (m, ex) = (inp.memory, inp.extraction);
    let want = |t: DateTime<Utc>| {
        let missing = missing_for_booking(inp.profile);
        if missing.is_empty() {
            decision(Step::Book(t), Completed)
        } else if m.asks("booking_contact") >= MAX_BOOKING_ASKS {
            // Asked for what the booking needs and never got it: stop insisting.
            decision(Step::Nurture, Scheduling)
        } else {
            decision(Step::ContactForBooking(missing, t), Scheduling)
        }
    };
    let offer = |day: Option<NaiveDate>, near: Option<DateTime<Utc>>| decision(Step::Offer { day, near }, Scheduling);
    let today = inp.now.with_timezone(&TZ).date_naive();
    match ex.appointment {
        Some(AppointmentChoice::Slot(i)) => match m.offered_slots.get(i) {
            Some(t) => want(*t),
            None => offer(None, None),
        },
        Some(AppointmentChoice::Accept) => match m.offered_slots.first().copied().or(m.pending_slot) {
            Some(t) => want(t),
            None => offer(None, None),
        },
        Some(AppointmentChoice::At(t)) if t > inp.now => want(t),
        Some(AppointmentChoice::At(_)) => offer(None, None),
        Some(AppointmentChoice::Day(d)) if d >= today => offer(Some(d), None),
        Some(AppointmentChoice::Day(_)) => offer(None, None),
        Some(AppointmentChoice::Decline) => decision(Step::AskPreference, Scheduling),
        None => match m.pending_slot {
            Some(t) => want(t),
            None if m.awaiting_preference => offer(None, preferred_start(inp.text, inp.now)),
            None if m.offered_slots.is_empty() => offer(None, preferred_start(inp.text, inp.now)),
            None => decision(Step::RemindOffer, Scheduling),
        },
    }
}

/// A booked lead writes again: a reschedule goes back to scheduling, anything else is answered.
fn after_booking(inp: &TurnInput) -> Decision {
    use ConversationState::*;
    let ex = inp.extraction;
    let wants_change = matches!(
        ex.appointment,
        Some(AppointmentChoice::Day(_) | AppointmentChoice::At(_) | AppointmentChoice::Decline)
    ) || asks_to_reschedule(inp.text);
    if !wants_change {
        return decision(Step::AfterBooking, Completed);
    }
    let today = inp.now.with_timezone(&TZ).date_naive();
    match ex.appointment {
        Some(AppointmentChoice::At(t)) if t > inp.now => {
            let missing = missing_for_booking(inp.profile);
            if missing.is_empty() {
                decision(Step::Book(t), Completed)
            } else {
                decision(Step::ContactForBooking(missing, t), Scheduling)
            }
        }
        Some(AppointmentChoice::Day(d)) if d >= today => decision(Step::Offer { day: Some(d), near: None }, Scheduling),
        _ => decision(Step::Offer { day: None, near: preferred_start(inp.text, inp.now) }, Scheduling),
    }
}

/// The message states some fact (new or already known) or answers the slot offer.
pub(crate) fn answered_something(inp: &TurnInput) -> bool {
    let ex = inp.extraction;
    !inp.changes.is_empty()
        || ex.name.is_some()
        || ex.phone.is_some()
        || ex.email.is_some()
        || ex.location.is_some()
        || ex.monthly_income.is_some()
        || ex.dicom_status.is_some()
        || ex.morosidad_amount.is_some()
        || ex.budget.is_some()
        || ex.property_type.is_some()
        || ex.bedrooms.is_some()
        || ex.appointment.is_some()
}

/// Unanswered asks of `f`, counting the last reply's ask when this message ignored it.
pub(crate) fn unanswered(inp: &TurnInput, f: Field) -> u32 {
    let ignored_now = inp.memory.asked.contains(&f) && !answered_something(inp);
    inp.memory.asks(f.as_str()) + u32::from(ignored_now)
}

/// The appointments service needs the lead's name, phone and email (SPEC §11).
fn missing_for_booking(p: &Profile) -> Vec<Field> {
    [Field::Name, Field::Phone, Field::Email].into_iter().filter(|f| !p.knows(*f)).collect()
}

fn is_data_field(f: Field) -> bool {
    matches!(
        f,
        Field::Name
            | Field::Phone
            | Field::Email
            | Field::Location
            | Field::MonthlyIncome
            | Field::Dicom
            | Field::DebtAmount
    )
}

fn state_of_field(f: Field) -> ConversationState {
    match f {
        Field::Name | Field::PropertyType | Field::Bedrooms | Field::Budget | Field::Timeline => {
            ConversationState::InterestCheck
        }
        Field::Phone | Field::Email | Field::Location => ConversationState::DataCollection,
        Field::MonthlyIncome | Field::Dicom | Field::DebtAmount => ConversationState::FinancialQualification,
        Field::AppointmentChoice => ConversationState::Scheduling,
    }
}

/// The lead said what they look for (or is already past that point).
fn interest_known(p: &Profile) -> bool {
    p.property_type.is_some()
        || p.bedrooms.is_some()
        || p.location.is_some()
        || p.budget.is_some()
        || p.timeline.is_some()
        || matches!(p.intent, Some(Intent::PropertySearch | Intent::ScheduleVisit | Intent::FinancingQuestion))
        || p.real_phone().is_some()
        || p.real_email().is_some()
        || p.monthly_income.is_some()
        || p.dicom_status.is_some()
}

/// "No trabajo, no tengo ingresos": nothing to qualify on.
pub(crate) fn no_income(p: &Profile) -> bool {
    p.monthly_income == Some(0) || (p.monthly_income.is_none() && p.key_points.iter().any(|k| k == "sin ingresos"))
}

/// Something this turn may lift a lost lead out of `lost`.
fn qualifying_change(inp: &TurnInput) -> bool {
    if inp.memory.opted_out {
        return true;
    }
    inp.changes.iter().any(|c| matches!(c.field, Field::MonthlyIncome | Field::Dicom | Field::DebtAmount))
}

/// "Ya te lo dije", "te lo dije arriba", "ya te lo mandé".
/// "¿Cuál era el link?", "¿a qué hora era?": the booking's details again.
pub(crate) fn asks_booking_details(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "link",
        "enlace",
        "meet",
        "direccion",
        "donde es",
        "donde queda",
        "donde era",
        "a que hora",
        "que hora",
        "cuando era",
        "cuando es",
        "que dia era",
        "que dia es",
    ];
    has_phrase(text, PHRASES)
}

pub(crate) fn already_told(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "ya te lo dije",
        "ya te dije",
        "ya lo dije",
        "te lo dije",
        "ya se lo dije",
        "ya te lo di",
        "ya te lo mande",
        "ya te lo envie",
        "ya te lo escribi",
        "ya te lo mencione",
        "ya lo puse",
        "ya lo escribi",
        "ya lo mande",
        "ya te lo pase",
        "lo dije antes",
        "lo puse arriba",
    ];
    has_phrase(text, PHRASES)
}

fn asks_to_reschedule(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "reagendar",
        "reagendemos",
        "reprogramar",
        "reprogramemos",
        "cambiar la hora",
        "cambiar la fecha",
        "cambiar el horario",
        "cambiar la reunion",
        "cambiar la cita",
        "cambiar el dia",
        "cambiarla",
        "moverla",
        "mover la reunion",
        "mover la hora",
        "otro horario",
        "otra hora",
        "otro dia",
        "otra fecha",
        "no voy a poder",
        "no podre",
        "no puedo ir",
        "no alcanzo",
        "no puedo",
        "no me sirve",
        "tienen para",
        "postergar",
        "cancelar",
    ];
    has_phrase(text, PHRASES)
}

/// Strong anger, abandonment or a sensitive complaint (reference §5.6, score ≥ 0.7).
fn frustrated(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "pesimo servicio",
        "pesima atencion",
        "pesima experiencia",
        "mala experiencia",
        "estoy enojado",
        "estoy enojada",
        "estoy furioso",
        "estoy furiosa",
        "estoy harto",
        "estoy harta",
        "me tienen harto",
        "me tienen harta",
        "que rabia",
        "perdida de tiempo",
        "no sirves para nada",
        "no sirve para nada",
        "bot inutil",
        "eres inutil",
        "ineptos",
        "hablar con tu supervisor",
        "hablar con el supervisor",
        "hablar con tu jefe",
        "hablar con el jefe",
        "buscar en otra inmobiliaria",
        "buscare en otra inmobiliaria",
        "buscare en otro corredor",
        "me voy a otra inmobiliaria",
        "sernac",
        "voy a demandar",
        "abogado",
        "estafa",
        "fraude",
    ];
    has_phrase(text, PHRASES)
}

/// The same message a third time in the last few (trivial acknowledgements aside).
fn repeats_itself(inp: &TurnInput) -> bool {
    let Some(hash) = inbound_hash(inp.text) else { return false };
    inp.memory.inbound_hashes.iter().filter(|h| **h == hash).count() >= 2
}

/// A short fingerprint of a message, or `None` for "sí", "ok", "gracias"….
pub(crate) fn inbound_hash(text: &str) -> Option<String> {
    const TRIVIAL: &[&str] = &[
        "si",
        "no",
        "ok",
        "okay",
        "oka",
        "dale",
        "gracias",
        "ya",
        "bueno",
        "listo",
        "perfecto",
        "vale",
        "ya po",
        "si gracias",
        "muchas gracias",
        "ok gracias",
        "no se",
        "hola",
        "buenas",
    ];
    let words = padded_words(&fold(text));
    let words = words.trim();
    if words.is_empty() || TRIVIAL.contains(&words) {
        return None;
    }
    Some(format!("{:08x}", fnv1a(words.as_bytes()) as u32))
}

pub(crate) fn remember_inbound(memory: &mut Memory, text: &str) {
    if let Some(hash) = inbound_hash(text) {
        memory.inbound_hashes.push(hash);
        if memory.inbound_hashes.len() > INBOUND_MEMORY {
            let extra = memory.inbound_hashes.len() - INBOUND_MEMORY;
            memory.inbound_hashes.drain(..extra);
        }
    }
}

/// "en la tarde", "por la mañana", "la próxima semana": where the service should start looking.
fn preferred_start(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&TZ);
    let today = local.date_naive();
    let at = |date: NaiveDate, hour: u32| {
        let time = NaiveTime::from_hms_opt(hour, 0, 0)?;
        TZ.from_local_datetime(&date.and_time(time)).earliest().map(|t| t.with_timezone(&Utc))
    };
    let next_week = has_phrase(text, &["proxima semana", "otra semana", "semana que viene", "siguiente semana"]);
    // "no puedo la próxima semana, ¿tienen para la siguiente?", "la subsiguiente".
    let week_after =
        has_phrase(text, &["subsiguiente"]) || (next_week && has_phrase(text, &["la siguiente", "para la otra"]));
    if next_week || week_after || has_phrase(text, &["la siguiente"]) {
        let days_to_monday = 7 - i64::from(today.weekday().num_days_from_monday());
        let weeks = if week_after { 7 } else { 0 };
        return at(today + Duration::days(days_to_monday + weeks), 9);
    }
    let hour = if has_phrase(text, &["en la tarde", "por la tarde", "las tardes", "despues de almuerzo", "tarde"]) {
        15
    } else if has_phrase(text, &["en la manana", "por la manana", "las mananas", "temprano"]) {
        9
    } else {
        return None;
    };
    let first = at(today, hour).filter(|t| *t > now);
    first.or_else(|| {
        let mut next = today + Duration::days(1);
        if next.weekday() == Weekday::Sun {
            next += Duration::days(1);
        }
        at(next, hour)
    })
}

pub(crate) fn has_phrase(text: &str, phrases: &[&str]) -> bool {
    let words = padded_words(&fold(text));
    phrases.iter().any(|p| words.contains(&format!(" {p} ")))
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod conversations;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
