//! Property tests of everything that reads outside input: the extractor (with its money and date
//! readers: Spanish dates and times read at any instant, against Chile's clock changes), phone and
//! email parsing, the chat sanitiser, CSV import parsing, webhook payload parsing and signatures,
//! and template rendering. No input panics; oversized input is cut or refused by an explicit cap
//! (tested by what is read; one generous runaway bound on time catches a superlinear reader).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use shared::channels::{telegram, whatsapp};
use shared::chat::engine::extract::{ExtractCtx, Extraction, Field, MAX_EXTRACT_CHARS, extract};
use shared::chat::sanitize::{MAX_CHARS, sanitize};
use shared::leads::import;
use shared::templates::{extract_variables, render};
use shared::text::{Email, Phone};

const FIELDS: [Field; 12] = [
    Field::Name,
    Field::Phone,
    Field::Email,
    Field::Location,
    Field::MonthlyIncome,
    Field::Budget,
    Field::Dicom,
    Field::DebtAmount,
    Field::PropertyType,
    Field::Bedrooms,
    Field::Timeline,
    Field::AppointmentChoice,
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 15, 0, 0).single().unwrap_or_default()
}

fn fields(mask: u16) -> Vec<Field> {
    FIELDS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, f)| *f).collect()
}

fn read(text: &str, expecting: &[Field]) -> Extraction {
    let slots = [now() + chrono::Duration::days(1), now() + chrono::Duration::days(2)];
    extract(text, &ExtractCtx { now: now(), expecting, offered_slots: &slots })
}

/// Words and marks the extractor's readers look for, so random messages reach deep into them.
fn spanish_message() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "gano",
        "millones",
        "millón",
        "mil",
        "lucas",
        "palos",
        "uf",
        "UF",
        "pesos",
        "$",
        "dicom",
        "debo",
        "deuda",
        "moroso",
        "pagué",
        "casa",
        "depto",
        "departamento",
        "dormitorios",
        "piezas",
        "lunes",
        "martes",
        "mañana",
        "pasado",
        "a",
        "las",
        "de",
        "del",
        "10",
        "15:30",
        "1.200.000",
        "2,5",
        "800k",
        "2M",
        "0",
        "00",
        "99999999999",
        "@",
        "+56",
        "9",
        "1234",
        "5678",
        "correo",
        "es",
        "ana@correo.cl",
        "me",
        "llamo",
        "soy",
        "Ana",
        "José",
        "Ñuñoa",
        "Providencia",
        "Las",
        "Condes",
        "no",
        "sí",
        "el",
        "segundo",
        "primero",
        "y",
        "medio",
        "entre",
        "k",
        "M",
        ",",
        ".",
        "?",
        "!",
        "¿",
        "😀",
        "\u{200b}",
        "\u{202e}",
        "-",
        "%",
        "(",
        ")",
        "\n",
        "\t",
        "humano",
        "urgente",
        "cotizando",
        "hoy",
        "próximo",
        "mes",
        "año",
        "2027",
        "31/02",
        "29-02-2027",
        "25:99",
        "am",
        "pm",
    ]);
    prop::collection::vec(words, 0..80).prop_map(|w| w.join(" "))
}

/// `n` with dots between thousands, as Chileans write amounts (`1.200.000`).
fn dotted(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::from),
        prop::sample::select(vec!["message", "text", "chat", "id", "from", "entry", "changes", "value", "messages"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 128, 8, |inner| {
        let keys = prop::sample::select(vec![
            "update_id",
            "message",
            "edited_message",
            "chat",
            "id",
            "from",
            "text",
            "caption",
            "photo",
            "date",
            "message_id",
            "username",
            "first_name",
            "object",
            "entry",
            "changes",
            "field",
            "value",
            "metadata",
            "phone_number_id",
            "messages",
            "statuses",
            "contacts",
            "type",
            "timestamp",
            "status",
            "errors",
            "wa_id",
            "interactive",
            "button",
            "body",
            "button_reply",
            "title",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_extractor_reads_any_text_without_panicking(text in any::<String>(), mask in 0u16..4096) {
        let _ = read(&text, &fields(mask));
    }

    #[test]
    fn the_extractor_reads_spanish_like_noise_without_panicking(text in spanish_message(), mask in 0u16..4096) {
        let _ = read(&text, &fields(mask));
    }

    #[test]
    fn a_stated_income_is_read_as_stated(thousands in 100u64..=999, full in 100_000u64..=99_999_999) {
        prop_assert_eq!(read(&format!("gano {thousands} mil"), &[]).monthly_income, Some((thousands * 1000) as i64));
        let e = read(&format!("renta líquida de {}", dotted(full)), &[]);
        prop_assert_eq!(e.monthly_income, Some(full as i64));
    }

    #[test]
    fn phone_parsing_never_panics_and_is_idempotent(raw in "[+0-9 ().-]{0,40}", other in any::<String>()) {
        let _ = Phone::parse(&other);
        if let Ok(p) = Phone::parse(&raw) {
            let s = p.as_str();
            prop_assert!(s.starts_with('+'));
            prop_assert!((9..=16).contains(&s.len()), "{}", s);
            prop_assert!(s[1..].chars().all(|c| c.is_ascii_digit()));
            prop_assert_eq!(Phone::parse(s).map(Phone::into_string), Ok(s.to_string()));
        }
    }

    #[test]
    fn chilean_mobiles_in_any_common_form_parse_to_e164(
        digits in "[0-9]{8}",
        form in 0usize..5,
    ) {
        let raw = match form {
            0 => format!("9{digits}"),
            1 => format!("+56 9 {} {}", &digits[..4], &digits[4..]),
            2 => format!("+56 9 {}-{}", &digits[..4], &digits[4..]),
            3 => format!("56 9{digits}"),
            _ => format!("(+56) 9.{}.{}", &digits[..4], &digits[4..]),
        };
        prop_assert_eq!(Phone::parse(&raw).map(Phone::into_string), Ok(format!("+569{digits}")));
    }

    #[test]
    fn email_parsing_never_panics_and_is_idempotent(raw in "[A-Za-z0-9._%+@-]{0,60}", other in any::<String>()) {
        let _ = Email::parse(&other);
        if let Ok(e) = Email::parse(&raw) {
            let s = e.as_str();
            prop_assert_eq!(s.to_lowercase(), s);
            prop_assert!(s.len() <= 254);
            prop_assert_eq!(Email::parse(s).map(Email::into_string), Ok(s.to_string()));
        }
    }

    #[test]
    fn the_sanitiser_never_panics_and_keeps_its_bounds(raw in any::<String>(), noise in spanish_message()) {
        for text in [raw, format!("<b>{noise}</b><script>x</script>")] {
            if let Ok(clean) = sanitize(&text) {
                prop_assert!(!clean.is_empty());
                prop_assert!(clean.chars().count() <= MAX_CHARS);
                prop_assert!(!clean.to_lowercase().contains("<script"), "{}", clean);
            }
        }
    }

    #[test]
    fn rendering_never_panics_and_never_re_expands_a_value(
        content in ".{0,200}",
        value in ".{0,60}",
        braces in "[{} a-z_]{0,60}",
    ) {
        let mut values = BTreeMap::new();
        values.insert("name".to_string(), format!("{value}{{{{secret}}}}"));
        values.insert("secret".to_string(), "LEAK".to_string());
        let _ = render(&content, &values);
        let _ = render(&braces, &values);
        prop_assert_eq!(render("Hola {{name}}", &values), format!("Hola {value}{{{{secret}}}}"));
        if !content.contains("{{") {
            prop_assert_eq!(render(&content, &values), content.clone());
        }
        for v in extract_variables(&braces) {
            prop_assert!(!v.is_empty() && v.chars().all(|c| c.is_alphanumeric() || c == '_'));
            prop_assert!(braces.contains(&v));
        }
    }

    #[test]
    fn csv_parsing_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut with_header = b"phone,name,email,tags\n".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = import::parse(&bytes);
        let _ = import::parse(&with_header);
    }

    #[test]
    fn every_csv_row_is_imported_or_reported(
        rows in prop::collection::vec(("[0-9][0-9 +]{0,13}|9[0-9]{8}", ".{0,30}", "[a-z@.]{0,20}", "[a-z,]{0,20}"), 1..40),
    ) {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["phone", "name", "email", "tags"]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (phone, name, email, tags) in &rows {
            w.write_record([phone, name, email, tags]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let bytes = w.into_inner().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = import::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.rows.len() as u64 + parsed.invalid + parsed.duplicates, rows.len() as u64);
        prop_assert_eq!(parsed.errors.len() as u64, parsed.invalid + parsed.duplicates);
        for r in &parsed.rows {
            prop_assert!(Phone::parse(&r.phone).is_ok(), "{}", r.phone);
        }
    }

    #[test]
    fn webhook_payloads_of_any_shape_parse_without_panicking(v in json_value()) {
        let _ = telegram::parse_update(&v);
        let _ = whatsapp::parse(&v);
        let _ = telegram::parse_update(&json!({"update_id": 1, "message": v.clone()}));
        let _ = whatsapp::parse(&json!({"object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": v}]}]}));
    }

    #[test]
    fn webhook_signatures_hold_only_for_the_right_secret_and_body(
        secret in ".{1,40}",
        other in ".{1,40}",
        body in prop::collection::vec(any::<u8>(), 0..300),
        header in ".{0,80}",
    ) {
        let mac = shared::channels::hmac_sha256(secret.as_bytes(), &body);
        let good = format!("sha256={}", to_hex(&mac));
        prop_assert!(whatsapp::signature_ok(&secret, &body, Some(&good)));
        prop_assert!(!whatsapp::signature_ok(&secret, &body, None));
        if other != secret {
            prop_assert!(!whatsapp::signature_ok(&other, &body, Some(&good)));
        }
        let mut tampered = body.clone();
        tampered.push(b' ');
        prop_assert!(!whatsapp::signature_ok(&secret, &tampered, Some(&good)));
        let _ = whatsapp::signature_ok(&secret, &body, Some(&header));
        let headers = shared::voice::webhook::AuthHeaders {
            secret: Some(header.clone()),
            signature: Some(header.clone()),
            timestamp: Some(header.clone()),
        };
        prop_assert!(shared::voice::webhook::verify(std::slice::from_ref(&secret), &headers, &body, now()).is_err() || header == secret);
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A megabyte message is read only up to the cap: a fact stated past it is not seen, the same
/// fact at the start is.
#[test]
fn a_megabyte_message_is_read_only_up_to_the_cap() {
    let filler = "bla ".repeat(256 * 1024);
    assert!(filler.chars().count() > MAX_EXTRACT_CHARS);
    let late = format!("{filler} mi correo es ana@correo.cl");
    assert_eq!(read(&late, &[]).email, None, "past the cap");
    let early = format!("mi correo es ana@correo.cl {filler}");
    assert_eq!(read(&early, &[]).email.as_deref(), Some("ana@correo.cl"));
    let unicode = "ñ".repeat(MAX_EXTRACT_CHARS * 3);
    let _ = read(&unicode, &fields(4095));
}

/// Oversized or hostile raw input is refused by the parsers' own limits, not read in full.
#[test]
fn oversized_inputs_are_refused_by_explicit_limits() {
    let huge = "a".repeat(1024 * 1024);
    assert!(sanitize(&huge).is_err(), "a 1 MB chat message is refused");
    assert!(Phone::parse(&"9".repeat(1024 * 1024)).is_err());
    assert!(Email::parse(&format!("{huge}@correo.cl")).is_err());
    // Deeply nested JSON stops at serde_json's recursion limit instead of overflowing the stack.
    let deep = "[".repeat(100_000);
    assert!(serde_json::from_str::<Value>(&deep).is_err());
    let deep_obj = "{\"a\":".repeat(100_000);
    assert!(serde_json::from_str::<Value>(&deep_obj).is_err());
    // A pathological template (only openers) renders to itself.
    let openers = "{{".repeat(5_000);
    assert_eq!(render(&openers, &BTreeMap::new()), openers);
}

// ---------------------------------------------------------------------------------------------
// Spanish dates and times ("el jueves a las 10", "15 de marzo", "mañana a las 9:30") read at an
// arbitrary instant, with America/Santiago's clock changes (April and September) nearby.

/// America/Santiago, named here rather than taken from the crate: the business zone is the spec.
const SANTIAGO: chrono_tz::Tz = chrono_tz::America::Santiago;

fn utc(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Any instant of 2024–2030, or one in the three weeks around a clock change (late March to
/// mid April, late August to mid September), where "el domingo a las 10" crosses it.
fn any_now() -> impl Strategy<Value = DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().unwrap_or_default().timestamp();
    let end = Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).single().unwrap_or_default().timestamp();
    prop_oneof![
        (start..end).prop_map(utc),
        (2024i32..=2030, prop::bool::ANY, 0i64..21 * 86_400).prop_map(|(year, september, secs)| {
            let month = if september { 8 } else { 3 };
            let from = Utc.with_ymd_and_hms(year, month, 25, 0, 0, 0).single().unwrap_or_default();
            from + chrono::Duration::seconds(secs)
        }),
    ]
}

fn today(now: DateTime<Utc>) -> chrono::NaiveDate {
    now.with_timezone(&SANTIAGO).date_naive()
}

/// How a lead may write each weekday (accents optional, any case).
fn weekday() -> impl Strategy<Value = (chrono::Weekday, String)> {
    use chrono::Weekday::*;
    let spellings = prop::sample::select(vec![
        (Mon, "lunes"),
        (Tue, "martes"),
        (Wed, "miércoles"),
        (Wed, "miercoles"),
        (Thu, "jueves"),
        (Fri, "viernes"),
        (Sat, "sábado"),
        (Sat, "sabado"),
        (Sun, "domingo"),
    ]);
    (spellings, 0usize..3).prop_map(|((day, word), case)| (day, cased(word, case)))
}

fn cased(word: &str, case: usize) -> String {
    match case {
        0 => word.to_string(),
        1 => word.to_uppercase(),
        _ => word.chars().enumerate().map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c }).collect(),
    }
}

/// A month and a day that exists in it every year (February: up to the 28th).
fn day_of_month() -> impl Strategy<Value = (u32, u32, String)> {
    let months = prop::sample::select(vec![
        (1, "enero"),
        (2, "febrero"),
        (3, "marzo"),
        (4, "abril"),
        (5, "mayo"),
        (6, "junio"),
        (7, "julio"),
        (8, "agosto"),
        (9, "septiembre"),
        (9, "setiembre"),
        (10, "octubre"),
        (11, "noviembre"),
        (12, "diciembre"),
    ]);
    (months, 1u32..=31, 0usize..3).prop_map(|((month, word), day, case)| {
        let last = match month {
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        (day.min(last), month, cased(word, case))
    })
}

/// A time as written after "a las", with the wall-clock time it means: "10", "3" (15:00: nobody
/// books a visit at 3 a.m.), "9:30", "09:30", "15:45", "00:30".
fn clock_time() -> impl Strategy<Value = (String, chrono::NaiveTime)> {
    // The hours around midnight, where the clock changes, one time in four.
    let hour = prop_oneof![3 => 0u32..=23, 1 => prop::sample::select(vec![22u32, 23, 0, 1])];
    (hour, prop::option::of(0u32..=59), prop::bool::ANY).prop_filter_map("a bare 0", |(h, m, padded)| {
        let hour_text = if padded && m.is_some() { format!("{h:02}") } else { h.to_string() };
        if m.is_none() && h == 0 {
            return None;
        }
        let text = match m {
            Some(m) => format!("{hour_text}:{m:02}"),
            None => hour_text.clone(),
        };
        let hour = if hour_text.len() == 1 && (1..=7).contains(&h) { h + 12 } else { h };
        Some((text, chrono::NaiveTime::from_hms_opt(hour, m.unwrap_or(0), 0)?))
    })
}

/// A time with a part of the day or a 24-hour suffix: "3 de la tarde", "9 de la mañana",
/// "8 de la noche", "4pm", "10 am", "15:30 hrs", "10.30" — or one of [`clock_time`]'s.
fn any_clock_time() -> impl Strategy<Value = (String, chrono::NaiveTime)> {
    let suffixed = (1u32..=11, 0usize..7, 0u32..=59).prop_filter_map("not a time", |(h, form, m)| {
        let (text, hour) = match form {
            0 => (format!("{h} de la tarde"), h + 12),
            1 => (format!("{h} de la mañana"), h),
            2 if h >= 7 => (format!("{h} de la noche"), h + 12),
            3 => (format!("{h}pm"), h + 12),
            4 => (format!("{h} am"), h),
            5 => (format!("{:02}:{m:02} hrs", h + 12), h + 12),
            6 => (format!("{h}.{m:02}"), if h <= 7 { h + 12 } else { h }),
            _ => return None,
        };
        let minute = if form >= 5 { m } else { 0 };
        Some((text, chrono::NaiveTime::from_hms_opt(hour, minute, 0)?))
    });
    prop_oneof![clock_time(), suffixed]
}

fn appointment_at(text: &str, now: DateTime<Utc>) -> Option<shared::chat::engine::extract::AppointmentChoice> {
    extract(text, &ExtractCtx { now, expecting: &[Field::AppointmentChoice], offered_slots: &[] }).appointment
}

/// The Sunday of `month` on which Chile changes its clocks: the first on or after the 2nd.
fn change_sunday(year: i32, month: u32) -> chrono::NaiveDate {
    use chrono::Datelike;
    let second = chrono::NaiveDate::from_ymd_opt(year, month, 2).unwrap_or_default();
    second + chrono::Duration::days(i64::from((7 - second.weekday().num_days_from_sunday()) % 7))
}

/// The instant a Santiago wall time names, by Chile's rule rather than the tz database: UTC−3,
/// except UTC−4 from April's change Sunday (00:00 goes back to Saturday 23:00, 03:00 UTC) to
/// September's (00:00 jumps to 01:00, 04:00 UTC). A repeated wall time is the
/// first of the two; a skipped one (00:00–00:59) is read an hour later.
fn santiago_instant(wall: chrono::NaiveDateTime) -> DateTime<Utc> {
    use chrono::Datelike;
    let winter = |at: chrono::NaiveDateTime| {
        let year = at.year();
        let starts = change_sunday(year, 4).and_hms_opt(3, 0, 0).unwrap_or_default();
        let ends = change_sunday(year, 9).and_hms_opt(4, 0, 0).unwrap_or_default();
        starts <= at && at < ends
    };
    for wall in [wall, wall + chrono::Duration::hours(1)] {
        let summer = wall + chrono::Duration::hours(3);
        if !winter(summer) {
            return summer.and_utc();
        }
        let winter_utc = wall + chrono::Duration::hours(4);
        if winter(winter_utc) {
            return winter_utc.and_utc();
        }
    }
    DateTime::<Utc>::MIN_UTC
}

/// `got` is `date` at `time` in Santiago.
fn is_santiago_wall_time(got: DateTime<Utc>, date: chrono::NaiveDate, time: chrono::NaiveTime) -> Result<(), String> {
    let want = santiago_instant(date.and_time(time));
    if got == want {
        Ok(())
    } else {
        Err(format!("wanted {date} {time} in Santiago ({want}), got {got} ({})", got.with_timezone(&SANTIAGO)))
    }
}

#[test]
fn the_test_oracle_knows_chiles_clock_changes() {
    let at = |y, m, d, h, min| {
        santiago_instant(chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap())
    };
    let utc = |y, m, d, h, min| Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
    assert_eq!(at(2026, 1, 15, 9, 0), utc(2026, 1, 15, 12, 0));
    assert_eq!(at(2026, 6, 1, 9, 0), utc(2026, 6, 1, 13, 0));
    // 2026-04-05: Saturday 23:30 happens twice (UTC−3, then UTC−4); the first is meant.
    assert_eq!(at(2026, 4, 4, 22, 59), utc(2026, 4, 5, 1, 59));
    assert_eq!(at(2026, 4, 4, 23, 30), utc(2026, 4, 5, 2, 30));
    assert_eq!(at(2026, 4, 5, 0, 0), utc(2026, 4, 5, 4, 0));
    // 2026-09-06: Sunday 00:30 does not exist; 01:30 is meant.
    assert_eq!(at(2026, 9, 5, 23, 30), utc(2026, 9, 6, 3, 30));
    assert_eq!(at(2026, 9, 6, 0, 30), utc(2026, 9, 6, 4, 30));
    assert_eq!(at(2026, 9, 6, 1, 30), utc(2026, 9, 6, 4, 30));
    // The tz database agrees wherever the wall time exists once.
    for hours in 0..(8 * 366 * 24) {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 30, 0).unwrap() + chrono::Duration::hours(hours);
        let wall = t.with_timezone(&SANTIAGO).naive_local();
        if let chrono::LocalResult::Single(_) = SANTIAGO.from_local_datetime(&wall) {
            assert_eq!(santiago_instant(wall), t, "{wall}");
        }
    }
}

/// The first `weekday` strictly after `today`.
fn next_weekday(today: chrono::NaiveDate, weekday: chrono::Weekday) -> chrono::NaiveDate {
    use chrono::Datelike;
    (1..=7).map(|d| today + chrono::Duration::days(d)).find(|d| d.weekday() == weekday).unwrap_or(today)
}

/// `day/month` on or after `today`: this year's, else next year's.
fn next_date(today: chrono::NaiveDate, day: u32, month: u32) -> Option<chrono::NaiveDate> {
    use chrono::Datelike;
    let this_year = chrono::NaiveDate::from_ymd_opt(today.year(), month, day)?;
    if this_year >= today { Some(this_year) } else { chrono::NaiveDate::from_ymd_opt(today.year() + 1, month, day) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_weekday_at_a_time_is_that_weekday_of_the_coming_week_at_that_time(
        now in any_now(),
        (day, name) in weekday(),
        (time_text, time) in any_clock_time(),
        article in prop::sample::select(vec!["el", "El", "para el", "el próximo"]),
    ) {
        use shared::chat::engine::extract::AppointmentChoice::At;
        let text = format!("{article} {name} a las {time_text}");
        let Some(At(got)) = appointment_at(&text, now) else {
            return Err(TestCaseError::fail(format!("{text:?} at {now}: {:?}", appointment_at(&text, now))));
        };
        let date = next_weekday(today(now), day);
        is_santiago_wall_time(got, date, time).map_err(|e| TestCaseError::fail(format!("{text:?} at {now}: {e}")))?;
        prop_assert!(got > now, "{:?} at {}: {} is in the past", text, now, got);
    }

    #[test]
    fn a_weekday_alone_is_the_next_such_day(now in any_now(), (day, name) in weekday()) {
        use shared::chat::engine::extract::AppointmentChoice::Day;
        let text = format!("el {name}");
        prop_assert_eq!(appointment_at(&text, now), Some(Day(next_weekday(today(now), day))), "{} at {}", text, now);
    }

    #[test]
    fn a_weekday_with_its_date_is_that_date(
        now in any_now(),
        days_ahead in 1i64..=300,
        with_month in prop::bool::ANY,
        time in prop::option::of(any_clock_time()),
    ) {
        use chrono::Datelike;
        use shared::chat::engine::extract::AppointmentChoice::{At, Day};
        const WEEKDAYS: [&str; 7] = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"];
        const MONTHS: [&str; 12] = ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
            "septiembre", "octubre", "noviembre", "diciembre"];
        // Without the month, "el jueves 20" is the 20th of this month or the next.
        let days_ahead = if with_month { days_ahead } else { 1 + days_ahead % 27 };
        let date = today(now) + chrono::Duration::days(days_ahead);
        let weekday = WEEKDAYS[date.weekday().num_days_from_monday() as usize];
        let mut text = format!("el {weekday} {}", date.day());
        if with_month {
            text += &format!(" de {}", MONTHS[date.month0() as usize]);
        }
        match time {
            None => prop_assert_eq!(appointment_at(&text, now), Some(Day(date)), "{} at {}", text, now),
            Some((time_text, time)) => {
                let text = format!("{text} a las {time_text}");
                let Some(At(got)) = appointment_at(&text, now) else {
                    return Err(TestCaseError::fail(format!("{text:?} at {now}: {:?}", appointment_at(&text, now))));
                };
                is_santiago_wall_time(got, date, time).map_err(|e| TestCaseError::fail(format!("{text:?} at {now}: {e}")))?;
            }
        }
    }

    #[test]
    fn a_weekday_of_the_other_week_is_that_day_of_next_week(
        now in any_now(),
        (day, name) in weekday(),
        form in 0usize..4,
    ) {
        use chrono::Datelike;
        use shared::chat::engine::extract::AppointmentChoice::Day;
        let text = match form {
            0 => format!("el {name} de la otra semana"),
            1 => format!("el {name} de la próxima semana"),
            2 => format!("la otra semana el {name}"),
            _ => format!("la próxima semana el {name}"),
        };
        let today = today(now);
        let next_monday = today + chrono::Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
        let want = next_monday + chrono::Duration::days(i64::from(day.num_days_from_monday()));
        prop_assert_eq!(appointment_at(&text, now), Some(Day(want)), "{} at {}", text, now);
    }

    #[test]
    fn a_day_of_a_month_is_its_next_occurrence(
        now in any_now(),
        (day, month, name) in day_of_month(),
        article in prop::sample::select(vec!["", "el ", "El ", "para el "]),
    ) {
        use shared::chat::engine::extract::AppointmentChoice::Day;
        let text = format!("{article}{day} de {name}");
        let want = next_date(today(now), day, month);
        prop_assert!(want.is_some_and(|d| d >= today(now)));
        prop_assert_eq!(appointment_at(&text, now), want.map(Day), "{} at {}", text, now);
    }

    #[test]
    fn a_day_of_a_month_at_a_time_is_that_instant(
        now in any_now(),
        (day, month, name) in day_of_month(),
        (time_text, time) in clock_time(),
    ) {
        use shared::chat::engine::extract::AppointmentChoice::At;
        let text = format!("el {day} de {name} a las {time_text}");
        let Some(At(got)) = appointment_at(&text, now) else {
            return Err(TestCaseError::fail(format!("{text:?} at {now}: {:?}", appointment_at(&text, now))));
        };
        let date = next_date(today(now), day, month).unwrap_or_default();
        is_santiago_wall_time(got, date, time).map_err(|e| TestCaseError::fail(format!("{text:?} at {now}: {e}")))?;
    }

    #[test]
    fn tomorrow_and_the_day_after_at_a_time_are_those_days_at_that_time(
        now in any_now(),
        (time_text, time) in any_clock_time(),
        days_ahead in 1i64..=2,
        capital in prop::bool::ANY,
        lead_in in prop::sample::select(vec!["a las ", "tipo las ", "como a las ", ""]),
    ) {
        use shared::chat::engine::extract::AppointmentChoice::{At, Day};
        let word = match (days_ahead, capital) {
            (1, false) => "mañana",
            (1, true) => "Mañana",
            (_, false) => "pasado mañana",
            (_, true) => "Pasado mañana",
        };
        let date = today(now) + chrono::Duration::days(days_ahead);
        prop_assert_eq!(appointment_at(word, now), Some(Day(date)), "{} at {}", word, now);
        // Without "a las", a number needs minutes or a suffix to be a time ("mañana 15:00").
        let bare_number = !time_text.contains(':') && !time_text.chars().any(char::is_alphabetic);
        let lead_in = if lead_in.is_empty() && bare_number { "a las " } else { lead_in };
        let text = format!("{word} {lead_in}{time_text}");
        let Some(At(got)) = appointment_at(&text, now) else {
            return Err(TestCaseError::fail(format!("{text:?} at {now}: {:?}", appointment_at(&text, now))));
        };
        is_santiago_wall_time(got, date, time).map_err(|e| TestCaseError::fail(format!("{text:?} at {now}: {e}")))?;
        prop_assert!(got > now, "{:?} at {}: {} is in the past", text, now, got);
    }

    #[test]
    fn a_time_on_the_night_of_a_clock_change_is_read_by_the_rule(
        year in 2024i32..=2030,
        september in prop::bool::ANY,
        saturday in prop::bool::ANY,
        hour in prop::sample::select(vec![22u32, 23, 0, 1]),
        minute in 0u32..=59,
        days_before in 1i64..=6,
        by_weekday in prop::bool::ANY,
    ) {
        use chrono::Datelike;
        use shared::chat::engine::extract::AppointmentChoice::At;
        let (month, month_name) = if september { (9, "septiembre") } else { (4, "abril") };
        let sunday = change_sunday(year, month);
        let date = if saturday { sunday - chrono::Duration::days(1) } else { sunday };
        let now = santiago_instant((date - chrono::Duration::days(days_before)).and_hms_opt(12, 0, 0).unwrap_or_default());
        let day_words = match (by_weekday, saturday) {
            (true, true) => "el sábado".to_string(),
            (true, false) => "el domingo".to_string(),
            (false, _) => format!("el {} de {month_name}", date.day()),
        };
        let text = format!("{day_words} a las {hour:02}:{minute:02}");
        let Some(At(got)) = appointment_at(&text, now) else {
            return Err(TestCaseError::fail(format!("{text:?} at {now}: {:?}", appointment_at(&text, now))));
        };
        let time = chrono::NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or_default();
        is_santiago_wall_time(got, date, time).map_err(|e| TestCaseError::fail(format!("{text:?} at {now}: {e}")))?;
    }

    #[test]
    fn a_time_alone_is_its_next_occurrence(now in any_now(), (time_text, time) in clock_time()) {
        use shared::chat::engine::extract::AppointmentChoice::At;
        let text = format!("a las {time_text}");
        let Some(At(got)) = appointment_at(&text, now) else {
            return Err(TestCaseError::fail(format!("{text:?} at {now}: {:?}", appointment_at(&text, now))));
        };
        prop_assert!(got > now, "{:?} at {}: {} is in the past", text, now, got);
        prop_assert!(got - now <= chrono::Duration::hours(25), "{:?} at {}: {} is more than a day ahead", text, now, got);
        let date = got.with_timezone(&SANTIAGO).date_naive();
        let on = |d| is_santiago_wall_time(got, d, time);
        on(date).or_else(|_| on(date - chrono::Duration::days(1)))
            .map_err(|e| TestCaseError::fail(format!("{text:?} at {now}: {e}")))?;
    }

    #[test]
    fn date_words_in_any_order_and_amount_never_panic(
        now in any_now(),
        words in prop::collection::vec(prop::sample::select(vec![
            "el", "la", "las", "a", "de", "del", "próximo", "próxima", "semana", "mañana", "pasado", "hoy",
            "lunes", "miércoles", "sábado", "domingo", "marzo", "abril", "septiembre", "febrero", "día",
            "0", "1", "7", "12", "23", "24", "29", "31", "60", "99", "2025", "2100", "4294967296", ":", "/",
            "-", "00", "59", "y", "media", "cuarto", "am", "pm", "hrs", "tarde", "noche", "mediodía", "1ro",
            "°", "este", "fin", "no", "puedo", "sí", ",", ".",
        ]), 0..60),
        glue in prop::collection::vec(prop::sample::select(vec![" ", "", "  ", "\n"]), 60),
    ) {
        let text: String = words.iter().zip(glue.iter().cycle()).map(|(w, g)| format!("{w}{g}")).collect();
        let slots = [now + chrono::Duration::days(1), now + chrono::Duration::hours(30)];
        let _ = extract(&text, &ExtractCtx { now, expecting: &[Field::AppointmentChoice], offered_slots: &slots });
        let _ = appointment_at(&text, now);
    }
}

/// A megabyte of date (and number) words, repeated or glued, is read only up to the cap: the
/// answer is the one for its first [`MAX_EXTRACT_CHARS`] characters. It also comes back quickly:
/// the bound is a runaway guard (a quadratic reader took 4–5 s here in a debug build; every one
/// of these takes under 0.2 s), not a performance figure.
#[test]
fn a_megabyte_of_date_words_reads_as_its_first_part_in_bounded_time() {
    let now = now();
    let units = [
        "el martes de la próxima semana a las 10 y media ",
        "pasado mañana ",
        "mañana mañana ",
        "de de de del ",
        "a las a las ",
        "a las una y media ",
        "12/12/12/12/",
        "1:1:1:1:",
        "el 31 de febrero del 2025 ",
        "99999999999999999999 ",
        "la próxima semana el ",
        "mil ",
        "dos ",
        "un millón ",
        "veinte mil trescientos ",
        "ñ́",
        "\u{200b}",
    ];
    let slots = [now + chrono::Duration::days(1), now + chrono::Duration::days(2)];
    for unit in units {
        let big = unit.repeat(1024 * 1024 / unit.len() + 1);
        let head: String = big.chars().take(MAX_EXTRACT_CHARS).collect();
        for expecting in [&[Field::AppointmentChoice][..], &FIELDS[..]] {
            let ctx = ExtractCtx { now, expecting, offered_slots: &slots };
            let started = std::time::Instant::now();
            let got = extract(&big, &ctx);
            let took = started.elapsed();
            assert_eq!(got, extract(&head, &ctx), "{unit:?}");
            assert!(took < std::time::Duration::from_secs(3), "{unit:?} took {took:?}");
        }
    }
}
