//! Property tests of everything that reads outside input: the extractor (with its money and date
//! readers), phone and email parsing, the chat sanitiser, CSV import parsing, webhook payload
//! parsing and signatures, and template rendering. No input panics; oversized input is cut or
//! refused by an explicit cap (tested by what is read, not by timing).

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
