//! What the lead is looking for: the property type ("depto", "casa", "parcela") and bedrooms
//! ("2 dormitorios", "3D", "3d2b", "tres piezas").

use super::PropertyType;
use super::money::words_number;
use super::tokens::{Kind, Token, match_at};

fn type_of_word(w: &str) -> Option<PropertyType> {
    let t = match w {
        "departamento" | "departamentos" | "depto" | "deptos" | "dpto" | "dptos" | "depa" | "depas" | "dept"
        | "departamentito" | "monoambiente" | "monoambientes" | "loft" => PropertyType::Departamento,
        "casa" | "casas" | "casita" | "casitas" => PropertyType::Casa,
        "oficina" | "oficinas" => PropertyType::Oficina,
        "terreno" | "terrenos" | "parcela" | "parcelas" | "sitio" | "sitios" | "lote" | "lotes" => {
            PropertyType::Terreno
        }
        _ => return None,
    };
    Some(t)
}

/// "mi casa", "en casa", "dueña de casa", "en la oficina", "sitio web": the word is not what the
/// lead is looking for.
fn is_not_a_wish(tokens: &[Token], i: usize) -> bool {
    let word = |k: Option<usize>| k.and_then(|k| tokens.get(k)).map(|t| t.folded.as_str());
    let prev = word(i.checked_sub(1));
    let prev2 = word(i.checked_sub(2));
    let next = word(Some(i + 1));
    let this = word(Some(i)).unwrap_or_default();
    let possessive =
        matches!(prev, Some("mi" | "mis" | "tu" | "tus" | "su" | "sus" | "nuestra" | "nuestro" | "nuestras"));
    let at_place = matches!(prev, Some("en" | "de")) && matches!(this, "casa" | "oficina");
    // "estoy en la casa" is where the lead is; "interesado en la casa" is what they want.
    let interested = matches!(word(i.checked_sub(3)), Some(w) if w.starts_with("interesad"));
    let the_place =
        prev == Some("la") && matches!(prev2, Some("en" | "de" | "a" | "desde")) && this != "parcela" && !interested;
    let the_office = prev == Some("la") && this == "oficina";
    let website = matches!(this, "sitio" | "sitios")
        && (matches!(next, Some("web" | "de")) || matches!(prev, Some("el" | "este" | "ese")));
    possessive || at_place || the_place || the_office || website || (this == "casa" && next == Some("matriz"))
}

/// Every property type the lead asks for, in order of mention, without repeats. `in_place`
/// marks tokens of a place name ("Padre Las Casas" is not a house).
pub(super) fn property_types(tokens: &[Token], in_place: &[bool]) -> Vec<PropertyType> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if let Some(kind) = type_of_word(&t.folded)
            && !in_place.get(i).copied().unwrap_or(false)
            && !is_not_a_wish(tokens, i)
            && !out.contains(&kind)
        {
            out.push(kind);
        }
    }
    out
}

/// The lead asks for a studio ("monoambiente", "loft").
pub(super) fn wants_studio(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| matches!(t.folded.as_str(), "monoambiente" | "monoambientes" | "loft" | "studio"))
}

fn is_bedroom_word(w: &str) -> bool {
    matches!(
        w,
        "dormitorio"
            | "dormitorios"
            | "dorm"
            | "dorms"
            | "dormi"
            | "habitacion"
            | "habitaciones"
            | "hab"
            | "habs"
            | "pieza"
            | "piezas"
            | "recamara"
            | "recamaras"
            | "cuarto"
            | "cuartos"
    )
}

/// A small count at token `i`: "2", "dos", "un"; with the index past it.
fn count_at(tokens: &[Token], i: usize) -> Option<(u8, usize)> {
    let t = tokens.get(i)?;
    if t.is_plain_int() {
        let n = t.raw.parse::<u8>().ok()?;
        return Some((n, i + 1));
    }
    if t.kind != Kind::Word {
        return None;
    }
    let (v, end, multiplier) = words_number(tokens, i)?;
    let small = multiplier == 1.0 && v.fract() == 0.0 && (1.0..=20.0).contains(&v);
    small.then_some((v as u8, end))
}

/// Bedrooms asked for, with the upper bound when written as a range ("2 o 3 dormitorios").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bedrooms {
    pub count: u8,
    pub up_to: Option<u8>,
}

/// "2 dormitorios", "de 1 dormitorio", "tres piezas", "2 o 3 habitaciones", "3D", "3d2b",
/// "dormitorios: 3".
pub(super) fn bedrooms(tokens: &[Token]) -> Option<Bedrooms> {
    (0..tokens.len()).find_map(|i| {
        written_bedrooms(tokens, i).or_else(|| glued_bedrooms(tokens, i)).or_else(|| labelled_bedrooms(tokens, i))
    })
}

/// "dormitorios: 3", as in a form.
fn labelled_bedrooms(tokens: &[Token], i: usize) -> Option<Bedrooms> {
    let label = tokens.get(i).filter(|t| is_bedroom_word(&t.folded))?;
    let colon = tokens.get(i + 1).filter(|t| t.is_punct(":"))?;
    let (count, _) = count_at(tokens, i + 2)?;
    (label.is_word() && colon.kind == Kind::Punct && (1..=10).contains(&count))
        .then_some(Bedrooms { count, up_to: None })
}

fn written_bedrooms(tokens: &[Token], i: usize) -> Option<Bedrooms> {
    let (count, next) = count_at(tokens, i)?;
    let (up_to, next) = match match_at(tokens, next, "o|a|y") {
        Some(after) => match count_at(tokens, after) {
            Some((n, end)) if n > count => (Some(n), end),
            _ => (None, next),
        },
        None => (None, next),
    };
    let is_bedrooms = tokens.get(next).is_some_and(|t| is_bedroom_word(&t.folded));
    (is_bedrooms && (1..=10).contains(&count)).then_some(Bedrooms { count, up_to })
}

/// "3D", "3d2b", "2D1B": a digit glued to `d`.
fn glued_bedrooms(tokens: &[Token], i: usize) -> Option<Bedrooms> {
    let number = tokens.get(i).filter(|t| t.is_plain_int())?;
    let d = tokens.get(i + 1).filter(|t| !t.spaced && t.folded == "d")?;
    let after = tokens.get(i + 2);
    let ends_word = after.is_none_or(|a| a.spaced || a.kind == Kind::Punct || a.is_number());
    let count = number.raw.parse::<u8>().ok()?;
    (ends_word && d.is_word() && (1..=10).contains(&count)).then_some(Bedrooms { count, up_to: None })
}

/// Bathrooms: "2 baños", "3d2b".
pub(super) fn bathrooms(tokens: &[Token]) -> Option<u8> {
    (0..tokens.len()).find_map(|i| {
        if let Some((n, next)) = count_at(tokens, i)
            && match_at(tokens, next, "bano|banos").is_some()
        {
            return Some(n);
        }
        let glued = tokens.get(i).filter(|t| t.is_plain_int())?;
        let b = tokens.get(i + 1).filter(|t| !t.spaced && t.folded == "b")?;
        let after_d = i >= 2 && tokens.get(i - 1).is_some_and(|t| t.folded == "d" && !glued.spaced);
        (b.is_word() && after_d).then(|| glued.raw.parse().ok()).flatten()
    })
}

/// A bare count answering "¿cuántos dormitorios?": "2", "dos", "3 porfa".
pub(super) fn bare_count(tokens: &[Token]) -> Option<u8> {
    let (n, end) = count_at(tokens, 0)?;
    let rest_is_filler = tokens.iter().skip(end).all(|t| {
        t.kind == Kind::Punct || matches!(t.folded.as_str(), "porfa" | "por" | "favor" | "gracias" | "idealmente")
    });
    (rest_is_filler && (1..=10).contains(&n)).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::super::tokens::tokenize;
    use super::*;

    fn kinds(text: &str) -> Vec<PropertyType> {
        let tokens = tokenize(text);
        property_types(&tokens, &vec![false; tokens.len()])
    }

    fn beds(text: &str) -> Option<u8> {
        bedrooms(&tokenize(text)).map(|b| b.count)
    }

    #[test]
    fn property_words_name_their_type() {
        use PropertyType::*;
        let cases: &[(&str, &[PropertyType])] = &[
            ("busco departamento", &[Departamento]),
            ("un depto en Ñuñoa", &[Departamento]),
            ("dpto de 2 dormitorios", &[Departamento]),
            ("Hola, me interesa un departamento", &[Departamento]),
            ("¿tienen casas en Las Condes?", &[Casa]),
            ("quiero una casa", &[Casa]),
            ("busco oficina en Providencia", &[Oficina]),
            ("un terreno en Pirque", &[Terreno]),
            ("una parcela de agrado", &[Terreno]),
            ("un sitio en Colina", &[Terreno]),
            ("lotes en Chicureo", &[Terreno]),
            ("casa o departamento", &[Casa, Departamento]),
            ("un monoambiente", &[Departamento]),
            ("Estoy interesado en la casa de la calle Los Aromos", &[Casa]),
        ];
        for &(text, want) in cases {
            assert_eq!(kinds(text), want, "{text}");
        }
    }

    #[test]
    fn a_home_the_lead_already_has_is_not_a_wish() {
        for text in [
            "estoy en mi casa",
            "estoy en casa",
            "soy dueña de casa",
            "la reina de la casa",
            "estoy en la oficina",
            "vi su sitio web",
            "lo vi en el sitio",
            "paso por la oficina de ventas",
            "la casa matriz",
            "vendo mi depto",
        ] {
            assert_eq!(kinds(text), [], "{text}");
        }
    }

    #[test]
    fn bedrooms_in_every_written_form() {
        let cases: &[(&str, Option<u8>)] = &[
            ("2 dormitorios", Some(2)),
            ("3D", Some(3)),
            ("un 3d", Some(3)),
            ("3d2b", Some(3)),
            ("2D1B en Ñuñoa", Some(2)),
            ("tres piezas", Some(3)),
            ("2 habitaciones", Some(2)),
            ("de 1 dormitorio", Some(1)),
            ("un dormitorio", Some(1)),
            ("dos dorms", Some(2)),
            ("4 piezas y 2 baños", Some(4)),
            ("2 o 3 dormitorios", Some(2)),
            ("cuatro habitaciones", Some(4)),
            ("dormitorios: 3", Some(3)),
            ("2 baños", None),
            ("3 meses", None),
            ("busco 3 deptos", None),
            ("a las 3 de la tarde", None),
            ("3 dias", None),
            ("15 dormitorios", None),
        ];
        for &(text, want) in cases {
            assert_eq!(beds(text), want, "{text}");
        }
    }

    #[test]
    fn a_bedroom_range_keeps_both_ends() {
        assert_eq!(bedrooms(&tokenize("2 o 3 dormitorios")), Some(Bedrooms { count: 2, up_to: Some(3) }));
        assert_eq!(bedrooms(&tokenize("de 2 a 3 piezas")), Some(Bedrooms { count: 2, up_to: Some(3) }));
    }

    #[test]
    fn bathrooms_are_read_too() {
        assert_eq!(bathrooms(&tokenize("3d2b")), Some(2));
        assert_eq!(bathrooms(&tokenize("con 2 baños")), Some(2));
        assert_eq!(bathrooms(&tokenize("un baño")), Some(1));
        assert_eq!(bathrooms(&tokenize("2 dormitorios")), None);
    }

    #[test]
    fn a_bare_count_answers_the_bedrooms_question() {
        assert_eq!(bare_count(&tokenize("2")), Some(2));
        assert_eq!(bare_count(&tokenize("dos")), Some(2));
        assert_eq!(bare_count(&tokenize("3 porfa")), Some(3));
        assert_eq!(bare_count(&tokenize("3 o más")), None);
        assert_eq!(bare_count(&tokenize("hola")), None);
    }
}
