//! What the message signals beyond plain facts: the timeline ("urgente", "en 3 meses", "solo
//! mirando"), the flags (wants a human, opts out, just looking, urgent, asks something) and the
//! words that decide the intent.

use chrono::NaiveDate;

use super::Timeline;
use super::dates::days_until_month;
use super::money::words_number;
use super::tokens::{Clause, Kind, Token, find, has, has_any, has_unnegated, match_at};

const JUST_LOOKING: &[&str] = &[
    "solo|solamente estoy|estamos? mirando|viendo|cotizando|averiguando|curioseando|vitrineando",
    "estoy|estamos cotizando|averiguando|curioseando|vitrineando",
    "estoy|estamos mirando|viendo opciones",
    "viendo opciones",
    "por curiosidad",
];

const LATER: &[&str] = &[
    "mas adelante",
    "a futuro",
    "el|al proximo|otro ano",
    "el ano que viene",
    "no tengo|tenemos|hay apuro",
    "sin apuro",
    "no estoy|estamos apurado|apurada|apurados",
    "en un par de anos",
    "en unos anos",
    "en un ano",
    "todavia no se cuando",
];

const URGENT: &[&str] = &[
    "urgente",
    "urge",
    "urgencia",
    "urgentemente",
    "lo antes posible",
    "lo mas pronto|rapido posible",
    "cuanto antes",
    "este mes",
    "de inmediato",
    "inmediato|inmediata|inmediatamente",
    "para ya",
    "ya mismo",
    "para ayer",
    "estoy|estamos|ando apurado|apurada|apurados|apuradas",
];

const NEXT_MONTH: &[&str] = &[
    "el|la proximo|proxima mes",
    "el mes que viene",
    "el otro mes",
    "en un mes",
    "dentro de un mes",
    "en unas semanas",
    "en un par de semanas",
    "las proximas semanas",
    "en estas semanas",
];

const WITHIN_MONTHS: &[&str] = &[
    "en unos meses",
    "en un par de meses",
    "en los proximos meses",
    "dentro de los proximos meses",
    "los proximos meses",
];

/// "lo necesito ya", "quiero comprar ya": a clause that ends in "ya" after a wish.
fn wants_it_now(tokens: &[Token], clauses: &[Clause]) -> bool {
    clauses.iter().any(|c| {
        let part = c.tokens(tokens);
        let ends_in_ya = part.last().is_some_and(|t| t.folded == "ya") && part.len() > 1;
        ends_in_ya && has_any(part, &["necesit*", "quiero|queremos", "comprar|arrendar|mudarme|mudarnos|cambiarme"])
    })
}

pub(super) fn urgency(tokens: &[Token], clauses: &[Clause]) -> bool {
    has_unnegated(tokens, URGENT) || wants_it_now(tokens, clauses)
}

pub(super) fn just_looking(tokens: &[Token]) -> bool {
    has_any(tokens, JUST_LOOKING)
}

/// "en 3 meses", "en dos semanas", "en 10 días": the count and the unit word.
fn delay_in<'t>(tokens: &'t [Token]) -> Option<(f64, &'t str)> {
    (0..tokens.len()).find_map(|i| {
        let start = match_at(tokens, i, "en").or_else(|| match_at(tokens, i, "dentro de"))?;
        let start = match_at(tokens, start, "unos|unas").unwrap_or(start);
        let (count, end) = match tokens.get(start) {
            Some(t) if t.kind == Kind::Number => (super::money::parse_numeral(t.raw)?, start + 1),
            Some(t) if t.kind == Kind::Word => {
                let (v, end, m) = words_number(tokens, start)?;
                if m != 1.0 {
                    return None;
                }
                (v, end)
            }
            _ => return None,
        };
        let unit = tokens.get(end)?.folded.as_str();
        matches!(unit, "mes" | "meses" | "semana" | "semanas" | "dia" | "dias" | "ano" | "anos")
            .then_some((count, unit))
    })
}

fn timeline_for_days(days: f64) -> Timeline {
    if days <= 7.0 {
        Timeline::Immediate
    } else if days <= 31.0 {
        Timeline::Days30
    } else if days <= 100.0 {
        Timeline::Days90
    } else {
        Timeline::JustLooking
    }
}

/// How soon the lead wants to move.
pub(super) fn timeline(tokens: &[Token], clauses: &[Clause], today: NaiveDate) -> Option<Timeline> {
    if urgency(tokens, clauses) {
        return Some(Timeline::Immediate);
    }
    if has_any(tokens, NEXT_MONTH) {
        return Some(Timeline::Days30);
    }
    if let Some((count, unit)) = delay_in(tokens) {
        let days = match unit {
            "mes" | "meses" => count * 30.0,
            "semana" | "semanas" => count * 7.0,
            "ano" | "anos" => count * 365.0,
            _ => count,
        };
        // "en 3 meses" is 90 days, still the 90-day bucket.
        return Some(timeline_for_days(days.min(if unit.starts_with("mes") && count <= 3.0 { 90.0 } else { days })));
    }
    if has_any(tokens, WITHIN_MONTHS) {
        return Some(Timeline::Days90);
    }
    if let Some(days) = days_until_month(tokens, today) {
        // A month that already started ("en noviembre", said in November) is now.
        return Some(if days == 0 { Timeline::Immediate } else { timeline_for_days(days as f64) });
    }
    if just_looking(tokens) || has_any(tokens, LATER) {
        return Some(Timeline::JustLooking);
    }
    None
}

const HUMAN_NOUNS: &str = "persona|personas|humano|humana|ejecutivo|ejecutiva|asesor|asesora|agente|vendedor|vendedora|alguien|corredor|corredora|encargado|encargada";

/// "quiero hablar con una persona", "un humano", "pásame con un ejecutivo", "no quiero hablar con
/// un bot". A refusal ("no necesito hablar con un ejecutivo") does not count.
pub(super) fn wants_human(tokens: &[Token]) -> bool {
    static TALK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "hablar|conversar|comunicarme|contactarme|atenderme|atienda|hable con? un|una|el|la|alguna|algun? {HUMAN_NOUNS}"
        )
    });
    static HAND_OVER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("pasame|paseme|pasenme|comunicame|comuniqueme|derivame|deriveme con? un|una|el|la? {HUMAN_NOUNS}")
    });
    let (talk, hand_over): (&'static str, &'static str) = (TALK.as_str(), HAND_OVER.as_str());
    let want = "quiero|necesito|prefiero|exijo un|una humano|humana|ejecutivo|ejecutiva|asesor|asesora|agente";
    let asked = [
        talk,
        hand_over,
        want,
        "persona real|humana",
        "persona de verdad",
        "atencion humana|personalizada",
        "un|una humano|humana",
    ]
    .iter()
    .filter_map(|p| find(tokens, p))
    .any(|(start, _)| !refused_before(tokens, start));
    let not_a_bot = has(tokens, "no quiero hablar|conversar con un|una? bot|robot|maquina|ia|computador");
    asked || not_a_bot
}

/// "no quiero hablar con…", "no necesito un ejecutivo" just before `start`.
fn refused_before(tokens: &[Token], start: usize) -> bool {
    let from = start.saturating_sub(3);
    tokens.get(from..start).unwrap_or_default().iter().any(|t| matches!(t.folded.as_str(), "no" | "sin" | "nunca"))
}

const OPT_OUT: &[&str] = &[
    "no me llamen|llames|llame|escriban|escribas|escriba|contacten|contactes|contacte|molesten|molestes|manden|envien|hablen",
    "no quiero que me llamen|escriban|contacten|molesten",
    "no quiero recibir",
    "dejen|deja|dejar|deje de escribirme|llamarme|contactarme|molestarme|enviarme|mandarme",
    "borren|borra|borrar|eliminen|elimina|eliminar|borre|elimine mis|los datos",
    "darme|dar|denme|den de baja",
    "quiero la baja",
    "no me vuelvan|vuelvas a escribir|llamar|contactar",
];

/// "no me interesa", "no estoy interesado", followed by nothing that narrows it ("no me
/// interesa un depto, prefiero casa" is a preference, not an opt-out).
fn not_interested(tokens: &[Token]) -> bool {
    ["no me interesa|interesan", "no estoy|estamos interesado|interesada|interesados"].iter().any(|p| {
        let Some((_, end)) = find(tokens, p) else {
            return false;
        };
        match tokens.get(end) {
            None => true,
            Some(t) if t.kind == Kind::Punct => true,
            Some(t) => matches!(t.folded.as_str(), "mas" | "nada" | "gracias" | "ya" | "por" | "realmente" | "para"),
        }
    })
}

/// A whole message that is only "baja", "stop", "basta", "unsubscribe".
fn bare_stop(tokens: &[Token]) -> bool {
    let said: Vec<&str> = tokens.iter().filter(|t| t.kind != Kind::Punct).map(|t| t.folded.as_str()).collect();
    matches!(
        said.as_slice(),
        ["baja"] | ["stop"] | ["basta"] | ["unsubscribe"] | ["cancelar"] | ["no", "gracias"] | ["basta", "ya"]
    )
}

/// "prefiero que no me llamen, escríbanme": the lead changes channel, not opts out.
pub(super) fn prefers_writing(tokens: &[Token]) -> bool {
    has(tokens, "no me llamen|llames|llame")
        && has_any(tokens, &["escrib*", "whatsapp|wsp|correo|mail|email|mensaje|mensajes", "mejor"])
}

pub(super) fn opt_out(tokens: &[Token]) -> bool {
    let asked = has_any(tokens, OPT_OUT) && !prefers_writing(tokens);
    asked || not_interested(tokens) || bare_stop(tokens) || has(tokens, "ya no me interesa")
}

const INTERROGATIVES: &[&str] =
    &["qué", "cómo", "cuándo", "dónde", "cuál", "cuáles", "quién", "quiénes", "cuánto", "cuánta", "cuántos", "cuántas"];

const QUESTION_OPENINGS: &[&str] = &[
    "cuanto|cuanta|cuantos|cuantas",
    "donde",
    "tienen|tiene|tendran|tendras",
    "hay",
    "se puede|pueden|necesita",
    "podria|podrian|podrias",
    "me pueden|podrian|puedes|podrias",
    "quisiera|queria|quiero|necesito saber|consultar|preguntar",
    "una? consulta|pregunta",
    "sabes|saben|sabe",
    "existe|existen",
    "es posible",
    "aceptan|acepta|incluye|incluyen",
    "como funciona|es|se|puedo|hago",
    "que es|significa|pasa|necesito|requisitos|piden|incluye",
    "por que",
    "cual es|son",
];

/// Index past a leading greeting ("hola,", "buenas tardes,").
fn after_greeting(tokens: &[Token]) -> usize {
    let mut i = 0;
    while let Some(end) = ["buenos|buenas dias|tardes|noches", "buen dia", "hola|holi|buenas|wena|wenas|saludos"]
        .iter()
        .find_map(|p| match_at(tokens, i, p))
    {
        i = end;
        while tokens.get(i).is_some_and(|t| t.kind == Kind::Punct && matches!(t.raw, "," | "!" | "." | "¡")) {
            i += 1;
        }
    }
    i
}

/// The message asks something: a `?` or `¿`, or a sentence that opens like a question.
pub(super) fn question(tokens: &[Token]) -> bool {
    if tokens.iter().any(|t| t.is_punct("?") || t.is_punct("¿")) {
        return true;
    }
    let start = after_greeting(tokens);
    let Some(first) = tokens.get(start) else {
        return false;
    };
    let exclaims = tokens.iter().any(|t| t.is_punct("!") || t.is_punct("¡"));
    let accented = INTERROGATIVES.contains(&first.raw.to_lowercase().as_str()) && !exclaims;
    // "puedo ir el sábado" asks; "puedo el 20" answers.
    let can_i = match_at(tokens, start, "puedo|podemos|pueden|puede")
        .and_then(|next| tokens.get(next))
        .is_some_and(|t| ["ar", "er", "ir"].iter().any(|end| t.folded.ends_with(end)));
    accented || can_i || QUESTION_OPENINGS.iter().any(|p| match_at(tokens, start, p).is_some())
}

/// Credit, mortgage, down payment, DICOM, subsidy or income requirements.
pub(super) fn talks_about_financing(tokens: &[Token]) -> bool {
    let pie = tokens.iter().enumerate().any(|(i, t)| {
        t.folded == "pie" && i.checked_sub(1).and_then(|p| tokens.get(p)).is_none_or(|p| p.folded != "a")
    });
    pie || has_any(
        tokens,
        &[
            "credito*|creditos",
            "hipotecari*",
            "financ*",
            "cuota|cuotas",
            "dividendo*",
            "subsidio*",
            "tasa|tasas",
            "preaprob*",
            "pre aprob*",
            "banco|bancos",
            "requisito*",
            "renta|ingreso|sueldo minimo|minima",
            "cuanto tengo|debo|necesito que? ganar",
            "que renta|sueldo|ingresos necesito",
            "califico|calificar|calificaria",
            "dicom",
            "leasing",
            "gano|ganamos|sueldo|sueldos|salario|renta|ingreso|ingresos|liquido|liquida",
            "ahorro*|ahorrado*|ahorre",
        ],
    )
}

/// Property words beyond the type: project, size, parking, price, stock.
pub(super) fn talks_about_properties(tokens: &[Token]) -> bool {
    has_any(
        tokens,
        &[
            "propiedad|propiedades|inmueble|inmuebles|vivienda|viviendas",
            "proyecto|proyectos",
            "metros cuadrados",
            "m2|mt2|mts2",
            "estacionamiento*|bodega|bodegas",
            "precio|precios|iva",
            "disponible|disponibles|stock",
            "arriendo|arrendar|comprar|compra",
            "dormitorio*|pieza|piezas|habitacion*",
            "listos|listas|entrega|entregan",
            "piso|pisos|terraza|patio|piscina|amoblado",
            "gasto|gastos comun|comunes",
        ],
    )
}

/// Looking words: "busco", "me interesa", "tienen", "quiero comprar".
pub(super) fn looks_for_something(tokens: &[Token]) -> bool {
    has_any(
        tokens,
        &[
            "busco|buscamos|buscando|busca",
            "me|nos interesa|interesan|interesaria",
            "interesado|interesada|interesados",
            "tienen|tienes|hay|ofrecen|venden",
            "quiero|queremos|quisiera|necesito|necesitamos comprar|arrendar|vivir|invertir|mudarme|cambiarme|algo",
            "comprar|arrendar",
        ],
    )
}

/// Greetings, thanks and requests for information: a chat with nothing else in it.
pub(super) fn small_talk(tokens: &[Token]) -> bool {
    has_any(
        tokens,
        &[
            "hola|holi|buenas|buenos|wena|wenas|saludos",
            "gracias|muchas",
            "informacion|info",
            "anuncio|aviso|publicacion",
            "chao|adios|nos vemos",
            "ok|okay|dale|perfecto|listo|genial",
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::super::tokens::{clauses, tokenize};
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 11, 11).unwrap()
    }

    fn timeline_of(text: &str) -> Option<Timeline> {
        let t = tokenize(text);
        timeline(&t, &clauses(&t), today())
    }

    fn flag(f: fn(&[Token]) -> bool, text: &str) -> bool {
        f(&tokenize(text))
    }

    #[test]
    fn timelines_from_what_leads_write() {
        use Timeline::*;
        let cases: &[(&str, Option<Timeline>)] = &[
            ("Necesito comprar un departamento urgente", Some(Immediate)),
            ("lo antes posible", Some(Immediate)),
            ("quiero mudarme este mes", Some(Immediate)),
            ("lo necesito ya", Some(Immediate)),
            ("quiero comprar ya", Some(Immediate)),
            ("cuanto antes mejor", Some(Immediate)),
            ("en 5 días", Some(Immediate)),
            ("el próximo mes", Some(Days30)),
            ("el mes que viene", Some(Days30)),
            ("en un mes", Some(Days30)),
            ("en dos semanas", Some(Days30)),
            ("en unas semanas", Some(Days30)),
            ("en un par de meses", Some(Days90)),
            ("en 3 meses", Some(Days90)),
            ("en dos meses", Some(Days90)),
            ("dentro de 3 meses", Some(Days90)),
            ("en unos meses", Some(Days90)),
            ("a fin de año", Some(Days90)),
            ("para diciembre", Some(Days30)),
            ("en 6 meses", Some(JustLooking)),
            ("para marzo", Some(JustLooking)),
            ("solo mirando", Some(JustLooking)),
            ("solo estoy cotizando", Some(JustLooking)),
            ("estoy cotizando", Some(JustLooking)),
            ("más adelante", Some(JustLooking)),
            ("el próximo año", Some(JustLooking)),
            ("no tengo apuro", Some(JustLooking)),
            ("en un año", Some(JustLooking)),
            ("ya, gracias", None),
            ("ya tengo el pie", None),
            ("hola", None),
            ("Quiero visitar el proyecto esta semana", None),
        ];
        for &(text, want) in cases {
            assert_eq!(timeline_of(text), want, "{text}");
        }
    }

    #[test]
    fn the_end_of_the_year_depends_on_today() {
        let t = tokenize("a fin de año");
        let c = clauses(&t);
        let march = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let december = NaiveDate::from_ymd_opt(2025, 12, 10).unwrap();
        assert_eq!(timeline(&t, &c, march), Some(Timeline::JustLooking));
        assert_eq!(timeline(&t, &c, december), Some(Timeline::Days30));
    }

    #[test]
    fn asking_for_a_person_wants_a_human() {
        for text in [
            "quiero hablar con una persona",
            "un humano por favor",
            "necesito un ejecutivo",
            "¿me pueden comunicar? pásame con un ejecutivo",
            "quiero hablar con una persona real",
            "prefiero hablar con alguien",
            "no quiero hablar con un bot",
            "quiero atención humana",
            "hablar con un asesor",
        ] {
            assert!(flag(wants_human, text), "{text}");
        }
        for text in [
            "¿la reunión con el ejecutivo es online?",
            "no necesito hablar con un ejecutivo",
            "somos cuatro personas",
            "hola",
            "busco depto para 2 personas",
        ] {
            assert!(!flag(wants_human, text), "{text}");
        }
    }

    #[test]
    fn opting_out_in_its_usual_words() {
        for text in [
            "no me llamen más",
            "No me escriban más",
            "no me interesa",
            "Ya no me interesa, gracias",
            "no me interesa.",
            "borren mis datos",
            "eliminen mis datos por favor",
            "dejen de escribirme",
            "quiero darme de baja",
            "BAJA",
            "stop",
            "no estoy interesado",
        ] {
            assert!(flag(opt_out, text), "{text}");
        }
        for text in [
            "no me interesa un depto, prefiero casa",
            "no me llamen, mejor escríbanme por WhatsApp",
            "prefiero que me llamen",
            "me interesa",
            "no estoy interesada en casas",
        ] {
            assert!(!flag(opt_out, text), "{text}");
        }
    }

    #[test]
    fn just_looking_and_urgency_flags() {
        assert!(flag(just_looking, "solo mirando"));
        assert!(flag(just_looking, "solo estoy cotizando"));
        assert!(flag(just_looking, "estamos viendo opciones"));
        assert!(!flag(just_looking, "quiero ver el depto"));
        let urgent = |text: &str| {
            let t = tokenize(text);
            urgency(&t, &clauses(&t))
        };
        assert!(urgent("es urgente"));
        assert!(urgent("lo antes posible"));
        assert!(urgent("este mes"));
        assert!(!urgent("el próximo mes"));
        assert!(!urgent("ya"));
        assert!(urgent("estoy apurada"));
        assert!(!urgent("no estoy apurado"));
        assert!(!urgent("no es urgente"));
    }

    #[test]
    fn questions_are_marked_or_open_like_one() {
        for text in [
            "¿Qué es el DICOM exactamente?",
            "Qué es el DICOM",
            "cuanto cuesta",
            "Buenas tardes, tienen casas en Las Condes",
            "hola, hay departamentos en Ñuñoa",
            "puedo ir el sábado",
            "una consulta, aceptan subsidio",
            "Cómo funciona el proceso",
            "necesito saber el precio",
            "El precio incluye IVA?",
        ] {
            assert!(flag(question, text), "{text}");
        }
        for text in [
            "Me llamo Juan Pérez",
            "¡Qué bueno!",
            "gano 800 mil",
            "como te dije, vivo en Maipú",
            "cuando pueda le escribo",
            "puedo el 20 de noviembre",
            "que bueno",
        ] {
            assert!(!flag(question, text), "{text}");
        }
    }

    #[test]
    fn financing_words() {
        for text in [
            "¿Cuánto es el pie mínimo?",
            "quiero un crédito hipotecario",
            "¿me pueden dar subsidio?",
            "cuánto tengo que ganar",
            "¿Necesito DICOM limpio para comprar?",
            "¿de cuánto son las cuotas?",
            "tengo renta de 45 UF",
        ] {
            assert!(flag(talks_about_financing, text), "{text}");
        }
        assert!(!flag(talks_about_financing, "queda a pie del metro"));
        assert!(!flag(talks_about_financing, "busco depto en Ñuñoa"));
    }
}
