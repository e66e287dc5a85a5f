//! Calificación financiera (SPEC §7, reference §4.3): `calificado`, `potencial` or `no_calificado`
//! under the broker's `qualification_criteria`; unknown (`None`) until both the income and the DICOM
//! status are known, and while the lead does not know its DICOM status (SPEC §15).

use serde_json::Value;

use super::model::Calificacion;
use super::scoring::Dicom;

/// One tier's requirements.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub min_monthly_income: i64,
    pub dicom: Vec<Dicom>,
    pub max_debt_amount: i64,
}

/// The broker's criteria; the default is SPEC §7's.
#[derive(Clone, Debug, PartialEq)]
pub struct Criteria {
    pub calificado: Tier,
    pub potencial: Tier,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            calificado: Tier { min_monthly_income: 1_000_000, dicom: vec![Dicom::Clean], max_debt_amount: 0 },
            potencial: Tier { min_monthly_income: 500_000, dicom: vec![Dicom::Clean], max_debt_amount: 0 },
        }
    }
}

impl Criteria {
    /// From the stored `qualification_criteria` JSON; missing or malformed keys keep the defaults.
    pub fn from_stored(stored: &Value) -> Self {
        let d = Self::default();
        Self {
            calificado: tier(stored.get("calificado"), d.calificado),
            potencial: tier(stored.get("potencial"), d.potencial),
        }
    }
}

fn tier(stored: Option<&Value>, default: Tier) -> Tier {
    let Some(v) = stored else { return default };
    let dicom = v
        .get("dicom_status")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).filter_map(Dicom::parse).collect::<Vec<_>>())
        .filter(|d| !d.is_empty())
        .unwrap_or(default.dicom);
    Tier {
        min_monthly_income: v.get("min_monthly_income").and_then(Value::as_i64).unwrap_or(default.min_monthly_income),
        dicom,
        max_debt_amount: v.get("max_debt_amount").and_then(Value::as_i64).unwrap_or(default.max_debt_amount),
    }
}

fn meets(t: &Tier, income: i64, dicom: Dicom, debt: i64) -> bool {
    income >= t.min_monthly_income && t.dicom.contains(&dicom) && debt <= t.max_debt_amount
}

/// The calificación of a lead with this income, DICOM status and debt.
pub fn qualify(c: &Criteria, income: Option<i64>, dicom: Option<Dicom>, debt: Option<i64>) -> Option<Calificacion> {
    let (income, dicom) = (income?, dicom?);
    if dicom == Dicom::Unknown {
        return None;
    }
    let debt = debt.unwrap_or(0).max(0);
    Some(if meets(&c.calificado, income, dicom, debt) {
        Calificacion::Calificado
    } else if meets(&c.potencial, income, dicom, debt) {
        Calificacion::Potencial
    } else {
        Calificacion::NoCalificado
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_default_criteria_follow_the_spec() {
        let c = Criteria::default();
        let q = |income, dicom, debt| qualify(&c, Some(income), Some(dicom), debt);
        assert_eq!(q(1_000_000, Dicom::Clean, None), Some(Calificacion::Calificado));
        assert_eq!(q(999_999, Dicom::Clean, None), Some(Calificacion::Potencial));
        assert_eq!(q(500_000, Dicom::Clean, None), Some(Calificacion::Potencial));
        assert_eq!(q(499_999, Dicom::Clean, None), Some(Calificacion::NoCalificado));
        assert_eq!(q(3_000_000, Dicom::HasDebt, Some(2_000_000)), Some(Calificacion::NoCalificado));
        assert_eq!(q(200_000, Dicom::Clean, None), Some(Calificacion::NoCalificado));
    }

    #[test]
    fn it_is_unknown_until_income_and_dicom_are_known() {
        let c = Criteria::default();
        assert_eq!(qualify(&c, None, Some(Dicom::Clean), None), None);
        assert_eq!(qualify(&c, Some(2_000_000), None, None), None);
        assert_eq!(qualify(&c, Some(2_000_000), Some(Dicom::Unknown), None), None);
    }

    #[test]
    fn broker_criteria_replace_the_defaults() {
        let c = Criteria::from_stored(&json!({
            "calificado": {"min_monthly_income": 2000000, "dicom_status": ["clean"], "max_debt_amount": 0},
            "potencial": {"min_monthly_income": 800000, "dicom_status": ["clean", "has_debt"], "max_debt_amount": 300000},
        }));
        assert_eq!(qualify(&c, Some(1_500_000), Some(Dicom::Clean), None), Some(Calificacion::Potencial));
        assert_eq!(qualify(&c, Some(1_500_000), Some(Dicom::HasDebt), Some(200_000)), Some(Calificacion::Potencial));
        assert_eq!(qualify(&c, Some(1_500_000), Some(Dicom::HasDebt), Some(400_000)), Some(Calificacion::NoCalificado));
        assert_eq!(qualify(&c, Some(700_000), Some(Dicom::Clean), None), Some(Calificacion::NoCalificado));
        // Garbage keeps the defaults.
        assert_eq!(Criteria::from_stored(&json!({"calificado": "x"})), Criteria::default());
    }
}
