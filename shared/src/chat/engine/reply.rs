//! The local reply composer (SPEC §6 step 7, reference §5.3–5.5): turns the turn's decision and
//! the service's outcome into Sofía's message — an opener (greeting, thanks), at most two short
//! context lines (an answer, an acknowledgement) and the move itself — and the engine memory to
//! store. Phrasings are chosen by hashing (lead, move, turn), never repeating a move's last one.
//!
//! Everything said is true of the profile: acknowledgements come from this turn's changes, the
//! confirmation from the booking (no invented link), answers from the knowledge base.

use chrono::{DateTime, Timelike, Utc};

use super::extract::{DicomStatus, Field, Intent, PropertyType};
use super::policy::violation;
use super::state::ConversationState;
use super::turn::{
    Action, Booking, Decision, Memory, Outcome, Plan, Reply, SlotOffer, Step, TurnInput, answered_something,
    asks_booking_details, fnv1a, has_phrase, no_income, remember_inbound,
};
use crate::leads::model::TZ;

mod phrases;
use phrases::*;

/// Phrase ids remembered in `Memory::last_moves`.
const MOVE_MEMORY: usize = 24;

/// Snippets quoted from the knowledge base are cut near this many characters.
const SNIPPET_CHARS: usize = 350;

pub(crate) fn compose(inp: &TurnInput, d: &Decision, plan: &Plan, outcome: &Outcome) -> Reply {
    use ConversationState::*;
    let mut c = Composer::new(inp);
    let mut mem = inp.memory.clone();
    let mut state = d.next_state;
    let mut asked: Vec<Field> = Vec::new();
    let mut extra_counts: Vec<&'static str> = Vec::new();
    let mut offered: Option<Vec<DateTime<Utc>>> = None;
    let mut awaiting = false;
    let mut pending = None;

    match (&plan.action, outcome) {
        (Action::OptOut, _) => {
            c.greeting_only();
            c.say("opt_out", OPT_OUT, &[]);
            mem.opted_out = true;
            state = Lost;
        }
        (Action::Escalate { reason }, _) => {
            c.greeting_only();
            let bank = match *reason {
                "loop_detected" => ESCALATE_LOOP,
                "frustration" => ESCALATE_FRUSTRATION,
                _ => ESCALATE_REQUEST,
            };
            c.say("escalate", bank, &[]);
        }
        (Action::OfferSlots { day, .. }, Outcome::Slots(slots)) if !slots.is_empty() => {
            c.preface(&d.step);
            let all_on_day = day.is_some_and(|d| slots.iter().all(|s| local_date(s.start) == d));
            if inp.state == Completed {
                c.say("offer_reschedule", OFFER_RESCHEDULE_INTRO, &[]);
            } else if let (true, Some(first)) = (all_on_day, slots.first()) {
                c.say("offer_day", OFFER_DAY_INTRO, &[("day", day_long(first.start))]);
            } else if inp.memory.awaiting_preference || !inp.memory.offered_slots.is_empty() {
                c.say("offer_again", OFFER_AGAIN_INTRO, &[]);
            } else {
                c.say("offer", OFFER_INTRO, &[]);
            }
            c.list(slots.iter().map(|s| s.start));
            c.say("offer_outro", OFFER_OUTRO, &[]);
            offered = Some(slots.iter().map(|s| s.start).collect());
            asked.push(Field::AppointmentChoice);
            state = Scheduling;
        }
        (Action::OfferSlots { .. }, Outcome::Slots(_)) => {
            c.preface(&d.step);
            c.say("no_slots", NO_SLOTS, &[]);
            awaiting = true;
            asked.push(Field::AppointmentChoice);
            state = Scheduling;
        }
        (Action::OfferSlots { .. }, _) => {
            c.preface(&d.step);
            c.say("agenda_unavailable", AGENDA_UNAVAILABLE, &[]);
            awaiting = true;
            state = Scheduling;
        }
        (Action::Book { .. }, Outcome::Booked(booking)) => {
            c.greeting_only();
            c.confirmation(booking);
            mem.booked = Some(booking.clone());
            offered = Some(Vec::new());
            state = Completed;
        }
        (Action::Book { .. }, Outcome::BookFailed { alternatives }) if !alternatives.is_empty() => {
            c.greeting_only();
            c.say("book_failed", BOOK_FAILED_INTRO, &[]);
            c.list(alternatives.iter().map(|s: &SlotOffer| s.start));
            c.say("offer_outro", OFFER_OUTRO, &[]);
            offered = Some(alternatives.iter().map(|s| s.start).collect());
            asked.push(Field::AppointmentChoice);
            state = Scheduling;
        }
        (Action::Book { .. }, _) => {
            c.greeting_only();
            c.say("book_unconfirmed", BOOK_UNCONFIRMED, &[]);
            awaiting = true;
            offered = Some(Vec::new());
            asked.push(Field::AppointmentChoice);
            state = Scheduling;
        }
        (Action::None, _) => {
            c.preface(&d.step);
            step_text(&mut c, inp, &d.step, &mut mem, &mut asked, &mut extra_counts);
            match &d.step {
                Step::ContactForBooking(_, t) => {
                    pending = Some(*t);
                    offered = Some(inp.memory.offered_slots.clone());
                }
                Step::RemindOffer => offered = Some(inp.memory.offered_slots.clone()),
                Step::AskPreference => awaiting = true,
                Step::AfterBooking => offered = Some(Vec::new()),
                // A plan changed by the caller: nothing was fetched or booked.
                Step::Offer { .. } | Step::Book(_) => {
                    awaiting = true;
                }
                _ => {}
            }
        }
    }

    let text = c.finish();
    if state != Lost {
        // The lead wrote back after opting out: the conversation is open again.
        mem.opted_out = false;
    }
    mem.turns += 1;
    remember_inbound(&mut mem, inp.text);
    if !answered_something(inp) {
        for f in &inp.memory.asked {
            *mem.ask_counts.entry(f.as_str().to_string()).or_insert(0) += 1;
        }
    }
    for key in extra_counts {
        *mem.ask_counts.entry(key.to_string()).or_insert(0) += 1;
    }
    mem.asked = asked;
    mem.offered_slots = offered.unwrap_or_default();
    mem.awaiting_preference = awaiting;
    mem.pending_slot = pending;
    for id in &c.moves {
        let prefix = id.split(':').next().unwrap_or_default();
        mem.last_moves.retain(|m| m.split(':').next() != Some(prefix));
        mem.last_moves.push(id.clone());
    }
    if mem.last_moves.len() > MOVE_MEMORY {
        let extra = mem.last_moves.len() - MOVE_MEMORY;
        mem.last_moves.drain(..extra);
    }
    Reply { text, next_state: state, memory: mem }
}

/// The move of a turn without an action.
fn step_text(
    c: &mut Composer,
    inp: &TurnInput,
    step: &Step,
    mem: &mut Memory,
    asked: &mut Vec<Field>,
    extra_counts: &mut Vec<&'static str>,
) {
    let p = inp.profile;
    match step {
        Step::AskName => {
            c.say("ask_name", ASK_NAME, &[]);
            asked.push(Field::Name);
        }
        Step::AskInterest => {
            c.say("ask_interest", ASK_INTEREST, &[]);
            asked.push(Field::PropertyType);
            if !p.knows(Field::Location) {
                asked.push(Field::Location);
            }
            extra_counts.push("interest");
        }
        Step::AskContact(fields) => {
            c.contact_block(fields);
            asked.extend(fields);
        }
        Step::AskFinancial(fields) => {
            c.financial_block(fields);
            asked.extend(fields);
        }
        Step::Repeat(field) => {
            c.say("repeat", REPEAT, &[("label", field_label(*field).to_string())]);
            asked.push(*field);
        }
        Step::AskDebtAmount => {
            c.say("ask_debt", ASK_DEBT_AMOUNT, &[]);
            asked.push(Field::DebtAmount);
        }
        Step::DicomCheck { again, also } => {
            if *again {
                c.say("dicom_recheck", DICOM_RECHECK, &[]);
                extra_counts.push("dicom_recheck");
            } else {
                // A debt paid or prescribed: verify it is gone, rather than "it is common not to know".
                let verify = inp.profile.key_points.iter().any(|k| k.contains("verificar DICOM"));
                let bank = if verify { DICOM_VERIFY } else { DICOM_CHECK };
                c.say("dicom_check", bank, &[]);
                mem.dicom_check_suggested = true;
            }
            asked.push(Field::Dicom);
            c.income_too(also);
            asked.extend(also);
        }
        Step::DicomGuidance { also } => {
            c.say("dicom_guidance", DICOM_GUIDANCE, &[("amount", debt_amount(inp))]);
            mem.dicom_guidance_given = true;
            c.income_too(also);
            asked.extend(also);
        }
        Step::DebtFollowUp => {
            c.say("debt_follow_up", DEBT_FOLLOW_UP, &[]);
            mem.dicom_followup_scheduled = true;
        }
        Step::DebtTooHigh => {
            c.say("debt_too_high", DEBT_TOO_HIGH, &[("amount", debt_amount(inp))]);
            mem.dicom_followup_scheduled = true;
        }
        Step::NotQualified => {
            let has_debt = p.dicom_status == Some(DicomStatus::HasDebt);
            if no_income(p) {
                c.say("not_qualified_no_income", NOT_QUALIFIED_NO_INCOME, &[]);
            } else {
                c.say("not_qualified", NOT_QUALIFIED, &[]);
            }
            if has_debt {
                c.say("no_income_debt", NO_INCOME_DEBT_NOTE, &[]);
                mem.dicom_followup_scheduled = true;
            }
        }
        Step::Nurture => c.say("nurture", NURTURE, &[]),
        Step::ContactForBooking(missing, t) => {
            let it = if missing.len() == 1 { "lo" } else { "los" };
            let list = join_es(&missing.iter().map(|f| field_label(*f)).collect::<Vec<_>>());
            c.say(
                "contact_for_booking",
                CONTACT_FOR_BOOKING,
                &[("when", when_long(*t)), ("list", list), ("it", it.into())],
            );
            asked.extend(missing);
            extra_counts.push("booking_contact");
        }
        Step::AskPreference => {
            c.say("ask_preference", ASK_PREFERENCE, &[]);
            asked.push(Field::AppointmentChoice);
        }
        Step::RemindOffer => {
            if inp.memory.offered_slots.is_empty() {
                c.say("ask_preference", ASK_PREFERENCE, &[]);
            } else {
                c.say("remind_offer", REMIND_OFFER, &[]);
                c.list(inp.memory.offered_slots.iter().copied());
                c.say("offer_outro", OFFER_OUTRO, &[]);
            }
            asked.push(Field::AppointmentChoice);
        }
        Step::AfterBooking => match &inp.memory.booked {
            Some(b) if asks_booking_details(inp.text) => {
                c.say("booking_details", BOOKING_DETAILS, &[("when", when_long(b.start))]);
                c.booking_place(b);
            }
            Some(b) => {
                let vars = [("when", when_long(b.start))];
                if c.answered {
                    c.say("after_booking_answered", AFTER_BOOKING_ANSWERED, &vars);
                } else if has_phrase(inp.text, &["gracias", "muchas gracias", "buenisimo", "perfecto"]) {
                    c.say("after_booking_thanks", AFTER_BOOKING_THANKS, &vars);
                } else {
                    c.say("after_booking", AFTER_BOOKING, &vars);
                }
            }
            None => c.say("after_booking_undated", AFTER_BOOKING_UNDATED, &[]),
        },
        Step::LostFollowUp => {
            let debt = mem.dicom_followup_scheduled || p.dicom_status == Some(DicomStatus::HasDebt);
            if debt {
                c.say("lost_debt", LOST_DEBT, &[]);
            } else {
                c.say("lost_other", LOST_OTHER, &[]);
            }
        }
        Step::Offer { .. } | Step::Book(_) => c.say("agenda_unavailable", AGENDA_UNAVAILABLE, &[]),
        Step::OptOut | Step::Escalate(_) => c.say("nurture", NURTURE, &[]),
    }
}

enum Part {
    Text(String),
    /// A numbered slot list, on its own lines.
    List(String),
}

struct Composer<'a> {
    inp: &'a TurnInput<'a>,
    parts: Vec<Part>,
    /// Phrase ids used in this reply (`move:index`).
    moves: Vec<String>,
    /// The lead's question got an answer (or a deflection) in this reply.
    answered: bool,
    /// A line already explained why the income matters.
    redirected: bool,
    vars: Vec<(&'static str, String)>,
}

impl<'a> Composer<'a> {
    fn new(inp: &'a TurnInput<'a>) -> Self {
        let agent = if inp.identity.agent_name.trim().is_empty() { "Sofía" } else { inp.identity.agent_name.trim() };
        let broker = inp.identity.broker_name.trim();
        let who = if broker.is_empty() { agent.to_string() } else { format!("{agent} de {broker}") };
        let broker_de = if broker.is_empty() { String::new() } else { format!(" de {broker}") };
        let name = inp.profile.first_name();
        let vars = vec![
            ("who", who),
            ("agent", agent.to_string()),
            ("broker_de", broker_de),
            ("name_c", name.as_ref().map(|n| format!(", {n}")).unwrap_or_default()),
            ("name", name.unwrap_or_default()),
        ];
        Self { inp, parts: Vec::new(), moves: Vec::new(), answered: false, redirected: false, vars }
    }

    /// The phrase for `mv`: hashed from (lead, move, turn), never the one this move used last.
    fn pick(&mut self, mv: &'static str, bank: &'static [&'static str]) -> &'static str {
        let n = bank.len().max(1);
        let key = format!("{}:{}:{}", self.inp.seed, mv, self.inp.memory.turns);
        let mut i = (fnv1a(key.as_bytes()) % n as u64) as usize;
        let last = self.inp.memory.last_moves.iter().rev().find_map(|m| {
            let (name, idx) = m.split_once(':')?;
            (name == mv).then(|| idx.parse::<usize>().ok()).flatten()
        });
        if n > 1 && last == Some(i) {
            i = (i + 1) % n;
        }
        self.moves.push(format!("{mv}:{i}"));
        bank.get(i).copied().unwrap_or_default()
    }

    fn fill(&self, template: &str, extra: &[(&str, String)]) -> String {
        let mut out = template.to_string();
        for (k, v) in extra.iter().map(|(k, v)| (*k, v)).chain(self.vars.iter().map(|(k, v)| (*k, v))) {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    fn phrase(&mut self, mv: &'static str, bank: &'static [&'static str], extra: &[(&str, String)]) -> String {
        let template = self.pick(mv, bank);
        self.fill(template, extra)
    }

    fn say(&mut self, mv: &'static str, bank: &'static [&'static str], extra: &[(&str, String)]) {
        let s = self.phrase(mv, bank, extra);
        self.parts.push(Part::Text(s));
    }

    fn push(&mut self, s: String) {
        self.parts.push(Part::Text(s));
    }

    fn list(&mut self, starts: impl Iterator<Item = DateTime<Utc>>) {
        let lines: Vec<String> = starts.enumerate().map(|(i, t)| format!("{}) {}", i + 1, when_short(t))).collect();
        self.parts.push(Part::List(lines.join("\n")));
    }

    fn first_turn(&self) -> bool {
        self.inp.first_contact || self.inp.memory.turns == 0
    }

    fn changed(&self, field: Field) -> bool {
        self.inp.changes.iter().any(|c| c.field == field)
    }

    fn greeting_only(&mut self) {
        if self.first_turn() {
            self.greet();
        }
    }

    fn greet(&mut self) {
        if self.inp.profile.first_name().is_some() {
            self.say("greet_named", GREET_NAMED, &[]);
        } else {
            self.say("greet", GREET, &[]);
        }
    }

    /// Opener, then at most two context lines, before the move.
    fn preface(&mut self, step: &Step) {
        let context = self.context_lines(step);
        if self.first_turn() {
            self.greet();
        } else if self.changed(Field::Name) && self.inp.profile.first_name().is_some() {
            self.say("nice_to_meet", NICE_TO_MEET, &[]);
        } else if context.is_empty() && self.data_changed() && !acknowledges_itself(step) {
            self.say("thanks", THANKS, &[]);
        }
        for line in context {
            self.push(line);
        }
    }

    /// The lead gave contact or financial data ("no sé" about DICOM is not worth a thank-you).
    fn data_changed(&self) -> bool {
        self.inp.changes.iter().any(|c| match c.field {
            Field::Dicom => c.new != serde_json::json!("unknown"),
            f => matches!(f, Field::Phone | Field::Email | Field::Location | Field::MonthlyIncome | Field::DebtAmount),
        })
    }

    fn context_lines(&mut self, step: &Step) -> Vec<String> {
        let ex = self.inp.extraction;
        let mut lines = Vec::new();
        if let Some(answer) = self.answer(step) {
            lines.push(answer);
        }
        let asks_income = match step {
            Step::AskFinancial(f) => f.contains(&Field::MonthlyIncome),
            Step::DicomGuidance { also } | Step::DicomCheck { also, .. } => also.contains(&Field::MonthlyIncome),
            _ => false,
        };
        if asks_income && self.changed(Field::Budget) {
            lines.push(self.phrase("budget_redirect", BUDGET_REDIRECT, &[]));
            self.redirected = true;
        }
        let lost = matches!(
            step,
            Step::DebtTooHigh | Step::DebtFollowUp | Step::NotQualified | Step::LostFollowUp | Step::OptOut
        );
        let interest_changed = self.changed(Field::PropertyType)
            || self.changed(Field::Bedrooms)
            || (self.first_turn() && self.changed(Field::Location));
        if lines.len() < 2
            && interest_changed
            && !lost
            && let Some(interest) = interest_phrase(self.inp)
        {
            lines.push(self.phrase("interest_ack", INTEREST_ACK, &[("interest", interest)]));
        }
        let asking = matches!(
            step,
            Step::AskName
                | Step::AskInterest
                | Step::AskContact(_)
                | Step::AskFinancial(_)
                | Step::AskDebtAmount
                | Step::DicomCheck { .. }
        );
        if lines.len() < 2 && asking && ex.intent == Some(Intent::ScheduleVisit) && !self.answered {
            lines.push(self.phrase("visit_first", VISIT_FIRST, &[]));
        }
        if lines.is_empty() && has_phrase(self.inp.text, CONFUSED_PHRASES) {
            lines.push(self.phrase("confused", CONFUSED, &[]));
        }
        if lines.len() < 2 && ex.just_looking && !lost {
            lines.push(self.phrase("just_looking", JUST_LOOKING, &[]));
        }
        lines
    }

    /// The answer to this turn's question, if it asked one Sofía should answer here.
    fn answer(&mut self, step: &Step) -> Option<String> {
        let inp = self.inp;
        let ex = inp.extraction;
        let text = inp.text;
        if !(ex.question || text.contains('?')) || matches!(step, Step::OptOut | Step::Escalate(_)) {
            return None;
        }
        let scheduling_step = matches!(
            step,
            Step::Offer { .. } | Step::Book(_) | Step::ContactForBooking(..) | Step::AskPreference | Step::RemindOffer
        );
        // "¿Puedo ir el sábado?" is answered by the scheduling itself, "¿cuál era el link?" by the booking.
        let booking_details = matches!(step, Step::AfterBooking) && asks_booking_details(text);
        if (ex.appointment.is_some() && scheduling_step) || booking_details {
            return None;
        }
        let line = if has_phrase(text, WHO_PHRASES) {
            self.phrase("who_am_i", WHO_AM_I, &[])
        } else if financing_question(text) {
            self.phrase("deflect_financing", DEFLECT_FINANCING, &[])
        } else if dicom_question(text) {
            self.phrase("explain_dicom", EXPLAIN_DICOM, &[])
        } else if let Some(snippet) = self.kb_snippet() {
            if violation(&snippet, true).is_some() {
                self.phrase("deflect_financing", DEFLECT_FINANCING, &[])
            } else {
                self.phrase("kb_answer", KB_ANSWER, &[("answer", snippet)])
            }
        } else if has_phrase(text, &["subsidio", "subsidios"]) {
            self.phrase("deflect_financing", DEFLECT_FINANCING, &[])
        } else if has_phrase(text, COMPANION_PHRASES) {
            self.phrase("companion", COMPANION, &[])
        } else if has_phrase(text, HOW_ARE_YOU_PHRASES) {
            self.phrase("how_are_you", HOW_ARE_YOU, &[])
        } else if ex.intent == Some(Intent::ScheduleVisit) || scheduling_step {
            // Scheduling answers it (slots, or `VISIT_FIRST` before the lead is qualified).
            return None;
        } else if text.split_whitespace().count() < 3 || matches!(step, Step::LostFollowUp) {
            // "¿hola?", "¿hay alguien?" are not questions to look up; a lost lead's "¿y no hay
            // forma?" is answered by the follow-up itself.
            return None;
        } else {
            self.phrase("no_answer", NO_ANSWER, &[])
        };
        self.answered = true;
        Some(line)
    }

    /// The best knowledge-base hit, good enough and trimmed.
    fn kb_snippet(&self) -> Option<String> {
        let best = self
            .inp
            .kb_hits
            .iter()
            .filter(|h| h.similarity >= self.inp.kb_min_similarity)
            .max_by(|a, b| a.similarity.total_cmp(&b.similarity))?;
        let snippet = trim_snippet(&best.snippet);
        (!snippet.is_empty()).then_some(snippet)
    }

    fn contact_block(&mut self, fields: &[Field]) {
        let labels: Vec<&str> = fields.iter().map(|f| field_label(*f)).collect();
        self.say("contact_ask", CONTACT_ASK, &[("list", join_es(&labels))]);
        let reasons: Vec<(&str, &str)> = fields
            .iter()
            .map(|f| {
                let (noun, purposes) = reason(*f);
                let purpose = self.pick(reason_move(*f), purposes);
                (noun, purpose)
            })
            .collect();
        let sentence = match reasons.as_slice() {
            [] => return,
            [(_, p)] => format!("Te lo pido {p}."),
            [(n0, p0), (n1, p1)] => format!("{} es {p0} y {n1}, {p1}.", capitalise(n0)),
            [(n0, p0), rest @ ..] => {
                let tail: Vec<String> = rest.iter().map(|(n, p)| format!("{n} {p}")).collect();
                format!(
                    "{} es {p0}, {}.",
                    capitalise(n0),
                    join_es(&tail.iter().map(String::as_str).collect::<Vec<_>>())
                )
            }
        };
        self.push(sentence);
    }

    fn financial_block(&mut self, fields: &[Field]) {
        let income = fields.contains(&Field::MonthlyIncome);
        let dicom = fields.contains(&Field::Dicom);
        if income {
            self.say("ask_income", ASK_INCOME, &[]);
        }
        if dicom && income {
            self.say("ask_dicom_after_income", ASK_DICOM_AFTER_INCOME, &[]);
        } else if dicom {
            self.say("ask_dicom", ASK_DICOM, &[]);
        }
        if !self.redirected {
            self.say("financial_reason", FINANCIAL_REASON, &[]);
        }
    }

    /// "Y mientras, ¿cuál es tu renta…?" after a DICOM line.
    fn income_too(&mut self, also: &[Field]) {
        if also.contains(&Field::MonthlyIncome) {
            let ask = lower_first(&self.phrase("ask_income", ASK_INCOME, &[]));
            self.say("income_too", INCOME_TOO, &[("ask", ask)]);
        }
    }

    /// Date, time, place or link, executive, invitation, documents.
    fn confirmation(&mut self, b: &Booking) {
        self.say("booked", BOOKED, &[("when", when_long(b.start))]);
        let (link, place) = self.booking_place(b);
        if let Some(agent) = b.agent_name.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            self.say("booked_agent", BOOKED_AGENT, &[("agent", agent.to_string())]);
        }
        if let Some(email) = self.inp.profile.real_email() {
            self.say("booked_email", BOOKED_EMAIL, &[("email", email.to_string())]);
        }
        if link.is_some() && place.is_none() {
            self.say("booked_docs", BOOKED_DOCS_ONLINE, &[]);
        } else {
            self.say("booked_docs", BOOKED_DOCS_IN_PERSON, &[]);
        }
    }

    /// The Meet link (own line) and the place, when the booking has them; never invented.
    fn booking_place<'b>(&mut self, b: &'b Booking) -> (Option<&'b str>, Option<&'b str>) {
        let link = b.meet_url.as_deref().map(str::trim).filter(|l| !l.is_empty());
        let place = b.location.as_deref().map(str::trim).filter(|l| !l.is_empty());
        if let Some(link) = link {
            // On its own line, so no punctuation sticks to the link.
            let line = self.phrase("booked_meet", BOOKED_MEET, &[("link", link.to_string())]);
            self.parts.push(Part::List(line));
        }
        if let Some(place) = place {
            self.say("booked_place", BOOKED_PLACE, &[("place", place.to_string())]);
        }
        (link, place)
    }

    fn finish(&self) -> String {
        let mut out = String::new();
        let mut after_list = false;
        for part in &self.parts {
            match part {
                Part::Text(t) if t.trim().is_empty() => continue,
                Part::Text(t) => {
                    if !out.is_empty() {
                        out.push(if after_list { '\n' } else { ' ' });
                    }
                    out.push_str(t.trim());
                    after_list = false;
                }
                Part::List(l) => {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(l);
                    after_list = true;
                }
            }
        }
        let out = at_most_one_emoji(&out);
        let debt = self.inp.profile.dicom_status == Some(DicomStatus::HasDebt)
            || self.inp.extraction.dicom_status == Some(DicomStatus::HasDebt)
            || self.inp.profile.morosidad_amount.is_some_and(|a| a > 0);
        // The banks are tested never to trip the guard; this keeps a future edit from shipping a promise.
        if violation(&out, debt).is_some() { SAFE_FALLBACK.to_string() } else { out }
    }
}

/// Moves whose phrases open with their own acknowledgement.
fn acknowledges_itself(step: &Step) -> bool {
    matches!(
        step,
        Step::DicomGuidance { .. }
            | Step::DebtTooHigh
            | Step::DebtFollowUp
            | Step::AskDebtAmount
            | Step::NotQualified
            | Step::Nurture
            | Step::LostFollowUp
            | Step::Repeat(_)
            | Step::DicomCheck { .. }
    )
}

const WHO_PHRASES: &[&str] = &[
    "eres un bot",
    "eres una persona",
    "eres humana",
    "eres humano",
    "eres real",
    "eres una ia",
    "eres un robot",
    "con quien hablo",
    "con quien estoy hablando",
    "quien eres",
];

const CONFUSED_PHRASES: &[&str] = &[
    "no entiendo",
    "no te entiendo",
    "no entendi",
    "no le entiendo",
    "me perdi",
    "no me queda claro",
    "de que hablas",
    "de que estas hablando",
];

const COMPANION_PHRASES: &[&str] = &[
    "llevar a mi pareja",
    "llevar a mi esposa",
    "llevar a mi esposo",
    "llevar a mi marido",
    "llevar a mi senora",
    "llevar a mi familia",
    "ir acompanado",
    "ir acompanada",
    "venir acompanado",
    "venir acompanada",
    "con mi pareja",
];

const HOW_ARE_YOU_PHRASES: &[&str] = &["como estas", "como esta", "que tal", "como te va"];

/// Credit, pie, instalments, banks or "how much should I have": deflected to the executive.
fn financing_question(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "pie",
        "cuota",
        "cuotas",
        "dividendo",
        "dividendos",
        "credito",
        "creditos",
        "hipotecario",
        "hipotecaria",
        "financiamiento",
        "financiar",
        "financian",
        "prestamo",
        "tasa",
        "banco",
        "bancos",
        "cuanto deberia tener",
        "cuanto necesito",
        "cuanto tengo que tener",
        "cuanto debo tener",
        "cuanto me prestan",
        "me prestan",
        "me aprueban",
        "aprueban",
        "ahorrar",
    ];
    has_phrase(text, WORDS) && !has_phrase(text, &["a pie"])
}

/// "¿Qué es el DICOM?", "¿Necesito DICOM limpio para comprar?".
fn dicom_question(text: &str) -> bool {
    has_phrase(text, &["dicom"])
        && has_phrase(
            text,
            &[
                "que es",
                "que significa",
                "necesito",
                "importa",
                "afecta",
                "influye",
                "puedo comprar",
                "es necesario",
                "requisito",
            ],
        )
}

fn field_label(f: Field) -> &'static str {
    match f {
        Field::Name => "tu nombre completo",
        Field::Phone => "tu teléfono",
        Field::Email => "tu correo",
        Field::Location => "la comuna donde buscas",
        Field::MonthlyIncome => "tu renta líquida mensual",
        Field::Dicom => "si estás en DICOM",
        Field::DebtAmount => "el monto de la deuda",
        Field::PropertyType => "el tipo de propiedad que buscas",
        Field::Bedrooms => "cuántos dormitorios necesitas",
        Field::Budget => "tu presupuesto",
        Field::Timeline => "para cuándo buscas",
        Field::AppointmentChoice => "el horario que prefieres",
    }
}

/// Why Sofía needs a contact field: the noun and a few purposes.
fn reason(f: Field) -> (&'static str, &'static [&'static str]) {
    match f {
        Field::Phone => (
            "el teléfono",
            &[
                "para que un ejecutivo te confirme la visita",
                "para que un ejecutivo pueda confirmarte la visita por WhatsApp",
            ],
        ),
        Field::Email => (
            "el correo",
            &["para enviarte la invitación a la videollamada", "para mandarte la invitación de la videollamada"],
        ),
        Field::Location => {
            ("la comuna", &["para mostrarte opciones que te calcen", "para enfocar la búsqueda donde te interesa"])
        }
        _ => ("el nombre", &["para dejar la reserva a tu nombre", "para registrar la reunión a tu nombre"]),
    }
}

fn reason_move(f: Field) -> &'static str {
    match f {
        Field::Phone => "reason_phone",
        Field::Email => "reason_email",
        Field::Location => "reason_location",
        _ => "reason_name",
    }
}

/// "un depto de 2 dormitorios en Las Condes", from the profile.
fn interest_phrase(inp: &TurnInput) -> Option<String> {
    let p = inp.profile;
    let kind = match (p.property_type, p.bedrooms, p.location.as_ref()) {
        (Some(PropertyType::Departamento), ..) => "un depto",
        (Some(PropertyType::Casa), ..) => "una casa",
        (Some(PropertyType::Oficina), ..) => "una oficina",
        (Some(PropertyType::Terreno), ..) => "un terreno",
        (None, Some(_), _) => "una propiedad",
        (None, None, Some(_)) => "propiedades",
        (None, None, None) => return None,
    };
    let rooms = match p.bedrooms {
        Some(1) => " de 1 dormitorio".to_string(),
        Some(n) => format!(" de {n} dormitorios"),
        None => String::new(),
    };
    let place = p.location.as_ref().map(|l| format!(" en {l}")).unwrap_or_default();
    Some(format!("{kind}{rooms}{place}"))
}

fn debt_amount(inp: &TurnInput) -> String {
    inp.profile.morosidad_amount.filter(|a| *a > 0).map(clp).unwrap_or_else(|| "ese monto".to_string())
}

/// `$1.500.000`.
pub(crate) fn clp(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    format!("{}${out}", if amount < 0 { "-" } else { "" })
}

fn local_date(t: DateTime<Utc>) -> chrono::NaiveDate {
    t.with_timezone(&TZ).date_naive()
}

/// "jueves 10 de diciembre", in America/Santiago.
pub(crate) fn day_long(t: DateTime<Utc>) -> String {
    let l = t.with_timezone(&TZ);
    crate::text::day_long_es(l.date_naive())
}

/// "jueves 10 de diciembre a las 10:00", in America/Santiago.
pub(crate) fn when_long(t: DateTime<Utc>) -> String {
    let l = t.with_timezone(&TZ);
    format!("{} a las {:02}:{:02}", day_long(t), l.hour(), l.minute())
}

/// "jueves 10 de diciembre, 10:00", for slot lists.
pub(crate) fn when_short(t: DateTime<Utc>) -> String {
    let l = t.with_timezone(&TZ);
    format!("{}, {:02}:{:02}", day_long(t), l.hour(), l.minute())
}

/// "a", "a y b", "a, b y c".
fn join_es(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} y {last}", init.join(", ")),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// "¿Cuál es…?" → "¿cuál es…?".
fn lower_first(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut done = false;
    for c in s.chars() {
        if !done && c.is_alphabetic() {
            out.extend(c.to_lowercase());
            done = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// A knowledge-base snippet as Sofía quotes it: whole sentences up to ~350 characters, without
/// the FAQ's own questions.
pub(crate) fn trim_snippet(snippet: &str) -> String {
    let text = snippet.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut sentences: Vec<String> = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        cur.push(c);
        let end = matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if end {
            sentences.push(cur.trim().to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        sentences.push(cur.trim().to_string());
    }
    let mut out = String::new();
    for s in sentences.into_iter().filter(|s| !s.contains('?') && !s.contains('¿')) {
        let len = out.chars().count() + s.chars().count() + 1;
        if len > SNIPPET_CHARS && !out.is_empty() {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&s);
        if out.chars().count() > SNIPPET_CHARS {
            break;
        }
    }
    if out.chars().count() > SNIPPET_CHARS {
        // One long sentence: cut at a word boundary.
        let cut: String = out.chars().take(SNIPPET_CHARS - 1).collect();
        let cut = cut.rsplit_once(' ').map(|(head, _)| head).unwrap_or(&cut);
        out = format!("{}…", cut.trim_end_matches([',', ';', ':']));
    }
    out
}

fn is_emoji(c: char) -> bool {
    matches!(c as u32, 0x1F300..=0x1FAFF | 0x2600..=0x27BF | 0x1F000..=0x1F2FF)
}

/// Keeps the first emoji of a message and drops the rest.
fn at_most_one_emoji(text: &str) -> String {
    let mut seen = false;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_emoji(c) {
            if seen {
                continue;
            }
            seen = true;
        }
        out.push(c);
    }
    out.replace("  ", " ").replace(" \n", "\n")
}

#[cfg(test)]
pub(crate) use phrases::SAFE_FALLBACK;

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    const FAQ: &str = "¿Tienen estacionamiento? Sí: todos los departamentos del proyecto Parque Ñuñoa incluyen un \
        estacionamiento y una bodega. Los estacionamientos adicionales se venden por separado. El proyecto tiene \
        quincho, piscina y sala multiuso en el último piso, con vista a la cordillera. La entrega está programada \
        para el segundo semestre de 2026, según el avance de obra informado por la constructora. Las visitas al \
        piloto se coordinan con un ejecutivo de lunes a sábado.";

    fn santiago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        let local = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap();
        TZ.from_local_datetime(&local).earliest().unwrap().with_timezone(&Utc)
    }

    #[test]
    fn snippets_are_trimmed_at_a_sentence_boundary() {
        let s = trim_snippet(FAQ);
        assert!(s.chars().count() <= 351, "{s}");
        assert!(s.ends_with('.'), "{s}");
        assert!(s.starts_with("Sí: todos"), "{s}");
        let long = "palabra ".repeat(100);
        let s = trim_snippet(&long);
        assert!(s.chars().count() <= 350 && s.ends_with('…'), "{s}");
        assert_eq!(trim_snippet("¿Solo una pregunta?"), "");
        assert_eq!(trim_snippet("  Corto   y claro.  "), "Corto y claro.");
    }

    #[test]
    fn every_phrase_bank_has_several_phrasings_that_keep_the_rules() {
        let vars = [
            ("who", "Sofía de Inmobiliaria Andes"),
            ("agent", "Sofía"),
            ("broker_de", " de Inmobiliaria Andes"),
            ("name", "Juan"),
            ("name_c", ", Juan"),
            ("interest", "un depto de 2 dormitorios en Ñuñoa"),
            ("amount", "$300.000"),
            ("when", "jueves 13 de noviembre a las 10:00"),
            ("day", "jueves 13 de noviembre"),
            ("list", "tu teléfono y tu correo"),
            ("label", "tu correo"),
            ("it", "los"),
            ("link", "https://meet.google.com/x"),
            ("place", "Av. Apoquindo 3000"),
            ("email", "juan@gmail.com"),
            ("ask", "¿cuál es tu renta líquida?"),
            ("answer", "Incluye estacionamiento."),
        ];
        let banks = phrases::ALL;
        assert!(banks.len() >= 50);
        for &(name, bank) in banks {
            assert!(bank.len() >= 3, "{name} has {} phrasings", bank.len());
            for phrase in bank {
                let mut filled = phrase.to_string();
                for (k, v) in vars {
                    filled = filled.replace(&format!("{{{k}}}"), v);
                }
                assert!(!filled.contains('{'), "{name}: unknown placeholder in {phrase}");
                assert!(filled.matches('?').count() <= 1, "{name}: {phrase}");
                let emojis =
                    filled.chars().filter(|c| matches!(*c as u32, 0x1F300..=0x1FAFF | 0x2600..=0x27BF)).count();
                assert!(emojis <= 1, "{name}: {phrase}");
                assert_eq!(violation(&filled, true), None, "{name}: {phrase}");
            }
        }
    }

    #[test]
    fn dates_and_amounts_are_written_the_chilean_way() {
        // December is summer time (UTC−3), June winter time (UTC−4).
        assert_eq!(
            when_long(Utc.with_ymd_and_hms(2026, 12, 10, 13, 0, 0).unwrap()),
            "jueves 10 de diciembre a las 10:00"
        );
        assert_eq!(when_long(Utc.with_ymd_and_hms(2025, 6, 12, 14, 30, 0).unwrap()), "jueves 12 de junio a las 10:30");
        assert_eq!(when_short(santiago(2025, 11, 15, 9, 0)), "sábado 15 de noviembre, 09:00");
        assert_eq!(clp(50_000), "$50.000");
        assert_eq!(clp(1_500_000), "$1.500.000");
        assert_eq!(clp(500), "$500");
    }

    #[test]
    fn at_most_one_emoji_survives() {
        assert_eq!(at_most_one_emoji("Hola 😊 ¡listo! 🙌"), "Hola 😊 ¡listo! ");
        assert_eq!(at_most_one_emoji("sin emojis"), "sin emojis");
    }

    #[test]
    fn lists_read_as_spanish() {
        assert_eq!(join_es(&["a"]), "a");
        assert_eq!(join_es(&["a", "b"]), "a y b");
        assert_eq!(join_es(&["a", "b", "c"]), "a, b y c");
        assert_eq!(lower_first("¿Cuál es?"), "¿cuál es?");
        assert_eq!(capitalise("el teléfono"), "El teléfono");
    }
}
