//! Automatic pipeline moves (SPEC §7). They only go forward; `referidos`, `ganado` and backward moves
//! are made by people or campaign steps.
//!
//! - entrada → perfilamiento: a real name is known;
//! - perfilamiento → calificacion_financiera: phone and location known, or income known;
//! - calificacion_financiera → agendado (scheduled/confirmed appointment), → seguimiento (`potencial`),
//!   → perdido (`no_calificado`, close reason `no_calificado`);
//! - agendado → seguimiento: the appointment was completed.

use crate::leads::model::{Calificacion, Stage};

/// What the rules look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub has_real_name: bool,
    pub has_phone: bool,
    pub has_location: bool,
    pub has_income: bool,
    pub calificacion: Option<Calificacion>,
    /// A scheduled or confirmed appointment exists.
    pub appointment_active: bool,
    /// An appointment was completed.
    pub appointment_completed: bool,
}

/// Why a lead moved, for the activity row and the `stage_changed` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    NameKnown,
    ContactKnown,
    IncomeKnown,
    AppointmentBooked,
    Potencial,
    NoCalificado,
    AppointmentCompleted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NameKnown => "name_known",
            Reason::ContactKnown => "contact_known",
            Reason::IncomeKnown => "income_known",
            Reason::AppointmentBooked => "appointment_booked",
            Reason::Potencial => "potencial",
            Reason::NoCalificado => "no_calificado",
            Reason::AppointmentCompleted => "appointment_completed",
        }
    }
}

/// The one forward move the facts allow from `stage`, if any.
pub fn next_move(stage: Stage, f: &Facts) -> Option<(Stage, Reason)> {
    match stage {
        Stage::Entrada if f.has_real_name => Some((Stage::Perfilamiento, Reason::NameKnown)),
        Stage::Perfilamiento if f.has_phone && f.has_location => {
            Some((Stage::CalificacionFinanciera, Reason::ContactKnown))
        }
        Stage::Perfilamiento if f.has_income => Some((Stage::CalificacionFinanciera, Reason::IncomeKnown)),
        Stage::CalificacionFinanciera if f.appointment_active || f.appointment_completed => {
            Some((Stage::Agendado, Reason::AppointmentBooked))
        }
        Stage::CalificacionFinanciera => match f.calificacion {
            Some(Calificacion::Potencial) => Some((Stage::Seguimiento, Reason::Potencial)),
            Some(Calificacion::NoCalificado) => Some((Stage::Perdido, Reason::NoCalificado)),
            _ => None,
        },
        Stage::Agendado if f.appointment_completed && !f.appointment_active => {
            Some((Stage::Seguimiento, Reason::AppointmentCompleted))
        }
        _ => None,
    }
}

/// Every move the facts allow from `stage`, in order (a lead that is already complete walks several
/// stages at once). Ends at the first stage with no move.
pub fn advance(mut stage: Stage, f: &Facts) -> Vec<(Stage, Stage, Reason)> {
    let mut moves = Vec::new();
    // Each move goes strictly forward, so the walk ends within the number of stages.
    while let Some((next, reason)) = next_move(stage, f) {
        moves.push((stage, next, reason));
        stage = next;
        if moves.len() > Stage::ALL.len() {
            break;
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(moves: &[(Stage, Stage, Reason)]) -> Vec<&'static str> {
        moves.iter().map(|(_, to, _)| to.as_str()).collect()
    }

    #[test]
    fn a_name_moves_a_new_lead_into_profiling() {
        let f = Facts { has_real_name: true, ..Facts::default() };
        assert_eq!(stages(&advance(Stage::Entrada, &f)), ["perfilamiento"]);
        assert!(advance(Stage::Entrada, &Facts::default()).is_empty());
    }

    #[test]
    fn phone_and_location_or_income_move_to_financial_qualification() {
        let contact = Facts { has_real_name: true, has_phone: true, has_location: true, ..Facts::default() };
        assert_eq!(stages(&advance(Stage::Perfilamiento, &contact)), ["calificacion_financiera"]);
        let phone_only = Facts { has_real_name: true, has_phone: true, ..Facts::default() };
        assert!(advance(Stage::Perfilamiento, &phone_only).is_empty());
        let income = Facts { has_real_name: true, has_income: true, ..Facts::default() };
        assert_eq!(advance(Stage::Perfilamiento, &income)[0].2, Reason::IncomeKnown);
    }

    #[test]
    fn qualification_decides_where_a_lead_goes_next() {
        let base =
            Facts { has_real_name: true, has_phone: true, has_location: true, has_income: true, ..Facts::default() };
        let potencial = Facts { calificacion: Some(Calificacion::Potencial), ..base.clone() };
        assert_eq!(stages(&advance(Stage::CalificacionFinanciera, &potencial)), ["seguimiento"]);
        let no = Facts { calificacion: Some(Calificacion::NoCalificado), ..base.clone() };
        assert_eq!(
            advance(Stage::CalificacionFinanciera, &no),
            [(Stage::CalificacionFinanciera, Stage::Perdido, Reason::NoCalificado)]
        );
        let calificado = Facts { calificacion: Some(Calificacion::Calificado), ..base.clone() };
        assert!(advance(Stage::CalificacionFinanciera, &calificado).is_empty(), "waits for an appointment");
        let booked = Facts { appointment_active: true, ..calificado };
        assert_eq!(stages(&advance(Stage::CalificacionFinanciera, &booked)), ["agendado"]);
    }

    #[test]
    fn a_complete_lead_walks_every_stage_in_one_go() {
        let f = Facts {
            has_real_name: true,
            has_phone: true,
            has_location: true,
            has_income: true,
            calificacion: Some(Calificacion::Calificado),
            appointment_active: true,
            appointment_completed: false,
        };
        assert_eq!(stages(&advance(Stage::Entrada, &f)), ["perfilamiento", "calificacion_financiera", "agendado"]);
    }

    #[test]
    fn a_completed_appointment_moves_to_follow_up() {
        let f = Facts { appointment_completed: true, ..Facts::default() };
        assert_eq!(stages(&advance(Stage::Agendado, &f)), ["seguimiento"]);
        let still_booked = Facts { appointment_completed: true, appointment_active: true, ..Facts::default() };
        assert!(advance(Stage::Agendado, &still_booked).is_empty());
    }

    #[test]
    fn moves_never_go_backwards_or_out_of_closed_stages() {
        let everything = Facts {
            has_real_name: true,
            has_phone: true,
            has_location: true,
            has_income: true,
            calificacion: Some(Calificacion::NoCalificado),
            appointment_active: false,
            appointment_completed: false,
        };
        for stage in [Stage::Seguimiento, Stage::Referidos, Stage::Ganado, Stage::Perdido] {
            assert!(advance(stage, &everything).is_empty(), "{stage}");
        }
        let order = |s: Stage| Stage::ALL.iter().position(|x| *x == s).unwrap();
        for stage in Stage::ALL {
            for (from, to, _) in advance(*stage, &everything) {
                assert!(order(to) > order(from), "{from} -> {to}");
            }
        }
    }
}
