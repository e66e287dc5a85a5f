//! A simulated chat service for the engine's tests: extract → merge → calificación → plan →
//! (fake calendar and bookings) → reply, checking the reply rules on every turn.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};

use super::*;
use crate::chat::engine::extract::{ExtractCtx, extract};
use crate::chat::engine::policy::violation;
use crate::chat::engine::profile::merge;
use crate::leads::qualification::{Criteria, qualify};
use crate::leads::scoring::Dicom;

/// Tuesday 2025-11-11, 09:00 in Santiago (UTC−3).
pub fn tuesday_9am() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 11, 12, 0, 0).unwrap()
}

/// A Santiago wall-clock time.
pub fn santiago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
    TZ.from_local_datetime(&date.and_time(NaiveTime::from_hms_opt(h, min, 0).unwrap()))
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

pub fn identity() -> Identity {
    Identity { agent_name: "Sofía".into(), broker_name: "Inmobiliaria Andes".into() }
}

/// One simulated turn.
#[derive(Clone, Debug)]
pub struct Turn {
    pub inbound: String,
    pub plan: Plan,
    pub outcome: Outcome,
    pub reply: Reply,
    pub profile: Profile,
}

impl Turn {
    pub fn text(&self) -> &str {
        &self.reply.text
    }
    pub fn state(&self) -> ConversationState {
        self.reply.next_state
    }
    pub fn asked(&self) -> &[Field] {
        &self.reply.memory.asked
    }
}

pub struct Sim {
    pub now: DateTime<Utc>,
    pub seed: u64,
    pub identity: Identity,
    pub profile: Profile,
    pub memory: Memory,
    pub state: ConversationState,
    /// Returned to the engine when the message asks something.
    pub kb: Vec<KbHit>,
    pub kb_min: f64,
    /// Starts the fake calendar has already taken.
    pub busy: Vec<DateTime<Utc>>,
    pub meet_url: Option<String>,
    pub location: Option<String>,
    pub agent_name: Option<String>,
    pub criteria: Criteria,
    pub turns: Vec<Turn>,
    next_id: i64,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            now: tuesday_9am(),
            seed,
            identity: identity(),
            profile: Profile::default(),
            memory: Memory::default(),
            state: ConversationState::Greeting,
            kb: Vec::new(),
            kb_min: 0.3,
            busy: Vec::new(),
            meet_url: Some("https://meet.google.com/abc-defg-hij".into()),
            location: None,
            agent_name: Some("Carolina Rojas".into()),
            criteria: Criteria::default(),
            turns: Vec::new(),
            next_id: 100,
        }
    }

    /// The lead writes `text`; returns the turn after checking every reply rule.
    pub fn say(&mut self, text: &str) -> Turn {
        let ex = extract(
            text,
            &ExtractCtx { now: self.now, expecting: &self.memory.asked, offered_slots: &self.memory.offered_slots },
        );
        let (mut profile, changes) = merge(&self.profile, &ex, text, &self.memory.asked);
        profile.calificacion = qualify(
            &self.criteria,
            profile.monthly_income,
            profile.dicom_status.and_then(|d| Dicom::parse(d.as_str())),
            profile.morosidad_amount,
        );
        let hits = if ex.question { self.kb.clone() } else { Vec::new() };
        let (memory, identity) = (self.memory.clone(), self.identity.clone());
        let input = TurnInput {
            now: self.now,
            state: self.state,
            first_contact: self.turns.is_empty() && self.memory.turns == 0,
            text,
            profile: &profile,
            changes: &changes,
            extraction: &ex,
            memory: &memory,
            identity: &identity,
            kb_hits: &hits,
            kb_min_similarity: self.kb_min,
            seed: self.seed,
        };
        let plan = plan(&input);
        let outcome = self.perform(&plan.action, input.now);
        let reply = reply(&input, &plan, &outcome);
        check_reply(&input, &reply);
        let turn = Turn { inbound: text.into(), plan, outcome, reply: reply.clone(), profile: profile.clone() };
        self.profile = profile;
        self.memory = reply.memory;
        self.state = reply.next_state;
        self.now += Duration::minutes(3);
        if std::env::var_os("ENGINE_TRANSCRIPT").is_some() {
            println!("> {text}\n< [{}] {}", turn.state().as_str(), turn.text());
        }
        self.turns.push(turn.clone());
        turn
    }

    /// A lead already known as `profile`, `turns` replies into the conversation, in `state`.
    pub fn at(seed: u64, state: ConversationState, profile: Profile, turns: u32) -> Self {
        let mut s = Self::new(seed);
        s.state = state;
        s.profile = profile;
        s.memory.turns = turns;
        s
    }

    /// Slots as the last reply offered them.
    pub fn offer(&mut self, starts: &[DateTime<Utc>]) {
        self.memory.offered_slots = starts.to_vec();
        self.memory.asked = vec![Field::AppointmentChoice];
        self.state = ConversationState::Scheduling;
    }

    /// The whole conversation, for assertion messages.
    pub fn transcript(&self) -> String {
        self.turns
            .iter()
            .map(|t| format!("> {}\n< [{}] {}\n", t.inbound, t.state().as_str(), t.text()))
            .collect::<Vec<_>>()
            .join("")
    }

    fn perform(&mut self, action: &Action, _now: DateTime<Utc>) -> Outcome {
        match action {
            Action::None | Action::OptOut => Outcome::Nothing,
            Action::Escalate { .. } => Outcome::Escalated,
            Action::OfferSlots { day, near } => Outcome::Slots(self.free_slots(*day, *near)),
            Action::Book { start } => {
                if self.busy.contains(start) || *start <= self.now {
                    Outcome::BookFailed { alternatives: self.free_slots(None, Some(*start)) }
                } else {
                    self.next_id += 1;
                    self.busy.push(*start);
                    Outcome::Booked(Booking {
                        appointment_id: self.next_id,
                        start: *start,
                        end: *start + Duration::minutes(60),
                        location: self.location.clone(),
                        meet_url: self.meet_url.clone(),
                        agent_name: self.agent_name.clone(),
                    })
                }
            }
        }
    }

    /// Up to 3 free starts: on `day` (10, 12, 16 h; Saturday 9–11 h), else from `near` or now at
    /// 10 and 16 h on working days (Saturday 10 h).
    pub fn free_slots(&self, day: Option<NaiveDate>, near: Option<DateTime<Utc>>) -> Vec<SlotOffer> {
        let hours = |d: NaiveDate, full: bool| -> Vec<u32> {
            match (d.weekday(), full) {
                (Weekday::Sun, _) => vec![],
                (Weekday::Sat, true) => vec![9, 10, 11],
                (Weekday::Sat, false) => vec![10],
                (_, true) => vec![10, 12, 16],
                (_, false) => vec![10, 16],
            }
        };
        let free = |t: &DateTime<Utc>| *t > self.now && !self.busy.contains(t);
        let at = |d: NaiveDate, h: u32| santiago(d.year(), d.month(), d.day(), h, 0);
        let offer = |t: DateTime<Utc>| SlotOffer { start: t, end: t + Duration::minutes(60) };
        if let Some(d) = day {
            return hours(d, true).into_iter().map(|h| at(d, h)).filter(free).take(3).map(offer).collect();
        }
        let from = near.unwrap_or(self.now).max(self.now);
        let mut d = from.with_timezone(&TZ).date_naive();
        let mut out = Vec::new();
        while out.len() < 3 {
            for h in hours(d, false) {
                let t = at(d, h);
                if t >= from && free(&t) && out.len() < 3 {
                    out.push(offer(t));
                }
            }
            d += Duration::days(1);
        }
        out
    }
}

/// The rules every reply keeps.
pub fn check_reply(input: &TurnInput, reply: &Reply) {
    let text = &reply.text;
    assert!(!text.trim().is_empty(), "empty reply");
    assert!(text.matches('?').count() <= 3, "more than 3 questions: {text}");
    assert_eq!(violation(text, true), None, "policy violation: {text}");
    assert_ne!(text, crate::chat::engine::reply::SAFE_FALLBACK, "a composed reply tripped the policy guard");
    let emojis = text.chars().filter(|c| matches!(*c as u32, 0x1F300..=0x1FAFF | 0x2600..=0x27BF)).count();
    assert!(emojis <= 1, "more than one emoji: {text}");
    for f in &reply.memory.asked {
        assert!(!input.profile.knows(*f), "re-asks known {f:?}: {text}");
    }
    assert_ne!(reply.next_state, ConversationState::Greeting, "still greeting after a reply: {text}");
    assert!(!text.contains('{') && !text.contains('}'), "unfilled placeholder: {text}");
    // Never claims an address the lead did not give.
    for word in text.split_whitespace().filter(|w| w.contains('@')) {
        let word = word.trim_end_matches(['.', ',']);
        assert_eq!(Some(word), input.profile.real_email(), "mentions an unknown email: {text}");
    }
    if text.contains("http") {
        assert!(
            matches!(reply.memory.booked.as_ref().and_then(|b| b.meet_url.as_deref()), Some(u) if text.contains(u))
        );
    }
    // Short messages: a slot list or a confirmation may run longer.
    let sentences = text.split(['.', '!', '?', '\n']).filter(|s| s.chars().any(char::is_alphabetic)).count();
    let listed = text.contains("1) ") || reply.next_state == ConversationState::Completed;
    assert!(sentences <= if listed { 12 } else { 6 }, "too long ({sentences} sentences): {text}");
}
