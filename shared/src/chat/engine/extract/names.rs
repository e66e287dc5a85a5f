//! The lead's name: after "me llamo", "mi nombre es", "nombre:", "soy", "te escribe"; a leading
//! "Nombre Apellido,"; or a bare reply when Sofía asked for it. One to four words, cut at the
//! first word that cannot be part of a name, never a greeting, a trait ("soy independiente") or
//! a comuna.

use super::gazetteer;
use super::tokens::{Kind, Token, match_at};

/// Words that end a name ("Gabriel y mi número…", "Juan Pérez de Maipú").
static CUT_WORDS: &str = "y e o u mi mis numero nro telefono fono cel celular whatsapp wsp correo email mail es el la los las \
    lo de del al a con en por para que pero tengo tenemos vivo vivimos busco buscamos buscando estoy \
    estamos quiero queremos quisiera necesito me te le les nos se su sus tu tus un una unos unas desde \
    aqui aca gracias hola porfa favor rut edad anos trabajo trabajando soy somos interesa interesado \
    interesada escribo escribiendo contacto ahora hoy manana ya tambien pues bueno ando vengo llamo \
    gano ganamos sueldo renta no si sin como cuando donde quien cual ni muy mas solo vi vimos lei \
    consulta consultar pregunta preguntar info informacion depto departamento casa oficina terreno \
    parcela propiedad dicom hablo escribe habla saludos chao adios ok";

/// First words that are greetings or fillers, never a name.
static NOT_A_FIRST_WORD: &str = "hola ola holi holaa buenas buenos buen buena gracias si no ok okay oka dale ya bueno claro perfecto \
    listo genial excelente vale hey oye alo saludos estimado estimada estimados disculpa disculpe \
    perdon hi hello chao adios nada ninguno ninguna quizas tal sip nop obvio exacto correcto mmm ah oh \
    eh jaja jajaja wena wenas muchas mucho mil super feliz yo usted ustedes nosotros aca aqui tienen \
    hay quiero busco necesito me mi tengo estoy puedo cuanto cuando donde que como cual quien porque \
    pero igual tambien favor porfa consulta pregunta info informacion interesado interesada mañana \
    manana hoy ahora despues luego pronto entonces primero segundo tercero primera segunda tercera \
    ultima ultimo opcion cualquiera";

/// What follows "soy" when it is not a name: a trait, a job, a nationality, a role.
static NOT_NAMES: &str = "independiente independientes dependiente casado casada soltero soltera viudo viuda divorciado \
    divorciada separado separada conviviente chileno chilena extranjero extranjera venezolano \
    venezolana peruano peruana colombiano colombiana argentino argentina haitiano haitiana boliviano \
    boliviana ecuatoriano ecuatoriana dominicano dominicana cubano cubana nuevo nueva cliente clienta \
    dueno duena propietario propietaria arrendatario arrendataria trabajador trabajadora empleado \
    empleada funcionario funcionaria profesor profesora profe ingeniero ingeniera medico medica doctor \
    doctora enfermero enfermera abogado abogada contador contadora estudiante jubilado jubilada \
    pensionado pensionada emprendedor emprendedora comerciante vendedor vendedora corredor corredora \
    agente ejecutivo ejecutiva cesante mama papa madre padre hijo hija esposo esposa yo uno quien mayor \
    menor joven primerizo primeriza inversionista inversor inversora arquitecto arquitecta tecnico \
    tecnica conductor conductora chofer carabinero militar policia honorarios pyme microempresario \
    microempresaria empresario empresaria socio socia administrador administradora asesor asesora \
    operario operaria obrero obrera dentista psicologo psicologa periodista disenador disenadora \
    programador programadora analista informatico informatica gerente jefe jefa bombero guardia \
    cocinero cocinera mecanico electricista maestro maestra educador educadora parvularia kinesiologo \
    kinesiologa nutricionista matrona veterinario veterinaria alumno alumna capaz malo mala bien mal \
    asi eso esto este esta ese esa humano humana persona real bot robot asistente familia pareja \
    novio novia pololo polola hombre mujer senor senora senorita don dona sr sra adulto adulta feliz \
    seria serio responsable puntual solvente dependientes contratado contratada indefinido honesto \
    honesta sincero sincera interesado interesada";

/// Common Chilean first names: a lower-case "soy gabriel" or a leading "gabriel gonzalez," is a
/// name when the first word is one of these.
static GIVEN_NAMES: &str = "juan jose luis carlos jorge manuel francisco pedro miguel diego sebastian matias nicolas felipe \
    cristian christian rodrigo pablo andres alejandro javier daniel fernando ricardo patricio gonzalo \
    claudio mauricio eduardo sergio hector victor raul roberto marcelo oscar alberto mario hugo rafael \
    ignacio tomas benjamin vicente martin agustin joaquin maximiliano lucas gabriel samuel david \
    cristobal alvaro esteban emilio enrique arturo rene osvaldo guillermo julio cesar ivan hernan \
    gustavo leonardo marco marcos antonio ramon alfredo alexis felix fabian franco bastian damian \
    gaspar leon simon thomas mateo angel bruno camilo erick eric kevin brian jaime nelson luciano \
    renato rolando rodolfo ruben omar orlando pascual ariel boris cristopher elias isaac jesus jonathan \
    josue moises nestor octavio reinaldo waldo wilson yerko alonso alex axel dante emiliano facundo \
    gerardo german gilberto humberto ismael jeremias leandro lorenzo mariano nibaldo patrick ulises \
    william ximeno maria ana carmen rosa francisca catalina javiera constanza camila valentina fernanda \
    daniela carolina paula andrea claudia patricia veronica marcela alejandra gabriela natalia sofia \
    isidora antonia florencia josefa martina agustina emilia trinidad amanda barbara monica sandra \
    silvia lorena paola pamela karina karen katherine jessica ximena cecilia gloria teresa isabel elena \
    beatriz margarita pilar soledad macarena loreto fabiola viviana angela angelica jacqueline \
    jeannette marta luz alicia susana ingrid tamara nicole denisse romina belen ignacia consuelo \
    magdalena matilda maite mariana adriana lucia luisa julia juana pia rocio yasna yesenia maribel \
    marisol miriam nancy norma olga raquel ruth sara sonia tania vanessa violeta zoe elizabeth erika \
    evelyn fresia graciela hilda irene ivonne jimena laura leslie lidia lilian liliana mireya nora \
    priscila rebeca regina rosario sabina ursula valeria vania yolanda amelia emma isabella julieta \
    renata carla karla paulina cristina marisa noemi estela eugenia francesca josefina mercedes dominga \
    colomba ester esther";

/// The lists above are words separated by white space; each is read into a set once.
fn in_list(list: &'static str, w: &str) -> bool {
    type Sets = std::collections::HashMap<usize, std::collections::HashSet<&'static str>>;
    static SETS: std::sync::LazyLock<Sets> = std::sync::LazyLock::new(|| {
        [GIVEN_NAMES, NOT_A_FIRST_WORD, NOT_NAMES, CUT_WORDS]
            .into_iter()
            .map(|l| (l.as_ptr() as usize, l.split_whitespace().collect()))
            .collect()
    });
    match SETS.get(&(list.as_ptr() as usize)) {
        Some(set) => set.contains(w),
        None => list.split_whitespace().any(|x| x == w),
    }
}

/// How the name was introduced: explicit triggers accept any name-like words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// "me llamo", "mi nombre es", "nombre:", "te escribe".
    Explicit,
    /// "soy": a name only when it looks like one ("soy Gabriel", not "soy independiente").
    Soy,
    /// A leading "Nombre Apellido," or a bare reply to "¿cómo te llamas?".
    Implicit,
}

/// The lead's name, as written (all-caps words title-cased).
pub(super) fn find_name(tokens: &[Token], expecting_name: bool) -> Option<String> {
    after_trigger(tokens)
        .or_else(|| leading_before_comma(tokens))
        .or_else(|| if expecting_name { bare_reply(tokens) } else { None })
}

const EXPLICIT_TRIGGERS: &[&str] =
    &["me llamo", "mi nombre es", "mi nombre :", "nombre :", "nombre es", "te|le|les escribe", "te|le|les habla"];

fn after_trigger(tokens: &[Token]) -> Option<String> {
    for i in 0..tokens.len() {
        if let Some(end) = EXPLICIT_TRIGGERS.iter().find_map(|p| match_at(tokens, i, p)) {
            if let Some(name) = collect(tokens, end, Trigger::Explicit) {
                return Some(name);
            }
        } else if match_at(tokens, i, "soy").is_some()
            && let Some(name) = collect(tokens, i + 1, Trigger::Soy)
        {
            return Some(name);
        }
    }
    None
}

fn is_capitalised(t: &Token) -> bool {
    t.raw.chars().next().is_some_and(char::is_uppercase)
}

/// "soy la Carla", "soy el Pedro": a Chilean article before a first name.
fn skip_article(tokens: &[Token], i: usize) -> usize {
    let article = tokens.get(i).is_some_and(|t| matches!(t.folded.as_str(), "el" | "la"));
    let name_follows =
        tokens.get(i + 1).is_some_and(|t| t.is_word() && (is_capitalised(t) || in_list(GIVEN_NAMES, &t.folded)));
    if article && name_follows { i + 1 } else { i }
}

/// Up to four name words from token `i`.
fn collect(tokens: &[Token], i: usize, trigger: Trigger) -> Option<String> {
    let i = if trigger == Trigger::Soy { skip_article(tokens, i) } else { i };
    let mut picked: Vec<&Token> = Vec::new();
    for t in tokens.iter().skip(i) {
        if t.kind != Kind::Word || picked.len() == 4 || !is_name_word(t) {
            break;
        }
        let first_capitalised = picked.first().is_some_and(|f| is_capitalised(f));
        if !picked.is_empty() && first_capitalised && !is_capitalised(t) {
            break;
        }
        picked.push(t);
    }
    let first = picked.first()?;
    if in_list(NOT_A_FIRST_WORD, &first.folded) || in_list(NOT_NAMES, &first.folded) {
        return None;
    }
    if trigger == Trigger::Soy && !in_list(GIVEN_NAMES, &first.folded) && !is_capitalised(first) {
        return None;
    }
    if names_a_place(tokens, i, picked.len(), trigger) {
        return None;
    }
    Some(picked.iter().map(|t| as_written(t.raw)).collect::<Vec<_>>().join(" "))
}

fn is_name_word(t: &Token) -> bool {
    t.raw.chars().count() >= 2 && !in_list(CUT_WORDS, &t.folded) && !in_list(NOT_NAMES, &t.folded)
}

/// The words are a comuna ("Maipú", "Las Condes"). After "me llamo" a comuna that is also a
/// person's name ("Santiago") is still a name.
fn names_a_place(tokens: &[Token], i: usize, n: usize, trigger: Trigger) -> bool {
    let Some(span) = tokens.get(i..i + n) else {
        return false;
    };
    gazetteer::find_places(span, true)
        .first()
        .is_some_and(|m| m.start == 0 && m.end == n && !(trigger == Trigger::Explicit && m.ambiguous))
}

/// "JUAN PÉREZ" → "Juan Pérez"; everything else as written.
fn as_written(raw: &str) -> String {
    let all_caps = raw.chars().count() > 1 && raw.chars().all(char::is_uppercase);
    if !all_caps {
        return raw.to_string();
    }
    let mut chars = raw.chars();
    let first: String = chars.next().into_iter().collect();
    first + &chars.as_str().to_lowercase()
}

/// Index past a leading greeting ("hola,", "buenas tardes", "hola, buenos días,").
fn skip_greeting(tokens: &[Token]) -> usize {
    let greetings =
        ["hola", "buenas tardes|noches|dias", "buenos dias|tardes", "buen dia", "buenas", "wenas", "saludos", "holi"];
    let mut i = 0;
    while let Some(end) = greetings.iter().find_map(|p| match_at(tokens, i, p)) {
        i = end;
        while tokens.get(i).is_some_and(|t| t.kind == Kind::Punct && matches!(t.raw, "," | "!" | "." | "¡")) {
            i += 1;
        }
    }
    i
}

/// "gabriel gonzalez, y mi número es…": two to four name words before a comma at the start (one
/// word when it is a known first name).
fn leading_before_comma(tokens: &[Token]) -> Option<String> {
    let start = skip_greeting(tokens);
    let words: Vec<&Token> = tokens.iter().skip(start).take_while(|t| t.kind == Kind::Word).collect();
    let comma = tokens.get(start + words.len()).is_some_and(|t| t.is_punct(","));
    if !comma || words.is_empty() || words.len() > 4 || !words.iter().all(|t| is_name_word(t)) {
        return None;
    }
    let first = words.first()?;
    let known_first_name = in_list(GIVEN_NAMES, &first.folded);
    let looks_like_name = known_first_name || (words.len() >= 2 && words.iter().all(|t| is_capitalised(t)));
    if !looks_like_name || in_list(NOT_A_FIRST_WORD, &first.folded) {
        return None;
    }
    if names_a_place(tokens, start, words.len(), Trigger::Implicit) {
        return None;
    }
    Some(words.iter().map(|t| as_written(t.raw)).collect::<Vec<_>>().join(" "))
}

/// A reply to "¿cómo te llamas?" that is only the name ("Carlos", "María José", "hola, Ana").
fn bare_reply(tokens: &[Token]) -> Option<String> {
    let start = skip_greeting(tokens);
    let rest = tokens.get(start..).unwrap_or_default();
    let words: Vec<&Token> = rest.iter().filter(|t| t.kind != Kind::Punct).collect();
    let only_words_and_end_marks =
        rest.iter().all(|t| t.kind == Kind::Word || (t.kind == Kind::Punct && matches!(t.raw, "." | "!" | ",")));
    if !only_words_and_end_marks || words.is_empty() || words.len() > 4 || !words.iter().all(|t| is_name_word(t)) {
        return None;
    }
    let first = words.first()?;
    if in_list(NOT_A_FIRST_WORD, &first.folded) || names_a_place(tokens, start, words.len(), Trigger::Implicit) {
        return None;
    }
    Some(words.iter().map(|t| as_written(t.raw)).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::super::tokens::tokenize;
    use super::*;

    fn name(text: &str) -> Option<String> {
        find_name(&tokenize(text), false)
    }

    fn asked(text: &str) -> Option<String> {
        find_name(&tokenize(text), true)
    }

    #[test]
    fn regex_fallback_cases_of_the_reference() {
        let cases: &[(&str, Option<&str>)] = &[
            ("me llamo gabriel gonzalez", Some("gabriel gonzalez")),
            ("soy María Fernanda", Some("María Fernanda")),
            ("mi nombre es Juan Pérez", Some("Juan Pérez")),
            ("gabriel gonzalez, y mi numero es 954100504", Some("gabriel gonzalez")),
            ("soy Gabriel y mi numero es 954100504", Some("Gabriel")),
            ("hola, busco casa en maipu", None),
            ("hola, tienes propiedades en maipu", None),
            ("Me llamo Carlos Ruiz, mi cel es 912345678 y mi email carlos@test.cl", Some("Carlos Ruiz")),
            ("", None),
        ];
        for &(text, want) in cases {
            assert_eq!(name(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn names_follow_their_triggers() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Me llamo Juan Pérez", Some("Juan Pérez")),
            ("Soy María González", Some("María González")),
            ("Hola, soy María González y busco depto en Ñuñoa", Some("María González")),
            ("nombre: Ana Soto", Some("Ana Soto")),
            ("Nombre: Ana Soto. Fono 912345678", Some("Ana Soto")),
            ("mi nombre es Juan Carlos Pérez Soto", Some("Juan Carlos Pérez Soto")),
            ("me llamo Juan Carlos Pérez Soto Riquelme", Some("Juan Carlos Pérez Soto")),
            ("me llamo juan y busco depto", Some("juan")),
            ("me llamo Juan busco depto", Some("Juan")),
            ("Hola, te escribe Paula Rojas", Some("Paula Rojas")),
            ("les habla Rodrigo", Some("Rodrigo")),
            ("soy la Carla", Some("Carla")),
            ("soy el Pedro, vi el aviso", Some("Pedro")),
            ("soy ximena", Some("ximena")),
            ("ME LLAMO JUAN PÉREZ", Some("Juan Pérez")),
            ("Me llamo José Ñancupil", Some("José Ñancupil")),
            ("me llamo Santiago Fuentes", Some("Santiago Fuentes")),
            ("me llamo Santiago", Some("Santiago")),
            ("Hola, soy Sofía", Some("Sofía")),
        ];
        for &(text, want) in cases {
            assert_eq!(name(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn soy_followed_by_a_trait_a_place_or_a_role_is_not_a_name() {
        for text in [
            "soy de Maipú",
            "Soy de Maipú",
            "soy independiente",
            "Soy independiente y facturo 2 millones",
            "soy casado",
            "soy casada con dos hijos",
            "soy chilena",
            "soy nuevo en esto",
            "soy trabajador dependiente",
            "soy el dueño",
            "soy la dueña de casa",
            "soy yo",
            "soy un cliente",
            "Soy Independiente",
            "soy profesora",
            "soy jubilado",
            "soy pensionada",
            "soy extranjero",
            "soy del sur",
            "soy Maipú",
            "soy Las Condes",
            "soy muy puntual",
            "soy pyme",
            "soy cesante",
        ] {
            assert_eq!(name(text), None, "{text}");
        }
    }

    #[test]
    fn greetings_and_fillers_are_never_names() {
        for text in [
            "me llamo hola",
            "soy hola",
            "Buenas tardes, ¿tienen casas en Las Condes?",
            "Hola, me interesa un departamento",
            "Buenas, vi el anuncio en el portal",
            "Hola quiero información",
            "Gracias, muy amable",
            "Muchas gracias, buen día",
            "Sí, perfecto",
            "Ok, dale",
            "Ya, gracias",
            "Las Condes, por favor",
            "Providencia, 2 dormitorios",
            "Perfecto, nos vemos",
        ] {
            assert_eq!(name(text), None, "{text}");
        }
    }

    #[test]
    fn a_leading_name_before_a_comma() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Juan Pérez, busco depto", Some("Juan Pérez")),
            ("Carlos, busco casa", Some("Carlos")),
            ("hola, Ana María Soto, vi el aviso", Some("Ana María Soto")),
            ("Quiero Comprar, hola", None),
            ("Me Interesa, gracias", None),
            ("Las Condes, busco", None),
        ];
        for &(text, want) in cases {
            assert_eq!(name(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn a_bare_reply_is_a_name_only_when_asked() {
        assert_eq!(name("Carlos"), None);
        assert_eq!(name("María José"), None);
        let cases: &[(&str, Option<&str>)] = &[
            ("Carlos", Some("Carlos")),
            ("María José", Some("María José")),
            ("carlos", Some("carlos")),
            ("hola, Ana.", Some("Ana")),
            ("Juan Pablo Pérez", Some("Juan Pablo Pérez")),
            ("sí", None),
            ("no", None),
            ("ok", None),
            ("dale", None),
            ("ya", None),
            ("hola", None),
            ("gracias", None),
            ("Buenos días", None),
            ("Maipú", None),
            ("Las Condes", None),
            ("no quiero decirlo", None),
            ("por qué?", None),
            ("912345678", None),
            ("busco depto", None),
        ];
        for &(text, want) in cases {
            assert_eq!(asked(text).as_deref(), want, "{text}");
        }
    }
}
