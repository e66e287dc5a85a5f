//! Whole conversations driven turn by turn through extract → merge → calificación → plan →
//! (fake calendar and bookings) → reply. `Sim::say` checks on every reply: no known field asked,
//! at most three questions and one emoji, the DICOM metric, no invented email or link.

use chrono::NaiveDate;

use super::sim::*;
use super::*;
use crate::chat::engine::reply::when_long;
use ConversationState::*;

/// The lead's messages, in order; returns the simulation.
fn talk(seed: u64, msgs: &[&str]) -> Sim {
    let mut s = Sim::new(seed);
    for m in msgs {
        s.say(m);
    }
    s
}

fn states(s: &Sim) -> Vec<ConversationState> {
    s.turns.iter().map(|t| t.state()).collect()
}

fn last(s: &Sim) -> &Turn {
    s.turns.last().unwrap()
}

/// The conversation ends booked: the confirmation names the booked date and time.
fn assert_booked(s: &Sim) -> Booking {
    let t = last(s);
    let Outcome::Booked(b) = &t.outcome else { panic!("not booked:\n{}", s.transcript()) };
    assert_eq!(t.state(), Completed, "{}", s.transcript());
    assert!(t.text().contains(&when_long(b.start)), "{}", s.transcript());
    assert!(t.text().contains("carnet"), "{}", s.transcript());
    b.clone()
}

/// Every ask of the conversation, in order.
fn asks(s: &Sim) -> Vec<Field> {
    s.turns.iter().flat_map(|t| t.asked().to_vec()).collect()
}

#[test]
fn a_clean_qualified_buyer_books_in_six_turns() {
    let s = talk(
        1,
        &[
            "Hola, vi el anuncio en el portal",
            "Me llamo Juan Pérez",
            "Un depto de 2 dormitorios en Ñuñoa",
            "+56912345678, juan@gmail.com",
            "gano 1,5 millones líquidos y no tengo DICOM",
            "el segundo",
        ],
    );
    assert_eq!(
        states(&s),
        [InterestCheck, InterestCheck, DataCollection, FinancialQualification, Scheduling, Completed],
        "{}",
        s.transcript()
    );
    let b = assert_booked(&s);
    assert_eq!(Some(b.start), s.turns[4].reply.memory.offered_slots.get(1).copied());
    assert!(last(&s).text().contains("juan@gmail.com") && last(&s).text().contains("Juan"));
    assert!(!asks(&s).contains(&Field::Budget));
}

#[test]
fn everything_in_one_message_skips_straight_to_the_slots() {
    let s = talk(
        2,
        &[
            "Hola, soy Ana Soto, busco depto 2D en Ñuñoa, gano 1,2 millones líquidos, no tengo DICOM, mi cel es \
             +56 9 8765 4321 y mi correo ana.soto@gmail.com",
            "la primera",
        ],
    );
    let first = &s.turns[0];
    assert_eq!(first.plan.action, Action::OfferSlots { day: None, near: None });
    assert_eq!(first.state(), Scheduling);
    assert!(first.text().contains("Ana") && first.text().contains("Sofía de Inmobiliaria Andes"), "{}", first.text());
    assert!(first.text().contains("un depto de 2 dormitorios en Ñuñoa"), "{}", first.text());
    assert_eq!(first.asked(), [Field::AppointmentChoice]);
    assert_booked(&s);
}

#[test]
fn a_potencial_buyer_is_offered_slots_and_books() {
    let s = talk(
        3,
        &[
            "Hola, soy Pedro Díaz",
            "busco casa en Maipú",
            "mi cel es 955556666",
            "pedro@hotmail.com",
            "gano 700 mil",
            "no",
            "sí",
        ],
    );
    assert_eq!(s.turns[5].profile.calificacion, Some(Calificacion::Potencial), "{}", s.transcript());
    assert!(matches!(s.turns[5].plan.action, Action::OfferSlots { .. }), "{}", s.transcript());
    assert_booked(&s);
}

#[test]
fn a_small_debt_is_advised_once_and_handed_to_follow_up() {
    let s = talk(
        4,
        &[
            "Hola, soy Carla Muñoz y busco depto en Macul",
            "912341234 y carla@gmail.com",
            "Tengo una deuda pequeña de 50 mil pesos en una tienda",
            "sí, me gustaría",
            "ok gracias",
        ],
    );
    let advice = &s.turns[2];
    assert!(
        advice.text().contains("$50.000") && advice.text().to_lowercase().contains("regulariz"),
        "{}",
        s.transcript()
    );
    assert!(advice.reply.memory.dicom_guidance_given);
    assert_eq!(advice.state(), FinancialQualification);
    assert_eq!(s.turns[3].state(), Lost, "{}", s.transcript());
    assert!(s.turns[3].text().contains("Cuando regularices, escríbenos y retomamos"), "{}", s.transcript());
    assert_eq!(last(&s).state(), Lost);
    let guidance_turns =
        s.turns.iter().filter(|t| t.text().contains("manejable") && t.text().contains("$50.000")).count();
    assert_eq!(guidance_turns, 1, "guidance only once:\n{}", s.transcript());
    assert!(s.turns.iter().all(|t| !matches!(t.plan.action, Action::OfferSlots { .. } | Action::Book { .. })));
}

#[test]
fn a_large_debt_is_told_to_regularise_and_the_lead_is_lost() {
    let s = talk(
        5,
        &[
            "Hola, me llamo Luis Rojas",
            "busco casa en Puente Alto",
            "+56944445555 luis.rojas@gmail.com",
            "Tengo deuda de 2 millones en DICOM pero quiero comprar igual",
            "¿y no hay ninguna forma?",
        ],
    );
    let t = &s.turns[3];
    assert_eq!(t.state(), Lost, "{}", s.transcript());
    assert!(t.text().contains("$2.000.000") && t.text().contains("escríbenos y retomamos"), "{}", s.transcript());
    assert!(t.reply.memory.dicom_followup_scheduled);
    assert_eq!(last(&s).state(), Lost);
    assert!(last(&s).asked().is_empty());
}

#[test]
fn an_unknown_dicom_is_checked_then_the_clean_lead_books() {
    let s = talk(
        6,
        &[
            "hola soy Marta, busco depto en Providencia",
            "+56933334444 marta@gmail.com",
            "gano 1.800.000",
            "No sé si tengo DICOM, nunca lo he revisado",
            "ok, lo reviso",
            "ya lo revisé, no tengo deudas",
            "el 3",
        ],
    );
    assert!(s.turns[3].text().contains("Equifax"), "{}", s.transcript());
    assert_eq!(s.turns[3].state(), FinancialQualification);
    assert!(s.turns[4].asked().contains(&Field::Dicom), "asked again later:\n{}", s.transcript());
    assert_eq!(s.turns[5].state(), Scheduling, "{}", s.transcript());
    assert_booked(&s);
}

#[test]
fn a_self_correcting_email_is_replaced_and_used_for_the_invitation() {
    let s = talk(
        7,
        &[
            "Hola soy Tomás",
            "busco depto en La Florida",
            "mi correo es tomas@gmial.com y mi cel 955556666",
            "perdón, mi correo es tomas@gmail.com",
            "gano 1,5 millones, sin dicom",
            "1",
        ],
    );
    let change = s.turns[3].reply.memory.clone();
    assert_eq!(s.turns[3].profile.email.as_deref(), Some("tomas@gmail.com"));
    assert!(change.asked.iter().all(|f| *f != Field::Email));
    let confirmation = last(&s).text();
    assert!(confirmation.contains("tomas@gmail.com") && !confirmation.contains("gmial"), "{}", s.transcript());
    assert_booked(&s);
}

#[test]
fn a_browser_who_is_just_looking_is_never_pestered_or_scheduled() {
    let s = talk(
        8,
        &["hola, solo estoy mirando", "Rodrigo", "solo mirando nomás", "no sé", "después veo", "ok", "chao", "bueno"],
    );
    assert!(s.turns.iter().all(|t| !matches!(t.state(), Scheduling | Completed)), "{}", s.transcript());
    assert!(s.turns.iter().all(|t| matches!(t.plan.action, Action::None)), "{}", s.transcript());
    for f in [Field::Phone, Field::Email, Field::Location, Field::MonthlyIncome, Field::Dicom] {
        let n = asks(&s).iter().filter(|a| **a == f).count();
        assert!(n <= MAX_ASKS as usize + 1, "{f:?} asked {n} times:\n{}", s.transcript());
    }
    assert!(last(&s).asked().is_empty(), "stops asking:\n{}", s.transcript());
}

#[test]
fn a_lead_who_asks_for_a_person_is_handed_over() {
    let s = talk(9, &["Hola, soy Camila", "busco depto en Ñuñoa", "prefiero hablar con un ejecutivo de verdad"]);
    let t = last(&s);
    assert_eq!(t.plan.action, Action::Escalate { reason: "explicit_request" });
    assert_eq!(t.outcome, Outcome::Escalated);
    assert!(t.text().to_lowercase().contains("te comunico con un ejecutivo"), "{}", t.text());
}

#[test]
fn a_lead_who_opts_out_is_confirmed_and_lost() {
    let s = talk(10, &["Hola, soy Andrés", "busco casa", "no me interesa, no me escriban más"]);
    let t = last(&s);
    assert_eq!(t.plan.action, Action::OptOut);
    assert_eq!(t.state(), Lost);
    assert!(t.reply.memory.opted_out);
    assert!(t.text().to_lowercase().contains("no te") && !t.text().contains('?'), "{}", t.text());
}

#[test]
fn a_financing_question_is_deflected_while_the_data_keeps_coming() {
    let s = talk(
        11,
        &[
            "Hola, soy Sofía Reyes, busco depto en San Miguel",
            "¿Cuánto es el pie mínimo?",
            "ok, mi número es 987651234 y mi correo sofia.reyes@gmail.com",
            "gano 2 millones, no tengo DICOM",
            "el primero",
        ],
    );
    let deflection = s.turns[1].text().to_lowercase();
    assert!(deflection.contains("ejecutivo") && deflection.contains("videollamada"), "{deflection}");
    assert!(!deflection.contains('%'));
    assert_eq!(s.turns[1].asked(), [Field::Phone, Field::Email], "{}", s.transcript());
    assert_booked(&s);
}

#[test]
fn a_knowledge_base_question_mid_flow_is_answered_and_the_flow_continues() {
    let mut s = Sim::new(12);
    s.kb = vec![KbHit {
        title: "Proyecto Parque Ñuñoa".into(),
        snippet:
            "Todos los departamentos incluyen estacionamiento y bodega. La entrega es en el segundo semestre de 2026."
                .into(),
        similarity: 0.82,
    }];
    s.say("Hola, soy Elena Soto y busco depto en Ñuñoa");
    let t = s.say("¿Tienen estacionamiento incluido?");
    assert!(t.text().contains("incluyen estacionamiento y bodega"), "{}", t.text());
    assert_eq!(t.asked(), [Field::Phone, Field::Email], "{}", t.text());
    assert_eq!(t.state(), DataCollection);
    for m in ["+56912121212 elena@gmail.com", "gano 1.300.000 y estoy al día, sin DICOM", "el segundo"] {
        s.say(m);
    }
    assert_booked(&s);
}

#[test]
fn none_of_the_slots_then_a_day_then_booked() {
    let mut s = talk(
        13,
        &[
            "Hola, soy Diego Fuentes, busco casa en La Reina",
            "+56977778888 diego@gmail.com",
            "gano 3 millones, sin deudas",
        ],
    );
    assert_eq!(s.state, Scheduling);
    let t = s.say("ninguno me sirve");
    assert_eq!(t.plan.action, Action::None);
    assert!(t.reply.memory.awaiting_preference);
    let t = s.say("el sábado");
    let saturday = NaiveDate::from_ymd_opt(2025, 11, 15).unwrap();
    assert_eq!(t.plan.action, Action::OfferSlots { day: Some(saturday), near: None }, "{}", s.transcript());
    assert!(t.text().contains("sábado 15 de noviembre"), "{}", t.text());
    s.say("a las 10");
    let b = assert_booked(&s);
    assert_eq!(b.start, santiago(2025, 11, 15, 10, 0));
}

#[test]
fn a_booked_lead_reschedules() {
    let mut s = talk(
        14,
        &[
            "Hola, soy Paula Vera, depto en Vitacura",
            "+56966667777 paula@gmail.com",
            "gano 4 millones, sin dicom",
            "el primero",
        ],
    );
    let first = assert_booked(&s);
    let t = s.say("Necesito reagendar, ¿puede ser la próxima semana?");
    let Action::OfferSlots { near: Some(near), .. } = t.plan.action else { panic!("{}", s.transcript()) };
    assert!(near > first.start, "{}", s.transcript());
    assert_eq!(t.state(), Scheduling);
    s.say("la segunda");
    let second = assert_booked(&s);
    assert!(second.start >= near && second.start != first.start);
    assert_eq!(last(&s).reply.memory.booked.as_ref().map(|b| b.appointment_id), Some(second.appointment_id));
}

#[test]
fn a_low_income_lead_is_lost_respectfully() {
    let s = talk(
        15,
        &["Hola, soy Rosa", "busco depto en Renca", "+56955551111 rosa@gmail.com", "gano 350 mil", "no tengo dicom"],
    );
    assert_eq!(last(&s).profile.calificacion, Some(Calificacion::NoCalificado));
    assert_eq!(last(&s).state(), Lost, "{}", s.transcript());
    assert!(last(&s).text().contains("escríbenos"), "{}", s.transcript());
}

#[test]
fn a_concrete_time_that_was_not_offered_is_booked() {
    let mut s = talk(
        16,
        &[
            "Hola, soy Ignacio Paz, busco depto en Ñuñoa",
            "+56912340000 ignacio@gmail.com",
            "gano 2,5 millones, sin dicom",
        ],
    );
    let t = s.say("¿me sirve el jueves a las 12?");
    assert_eq!(t.plan.action, Action::Book { start: santiago(2025, 11, 13, 12, 0) }, "{}", s.transcript());
    assert_booked(&s);
}

#[test]
fn a_taken_time_gets_alternatives_and_then_books() {
    let mut s = talk(
        17,
        &[
            "Hola, soy Valeria, busco casa en Peñalolén",
            "+56913131313 valeria@gmail.com",
            "gano 1,1 millones, sin dicom",
        ],
    );
    s.busy.push(santiago(2025, 11, 13, 12, 0));
    let t = s.say("el jueves a las 12");
    assert!(matches!(t.outcome, Outcome::BookFailed { .. }), "{}", s.transcript());
    assert_eq!(t.state(), Scheduling);
    s.say("la primera");
    assert_booked(&s);
}

#[test]
fn ya_te_lo_dije_gets_an_apology_and_one_question() {
    let mut s = talk(18, &["Hola, soy Matías", "busco depto en Santiago centro"]);
    let t = s.say("mi número es 912345670");
    assert_eq!(t.asked(), [Field::Email], "{}", s.transcript());
    let t = s.say("ya te lo dije");
    assert_eq!(t.asked(), [Field::Email], "{}", s.transcript());
    assert!(t.text().matches('?').count() == 1);
}

#[test]
fn a_lead_repeating_itself_is_handed_over() {
    let s = talk(
        19,
        &[
            "Hola, soy Jorge",
            "no entiendo nada de lo que dices",
            "no entiendo nada de lo que dices",
            "no entiendo nada de lo que dices",
        ],
    );
    assert_eq!(last(&s).plan.action, Action::Escalate { reason: "loop_detected" }, "{}", s.transcript());
}

#[test]
fn a_first_question_about_stock_never_claims_availability() {
    let s = talk(20, &["Buenas tardes, ¿tienen casas en Las Condes?", "Francisca Lagos"]);
    let first = s.turns[0].text().to_lowercase();
    assert!(first.contains("una casa en las condes") && first.contains("ejecutivo"), "{first}");
    assert!(!first.contains("tenemos casas") && !first.contains("disponibles en"), "{first}");
    assert_eq!(s.turns[0].asked(), [Field::Name]);
    assert_eq!(s.turns[1].asked(), [Field::Phone, Field::Email], "{}", s.transcript());
}

#[test]
fn a_debt_without_amount_is_asked_then_advised() {
    let s = talk(
        21,
        &[
            "Hola, soy Nicolás, depto en Independencia",
            "+56911223344 nico@gmail.com",
            "Estoy en DICOM pero igual quiero el crédito",
            "como 300 mil",
        ],
    );
    assert_eq!(s.turns[2].asked(), [Field::DebtAmount], "{}", s.transcript());
    assert!(s.turns[3].text().contains("$300.000"), "{}", s.transcript());
    assert!(s.turns[3].reply.memory.dicom_guidance_given);
}

#[test]
fn a_booked_lead_asks_a_question_and_says_thanks() {
    let mut s = talk(
        22,
        &["Hola, soy Gabriela, depto en Ñuñoa", "+56910101010 gabi@gmail.com", "gano 1,6 millones, sin dicom", "el 2"],
    );
    let b = assert_booked(&s);
    s.kb = vec![KbHit {
        title: "Visitas".into(),
        snippet: "Puedes venir acompañado a la reunión.".into(),
        similarity: 0.9,
    }];
    let t = s.say("¿Puedo llevar a mi pareja?");
    assert!(t.text().contains("Puedes venir acompañado") && t.text().contains(&when_long(b.start)), "{}", t.text());
    let t = s.say("muchas gracias");
    assert_eq!((t.state(), t.plan.action.clone()), (Completed, Action::None));
}

#[test]
fn a_booking_waits_for_a_missing_email() {
    let mut s = talk(
        23,
        &[
            "Hola, soy Felipe, busco casa en Colina",
            "+56919191919",
            "no tengo correo a mano",
            "después",
            "gano 2 millones, sin dicom",
        ],
    );
    assert_eq!(s.state, Scheduling, "{}", s.transcript());
    let t = s.say("el primero");
    assert_eq!(t.asked(), [Field::Email], "{}", s.transcript());
    assert!(t.reply.memory.pending_slot.is_some());
    s.say("felipe@gmail.com");
    assert_booked(&s);
}

#[test]
fn a_budget_is_redirected_to_income() {
    let s = talk(
        24,
        &[
            "Hola, soy Antonia, busco depto en Providencia",
            "+56918181818 antonia@gmail.com",
            "Tengo presupuesto de 3000 UF",
        ],
    );
    let t = last(&s);
    assert!(t.text().to_lowercase().contains("renta"), "{}", t.text());
    assert!(t.asked().contains(&Field::MonthlyIncome) && !t.asked().contains(&Field::Budget));
}

#[test]
fn a_lost_lead_who_paid_the_debt_is_picked_up_again() {
    let mut s = talk(
        25,
        &[
            "Hola, soy Raúl, busco casa en Quilicura",
            "+56917171717 raul@gmail.com",
            "gano 1,4 millones y tengo una deuda de 900 mil en DICOM",
        ],
    );
    assert_eq!(s.state, Lost, "{}", s.transcript());
    s.say("hola?");
    assert_eq!(s.state, Lost);
    s.say("ya pagué la deuda");
    assert_eq!(s.state, FinancialQualification, "{}", s.transcript());
    s.say("revisé en Equifax y estoy limpio, sin deudas");
    assert_eq!(s.state, Scheduling, "{}", s.transcript());
}

/// 60 conversations of 14 turns drawn (deterministically) from a pool of real lead messages:
/// whatever the order, every reply keeps the rules `Sim::say` checks, and states only leave
/// `lost` or `completed` for a reason.
#[test]
fn random_conversations_keep_every_rule() {
    const POOL: &[&str] = &[
        "hola",
        "Hola, me interesa un departamento",
        "Buenas tardes, ¿tienen casas en Las Condes?",
        "Me llamo Juan Pérez",
        "Carlos",
        "Mi número es +56912345678",
        "mi correo es juan@gmail.com",
        "perdón, mi correo es juan.perez@gmail.com",
        "No tengo WhatsApp, prefiero email",
        "Ñuñoa",
        "busco depto de 2 dormitorios en Providencia",
        "Tengo presupuesto de 3000 UF",
        "Gano 1.500.000 mensuales",
        "gano 600 mil",
        "gano 300 mil",
        "No tengo DICOM, estoy al día con todo",
        "no",
        "sí",
        "no sé",
        "Tengo una deuda pequeña de 50 mil pesos en una tienda",
        "Tengo deuda de 2 millones en DICOM pero quiero comprar igual",
        "¿Qué es el DICOM exactamente?",
        "¿Cuánto es el pie mínimo?",
        "¿Tienen estacionamiento incluido?",
        "el segundo",
        "la primera opción",
        "el jueves a las 10",
        "¿Puedo ir el sábado?",
        "ninguno me sirve",
        "en la tarde",
        "ya te lo dije",
        "necesito reagendar",
        "gracias!",
        "ok",
        "solo estoy mirando",
        "no entiendo",
        "¿cuál era el link?",
    ];
    for seed in 0..60u64 {
        let mut s = Sim::new(seed);
        s.kb = vec![KbHit {
            title: "FAQ".into(),
            snippet: "Todos los departamentos incluyen estacionamiento.".into(),
            similarity: 0.5,
        }];
        for turn in 0..14u64 {
            let pick = fnv1a(format!("{seed}:{turn}").as_bytes()) as usize % POOL.len();
            let before = s.state;
            let t = s.say(POOL[pick]);
            if before == Completed && !matches!(t.state(), Completed | Scheduling) {
                assert!(
                    matches!(t.plan.action, Action::OptOut | Action::Escalate { .. }) || t.state() == Completed,
                    "left completed without a reason:\n{}",
                    s.transcript()
                );
            }
            if matches!(t.plan.action, Action::Book { .. }) {
                assert!(t.profile.knows(Field::Email) && t.profile.knows(Field::Phone) && t.profile.knows(Field::Name));
            }
            if matches!(t.state(), Scheduling | Completed) && t.plan.action != Action::OptOut {
                assert!(
                    matches!(t.profile.calificacion, Some(Calificacion::Calificado | Calificacion::Potencial))
                        || s.memory.booked.is_some(),
                    "scheduling an unqualified lead:\n{}",
                    s.transcript()
                );
            }
        }
    }
}
