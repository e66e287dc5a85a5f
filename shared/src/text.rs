//! Text normalisation at the edge: accent folding, slugs, sanitised names, phones and emails.
//! Everything here is pure and parses raw input into values that are valid by construction.

use unicode_normalization::UnicodeNormalization;

/// Lower-case, accent-free form used for search and comparisons ("Ñuñoa" → "nunoa").
pub fn fold(s: &str) -> String {
    s.nfd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// URL slug: folded, every run outside `[a-z0-9]` becomes `-`, trimmed, at most 80 characters.
pub fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in fold(s).chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let slug: String = out.trim_matches('-').chars().take(80).collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() { "broker".into() } else { slug }
}

/// Removes HTML tags and control characters, collapses white space and trims. A `<` that starts
/// no tag ("precio < 3000 UF", "<3") is kept, like the chat sanitiser does.
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' if !in_tag && chars.peek().is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) => {
                in_tag = true
            }
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A phone in E.164 form (`+56912345678`). Chile is the default country.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Accepts the forms people write (`9 1234 5678`, `+56 9 1234-5678`, `56912345678`, `0056…`).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("phone is empty");
        }
        if raw.len() > 32 {
            return Err("phone is too long");
        }
        if !raw.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.')) {
            return Err("phone may only contain digits, spaces, '+', '-', '(', ')' and '.'");
        }
        let first_digit = raw.find(|c: char| c.is_ascii_digit()).unwrap_or(raw.len());
        let plus_signs = raw.matches('+').count();
        if plus_signs > 1 || raw.rfind('+').is_some_and(|i| i > first_digit) {
            return Err("'+' may only start the phone");
        }
        let international = plus_signs == 1;
        let mut digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        let international = international || {
            if let Some(rest) = digits.strip_prefix("00") {
                digits = rest.to_string();
                true
            } else {
                false
            }
        };
        let e164 = if international || (digits.starts_with("56") && digits.len() == 11) {
            digits
        } else {
            let national = if digits.len() == 10 && digits.starts_with('0') { &digits[1..] } else { &digits[..] };
            if national.len() != 9 {
                return Err("phone must have 9 digits (Chile) or start with a country code");
            }
            format!("56{national}")
        };
        if e164.starts_with('0') {
            return Err("country code cannot start with 0");
        }
        if e164.starts_with("56") && e164.len() != 11 {
            return Err("a Chilean phone has 9 digits after +56");
        }
        if !(8..=15).contains(&e164.len()) {
            return Err("phone must have between 8 and 15 digits");
        }
        Ok(Self(format!("+{e164}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A syntactically valid, lower-cased email address with a dotted domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim().to_lowercase();
        if s.len() > 254 {
            return Err("email is too long");
        }
        let valid = email_address::EmailAddress::is_valid(&s)
            && s.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            });
        if valid { Ok(Self(s)) } else { Err("value is not a valid email address") }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Spanish month names, January first.
pub const MONTHS_ES: [&str; 12] = [
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
];
/// Spanish weekday names, Monday first.
pub const WEEKDAYS_ES: [&str; 7] = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"];

/// "jueves 10 de diciembre" for a local date.
pub fn day_long_es(d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    format!(
        "{} {} de {}",
        WEEKDAYS_ES[d.weekday().num_days_from_monday() as usize],
        d.day(),
        MONTHS_ES[d.month0() as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_accents_and_case() {
        assert_eq!(fold("Ñuñoa"), "nunoa");
        assert_eq!(fold("MARÍA José"), "maria jose");
        assert_eq!(fold("Peñalolén"), "penalolen");
    }

    #[test]
    fn slugs_are_url_safe() {
        assert_eq!(slugify("Inmobiliaria Activa"), "inmobiliaria-activa");
        assert_eq!(slugify("  Propiedades Ñuñoa & Cía. "), "propiedades-nunoa-cia");
        assert_eq!(slugify("!!!"), "broker");
    }

    #[test]
    fn chilean_phones_normalise_to_e164() {
        for raw in [
            "9 1234 5678",
            "+56 9 1234-5678",
            "56912345678",
            "912345678",
            "+56912345678",
            "0056912345678",
            "(+56) 9.1234.5678",
            "0912345678",
        ] {
            assert_eq!(Phone::parse(raw).unwrap().as_str(), "+56912345678", "{raw}");
        }
        assert_eq!(Phone::parse("2 2345 6789").unwrap().as_str(), "+56223456789");
        assert_eq!(Phone::parse("+1 415 555 2671").unwrap().as_str(), "+14155552671");
    }

    #[test]
    fn invalid_phones_are_refused() {
        for raw in [
            "",
            "12345",
            "abc",
            "+56 9 1234",
            "+56 9 1234 56789",
            "1234567890123456789",
            "9 1234 567x",
            "56+912345678",
            "+0123456789",
        ] {
            assert!(Phone::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn emails_are_validated_and_lower_cased() {
        assert_eq!(Email::parse(" Maria@Email.CL ").unwrap().as_str(), "maria@email.cl");
        for raw in ["nope", "a@b", "@x.cl", "a@.cl", "a b@x.cl", "a@x..cl", "a@x_y.cl"] {
            assert!(Email::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn html_and_control_characters_are_removed() {
        assert_eq!(clean_text("<b>María</b>\u{0007}  Pérez "), "María Pérez");
        assert_eq!(clean_text("<script>alert(1)</script>Ana"), "alert(1) Ana");
        assert_eq!(clean_text("presupuesto < 3000 UF, > 2000"), "presupuesto < 3000 UF, > 2000");
        assert_eq!(clean_text("Juan <3"), "Juan <3");
        assert_eq!(clean_text("<!-- x --><img src=x onerror=alert(1)>Ana"), "Ana");
    }
}
