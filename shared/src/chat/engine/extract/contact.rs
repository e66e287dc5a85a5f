//! Phone and email: where they are in the message (so money rules skip those digits) and their
//! normal form. Normalisation is `shared::text`'s; this file only finds the candidates.

use std::ops::Range;

use crate::text::{Email, Phone};

/// The first valid email address and its byte span: the address characters around each `@`.
pub(super) fn find_email(text: &str) -> Option<(String, Range<usize>)> {
    text.match_indices('@').find_map(|(at, _)| {
        let start = text.get(..at)?.trim_end_matches(is_address_char).len();
        let right = text.get(at + 1..)?;
        let end = at + 1 + right.len() - right.trim_start_matches(is_address_char).len();
        let raw = text.get(start..end)?;
        let start = start + raw.len() - raw.trim_start_matches('.').len();
        let candidate = raw.trim_start_matches('.').trim_end_matches(['.', '-']);
        let email = Email::parse(candidate).ok()?;
        Some((email.into_string(), start..start + candidate.len()))
    })
}

fn is_address_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')
}

/// A run of digits in the message.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

fn digit_groups(text: &str) -> Vec<Group> {
    let bytes = text.as_bytes();
    let mut groups = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i).is_some_and(u8::is_ascii_digit) {
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            groups.push(Group { start, end: i });
        } else {
            i += 1;
        }
    }
    groups
}

/// Between two digit groups of one phone: at most three of ` -.()`.
fn joins_groups(gap: &str) -> bool {
    !gap.is_empty() && gap.len() <= 3 && gap.chars().all(|c| matches!(c, ' ' | '-' | '.' | '(' | ')'))
}

/// A Chilean mobile (9 digits starting with 9), the same with country code 56, or any +56 number.
fn is_phone_digits(digits: &str, international: bool) -> bool {
    (digits.len() == 9 && digits.starts_with('9'))
        || (digits.len() == 11 && digits.starts_with("569"))
        || (international && digits.len() == 11 && digits.starts_with("56"))
}

/// A RUT ("12.345.678-9") looks like a phone to a digit counter; it never is one.
fn looks_like_rut(candidate: &str) -> bool {
    let Some((body, check)) = candidate.rsplit_once('-') else {
        return false;
    };
    let parts: Vec<&str> = body.split('.').collect();
    check.len() == 1
        && parts.len() == 3
        && parts.first().is_some_and(|p| (1..=2).contains(&p.len()))
        && parts.iter().skip(1).all(|p| p.len() == 3)
}

/// Where the candidate really starts: a `+` or `(+` written just before the digits belongs to it.
fn extend_prefix(text: &str, start: usize) -> usize {
    let before = text.get(..start).unwrap_or_default();
    for prefix in ["(+", "+", "("] {
        if before.ends_with(prefix) {
            return start - prefix.len();
        }
    }
    start
}

fn glued_to_letter_or_money(text: &str, start: usize, end: usize) -> bool {
    let before = text.get(..start).unwrap_or_default();
    let mut back = before.chars().rev();
    let prev = back.next();
    // The tail of a bigger number ("1.912.345.678") is not a phone.
    let inside_number = prev.is_some_and(|c| c == '.' || c == ',') && back.next().is_some_and(|c| c.is_ascii_digit());
    let before = before.trim_end();
    let next = text.get(end..).and_then(|s| s.chars().next());
    inside_number
        || before.ends_with('$')
        || prev.is_some_and(|c| c.is_alphabetic() || c == '/' || c == ':')
        || next.is_some_and(|c| c.is_alphabetic() || c == '/' || c == '%' || c == ':')
}

/// The first phone in the message, in E.164 form, with its byte span.
pub(super) fn find_phone(text: &str) -> Option<(String, Range<usize>)> {
    let groups = digit_groups(text);
    for first in 0..groups.len() {
        if let Some(found) = phone_from(text, &groups, first) {
            return Some(found);
        }
    }
    None
}

fn phone_from(text: &str, groups: &[Group], first: usize) -> Option<(String, Range<usize>)> {
    let head = groups.get(first)?;
    let start = extend_prefix(text, head.start);
    let international = text.get(start..head.start).is_some_and(|p| p.contains('+'));
    let mut digits = String::new();
    let mut best = None;
    let mut last_end = head.start;
    for group in groups.iter().skip(first) {
        if group.start != head.start && !joins_groups(text.get(last_end..group.start).unwrap_or_default()) {
            break;
        }
        digits.push_str(text.get(group.start..group.end).unwrap_or_default());
        last_end = group.end;
        if digits.len() > 11 {
            break;
        }
        if is_phone_digits(&digits, international) {
            best = Some(group.end);
        }
    }
    let end = best?;
    let candidate = text.get(start..end)?;
    if looks_like_rut(candidate) || glued_to_letter_or_money(text, start, end) {
        return None;
    }
    let phone = Phone::parse(candidate).ok()?;
    Some((phone.into_string(), start..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(text: &str) -> Option<String> {
        find_phone(text).map(|(p, _)| p)
    }

    #[test]
    fn chilean_mobiles_are_found_in_every_written_form() {
        for text in [
            "+56 9 1234 5678",
            "56912345678",
            "9 1234 5678",
            "912345678",
            "(+56) 9-1234-5678",
            "+56912345678",
            "mi cel: +56-9-1234-5678.",
            "llámame al 9 1234-5678 porfa",
            "fono 9.1234.5678",
            "(56) 9 1234 5678",
        ] {
            assert_eq!(phone(text).as_deref(), Some("+56912345678"), "{text}");
        }
    }

    #[test]
    fn numbers_that_are_not_phones_are_left_alone() {
        for text in [
            "gano $912.345",
            "1.500.000",
            "mi rut es 9.876.543-2",
            "tengo 2 hijos",
            "el 12/12 a las 10:30",
            "12345678",
            "9123456789012",
            "$ 912345678",
            "código ABC912345678",
            "912345678%",
            "1.912.345.678 pesos",
        ] {
            assert_eq!(phone(text), None, "{text}");
        }
    }

    #[test]
    fn a_phone_span_covers_its_prefix() {
        let (p, span) = find_phone("tel (+56) 9-1234-5678 ok").unwrap();
        assert_eq!(p, "+56912345678");
        assert_eq!(&"tel (+56) 9-1234-5678 ok"[span], "(+56) 9-1234-5678");
    }

    #[test]
    fn the_first_valid_email_is_lower_cased() {
        let cases = [
            ("mi correo es Juan@Gmail.com", Some("juan@gmail.com")),
            ("mi-email@hotmail.com, teléfono +56911223344", Some("mi-email@hotmail.com")),
            ("escríbeme a <ana.perez@empresa.cl>.", Some("ana.perez@empresa.cl")),
            ("correo: a@b y luego x@y.cl", Some("x@y.cl")),
            ("no tengo correo", None),
            ("@juanito en instagram", None),
        ];
        for (text, want) in cases {
            assert_eq!(find_email(text).map(|(e, _)| e).as_deref(), want, "{text}");
        }
    }
}
