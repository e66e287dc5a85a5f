//! Rule tests for `plan` and `reply`: one turn at a time, through the simulated service.

use chrono::Utc;

use super::sim::*;
use super::*;
use crate::chat::engine::extract::PropertyType;
use crate::chat::engine::policy::violation;
use crate::chat::engine::reply::{when_long, when_short};
use ConversationState::*;

fn contact_known() -> Profile {
    Profile {
        name: Some("Juan Pérez".into()),
        phone: Some("+56912345678".into()),
        email: Some("juan@gmail.com".into()),
        location: Some("Ñuñoa".into()),
        property_type: Some(PropertyType::Departamento),
        ..Profile::default()
    }
}

fn qualified() -> Profile {
    Profile { monthly_income: Some(1_500_000), dicom_status: Some(DicomStatus::Clean), ..contact_known() }
}

/// Three offered slots: Wed 12 10:00, Thu 13 10:00, Fri 14 16:00 (Santiago).
fn three_slots() -> Vec<DateTime<Utc>> {
    vec![santiago(2025, 11, 12, 10, 0), santiago(2025, 11, 13, 10, 0), santiago(2025, 11, 14, 16, 0)]
}

fn scheduling_sim(seed: u64) -> Sim {
    let mut s = Sim::at(seed, Scheduling, qualified(), 5);
    s.offer(&three_slots());
    s
}

fn lower(t: &str) -> String {
    t.to_lowercase()
}

// --- greeting and interest -------------------------------------------------------------------

#[test]
fn first_contact_greets_as_the_agent_of_the_broker_and_asks_only_the_name() {
    for seed in 1..=8 {
        let t = Sim::new(seed).say("Buenas, vi el anuncio en el portal");
        assert!(t.text().contains("Sofía de Inmobiliaria Andes"), "{}", t.text());
        assert_eq!(t.asked(), [Field::Name]);
        assert_eq!(t.text().matches('?').count(), 1, "{}", t.text());
        assert!(lower(t.text()).contains("nombre") || lower(t.text()).contains("cómo te llamas"), "{}", t.text());
        assert_eq!((t.plan.action.clone(), t.state()), (Action::None, InterestCheck));
    }
}

#[test]
fn a_first_message_with_a_name_is_greeted_by_name_and_asked_what_they_look_for() {
    let t = Sim::new(3).say("Hola, me llamo Juan Pérez");
    assert!(t.text().contains("Juan") && t.text().contains("Sofía de Inmobiliaria Andes"), "{}", t.text());
    assert_eq!(t.asked(), [Field::PropertyType, Field::Location]);
    assert!(!lower(t.text()).contains("teléfono") && !lower(t.text()).contains("correo"), "{}", t.text());
    assert_eq!(t.state(), InterestCheck);
}

#[test]
fn a_stated_interest_is_acknowledged_specifically() {
    let t = Sim::new(4).say("Hola, busco un depto de 2 dormitorios en Las Condes");
    assert!(t.text().contains("un depto de 2 dormitorios en Las Condes"), "{}", t.text());
    assert_eq!(t.asked(), [Field::Name]);
    let t = Sim::new(5).say("Hola, soy María González y busco casa en Ñuñoa");
    assert!(t.text().contains("María") && t.text().contains("una casa en Ñuñoa"), "{}", t.text());
    assert_eq!(t.asked(), [Field::Phone, Field::Email]);
    assert_eq!(t.state(), DataCollection);
}

#[test]
fn a_name_after_the_greeting_moves_on_to_interest_then_contact() {
    let mut s = Sim::new(6);
    s.say("hola");
    let t = s.say("Carlos");
    assert_eq!(t.profile.name.as_deref(), Some("Carlos"));
    assert!(t.text().contains("Carlos"), "{}", t.text());
    assert_eq!(t.state(), InterestCheck);
    let t = s.say("una casa en Maipú");
    assert_eq!(t.state(), DataCollection);
    assert!(t.text().contains("una casa en Maipú"), "{}", t.text());
}

// --- contact block ---------------------------------------------------------------------------

#[test]
fn the_contact_block_asks_only_what_is_missing_and_says_why() {
    let base = Profile { name: Some("Ana".into()), property_type: Some(PropertyType::Casa), ..Profile::default() };
    let cases: Vec<(Profile, Vec<Field>)> = vec![
        (base.clone(), vec![Field::Phone, Field::Email, Field::Location]),
        (Profile { phone: Some("+56911112222".into()), ..base.clone() }, vec![Field::Email, Field::Location]),
        (Profile { email: Some("ana@gmail.com".into()), ..base.clone() }, vec![Field::Phone, Field::Location]),
        (Profile { location: Some("Maipú".into()), ..base.clone() }, vec![Field::Phone, Field::Email]),
        (
            Profile { phone: Some("+56911112222".into()), email: Some("ana@gmail.com".into()), ..base.clone() },
            vec![Field::Location],
        ),
        (
            Profile { phone: Some("web_chat_pending".into()), location: Some("Maipú".into()), ..base },
            vec![Field::Phone, Field::Email],
        ),
    ];
    for (seed, (profile, want)) in cases.into_iter().enumerate() {
        let t = Sim::at(seed as u64, InterestCheck, profile, 2).say("ok");
        assert_eq!(t.asked(), want.as_slice(), "{}", t.text());
        assert_eq!(t.state(), DataCollection);
        let text = lower(t.text());
        assert_eq!(text.matches('?').count(), 1, "{text}");
        if want.contains(&Field::Phone) {
            assert!(text.contains("teléfono") && text.contains("confirm"), "{text}");
        }
        if want.contains(&Field::Email) {
            assert!(text.contains("correo") && text.contains("invitación"), "{text}");
        }
        if want.contains(&Field::Location) {
            assert!(text.contains("comuna"), "{text}");
        }
    }
}

// --- financial block -------------------------------------------------------------------------

#[test]
fn the_financial_block_asks_income_and_dicom_and_never_the_budget() {
    for seed in 1..=6 {
        let t = Sim::at(seed, DataCollection, contact_known(), 3).say("listo");
        assert_eq!(t.asked(), [Field::MonthlyIncome, Field::Dicom], "{}", t.text());
        let text = lower(t.text());
        assert!(text.contains("dicom") && (text.contains("renta") || text.contains("sueldo")), "{text}");
        assert!(!text.contains("presupuesto") && !text.contains("precio"), "{text}");
        assert!(text.contains("confidencial"), "says why: {text}");
        assert_eq!(t.state(), FinancialQualification);
    }
}

#[test]
fn a_stated_price_is_redirected_to_income() {
    let mut s = Sim::at(2, FinancialQualification, contact_known(), 4);
    s.memory.asked = vec![Field::MonthlyIncome, Field::Dicom];
    let t = s.say("Tengo presupuesto de 3000 UF");
    assert!(t.profile.budget.is_some());
    assert!(t.asked().contains(&Field::MonthlyIncome) && !t.asked().contains(&Field::Budget));
    assert!(lower(t.text()).contains("renta"), "{}", t.text());
}

#[test]
fn an_income_is_followed_by_the_dicom_question_without_feasibility_claims() {
    for (seed, text, income) in [(1, "Mi sueldo es de $800.000", 800_000), (2, "Gano 1.500.000 mensuales", 1_500_000)] {
        let mut s = Sim::at(seed, FinancialQualification, contact_known(), 4);
        s.memory.asked = vec![Field::MonthlyIncome, Field::Dicom];
        let t = s.say(text);
        assert_eq!(t.profile.monthly_income, Some(income));
        assert_eq!(t.asked(), [Field::Dicom], "{}", t.text());
        assert!(!lower(t.text()).contains("con ese"), "{}", t.text());
    }
}

#[test]
fn a_clean_dicom_is_never_asked_the_debt_amount() {
    let mut s = Sim::at(3, FinancialQualification, Profile { monthly_income: Some(1_200_000), ..contact_known() }, 4);
    s.memory.asked = vec![Field::Dicom];
    let t = s.say("no");
    assert_eq!(t.profile.dicom_status, Some(DicomStatus::Clean));
    assert!(!t.asked().contains(&Field::DebtAmount));
    assert!(matches!(t.plan.action, Action::OfferSlots { .. }));
    assert!(!lower(t.text()).contains("monto"), "{}", t.text());
}

// --- scheduling ------------------------------------------------------------------------------

#[test]
fn calificado_and_potencial_leads_are_offered_three_real_slots() {
    for income in [1_500_000, 700_000] {
        let mut s = Sim::at(1, FinancialQualification, Profile { monthly_income: Some(income), ..contact_known() }, 4);
        s.memory.asked = vec![Field::Dicom];
        let t = s.say("no tengo DICOM");
        assert_eq!(t.plan.action, Action::OfferSlots { day: None, near: None });
        let Outcome::Slots(slots) = &t.outcome else { panic!("{:?}", t.outcome) };
        assert_eq!(slots.len(), 3);
        assert_eq!(t.reply.memory.offered_slots, slots.iter().map(|s| s.start).collect::<Vec<_>>());
        for (i, slot) in slots.iter().enumerate() {
            assert!(t.text().contains(&format!("{}) {}", i + 1, when_short(slot.start))), "{}", t.text());
        }
        assert!(t.text().contains("1) martes 11 de noviembre, 10:00"), "{}", t.text());
        assert_eq!((t.state(), t.asked()), (Scheduling, [Field::AppointmentChoice].as_slice()));
    }
}

#[test]
fn the_lead_picks_an_offered_slot_by_number_ordinal_yes_or_date() {
    let slots = three_slots();
    let cases: &[(&str, DateTime<Utc>)] = &[
        ("el segundo", slots[1]),
        ("la primera opción", slots[0]),
        ("sí", slots[0]),
        ("dale, perfecto", slots[0]),
        ("3", slots[2]),
        ("el jueves a las 10", slots[1]),
        ("el viernes", slots[2]),
    ];
    for &(text, want) in cases {
        let t = scheduling_sim(9).say(text);
        assert_eq!(t.plan.action, Action::Book { start: want }, "{text}");
        assert_eq!(t.state(), Completed, "{text}: {}", t.text());
        assert!(t.text().contains(&when_long(want)), "{text}: {}", t.text());
    }
}

#[test]
fn a_date_and_time_not_offered_is_booked_as_asked() {
    let t = scheduling_sim(2).say("¿y el jueves a las 12?");
    let thursday_noon = santiago(2025, 11, 13, 12, 0);
    assert_eq!(t.plan.action, Action::Book { start: thursday_noon });
    assert!(t.text().contains("jueves 13 de noviembre a las 12:00"), "{}", t.text());
}

#[test]
fn a_day_asks_the_calendar_for_that_day() {
    let t = scheduling_sim(3).say("¿Puedo ir el sábado?");
    let saturday = chrono::NaiveDate::from_ymd_opt(2025, 11, 15).unwrap();
    assert_eq!(t.plan.action, Action::OfferSlots { day: Some(saturday), near: None });
    assert!(t.text().contains("sábado 15 de noviembre"), "{}", t.text());
    assert!(!t.text().contains("ejecutivo te responda"), "the day is the answer: {}", t.text());
}

#[test]
fn declining_the_slots_asks_for_preferences_and_offers_again_next_turn() {
    let mut s = scheduling_sim(4);
    let t = s.say("ninguno me sirve");
    assert_eq!(t.plan.action, Action::None);
    assert!(lower(t.text()).contains("día"), "{}", t.text());
    assert!(t.reply.memory.awaiting_preference && t.reply.memory.offered_slots.is_empty());
    let t = s.say("en la tarde mejor");
    let Action::OfferSlots { day: None, near: Some(near) } = t.plan.action else { panic!("{:?}", t.plan) };
    assert_eq!(near.with_timezone(&TZ).time(), NaiveTime::from_hms_opt(15, 0, 0).unwrap());
    assert_eq!(t.reply.memory.offered_slots.len(), 3);
}

#[test]
fn a_booking_is_confirmed_with_date_time_link_executive_invitation_and_documents() {
    let t = scheduling_sim(5).say("el segundo");
    let Outcome::Booked(b) = &t.outcome else { panic!("{:?}", t.outcome) };
    let text = t.text();
    assert!(text.contains("Juan"), "{text}");
    assert!(text.contains("jueves 13 de noviembre a las 10:00"), "{text}");
    assert!(text.contains("https://meet.google.com/abc-defg-hij"), "{text}");
    assert!(text.contains("Carolina Rojas"), "{text}");
    assert!(text.contains("juan@gmail.com"), "{text}");
    assert!(text.contains("carnet") && text.contains("3 últimas liquidaciones de sueldo"), "{text}");
    assert_eq!(t.reply.memory.booked.as_ref(), Some(b));
    assert!(t.reply.memory.offered_slots.is_empty() && t.asked().is_empty());
}

#[test]
fn no_link_is_invented_and_an_unknown_executive_is_not_named() {
    let mut s = scheduling_sim(6);
    s.meet_url = None;
    s.agent_name = None;
    s.location = Some("Av. Apoquindo 3000, Las Condes".into());
    let t = s.say("el primero");
    let text = t.text();
    assert!(!text.contains("http") && !lower(text).contains("enlace"), "{text}");
    assert!(text.contains("Av. Apoquindo 3000, Las Condes"), "{text}");
    assert!(text.contains("trae tu carnet y tus 3 últimas liquidaciones de sueldo"), "{text}");
    assert!(!text.contains("Carolina"), "{text}");
    // Neither place nor link: says neither.
    let mut s = scheduling_sim(7);
    s.meet_url = None;
    s.location = None;
    let t = s.say("el primero");
    assert!(!t.text().contains("http") && !lower(t.text()).contains("será en"), "{}", t.text());
}

#[test]
fn a_failed_booking_offers_the_alternatives() {
    let mut s = scheduling_sim(8);
    s.busy.push(three_slots()[1]);
    let t = s.say("el segundo");
    let Outcome::BookFailed { alternatives } = &t.outcome else { panic!("{:?}", t.outcome) };
    assert_eq!(t.state(), Scheduling);
    assert_eq!(t.reply.memory.offered_slots, alternatives.iter().map(|a| a.start).collect::<Vec<_>>());
    assert!(t.text().contains(&format!("1) {}", when_short(alternatives[0].start))), "{}", t.text());
    let t = s.say("el primero");
    assert_eq!(t.plan.action, Action::Book { start: alternatives[0].start });
    assert_eq!(t.state(), Completed);
}

#[test]
fn a_booking_waits_for_the_email_it_needs() {
    let mut profile = qualified();
    profile.email = None;
    let mut s = Sim::at(9, Scheduling, profile, 6);
    s.memory.ask_counts.insert("email".into(), 2);
    s.offer(&three_slots());
    let t = s.say("el primero");
    assert_eq!(t.plan.action, Action::None);
    assert_eq!(t.asked(), [Field::Email]);
    assert!(lower(t.text()).contains("correo") && t.text().contains(&when_long(three_slots()[0])), "{}", t.text());
    assert_eq!(t.reply.memory.pending_slot, Some(three_slots()[0]));
    let t = s.say("ana@gmail.com");
    assert_eq!(t.plan.action, Action::Book { start: three_slots()[0] });
    assert!(t.text().contains("ana@gmail.com"), "{}", t.text());
}

#[test]
fn plan_and_reply_agree_on_the_state_when_the_action_succeeds() {
    let mut s = scheduling_sim(10);
    let t = s.say("el primero");
    assert_eq!(t.plan.next_state, t.reply.next_state);
    let mut s = Sim::at(1, FinancialQualification, Profile { monthly_income: Some(1_500_000), ..contact_known() }, 4);
    s.memory.asked = vec![Field::Dicom];
    let t = s.say("no");
    assert_eq!((t.plan.next_state, t.reply.next_state), (Scheduling, Scheduling));
}

// --- DICOM -----------------------------------------------------------------------------------

fn asked_dicom(profile: Profile) -> Sim {
    let mut s = Sim::at(11, FinancialQualification, profile, 4);
    s.memory.asked = vec![Field::MonthlyIncome, Field::Dicom];
    s
}

#[test]
fn a_manageable_debt_is_advised_once_then_handed_to_follow_up() {
    for (text, amount) in [
        ("Tengo una deuda pequeña de 50 mil pesos en una tienda", "$50.000"),
        ("Estoy en DICOM por una deuda de 500 mil", "$500.000"),
    ] {
        let mut s = asked_dicom(contact_known());
        let t = s.say(text);
        assert_eq!(t.state(), FinancialQualification, "{}", t.text());
        let body = lower(t.text());
        assert!(body.contains("regulariz") && t.text().contains(amount), "{body}");
        assert!(t.reply.memory.dicom_guidance_given);
        assert!(!body.contains("escríbenos"), "{body}");
        let t = s.say("sí, por favor");
        assert_eq!(t.state(), Lost, "{}", t.text());
        assert!(lower(t.text()).contains("cuando regularices, escríbenos y retomamos"), "{}", t.text());
        assert!(t.reply.memory.dicom_followup_scheduled);
    }
}

#[test]
fn a_debt_above_500_000_is_told_to_regularise_first_and_lost() {
    for text in [
        "Tengo deuda de 2 millones en DICOM pero quiero comprar igual",
        "Estoy en DICOM con 1 millón de deuda",
        "Tengo deuda en DICOM de 800 mil pesos",
    ] {
        let t = asked_dicom(Profile { monthly_income: Some(3_000_000), ..contact_known() }).say(text);
        assert_eq!(t.state(), Lost, "{text}");
        assert_eq!(t.plan.action, Action::None);
        let body = lower(t.text());
        assert!(body.contains("regulariz") && body.contains("escríbenos y retomamos"), "{body}");
        assert!(t.reply.memory.dicom_followup_scheduled);
        assert!(t.asked().is_empty());
    }
}

#[test]
fn a_debt_without_an_amount_asks_for_it() {
    let mut s = asked_dicom(contact_known());
    let t = s.say("Estoy en DICOM pero igual quiero el crédito");
    assert_eq!(t.asked(), [Field::DebtAmount], "{}", t.text());
    let t = s.say("como 300 mil");
    assert_eq!(t.profile.morosidad_amount, Some(300_000));
    assert!(t.reply.memory.dicom_guidance_given, "{}", t.text());
}

#[test]
fn an_unknown_dicom_gets_a_check_suggestion_and_is_asked_again_later() {
    let mut s = asked_dicom(Profile { monthly_income: Some(1_500_000), ..contact_known() });
    let t = s.say("No sé si tengo DICOM, nunca lo he revisado");
    assert_eq!(t.profile.dicom_status, Some(DicomStatus::Unknown));
    let body = lower(t.text());
    assert!(body.contains("equifax") && body.contains("boletín comercial"), "{body}");
    assert!(t.reply.memory.dicom_check_suggested);
    assert_eq!(t.state(), FinancialQualification);
    let t = s.say("ok");
    assert!(lower(t.text()).contains("dicom") && t.text().contains('?'), "{}", t.text());
    assert!(t.asked().contains(&Field::Dicom));
    let t = s.say("revisé y no tengo deudas");
    assert_eq!(t.profile.dicom_status, Some(DicomStatus::Clean));
    assert!(matches!(t.plan.action, Action::OfferSlots { .. }), "{}", t.text());
}

#[test]
fn the_dicom_rows_of_the_corpus_never_promise_anything() {
    // reference §12.2, rows 023–040 and 051: check_reply asserts the DICOM metric on each.
    let rows = [
        "Tengo una deuda pequeña de 50 mil pesos en una tienda",
        "No sé si tengo DICOM, nunca lo he revisado",
        "Estoy en DICOM por una deuda de 500 mil",
        "Tengo deuda de 2 millones en DICOM pero quiero comprar igual",
        "¿Qué es el DICOM exactamente?",
        "Pagué mi DICOM hace un mes",
        "Solo tengo DICOM por una deuda prescrita de hace 10 años",
        "Estoy en DICOM pero igual quiero el crédito",
        "Tengo deudas en mora, ¿puedo acceder a crédito?",
        "Estoy en DICOM con 1 millón de deuda",
        "Tengo morosidad en un banco",
        "¿Necesito DICOM limpio para comprar?",
        "Tengo dos créditos morosos en DICOM",
        "Estoy en DICOM, ¿me pueden dar subsidio?",
        "Tengo deuda en DICOM de 800 mil pesos",
        "No tengo ingresos formales y tengo DICOM",
        "Mi esposa tiene DICOM pero yo no",
        "No trabajo, no tengo ingresos y no tengo DICOM limpio",
    ];
    for (seed, row) in rows.iter().enumerate() {
        for income in [None, Some(1_500_000)] {
            let t = asked_dicom(Profile { monthly_income: income, ..contact_known() }).say(row);
            assert_eq!(violation(t.text(), true), None, "{row}: {}", t.text());
            let mut again = asked_dicom(Profile { monthly_income: income, ..contact_known() });
            again.seed = seed as u64 + 40;
            again.say(row);
            let t = again.say("sí, quiero comprar igual");
            assert_eq!(violation(t.text(), true), None, "{row} → second turn: {}", t.text());
        }
    }
}

#[test]
fn the_dicom_question_is_explained() {
    let t = asked_dicom(contact_known()).say("¿Qué es el DICOM exactamente?");
    assert!(t.text().contains("Equifax"), "{}", t.text());
    assert!(t.asked().contains(&Field::Dicom), "keeps collecting: {}", t.text());
}

#[test]
fn no_income_at_all_is_declined_respectfully() {
    let t = asked_dicom(contact_known()).say("No trabajo, no tengo ingresos y no tengo DICOM limpio");
    assert_eq!(t.state(), Lost, "{}", t.text());
    assert!(lower(t.text()).contains("regulariz"), "{}", t.text());
    assert!(t.asked().is_empty());
}

#[test]
fn a_low_income_is_lost_with_the_door_open() {
    let mut s = asked_dicom(contact_known());
    let t = s.say("gano 300 mil y no tengo dicom");
    assert_eq!(t.profile.calificacion, Some(Calificacion::NoCalificado));
    assert_eq!(t.state(), Lost);
    assert!(lower(t.text()).contains("escríbenos"), "{}", t.text());
}

// --- questions -------------------------------------------------------------------------------

fn kb(similarity: f64, snippet: &str) -> Vec<KbHit> {
    vec![KbHit { title: "Proyecto Parque Ñuñoa".into(), snippet: snippet.into(), similarity }]
}

const PARKING: &str = "¿Tienen estacionamiento? Sí: todos los departamentos del proyecto Parque Ñuñoa incluyen un \
    estacionamiento y una bodega. Los estacionamientos adicionales se venden por separado. El proyecto tiene \
    quincho, piscina y sala multiuso en el último piso, con vista a la cordillera. La entrega está programada \
    para el segundo semestre de 2026, según el avance de obra informado por la constructora. Las visitas al \
    piloto se coordinan con un ejecutivo de lunes a sábado.";

#[test]
fn a_good_kb_hit_is_answered_and_the_flow_goes_on() {
    let mut s = Sim::at(1, DataCollection, Profile { name: Some("Ana".into()), ..Profile::default() }, 2);
    s.kb = kb(0.8, PARKING);
    let t = s.say("¿Tienen estacionamiento incluido?");
    let text = t.text();
    assert!(text.contains("todos los departamentos del proyecto Parque Ñuñoa incluyen un estacionamiento"), "{text}");
    assert!(!text.contains("¿Tienen estacionamiento?"), "the FAQ's own question is dropped: {text}");
    assert!(!text.contains("piloto se coordinan"), "trimmed: {text}");
    assert_eq!(t.asked(), [Field::Phone, Field::Email, Field::Location]);
}

#[test]
fn a_weak_kb_hit_is_not_quoted() {
    let mut s = Sim::at(2, DataCollection, Profile { name: Some("Ana".into()), ..Profile::default() }, 2);
    s.kb = kb(0.1, PARKING);
    let t = s.say("¿Tienen estacionamiento incluido?");
    assert!(!t.text().contains("bodega"), "{}", t.text());
    assert!(lower(t.text()).contains("ejecutivo"), "{}", t.text());
    assert!(!t.asked().is_empty());
}

#[test]
fn a_kb_snippet_with_payment_figures_is_deflected_not_quoted() {
    let mut s = Sim::at(3, DataCollection, Profile { name: Some("Ana".into()), ..Profile::default() }, 2);
    s.kb = kb(0.9, "Requisitos: el pie mínimo es del 10% y el dividendo parte en 15 UF mensuales.");
    let t = s.say("¿Qué requisitos piden para comprar en el proyecto?");
    assert!(!t.text().contains("10%") && !t.text().contains("15 UF"), "{}", t.text());
    assert!(lower(t.text()).contains("videollamada"), "{}", t.text());
}

#[test]
fn financing_questions_are_deflected_to_a_video_meeting_while_collecting_data() {
    for (seed, q) in [
        "¿Cuánto es el pie mínimo?",
        "¿De cuánto sería el dividendo?",
        "no sé cuánto cuesta un departamento, ¿cuánto debería tener?",
        "Tengo deudas en mora, ¿puedo acceder a crédito?",
    ]
    .into_iter()
    .enumerate()
    {
        let t = Sim::at(seed as u64, DataCollection, contact_known(), 3).say(q);
        let text = lower(t.text());
        assert!(text.contains("ejecutivo") && text.contains("videollamada"), "{q}: {text}");
        assert!(!text.contains('%'), "{q}: {text}");
        assert!(!t.asked().is_empty(), "still collects: {q}: {text}");
    }
}

// --- escalation, opt-out, re-asking ----------------------------------------------------------

#[test]
fn asking_for_a_person_hands_over_warmly() {
    for (seed, text) in
        ["quiero hablar con una persona", "pásame con un ejecutivo por favor", "no quiero hablar con un bot"]
            .into_iter()
            .enumerate()
    {
        let t = Sim::at(seed as u64, DataCollection, contact_known(), 3).say(text);
        assert_eq!(t.plan.action, Action::Escalate { reason: "explicit_request" }, "{text}");
        assert!(lower(t.text()).contains("te comunico con un ejecutivo"), "{}", t.text());
        assert_eq!(t.state(), DataCollection);
        assert!(t.asked().is_empty());
    }
}

#[test]
fn the_same_message_three_times_is_a_loop() {
    let mut s = Sim::at(1, DataCollection, contact_known(), 3);
    assert_eq!(s.say("no entiendo qué me preguntas").plan.action, Action::None);
    assert_eq!(s.say("No entiendo qué me preguntas!").plan.action, Action::None);
    let t = s.say("no entiendo que me preguntas");
    assert_eq!(t.plan.action, Action::Escalate { reason: "loop_detected" });
    assert!(lower(t.text()).contains("ejecutivo"));
    // Short acknowledgements repeat naturally.
    let mut s = scheduling_sim(2);
    for _ in 0..4 {
        assert!(!matches!(s.say("ok").plan.action, Action::Escalate { .. }), "{}", s.transcript());
    }
}

#[test]
fn strong_frustration_is_handed_over() {
    for text in [
        "Pésimo servicio, mala experiencia, no vuelvo",
        "Voy a buscar en otra inmobiliaria, chao",
        "esto es una pérdida de tiempo",
    ] {
        let t = Sim::at(3, DataCollection, contact_known(), 3).say(text);
        assert_eq!(t.plan.action, Action::Escalate { reason: "frustration" }, "{text}");
    }
    let t = Sim::at(3, DataCollection, contact_known(), 3).say("Qué lata este proceso");
    assert_eq!(t.plan.action, Action::None);
}

#[test]
fn opting_out_is_confirmed_and_lost() {
    for text in ["No me escriban más, borren mis datos", "no me interesa"] {
        let t = Sim::at(4, FinancialQualification, contact_known(), 4).say(text);
        assert_eq!(t.plan.action, Action::OptOut, "{text}");
        assert_eq!(t.state(), Lost);
        assert!(t.reply.memory.opted_out && t.asked().is_empty());
        assert!(!t.text().contains('?'), "{}", t.text());
    }
}

#[test]
fn ya_te_lo_dije_apologises_and_asks_only_that_field() {
    let mut s = Sim::at(5, DataCollection, Profile { phone: Some("+56911112222".into()), ..contact_known() }, 3);
    s.profile.email = None;
    s.profile.location = None;
    s.memory.asked = vec![Field::Email, Field::Location];
    let t = s.say("ya te lo dije!!");
    assert_eq!(t.asked().len(), 1, "{}", t.text());
    assert_eq!(t.asked(), [Field::Email]);
    let text = lower(t.text());
    assert!(text.contains("correo") && !text.contains("comuna"), "{text}");
    assert!(["perdona", "disculpa", "mil disculpas"].iter().any(|w| text.contains(w)), "{text}");
    assert_eq!(text.matches('?').count(), 1);
}

#[test]
fn unanswered_asks_are_dropped_after_two() {
    let mut s = Sim::at(
        6,
        InterestCheck,
        Profile { name: Some("Ana".into()), location: Some("Maipú".into()), ..Profile::default() },
        2,
    );
    assert_eq!(s.say("hmm").asked(), [Field::Phone, Field::Email]);
    assert_eq!(s.say("a ver").asked(), [Field::Phone, Field::Email]);
    let t = s.say("mmm");
    assert_eq!(t.asked(), [Field::MonthlyIncome, Field::Dicom], "{}", s.transcript());
    // An answer to one of them does not count against the others.
    let mut s = Sim::at(7, InterestCheck, Profile { name: Some("Ana".into()), ..Profile::default() }, 2);
    s.say("hola");
    s.say("+56911112222");
    let t = s.say("ana@gmail.com");
    assert_eq!(t.asked(), [Field::Location], "{}", s.transcript());
}

// --- after the booking, after losing ---------------------------------------------------------

fn booked_sim(seed: u64) -> Sim {
    let mut s = scheduling_sim(seed);
    s.say("el segundo");
    assert_eq!(s.state, Completed);
    s
}

#[test]
fn a_booked_lead_can_reschedule() {
    let mut s = booked_sim(1);
    let t = s.say("¿Podemos cambiar la hora? No voy a poder ir");
    assert!(matches!(t.plan.action, Action::OfferSlots { .. }), "{:?}", t.plan);
    assert_eq!(t.state(), Scheduling);
    assert!(t.reply.memory.booked.is_some(), "the old booking is kept until the new one is made");
    let new = t.reply.memory.offered_slots[0];
    let t = s.say("la primera");
    assert_eq!(t.plan.action, Action::Book { start: new });
    assert_eq!(t.reply.memory.booked.as_ref().map(|b| b.start), Some(new));
    assert_eq!(t.state(), Completed);
}

#[test]
fn a_booked_lead_with_a_question_gets_the_answer_and_a_reminder() {
    let mut s = booked_sim(2);
    s.kb = kb(0.7, "Sí, puedes venir acompañado: las reuniones son para la familia completa.");
    let t = s.say("¿Puedo llevar a mi pareja a la reunión?");
    assert!(t.text().contains("puedes venir acompañado"), "{}", t.text());
    assert!(t.text().contains("jueves 13 de noviembre a las 10:00"), "{}", t.text());
    assert_eq!((t.plan.action.clone(), t.state()), (Action::None, Completed));
    let t = s.say("gracias!");
    assert!(t.text().contains("jueves 13 de noviembre"), "{}", t.text());
    assert_eq!(t.state(), Completed);
}

#[test]
fn a_lost_lead_writing_again_gets_a_follow_up_and_is_reopened_by_news() {
    let mut s = asked_dicom(Profile { monthly_income: Some(2_000_000), ..contact_known() });
    s.say("Tengo deuda de 2 millones en DICOM");
    assert_eq!(s.state, Lost);
    let t = s.say("hola, ¿sigues ahí?");
    assert_eq!(t.state(), Lost);
    assert!(lower(t.text()).contains("regularic"), "{}", t.text());
    let t = s.say("ya pagué la deuda del DICOM");
    assert_eq!(t.profile.dicom_status, Some(DicomStatus::Unknown));
    assert_eq!(t.state(), FinancialQualification, "{}", t.text());
    assert!(lower(t.text()).contains("equifax"), "{}", t.text());
}

// --- variety ---------------------------------------------------------------------------------

#[test]
fn variety_is_deterministic_per_lead() {
    let greet = |seed: u64| Sim::new(seed).say("hola").reply.text;
    assert_ne!(greet(1), greet(2));
    assert_eq!(greet(1), greet(1));
    let distinct: std::collections::BTreeSet<String> = (1..=16).map(greet).collect();
    assert!(distinct.len() >= 3, "{distinct:?}");
    // The same seed and turn always give the same text, whole conversations included.
    let talk = |seed| {
        let mut s = Sim::new(seed);
        ["hola", "soy Ana", "casa en Maipú", "+56911112222 ana@gmail.com"].map(|m| s.say(m).reply.text)
    };
    assert_eq!(talk(9), talk(9));
}

#[test]
fn a_move_never_repeats_its_last_phrasing() {
    for seed in 0..20 {
        let mut s = Sim::at(seed, InterestCheck, Profile::default(), 1);
        let first = s.say("mmm").reply.text;
        let second = s.say("ehh").reply.text;
        assert_ne!(first, second, "seed {seed}");
    }
}

#[test]
fn memory_round_trips_through_json_and_tolerates_missing_keys() {
    let t = booked_sim(3).say("gracias");
    let v = serde_json::to_value(&t.reply.memory).unwrap();
    let back: Memory = serde_json::from_value(v).unwrap();
    assert_eq!(back, t.reply.memory);
    let old: Memory = serde_json::from_value(serde_json::json!({"asked": ["email"], "turns": 3})).unwrap();
    assert_eq!((old.asked, old.turns), (vec![Field::Email], 3));
    assert!(t.reply.memory.booked.is_some());
}

// --- reference §12.2: the conversation corpus, current-code expectations ----------------------

/// A lead at the corpus stage: `new`, `contacted` (name and interest known, contact block
/// asked), `qualifying` (contact known, financial block asked), `qualified` (ready to
/// schedule) or `booked`.
fn at_stage(stage: &str, seed: u64) -> Sim {
    match stage {
        "new" => Sim::new(seed),
        "contacted" => {
            let profile = Profile {
                name: Some("Juan Pérez".into()),
                property_type: Some(PropertyType::Departamento),
                ..Profile::default()
            };
            let mut s = Sim::at(seed, DataCollection, profile, 2);
            s.memory.asked = vec![Field::Phone, Field::Email, Field::Location];
            s
        }
        "qualifying" => asked_dicom(contact_known()),
        "qualified" => Sim::at(seed, Scheduling, qualified(), 5),
        _ => booked_sim(seed),
    }
}

/// What one corpus row must satisfy.
type Expectation<'a> = dyn Fn(&Turn) + 'a;

#[test]
fn the_conversation_corpus_meets_the_current_code_expectations() {
    let saturday = chrono::NaiveDate::from_ymd_opt(2025, 11, 15).unwrap();
    let cases: &[(&str, &str, &Expectation<'_>)] = &[
        ("new", "Hola, me interesa un departamento", &|t| {
            assert_eq!(t.asked(), [Field::Name]);
            assert!(t.text().contains("un depto"));
        }),
        ("new", "Buenas, vi el anuncio en el portal", &|t| assert_eq!(t.asked(), [Field::Name])),
        ("new", "Hola quiero información", &|t| assert_eq!(t.asked(), [Field::Name])),
        ("new", "Buenas tardes, ¿tienen casas en Las Condes?", &|t| {
            assert_eq!(t.asked(), [Field::Name]);
            assert!(t.text().contains("una casa en Las Condes"));
        }),
        ("new", "Necesito comprar un departamento urgente", &|t| {
            assert_eq!(t.asked(), [Field::Name]);
            assert_eq!(t.profile.timeline, Some(crate::chat::engine::extract::Timeline::Immediate));
        }),
        ("new", "Me llamo Juan Pérez", &|t| {
            assert_eq!(t.profile.name.as_deref(), Some("Juan Pérez"));
            assert!(t.asked().contains(&Field::PropertyType) && !t.asked().contains(&Field::Phone));
        }),
        ("new", "Soy María González", &|t| {
            assert!(t.text().contains("María") && t.asked().contains(&Field::PropertyType))
        }),
        ("contacted", "Mi número es +56912345678", &|t| {
            assert_eq!(t.profile.phone.as_deref(), Some("+56912345678"));
            assert_eq!(t.asked(), [Field::Email, Field::Location]);
        }),
        ("contacted", "Mi correo es juan@gmail.com", &|t| assert_eq!(t.asked(), [Field::Phone, Field::Location])),
        ("contacted", "No tengo WhatsApp, prefiero email", &|t| assert!(t.asked().contains(&Field::Email))),
        ("contacted", "+56987654321", &|t| assert_eq!(t.asked(), [Field::Email, Field::Location])),
        ("contacted", "mi-email@hotmail.com, teléfono +56911223344", &|t| assert_eq!(t.asked(), [Field::Location])),
        ("contacted", "Solo tengo Telegram, no WhatsApp ni email", &|t| {
            assert!(t.asked().contains(&Field::Phone) && !t.asked().contains(&Field::Email));
        }),
        ("contacted", "prefiero que me llamen", &|t| assert!(t.asked().contains(&Field::Phone))),
        ("qualifying", "Tengo presupuesto de 3000 UF", &|t| {
            assert!(t.asked().contains(&Field::MonthlyIncome) && lower(t.text()).contains("renta"));
        }),
        ("qualifying", "no sé cuánto cuesta un departamento, ¿cuánto debería tener?", &|t| {
            assert!(lower(t.text()).contains("videollamada") && !t.text().contains("UF"));
            assert!(t.asked().contains(&Field::MonthlyIncome));
        }),
        ("qualifying", "Mi sueldo es de $800.000", &|t| assert_eq!(t.asked(), [Field::Dicom])),
        ("qualifying", "Gano 1.500.000 mensuales", &|t| assert_eq!(t.asked(), [Field::Dicom])),
        ("qualifying", "Trabajo independiente, facturo 2 millones mensuales", &|t| {
            assert_eq!(t.asked(), [Field::Dicom])
        }),
        ("qualifying", "Quiero una propiedad de 5000 UF pero gano 600 mil", &|t| assert_eq!(t.asked(), [Field::Dicom])),
        ("qualifying", "No tengo DICOM, estoy al día con todo", &|t| assert_eq!(t.asked(), [Field::MonthlyIncome])),
        ("qualifying", "Tengo una deuda pequeña de 50 mil pesos en una tienda", &|t| {
            assert!(t.reply.memory.dicom_guidance_given && lower(t.text()).contains("regulariz"));
        }),
        ("qualifying", "Sí, tengo DICOM limpio", &|t| assert_eq!(t.profile.dicom_status, Some(DicomStatus::Clean))),
        ("qualifying", "No sé si tengo DICOM, nunca lo he revisado", &|t| assert!(t.text().contains("Equifax"))),
        ("qualifying", "Estoy en DICOM por una deuda de 500 mil", &|t| {
            assert!(t.reply.memory.dicom_guidance_given && t.state() != Lost);
        }),
        ("qualifying", "Tengo deuda de 2 millones en DICOM pero quiero comprar igual", &|t| {
            assert_eq!(t.state(), Lost);
            assert_eq!(t.profile.calificacion, None, "income unknown yet");
        }),
        ("qualifying", "¿Qué es el DICOM exactamente?", &|t| assert!(t.text().contains("Equifax"))),
        ("qualifying", "Pagué mi DICOM hace un mes", &|t| assert!(lower(t.text()).contains("equifax"))),
        ("qualifying", "Solo tengo DICOM por una deuda prescrita de hace 10 años", &|t| {
            assert!(lower(t.text()).contains("equifax"))
        }),
        ("qualifying", "Estoy en DICOM con 1 millón de deuda", &|t| assert_eq!(t.state(), Lost)),
        ("qualifying", "Tengo deuda en DICOM de 800 mil pesos", &|t| assert_eq!(t.state(), Lost)),
        ("qualifying", "Tengo deudas en mora, ¿puedo acceder a crédito?", &|t| {
            assert!(lower(t.text()).contains("ejecutivo") && t.asked() == [Field::DebtAmount]);
        }),
        ("qualifying", "Mi esposa tiene DICOM pero yo no", &|t| {
            assert_eq!(t.profile.dicom_status, Some(DicomStatus::Clean))
        }),
        ("qualified", "Quiero visitar el proyecto esta semana", &|t| {
            assert!(matches!(t.plan.action, Action::OfferSlots { .. }));
            assert_eq!(t.reply.memory.offered_slots.len(), 3);
        }),
        ("qualified", "¿Puedo ir el sábado?", &|t| {
            assert_eq!(t.plan.action, Action::OfferSlots { day: Some(saturday), near: None });
        }),
        ("qualified", "A las 10 del sábado me viene bien", &|t| {
            assert_eq!(t.plan.action, Action::Book { start: santiago(2025, 11, 15, 10, 0) });
            assert!(t.text().contains("sábado 15 de noviembre a las 10:00") && t.text().contains("liquidaciones"));
        }),
        ("booked", "¿Puedo llevar a mi pareja a la visita?", &|t| {
            assert_eq!((t.plan.action.clone(), t.state()), (Action::None, Completed));
            assert!(lower(t.text()).contains("claro") || lower(t.text()).contains("por supuesto"));
        }),
        ("booked", "No puedo la próxima semana, ¿tienen para la siguiente?", &|t| {
            let Action::OfferSlots { near: Some(near), .. } = t.plan.action else { panic!("{:?}", t.plan) };
            assert_eq!(near.with_timezone(&TZ).date_naive(), chrono::NaiveDate::from_ymd_opt(2025, 11, 24).unwrap());
        }),
        ("qualifying", "¿Cuántos metros cuadrados tienen los departamentos?", &|t| {
            assert!(!t.text().contains("m2") && !t.text().contains("metros cuadrados"));
        }),
        ("qualifying", "¿El precio incluye IVA?", &|t| assert!(lower(t.text()).contains("ejecutivo"))),
        ("qualifying", "¿Cuánto es el pie mínimo?", &|t| {
            assert!(lower(t.text()).contains("videollamada") && !t.text().contains('%'));
        }),
        ("qualifying", "No trabajo, no tengo ingresos y no tengo DICOM limpio", &|t| assert_eq!(t.state(), Lost)),
    ];
    for (seed, (stage, text, check)) in cases.iter().enumerate() {
        let t = at_stage(stage, seed as u64).say(text);
        assert!(!t.asked().contains(&Field::Budget), "{text}: never asks the budget");
        check(&t);
        println!("{stage:>10} | {text}\n           → [{}] {}", t.state().as_str(), t.text());
    }
}

#[test]
fn a_booked_lead_asking_for_the_link_gets_the_booking_again() {
    let mut s = booked_sim(4);
    let t = s.say("¿cuál era el link de la reunión?");
    assert!(t.text().contains("https://meet.google.com/abc-defg-hij"), "{}", t.text());
    assert!(t.text().contains("jueves 13 de noviembre a las 10:00"), "{}", t.text());
    assert!(!lower(t.text()).contains("lo confirmo"), "{}", t.text());
}

#[test]
fn a_lead_booked_by_a_person_is_not_offered_slots_again() {
    let t = Sim::at(5, Completed, qualified(), 6).say("hola, una consulta");
    assert_eq!((t.plan.action.clone(), t.state()), (Action::None, Completed));
    assert!(lower(t.text()).contains("agendada") || lower(t.text()).contains("en pie"), "{}", t.text());
    let t = Sim::at(5, Completed, qualified(), 6).say("necesito cambiar la hora");
    assert!(matches!(t.plan.action, Action::OfferSlots { .. }));
}

#[test]
fn a_lead_who_opted_out_and_writes_back_is_answered_again() {
    let mut s = Sim::at(6, DataCollection, contact_known(), 3);
    s.say("no me escriban más");
    assert!(s.memory.opted_out);
    let t = s.say("hola, disculpa, sí me interesa, gano 2 millones y no tengo dicom");
    assert_ne!(t.state(), Lost, "{}", t.text());
    assert!(!t.reply.memory.opted_out);
    assert!(matches!(t.plan.action, Action::OfferSlots { .. }), "{}", t.text());
}

#[test]
fn a_silent_lead_is_left_in_peace_but_an_engaged_one_is_asked_again() {
    let mut s = Sim::at(8, FinancialQualification, contact_known(), 6);
    s.memory.ask_counts.insert("monthly_income".into(), 2);
    s.memory.ask_counts.insert("dicom".into(), 2);
    let t = s.say("ok");
    assert!(t.asked().is_empty() && !t.text().contains('?'), "{}", t.text());
    let t = s.say("busco de 3 dormitorios");
    assert_eq!(t.asked(), [Field::MonthlyIncome, Field::Dicom], "{}", t.text());
    let t = s.say("¿puedo ir a verlo el sábado?");
    assert!(!t.asked().is_empty() && lower(t.text()).contains("datos"), "{}", t.text());
}
