//! Spanish dates and times relative to now in America/Santiago ("mañana a las 10", "el martes",
//! "el 12 de diciembre a las 16:30", "a las 3 de la tarde") and the lead's answer to offered
//! slots: an ordinal ("la segunda"), a date/time that is one of them, "sí", or "ninguno me sirve".

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday};

use super::money::words_number;
use super::tokens::{Clause, Kind, Token, find, has, match_at};
use super::{AppointmentChoice, ExtractCtx};
use crate::leads::model::TZ;

/// Part of the day: "en la mañana", "en la tarde", "de noche".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Period {
    Morning,
    Afternoon,
    Evening,
}

impl Period {
    fn contains(self, time: NaiveTime) -> bool {
        match self {
            Period::Morning => time.hour() < 12,
            Period::Afternoon => (12..19).contains(&time.hour()),
            Period::Evening => time.hour() >= 19,
        }
    }
}

/// A day the lead named, and whether it was named by weekday (to match offered slots by weekday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Day {
    pub date: NaiveDate,
    pub weekday_named: bool,
}

/// What one clause says about when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct When {
    pub day: Option<Day>,
    pub time: Option<NaiveTime>,
    pub period: Option<Period>,
    /// The clause says "la próxima semana" / "la otra semana" / "la semana que viene": a weekday
    /// named in another clause ("la próxima semana, el martes") is next week's.
    pub next_week: bool,
}

impl When {
    fn is_empty(&self) -> bool {
        self.day.is_none() && self.time.is_none() && self.period.is_none()
    }

    fn merge(self, other: When) -> When {
        When {
            day: self.day.or(other.day),
            time: self.time.or(other.time),
            period: self.period.or(other.period),
            next_week: self.next_week || other.next_week,
        }
    }

    /// A weekday moved to next week when some clause said so.
    fn in_the_week_said(self, today: NaiveDate) -> When {
        match self.day {
            Some(day) if self.next_week && day.weekday_named => {
                When { day: Some(Day { date: weekday_next_week(today, day.date.weekday()), ..day }), ..self }
            }
            _ => self,
        }
    }
}

/// "la próxima semana", "la otra semana", "la semana que viene", "la semana siguiente".
const NEXT_WEEK: &[&str] = &["proxima|otra semana", "semana que viene", "semana siguiente"];

/// Santiago wall-clock time to UTC. A time skipped by the DST change (00:00–00:59 on the first
/// Sunday of September on or after the 2nd) is read one hour later; a repeated one (23:00–23:59
/// on the Saturday before April's change) is the first of the two.
pub(super) fn local_to_utc(date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let naive = date.and_time(time);
    TZ.from_local_datetime(&naive)
        .earliest()
        .or_else(|| TZ.from_local_datetime(&(naive + Duration::hours(1))).earliest())
        .map(|d| d.with_timezone(&Utc))
}

fn local(at: DateTime<Utc>) -> chrono::DateTime<chrono_tz::Tz> {
    at.with_timezone(&TZ)
}

fn weekday_of(word: &str) -> Option<Weekday> {
    let d = match word {
        "lunes" => Weekday::Mon,
        "martes" => Weekday::Tue,
        "miercoles" => Weekday::Wed,
        "jueves" => Weekday::Thu,
        "viernes" => Weekday::Fri,
        "sabado" | "sabados" => Weekday::Sat,
        "domingo" | "domingos" => Weekday::Sun,
        _ => return None,
    };
    Some(d)
}

pub(super) fn month_of(word: &str) -> Option<u32> {
    let m = match word {
        "enero" | "ene" => 1,
        "febrero" | "feb" => 2,
        "marzo" | "mar" => 3,
        "abril" | "abr" => 4,
        "mayo" | "may" => 5,
        "junio" | "jun" => 6,
        "julio" | "jul" => 7,
        "agosto" | "ago" => 8,
        "septiembre" | "setiembre" | "sep" | "sept" => 9,
        "octubre" | "oct" => 10,
        "noviembre" | "nov" => 11,
        "diciembre" | "dic" => 12,
        _ => return None,
    };
    Some(m)
}

/// The first `weekday` strictly after `today`.
fn next_weekday(today: NaiveDate, weekday: Weekday) -> NaiveDate {
    let ahead = (7 + weekday.num_days_from_monday() - today.weekday().num_days_from_monday()) % 7;
    today + Duration::days(if ahead == 0 { 7 } else { i64::from(ahead) })
}

/// `weekday` in the week after this one (Monday to Sunday).
fn weekday_next_week(today: NaiveDate, weekday: Weekday) -> NaiveDate {
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday())) + Duration::days(7);
    monday + Duration::days(i64::from(weekday.num_days_from_monday()))
}

/// The next `day/month` on or after today: this year's, else the first later year that has it
/// ("29 de febrero" said in a common year is the next leap year's; "31 de junio" is no date).
fn next_date(today: NaiveDate, day: u32, month: u32, year: Option<i32>) -> Option<NaiveDate> {
    if let Some(year) = year {
        return NaiveDate::from_ymd_opt(year, month, day);
    }
    (0..=8).filter_map(|ahead| NaiveDate::from_ymd_opt(today.year() + ahead, month, day)).find(|d| *d >= today)
}

/// Day `day` of this month, or of the next month when it has passed.
fn next_day_of_month(today: NaiveDate, day: u32) -> Option<NaiveDate> {
    match NaiveDate::from_ymd_opt(today.year(), today.month(), day) {
        Some(d) if d >= today => Some(d),
        _ => {
            let (y, m) = if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
            NaiveDate::from_ymd_opt(y, m, day)
        }
    }
}

fn folded<'t>(tokens: &'t [Token], i: usize) -> Option<&'t str> {
    tokens.get(i).map(|t| t.folded.as_str())
}

/// "mañana" meaning tomorrow, not "la mañana" (the morning).
fn is_tomorrow(tokens: &[Token], i: usize) -> bool {
    let prev = i.checked_sub(1).and_then(|p| folded(tokens, p));
    folded(tokens, i) == Some("manana")
        && !matches!(prev, Some("la" | "esta" | "pasado" | "las" | "en" | "por" | "de" | "temprano"))
}

/// A year after a date ("de 2025", "del 2026", "/25").
fn year_at(tokens: &[Token], i: usize) -> Option<(i32, usize)> {
    let (j, value) = match match_at(tokens, i, "de|del") {
        Some(j) => (j, tokens.get(j)?),
        None => (i, tokens.get(i)?),
    };
    let year: i32 = value.int()?.try_into().ok()?;
    let year = if year < 100 { 2000 + year } else { year };
    (2000..=2100).contains(&year).then_some((year, j + 1))
}

/// The day named at token `i` and the index past it.
fn day_at(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Day, usize)> {
    let exact = |date: NaiveDate, end: usize| Some((Day { date, weekday_named: false }, end));
    let w = folded(tokens, i)?;
    if w == "hoy" {
        // "hoy martes": the weekday repeats today.
        let end =
            if tokens.get(i + 1).and_then(|t| weekday_of(&t.folded)) == Some(today.weekday()) { i + 2 } else { i + 1 };
        return exact(today, end);
    }
    if let Some(end) = match_at(tokens, i, "pasado manana") {
        return exact(today + Duration::days(2), end);
    }
    if is_tomorrow(tokens, i) {
        return exact(today + Duration::days(1), i + 1);
    }
    if let Some((day, end)) = weekday_at(tokens, i, today) {
        // "el jueves 20", "el lunes 1 de diciembre": the date, when it falls on that weekday.
        let dated = date_after_weekday(tokens, end, today).filter(|(d, _)| d.date.weekday() == day.date.weekday());
        return Some(dated.unwrap_or((day, end)));
    }
    if let Some(end) = match_at(tokens, i, "el|este fin de semana") {
        // The weekend starts on Saturday; offered slots match it by weekday.
        let saturday = if today.weekday() == Weekday::Sat { today } else { next_weekday(today, Weekday::Sat) };
        return Some((Day { date: saturday, weekday_named: true }, end));
    }
    if let Some(found) = numeric_date_at(tokens, i, today) {
        return Some(found);
    }
    written_date_at(tokens, i, today)
}

/// "el martes", "este martes", "el próximo martes", "el martes de la próxima semana" (the week is
/// read for the whole clause by [`when_in`], see [`NEXT_WEEK`]; here its words are only passed).
fn weekday_at(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Day, usize)> {
    let weekday = weekday_of(folded(tokens, i)?)?;
    let prev = i.checked_sub(1).and_then(|p| folded(tokens, p));
    let end = ["de la proxima|otra semana", "de la semana que viene|siguiente"]
        .iter()
        .find_map(|p| match_at(tokens, i + 1, p))
        .unwrap_or(i + 1);
    let date = if matches!(prev, Some("este" | "esta")) && today.weekday() == weekday {
        today
    } else {
        next_weekday(today, weekday)
    };
    Some((Day { date, weekday_named: true }, end))
}

/// The date right after a weekday: "20", "20 de noviembre", "20/11" — not a time ("15:00", "3pm").
fn date_after_weekday(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Day, usize)> {
    if time_at(tokens, i).is_some() {
        return None;
    }
    if let Some(found) = numeric_date_at(tokens, i, today).or_else(|| written_date_at(tokens, i, today)) {
        return Some(found);
    }
    let day = tokens.get(i)?.int()?;
    Some((Day { date: next_day_of_month(today, day)?, weekday_named: false }, i + 1))
}

/// "12/12", "12-12", "12/12/2025", "3/1/26".
fn numeric_date_at(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Day, usize)> {
    let day = tokens.get(i)?.int()?;
    let sep = tokens.get(i + 1).filter(|t| (t.is_punct("/") || t.is_punct("-")) && !t.spaced)?;
    let month = tokens.get(i + 2).filter(|t| !t.spaced)?.int()?;
    let mut end = i + 3;
    let mut year = None;
    if tokens.get(end).is_some_and(|t| t.raw == sep.raw && !t.spaced)
        && let Some(y) = tokens.get(end + 1).filter(|t| !t.spaced).and_then(Token::int)
    {
        year = i32::try_from(if y < 100 { 2000 + y } else { y }).ok();
        end += 2;
    }
    if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    let date = next_date(today, day, month, year)?;
    Some((Day { date, weekday_named: false }, end))
}

/// "el 12 de diciembre", "12 de dic", "el día 15", "el 15 de diciembre de 2025".
fn written_date_at(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Day, usize)> {
    let (day_index, explicit_dia) = match match_at(tokens, i, "dia") {
        Some(j) => (j, true),
        None => (i, false),
    };
    let day = tokens.get(day_index)?.int()?;
    if !(1..=31).contains(&day) {
        return None;
    }
    // "el 1ro de diciembre", "el 1° de diciembre".
    let ordinal_suffix = tokens
        .get(day_index + 1)
        .is_some_and(|t| !t.spaced && matches!(t.folded.as_str(), "ro" | "ero" | "er" | "°" | "º"));
    let day_index = if ordinal_suffix { day_index + 1 } else { day_index };
    if let Some(of) = match_at(tokens, day_index + 1, "de")
        && let Some(month) = folded(tokens, of).and_then(month_of)
    {
        let (year, end) = match year_at(tokens, of + 1) {
            Some((y, e)) => (Some(y), e),
            None => (None, of + 1),
        };
        let date = next_date(today, day, month, year)?;
        return Some((Day { date, weekday_named: false }, end));
    }
    // "el día 15", or "el 15 a las 10": a day of the month.
    let the_day = i.checked_sub(1).and_then(|p| folded(tokens, p)) == Some("el");
    if explicit_dia || (the_day && time_at(tokens, day_index + 1).is_some()) {
        return Some((Day { date: next_day_of_month(today, day)?, weekday_named: false }, day_index + 1));
    }
    None
}

/// An hour written as digits or words ("10", "diez", "una").
fn hour_at(tokens: &[Token], i: usize) -> Option<(u32, usize, bool)> {
    let t = tokens.get(i)?;
    if let Some(h) = t.int() {
        return (h <= 23).then_some((h, i + 1, t.raw.len() == 1));
    }
    if t.kind != Kind::Word {
        return None;
    }
    let (v, end, multiplier) = words_number(tokens, i)?;
    let h = v as u32;
    (multiplier == 1.0 && v.fract() == 0.0 && (1..=12).contains(&h)).then_some((h, end, true))
}

/// "10.30", "9.15": an hour and its minutes written with a dot (and whether the hour is one digit).
fn dotted_time(t: &Token) -> Option<(u32, u32, bool)> {
    let (h, m) = t.raw.split_once('.')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !t.is_number() || !(1..=2).contains(&h.len()) || m.len() != 2 || !digits(h) || !digits(m) {
        return None;
    }
    let (hour, minute) = (h.parse().ok()?, m.parse().ok()?);
    (hour <= 23 && minute < 60).then_some((hour, minute, h.len() == 1))
}

/// Two digits glued after an hour's colon ("10:30" → 30), whatever their value.
fn colon_minutes_at(tokens: &[Token], i: usize) -> Option<u32> {
    let glued_colon = tokens.get(i).is_some_and(|t| t.is_punct(":") && !t.spaced);
    if !glued_colon {
        return None;
    }
    tokens.get(i + 1).filter(|t| t.raw.len() == 2 && !t.spaced).and_then(Token::int)
}

/// ":30", "y media", "y cuarto" after an hour.
fn minutes_at(tokens: &[Token], i: usize) -> Option<(u32, usize)> {
    if let Some(m) = colon_minutes_at(tokens, i) {
        return (m < 60).then_some((m, i + 2));
    }
    if let Some(end) = match_at(tokens, i, "y media") {
        return Some((30, end));
    }
    if let Some(end) = match_at(tokens, i, "y cuarto") {
        return Some((15, end));
    }
    None
}

/// "am", "pm", "hrs", "de la tarde" after a time. "horas" counts only after "a las" ("en 2
/// horas" is a delay).
fn time_suffix_at(tokens: &[Token], i: usize, after_lead_in: bool) -> (Option<Period>, bool, usize) {
    let mut end = i;
    let mut hours_word = false;
    let hours = if after_lead_in { "hrs|hr|h|hs|horas|hora" } else { "hrs|hr|h|hs" };
    if let Some(e) = match_at(tokens, end, hours) {
        end = e;
        hours_word = true;
    }
    if let Some(e) = match_at(tokens, end, "am") {
        return (Some(Period::Morning), true, e);
    }
    if let Some(e) = match_at(tokens, end, "pm") {
        return (Some(Period::Afternoon), true, e);
    }
    if tokens.get(end).is_some_and(|t| t.folded == "a" || t.folded == "p")
        && tokens.get(end + 1).is_some_and(|t| t.is_punct("."))
        && tokens.get(end + 2).is_some_and(|t| t.folded == "m")
    {
        let period = if folded(tokens, end) == Some("a") { Period::Morning } else { Period::Afternoon };
        let e = if tokens.get(end + 3).is_some_and(|t| t.is_punct(".")) { end + 4 } else { end + 3 };
        return (Some(period), true, e);
    }
    if let Some((period, e)) = period_at(tokens, end, true) {
        return (Some(period), true, e);
    }
    (None, hours_word, end)
}

/// "en la mañana", "por la tarde", "de la noche", "en la mañanita".
fn period_at(tokens: &[Token], i: usize, after_hour: bool) -> Option<(Period, usize)> {
    // After an hour the period is introduced by "de|en|por la"; alone, by a wider lead-in.
    let patterns: [(&'static str, Period); 3] = if after_hour {
        [
            ("de|en|por la manana|mananita", Period::Morning),
            ("de|en|por la tarde|tardecita", Period::Afternoon),
            ("de|en|por la noche", Period::Evening),
        ]
    } else {
        [
            ("en|por|de|durante|esta la? manana|mananita", Period::Morning),
            ("en|por|de|durante|esta la? tarde|tardecita", Period::Afternoon),
            ("en|por|de|durante|esta la? noche", Period::Evening),
        ]
    };
    patterns.into_iter().find_map(|(p, period)| match_at(tokens, i, p).map(|e| (period, e)))
}

fn clock(hour: u32, minute: u32, period: Option<Period>, short_hour: bool) -> Option<NaiveTime> {
    let hour = match period {
        Some(Period::Afternoon | Period::Evening) if hour < 12 => hour + 12,
        // "12 de la noche" is midnight, "12 de la mañana" too (people say it of 00:00).
        Some(Period::Morning | Period::Evening) if hour == 12 => 0,
        // "a las 3" means 15:00: nobody books a visit at 3 in the morning.
        None if short_hour && (1..=7).contains(&hour) => hour + 12,
        _ => hour,
    };
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// Words that introduce a time: "a las", "como a las", "tipo las", "después de las".
const TIME_LEAD_INS: &[&str] = &["a las|la", "tipo|como|para|desde|hasta a? las|la", "despues|antes de las|la"];

/// A time at token `i`: "a las 10", "a las 10:30", "10:30", "15 hrs", "10am", "a las 3 de la
/// tarde", "a la una y media", "mediodía". Without "a las" a number needs minutes or a suffix
/// ("las 2 casas" is not 14:00). Returns the time, its period word and the index past it.
fn time_at(tokens: &[Token], i: usize) -> Option<(NaiveTime, Option<Period>, usize)> {
    if let Some(end) = match_at(tokens, i, "a|al? mediodia").or_else(|| match_at(tokens, i, "a|al? medio dia")) {
        return Some((NaiveTime::from_hms_opt(12, 0, 0)?, Some(Period::Afternoon), end));
    }
    let lead_in = TIME_LEAD_INS.iter().find_map(|p| match_at(tokens, i, p));
    let start = lead_in.unwrap_or(i);
    if lead_in.is_none() && tokens.get(start).is_some_and(|t| t.kind == Kind::Word) {
        // "diez" alone is a count, not a time.
        return None;
    }
    if let Some((hour, minute, short_hour)) = tokens.get(start).and_then(dotted_time) {
        // "a las 10.30": one number token to the tokenizer.
        let (period, suffixed, end) = time_suffix_at(tokens, start + 1, lead_in.is_some());
        if lead_in.is_none() && !suffixed {
            return None;
        }
        return Some((clock(hour, minute, period, short_hour)?, period, end));
    }
    let (hour, next, short_hour) = hour_at(tokens, start)?;
    if colon_minutes_at(tokens, next).is_some_and(|m| m >= 60) {
        // "a las 10:60" is no time at all, not 10:00.
        return None;
    }
    let (minute, next, has_minutes) = match minutes_at(tokens, next) {
        Some((m, n)) => (m, n, true),
        None => (0, next, false),
    };
    let (period, suffixed, end) = time_suffix_at(tokens, next, lead_in.is_some());
    if lead_in.is_none() && !has_minutes && !suffixed {
        return None;
    }
    let time = clock(hour, minute, period, short_hour)?;
    Some((time, period, end))
}

/// Everything one clause says about when.
pub(super) fn when_in(tokens: &[Token], today: NaiveDate) -> When {
    let mut when = When::default();
    let mut i = 0;
    while i < tokens.len() {
        if when.time.is_none()
            && let Some((time, period, end)) = time_at(tokens, i)
        {
            when.time = Some(time);
            when.period = when.period.or(period);
            i = end;
            continue;
        }
        if when.day.is_none()
            && let Some((day, end)) = day_at(tokens, i, today)
        {
            when.day = Some(day);
            i = end;
            continue;
        }
        if when.period.is_none()
            && let Some((period, end)) = period_at(tokens, i, false)
        {
            when.period = Some(period);
            i = end;
            continue;
        }
        i += 1;
    }
    when.next_week = NEXT_WEEK.iter().any(|p| find(tokens, p).is_some());
    when = when.in_the_week_said(today);
    let midnight = when.period == Some(Period::Evening) && when.time == Some(NaiveTime::MIN);
    if midnight {
        // "el sábado a las 12 de la noche": the midnight that ends Saturday.
        if let Some(day) = when.day.as_mut() {
            day.date += Duration::days(1);
            day.weekday_named = false;
        }
    } else if let (Some(time), Some(period)) = (when.time, when.period)
        && !period.contains(time)
        && time.hour() < 12
    {
        // "a las 10, en la tarde" → the period corrects the hour.
        when.time = NaiveTime::from_hms_opt(time.hour() + 12, time.minute(), 0).or(when.time);
    }
    when
}

const REFUSALS: &[&str] = &[
    "ninguno|ninguna|ningun",
    "no puedo|podre|podria|podemos|alcanzo",
    "no me sirve|sirven|acomoda|acomodan|viene|vienen|queda|quedan|calza|resulta",
    "no nos sirve|sirven|acomoda|viene",
    "imposible",
    "no tengo tiempo",
    "no estoy disponible",
    "no estare",
    "ese dia no",
    "mejor no",
    "ocupado|ocupada|ocupados|ocupadas",
    "tengo|tenemos que trabajar",
];

/// "puedo", "me sirve", "me acomoda": the clause says when the lead is free.
fn offers_availability(tokens: &[Token]) -> bool {
    ["puedo|podemos|podria|podriamos", "me|nos sirve|acomoda|viene|queda", "voy|vamos|iria|iriamos"]
        .iter()
        .any(|p| has(tokens, p))
}

/// "otro día", "otra semana": a refusal, unless the clause names the day or time it asks for
/// ("el viernes de la otra semana").
const ASKS_FOR_ANOTHER: &[&str] = &["otro dia|horario|hora|momento", "otra fecha|hora|opcion|semana"];

fn refuses(tokens: &[Token], said: When) -> bool {
    REFUSALS.iter().any(|p| has(tokens, p))
        || (ASKS_FOR_ANOTHER.iter().any(|p| has(tokens, p)) && said.day.is_none() && said.time.is_none())
}

const ACCEPT_FIRST_WORDS: &[&str] = &[
    "si",
    "sip",
    "dale",
    "ok",
    "okay",
    "oka",
    "okey",
    "perfecto",
    "perfect",
    "listo",
    "bueno",
    "genial",
    "excelente",
    "confirmo",
    "confirmado",
    "claro",
    "va",
    "vale",
    "ya",
    "buenisimo",
    "super",
    "seguro",
    "obvio",
    "bkn",
    "bacan",
    "agendame",
    "agendemos",
    "reservame",
    "hagamoslo",
];
const ACCEPT_PHRASES: &[&str] = &[
    "me sirve",
    "me parece bien|perfecto|genial|excelente",
    "me parece",
    "me acomoda",
    "me viene bien|perfecto",
    "de acuerdo",
    "esta bien",
    "por supuesto",
    "ningun problema",
    "lo tomo|tomamos",
    "me quedo con",
    "cualquiera|cualquier",
    "el|la que sea",
    "da igual",
    "me da lo mismo",
];

fn accepts(tokens: &[Token]) -> bool {
    let first = tokens.iter().find(|t| t.kind != Kind::Punct).map(|t| t.folded.as_str());
    first.is_some_and(|w| ACCEPT_FIRST_WORDS.contains(&w)) || ACCEPT_PHRASES.iter().any(|p| has(tokens, p))
}

fn ordinal_word(w: &str) -> Option<isize> {
    let k = match w {
        "primera" | "primero" | "primer" => 0,
        "segunda" | "segundo" => 1,
        "tercera" | "tercero" | "tercer" => 2,
        "cuarta" | "cuarto" => 3,
        "quinta" | "quinto" => 4,
        "ultima" | "ultimo" => -1,
        "penultima" | "penultimo" => -2,
        _ => return None,
    };
    Some(k)
}

/// "1ra", "2da", "3°", "1era", "2do": a digit glued to an ordinal ending.
fn glued_ordinal(tokens: &[Token], i: usize) -> Option<(isize, usize)> {
    let n = tokens.get(i)?.int()?;
    let suffix = tokens.get(i + 1).filter(|t| !t.spaced)?;
    let ordinal_suffix = matches!(
        suffix.folded.as_str(),
        "ra" | "era" | "er" | "da" | "do" | "ro" | "ta" | "to" | "a" | "o" | "°" | "º"
    );
    (ordinal_suffix && n >= 1).then(|| (n as isize - 1, i + 2))
}

const NOT_SLOT_NOUNS: &[&str] =
    &["vez", "semana", "quincena", "vivienda", "casa", "propiedad", "cuota", "de", "piso", "etapa", "mitad", "linea"];
const SLOT_NOUNS: &[&str] = &["opcion", "alternativa", "hora", "horario", "fecha", "slot", "cita", "propuesta"];

/// A count word or digit used as an option number: "2", "dos".
fn option_number(tokens: &[Token], i: usize) -> Option<(isize, usize)> {
    let t = tokens.get(i)?;
    if let Some(n) = t.int() {
        return (1..=20).contains(&n).then(|| (n as isize - 1, i + 1));
    }
    let n = match t.folded.as_str() {
        "uno" | "una" => 1,
        "dos" => 2,
        "tres" => 3,
        "cuatro" => 4,
        "cinco" => 5,
        _ => return None,
    };
    Some((n - 1, i + 1))
}

/// The number is a date or a time, not an option ("el 2 de diciembre", "el 2/12", "la 1 de la tarde").
fn number_is_date_or_time(tokens: &[Token], end: usize) -> bool {
    let next = tokens.get(end);
    next.is_some_and(|t| t.is_punct("/") || t.is_punct(":") || t.is_punct("-"))
        || match_at(tokens, end, "de|del")
            .is_some_and(|e| folded(tokens, e).is_some_and(|w| month_of(w).is_some() || matches!(w, "la" | "mes")))
        || ["hrs|hr|h|hs|horas|am|pm", "y media|cuarto", "a las|la"].iter().any(|p| match_at(tokens, end, p).is_some())
}

/// The 0-based slot an ordinal names: "la primera", "el segundo", "la segunda opción", "el 2",
/// "opción 3", "3", "la última".
pub(super) fn ordinal_choice(tokens: &[Token], slots: usize) -> Option<usize> {
    let content: Vec<&Token> = tokens.iter().filter(|t| t.kind != Kind::Punct).collect();
    let resolve = |k: isize| -> Option<usize> {
        let index = if k < 0 { slots as isize + k } else { k };
        usize::try_from(index).ok().filter(|&i| i < slots)
    };
    for i in 0..tokens.len() {
        let prev = i.checked_sub(1).and_then(|p| folded(tokens, p));
        let article = matches!(prev, Some("el" | "la" | "lo" | "los" | "las"));
        let next_word = |end: usize| folded(tokens, end);
        if let Some(k) = folded(tokens, i).and_then(ordinal_word) {
            let next = next_word(i + 1);
            let noun_ok = next.is_none_or(|n| !NOT_SLOT_NOUNS.contains(&n));
            let slot_noun = next.is_some_and(|n| SLOT_NOUNS.contains(&n));
            let alone = content.len() <= 3;
            if noun_ok && (article || slot_noun || alone) {
                return resolve(k);
            }
        }
        if let Some((k, end)) = glued_ordinal(tokens, i)
            && next_word(end).is_none_or(|n| !NOT_SLOT_NOUNS.contains(&n))
        {
            return resolve(k);
        }
        if matches!(folded(tokens, i), Some("opcion" | "alternativa" | "numero" | "nro" | "n"))
            && let Some((k, _)) =
                option_number(tokens, i + 1 + usize::from(match_at(tokens, i + 1, "numero|nro|n").is_some()))
        {
            return resolve(k);
        }
        if article
            && let Some((k, end)) = option_number(tokens, i)
            && tokens.get(i).is_some_and(Token::is_number)
            && !number_is_date_or_time(tokens, end)
        {
            return resolve(k);
        }
    }
    bare_option(tokens).and_then(resolve)
}

/// A reply that is only an option number: "2", "2.", "la 2", "dos".
fn bare_option(tokens: &[Token]) -> Option<isize> {
    let content: Vec<&Token> = tokens.iter().filter(|t| t.kind != Kind::Punct).collect();
    match content.as_slice() {
        [only] => {
            let i = tokens.iter().position(|t| std::ptr::eq(t, *only))?;
            option_number(tokens, i).map(|(k, _)| k)
        }
        _ => None,
    }
}

/// Words that show the lead is talking about a visit or a meeting.
pub(super) fn talks_about_scheduling(tokens: &[Token]) -> bool {
    const PATTERNS: &[&str] = &[
        "visit*",
        "agend*",
        "reunion|reunirnos|reunirme|juntarnos|juntamos|juntemos|vernos|veamos|cita|videollamada|meet|zoom",
        "ir a ver",
        "conocer*",
        "puedo|podemos|podria|podriamos ir|pasar",
        "me viene|acomoda|sirve",
        "disponibilidad",
        "horario*",
        "coordin*",
        "nos vemos",
    ];
    PATTERNS.iter().any(|p| has(tokens, p))
}

/// The lead's appointment answer, or a date/time they propose.
pub(super) fn appointment(tokens: &[Token], clauses: &[Clause], ctx: &ExtractCtx) -> Option<AppointmentChoice> {
    let slots = ctx.offered_slots;
    let asked = !slots.is_empty() || ctx.expecting.contains(&super::Field::AppointmentChoice);
    let today = local(ctx.now).date_naive();
    if !slots.is_empty()
        && let Some(i) = ordinal_choice(tokens, slots.len())
    {
        return Some(AppointmentChoice::Slot(i));
    }
    let mut when = When::default();
    let mut available = When::default();
    let mut refused = false;
    for clause in clauses {
        let part = clause.tokens(tokens);
        let said = when_in(part, today);
        if refuses(part, said) {
            // "mejor otra semana, el lunes": the refusal still says which week.
            when.next_week |= said.next_week;
            refused = true;
            continue;
        }
        if offers_availability(part) {
            available = available.merge(said);
        }
        when = when.merge(said);
    }
    // "mañana trabajo, pero el sábado puedo": the clause that says "puedo" decides.
    let when = if available.is_empty() { when } else { available.merge(when) }.in_the_week_said(today);
    let scheduling = asked || when.time.is_some() || talks_about_scheduling(tokens);
    if !when.is_empty()
        && scheduling
        && let Some(choice) = resolve(when, ctx)
    {
        return Some(choice);
    }
    if !asked {
        return None;
    }
    if refused {
        Some(AppointmentChoice::Decline)
    } else if accepts(tokens) {
        Some(AppointmentChoice::Accept)
    } else {
        None
    }
}

fn slot_indices<'s>(slots: &'s [DateTime<Utc>], keep: impl Fn(&DateTime<chrono_tz::Tz>) -> bool + 's) -> Vec<usize> {
    slots.iter().enumerate().filter(|(_, s)| keep(&local(**s))).map(|(i, _)| i).collect()
}

fn only(indices: &[usize]) -> Option<AppointmentChoice> {
    match indices {
        [one] => Some(AppointmentChoice::Slot(*one)),
        _ => None,
    }
}

/// Turns what the lead said into a choice: an offered slot when it is one, else the date/time.
fn resolve(when: When, ctx: &ExtractCtx) -> Option<AppointmentChoice> {
    let slots = ctx.offered_slots;
    let now = local(ctx.now);
    let in_period = |s: &DateTime<chrono_tz::Tz>| when.period.is_none_or(|p| p.contains(s.time()));
    match (when.day, when.time) {
        (Some(day), Some(time)) => {
            let at = local_to_utc(day.date, time)?;
            if let Some(i) = slots.iter().position(|s| *s == at) {
                return Some(AppointmentChoice::Slot(i));
            }
            let same_weekday_and_time =
                slot_indices(slots, |s| day.weekday_named && s.weekday() == day.date.weekday() && s.time() == time);
            if let Some(&i) = same_weekday_and_time.first() {
                return Some(AppointmentChoice::Slot(i));
            }
            Some(AppointmentChoice::At(at))
        }
        (Some(day), None) => {
            let on_day = slot_indices(slots, |s| s.date_naive() == day.date && in_period(s));
            if let Some(choice) = only(&on_day) {
                return Some(choice);
            }
            if on_day.is_empty() && day.weekday_named {
                let same_weekday = slot_indices(slots, |s| s.weekday() == day.date.weekday() && in_period(s));
                if let Some(choice) = only(&same_weekday) {
                    return Some(choice);
                }
            }
            Some(AppointmentChoice::Day(day.date))
        }
        (None, Some(time)) => {
            if let Some(&i) = slot_indices(slots, |s| s.time() == time).first() {
                return Some(AppointmentChoice::Slot(i));
            }
            let today = now.date_naive();
            let at_today = local_to_utc(today, time)?;
            let at = if at_today > ctx.now { at_today } else { local_to_utc(today + Duration::days(1), time)? };
            Some(AppointmentChoice::At(at))
        }
        (None, None) => only(&slot_indices(slots, in_period)),
    }
}

/// "a fin de año", "para marzo": the days from today to that point, for the timeline.
pub(super) fn days_until_month(tokens: &[Token], today: NaiveDate) -> Option<i64> {
    if find(tokens, "fin|fines|finales de|del ano").is_some() {
        let end_of_year = NaiveDate::from_ymd_opt(today.year(), 12, 31)?;
        return Some((end_of_year - today).num_days());
    }
    (0..tokens.len()).find_map(|i| {
        let end = ["para|en|desde|hacia", "antes de", "a partir|fines|principios|comienzos de"]
            .iter()
            .find_map(|p| match_at(tokens, i, p))?;
        let month = folded(tokens, end).and_then(month_of)?;
        // "en 12 de marzo" is a date, and "mar" alone is too ambiguous here.
        if folded(tokens, end).is_some_and(|w| w.len() <= 4) {
            return None;
        }
        let year = if month >= today.month() { today.year() } else { today.year() + 1 };
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        Some((first - today).num_days().max(0))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tokens::{clauses, tokenize};
    use super::super::{ExtractCtx, Field};
    use super::*;
    use AppointmentChoice::*;

    /// Tuesday 2025-11-11 09:00 in Santiago (summer time, UTC−3).
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 11, 11, 12, 0, 0).unwrap()
    }

    fn santiago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        local_to_utc(NaiveDate::from_ymd_opt(y, m, d).unwrap(), NaiveTime::from_hms_opt(h, min, 0).unwrap()).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn choice_with(
        text: &str,
        now: DateTime<Utc>,
        slots: &[DateTime<Utc>],
        expecting: &[Field],
    ) -> Option<AppointmentChoice> {
        let tokens = tokenize(text);
        let ctx = ExtractCtx { now, expecting, offered_slots: slots };
        appointment(&tokens, &clauses(&tokens), &ctx)
    }

    fn choice(text: &str) -> Option<AppointmentChoice> {
        choice_with(text, now(), &[], &[Field::AppointmentChoice])
    }

    fn offered() -> [DateTime<Utc>; 3] {
        [santiago(2025, 11, 12, 10, 0), santiago(2025, 11, 13, 15, 30), santiago(2025, 11, 15, 11, 0)]
    }

    fn pick(text: &str) -> Option<AppointmentChoice> {
        choice_with(text, now(), &offered(), &[])
    }

    #[test]
    fn santiago_time_converts_with_the_right_offset_in_each_season() {
        // Summer (UTC−3) and winter (UTC−4).
        assert_eq!(santiago(2025, 12, 12, 16, 30), Utc.with_ymd_and_hms(2025, 12, 12, 19, 30, 0).unwrap());
        assert_eq!(santiago(2025, 7, 10, 10, 0), Utc.with_ymd_and_hms(2025, 7, 10, 14, 0, 0).unwrap());
        assert_eq!(santiago(2026, 1, 15, 9, 0), Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap());
        assert_eq!(santiago(2026, 6, 1, 9, 0), Utc.with_ymd_and_hms(2026, 6, 1, 13, 0, 0).unwrap());
        // The clocks go forward at 00:00 on 2025-09-07: 00:30 does not exist and reads as 01:30.
        assert_eq!(santiago(2025, 9, 7, 0, 30), Utc.with_ymd_and_hms(2025, 9, 7, 4, 30, 0).unwrap());
        // Back at 00:00 on 2026-04-05: 23:30 of the 4th happens twice; the first is taken.
        assert_eq!(santiago(2026, 4, 4, 23, 30), Utc.with_ymd_and_hms(2026, 4, 5, 2, 30, 0).unwrap());
    }

    #[test]
    fn relative_days_from_a_tuesday() {
        let cases: &[(&str, Option<AppointmentChoice>)] = &[
            ("hoy", Some(Day(date(2025, 11, 11)))),
            ("mañana", Some(Day(date(2025, 11, 12)))),
            ("pasado mañana", Some(Day(date(2025, 11, 13)))),
            ("el martes", Some(Day(date(2025, 11, 18)))),
            ("este martes", Some(Day(date(2025, 11, 11)))),
            ("el próximo martes", Some(Day(date(2025, 11, 18)))),
            ("el miércoles", Some(Day(date(2025, 11, 12)))),
            ("el sábado", Some(Day(date(2025, 11, 15)))),
            ("el lunes", Some(Day(date(2025, 11, 17)))),
            ("el jueves de la próxima semana", Some(Day(date(2025, 11, 20)))),
            ("la próxima semana el lunes", Some(Day(date(2025, 11, 17)))),
            ("el 12 de diciembre", Some(Day(date(2025, 12, 12)))),
            ("el 5 de enero", Some(Day(date(2026, 1, 5)))),
            ("12/12", Some(Day(date(2025, 12, 12)))),
            ("el 3/1/26", Some(Day(date(2026, 1, 3)))),
            ("el día 20", Some(Day(date(2025, 11, 20)))),
            ("el día 5", Some(Day(date(2025, 12, 5)))),
            ("mañana en la tarde", Some(Day(date(2025, 11, 12)))),
            ("el 10 de noviembre de 2026", Some(Day(date(2026, 11, 10)))),
            ("el 1ro de diciembre", Some(Day(date(2025, 12, 1)))),
            ("el fin de semana", Some(Day(date(2025, 11, 15)))),
            // The week said in its own clause moves the weekday of another.
            ("la próxima semana, el miércoles", Some(Day(date(2025, 11, 19)))),
            ("la semana que viene. El jueves", Some(Day(date(2025, 11, 20)))),
            ("el viernes de la semana que viene", Some(Day(date(2025, 11, 21)))),
            ("el viernes de la semana siguiente", Some(Day(date(2025, 11, 21)))),
            ("mejor otra semana, el miércoles", Some(Day(date(2025, 11, 19)))),
            ("la próxima semana, el 13", None),
            // A date that only some years have is the next year's that has it; one no year has is none.
            ("el 29 de febrero", Some(Day(date(2028, 2, 29)))),
            ("el 29 de febrero de 2028", Some(Day(date(2028, 2, 29)))),
            ("el 31 de junio", None),
            ("el 30 de febrero", None),
        ];
        for &(text, want) in cases {
            assert_eq!(choice(text), want, "{text}");
        }
    }

    #[test]
    fn twelve_at_night_is_the_midnight_that_ends_the_day() {
        assert_eq!(choice("el sábado a las 12 de la noche"), Some(At(santiago(2025, 11, 16, 0, 0))));
        assert_eq!(choice("a las 12 de la noche"), Some(At(santiago(2025, 11, 12, 0, 0))));
        assert_eq!(choice("el 20 de noviembre a las 12 de la noche"), Some(At(santiago(2025, 11, 21, 0, 0))));
        // Noon stays noon.
        assert_eq!(choice("el sábado a las 12"), Some(At(santiago(2025, 11, 15, 12, 0))));
        assert_eq!(choice("el sábado a las 12 del día"), Some(At(santiago(2025, 11, 15, 12, 0))));
        assert_eq!(choice("el sábado a las 12 de la tarde"), Some(At(santiago(2025, 11, 15, 12, 0))));
        // "11 de la noche" is 23:00 of that day.
        assert_eq!(choice("el sábado a las 11 de la noche"), Some(At(santiago(2025, 11, 15, 23, 0))));
    }

    #[test]
    fn dates_with_times_are_concrete_instants() {
        let cases: &[(&str, DateTime<Utc>)] = &[
            ("el martes a las 10", santiago(2025, 11, 18, 10, 0)),
            ("mañana 15:00", santiago(2025, 11, 12, 15, 0)),
            ("mañana a las 15:00 hrs", santiago(2025, 11, 12, 15, 0)),
            ("el 12 de diciembre a las 16:30", santiago(2025, 12, 12, 16, 30)),
            ("el viernes a las 3 de la tarde", santiago(2025, 11, 14, 15, 0)),
            ("el viernes a las 3", santiago(2025, 11, 14, 15, 0)),
            ("el viernes a las 10 am", santiago(2025, 11, 14, 10, 0)),
            ("el viernes 10am", santiago(2025, 11, 14, 10, 0)),
            ("el jueves 3pm", santiago(2025, 11, 13, 15, 0)),
            ("el jueves a las 15 hrs", santiago(2025, 11, 13, 15, 0)),
            ("el jueves 15hrs", santiago(2025, 11, 13, 15, 0)),
            ("el jueves a mediodía", santiago(2025, 11, 13, 12, 0)),
            ("el jueves a la una y media", santiago(2025, 11, 13, 13, 30)),
            ("el jueves a las diez", santiago(2025, 11, 13, 10, 0)),
            ("el jueves a las 10 y media", santiago(2025, 11, 13, 10, 30)),
            ("A las 10 del sábado me viene bien", santiago(2025, 11, 15, 10, 0)),
            ("pasado mañana a las 9 de la mañana", santiago(2025, 11, 13, 9, 0)),
            ("el sábado a las 8 de la noche", santiago(2025, 11, 15, 20, 0)),
            ("12/12 a las 11:45", santiago(2025, 12, 12, 11, 45)),
            ("hoy a las 18:00", santiago(2025, 11, 11, 18, 0)),
            ("el 10 de julio a las 10", santiago(2026, 7, 10, 10, 0)),
            ("el 13 a las 10", santiago(2025, 11, 13, 10, 0)),
            ("el 5 a las 16:00", santiago(2025, 12, 5, 16, 0)),
            ("dale, el 1ro de diciembre a las 12:30", santiago(2025, 12, 1, 12, 30)),
        ];
        for &(text, want) in cases {
            assert_eq!(choice(text), Some(At(want)), "{text}");
        }
    }

    #[test]
    fn a_weekday_with_its_date_is_that_date() {
        let cases: &[(&str, Option<AppointmentChoice>)] = &[
            ("el jueves 20", Some(Day(date(2025, 11, 20)))),
            ("el jueves 20 a las 10", Some(At(santiago(2025, 11, 20, 10, 0)))),
            ("el jueves 27 de noviembre", Some(Day(date(2025, 11, 27)))),
            ("el lunes 1 de diciembre a las 10", Some(At(santiago(2025, 12, 1, 10, 0)))),
            ("el martes 2/12", Some(Day(date(2025, 12, 2)))),
            ("el próximo viernes 21", Some(Day(date(2025, 11, 21)))),
            // A date that is not that weekday leaves the weekday's meaning, as before.
            ("el jueves 28 de noviembre", Some(Day(date(2025, 11, 13)))),
            // A time after the weekday is a time.
            ("el jueves 15:00", Some(At(santiago(2025, 11, 13, 15, 0)))),
            ("el jueves 20 hrs", Some(At(santiago(2025, 11, 13, 20, 0)))),
        ];
        for &(text, want) in cases {
            assert_eq!(choice(text), want, "{text}");
        }
    }

    #[test]
    fn minutes_after_a_dot_are_minutes() {
        assert_eq!(choice("mañana a las 10.30"), Some(At(santiago(2025, 11, 12, 10, 30))));
        assert_eq!(choice("el jueves a las 3.15"), Some(At(santiago(2025, 11, 13, 15, 15))));
        assert_eq!(choice("mañana 16.45 hrs"), Some(At(santiago(2025, 11, 12, 16, 45))));
        // Without "a las" or a suffix it is a number, not a time.
        assert_eq!(choice("mañana 10.30"), Some(Day(date(2025, 11, 12))));
        assert_eq!(choice("mañana a las 10.300"), Some(Day(date(2025, 11, 12))));
    }

    #[test]
    fn minutes_past_59_are_no_time() {
        assert_eq!(choice("mañana a las 10:60"), Some(Day(date(2025, 11, 12))));
        assert_eq!(choice("mañana a las 10:75 hrs"), Some(Day(date(2025, 11, 12))));
        assert_eq!(choice("mañana a las 10.60"), Some(Day(date(2025, 11, 12))));
        assert_eq!(choice("mañana a las 10:59"), Some(At(santiago(2025, 11, 12, 10, 59))));
    }

    #[test]
    fn another_week_with_a_day_is_a_proposal_and_without_one_a_refusal() {
        assert_eq!(pick("el viernes de la otra semana"), Some(Day(date(2025, 11, 21))));
        assert_eq!(pick("la otra semana el lunes a las 10"), Some(At(santiago(2025, 11, 17, 10, 0))));
        assert_eq!(pick("otro día a las 11"), Some(Slot(2)));
        assert_eq!(pick("mejor otra semana"), Some(Decline));
        assert_eq!(pick("¿tienen otro horario?"), Some(Decline));
        assert_eq!(pick("no puedo el jueves de la otra semana"), Some(Decline));
    }

    #[test]
    fn a_winter_date_is_four_hours_behind_utc() {
        let winter_now = Utc.with_ymd_and_hms(2025, 6, 2, 15, 0, 0).unwrap();
        let got = choice_with("el 10 de julio a las 10", winter_now, &[], &[Field::AppointmentChoice]);
        assert_eq!(got, Some(At(Utc.with_ymd_and_hms(2025, 7, 10, 14, 0, 0).unwrap())));
        let got = choice_with("mañana a las 9", winter_now, &[], &[Field::AppointmentChoice]);
        assert_eq!(got, Some(At(Utc.with_ymd_and_hms(2025, 6, 3, 13, 0, 0).unwrap())));
    }

    #[test]
    fn a_time_without_a_day_is_its_next_occurrence() {
        // 09:00 now: 10:00 is still today, 08:30 is tomorrow.
        assert_eq!(choice("a las 10"), Some(At(santiago(2025, 11, 11, 10, 0))));
        assert_eq!(choice("a las 8:30 am"), Some(At(santiago(2025, 11, 12, 8, 30))));
        assert_eq!(choice("17:00"), Some(At(santiago(2025, 11, 11, 17, 0))));
    }

    #[test]
    fn ordinals_pick_an_offered_slot() {
        let cases: &[(&str, Option<AppointmentChoice>)] = &[
            ("la primera", Some(Slot(0))),
            ("el primero", Some(Slot(0))),
            ("La primera opción", Some(Slot(0))),
            ("primera", Some(Slot(0))),
            ("la segunda opción", Some(Slot(1))),
            ("me quedo con la segunda", Some(Slot(1))),
            ("el segundo horario", Some(Slot(1))),
            ("la tercera", Some(Slot(2))),
            ("la última", Some(Slot(2))),
            ("la penúltima", Some(Slot(1))),
            ("el 2", Some(Slot(1))),
            ("la 2 porfa", Some(Slot(1))),
            ("opción 3", Some(Slot(2))),
            ("opcion numero 1", Some(Slot(0))),
            ("alternativa dos", Some(Slot(1))),
            ("3", Some(Slot(2))),
            ("2.", Some(Slot(1))),
            ("dos", Some(Slot(1))),
            ("la 1ra", Some(Slot(0))),
            ("2da opción", Some(Slot(1))),
            ("opción 4", None),
            ("la cuarta", None),
        ];
        for &(text, want) in cases {
            assert_eq!(pick(text), want, "{text}");
        }
    }

    #[test]
    fn a_date_or_time_that_is_an_offered_slot_is_that_slot() {
        let cases: &[(&str, Option<AppointmentChoice>)] = &[
            ("el jueves a las 15:30", Some(Slot(1))),
            ("el miércoles a las 10", Some(Slot(0))),
            ("mañana a las 10", Some(Slot(0))),
            ("el sábado", Some(Slot(2))),
            ("el jueves", Some(Slot(1))),
            ("a las 11", Some(Slot(2))),
            ("la de las 15:30", Some(Slot(1))),
            ("el 15 de noviembre", Some(Slot(2))),
            ("el viernes", Some(Day(date(2025, 11, 14)))),
            ("el jueves a las 10", Some(At(santiago(2025, 11, 13, 10, 0)))),
        ];
        for &(text, want) in cases {
            assert_eq!(pick(text), want, "{text}");
        }
    }

    #[test]
    fn a_weekday_matches_a_slot_offered_on_that_weekday_of_a_later_week() {
        let slots = [santiago(2025, 11, 20, 10, 0), santiago(2025, 11, 21, 16, 0)];
        assert_eq!(choice_with("el jueves a las 10", now(), &slots, &[]), Some(Slot(0)));
        assert_eq!(choice_with("el viernes", now(), &slots, &[]), Some(Slot(1)));
    }

    #[test]
    fn a_period_narrows_the_slots_of_a_day() {
        let slots = [santiago(2025, 11, 12, 10, 0), santiago(2025, 11, 12, 16, 0)];
        assert_eq!(choice_with("mañana en la tarde", now(), &slots, &[]), Some(Slot(1)));
        assert_eq!(choice_with("mañana en la mañana", now(), &slots, &[]), Some(Slot(0)));
        assert_eq!(choice_with("mañana", now(), &slots, &[]), Some(Day(date(2025, 11, 12))));
        assert_eq!(choice_with("en la tarde", now(), &slots, &[]), Some(Slot(1)));
    }

    #[test]
    fn yes_after_an_offer_accepts_and_a_refusal_declines() {
        let cases: &[(&str, Option<AppointmentChoice>)] = &[
            ("sí", Some(Accept)),
            ("Sí, perfecto", Some(Accept)),
            ("dale", Some(Accept)),
            ("ok", Some(Accept)),
            ("perfecto", Some(Accept)),
            ("me sirve", Some(Accept)),
            ("ya, me parece bien", Some(Accept)),
            ("de acuerdo", Some(Accept)),
            ("el que sea", Some(Accept)),
            ("cualquiera", Some(Accept)),
            ("ninguno me sirve", Some(Decline)),
            ("ninguna", Some(Decline)),
            ("no puedo", Some(Decline)),
            ("no me acomoda ninguno", Some(Decline)),
            ("No puedo la próxima semana, ¿tienen para la siguiente?", Some(Decline)),
            ("no puedo el martes, pero el jueves sí", Some(Slot(1))),
            ("mañana tengo que trabajar, pero el sábado puedo", Some(Slot(2))),
            ("el jueves voy a estar ocupado", Some(Decline)),
            ("gracias", None),
        ];
        for &(text, want) in cases {
            assert_eq!(pick(text), want, "{text}");
        }
    }

    #[test]
    fn without_an_offer_yes_and_ordinals_mean_nothing() {
        let none = |text: &str| choice_with(text, now(), &[], &[]);
        assert_eq!(none("sí"), None);
        assert_eq!(none("la primera"), None);
        assert_eq!(none("no puedo"), None);
        assert_eq!(none("mañana le mando los papeles"), None);
        assert_eq!(none("¿Puedo ir el sábado?"), Some(Day(date(2025, 11, 15))));
        assert_eq!(none("mañana a las 10"), Some(At(santiago(2025, 11, 12, 10, 0))));
        assert_eq!(none("en 24 horas"), None);
        assert_eq!(none("me demoro 2 horas en llegar"), None);
        assert_eq!(none("me interesan las 2 casas"), None);
        assert_eq!(none("como a las 11 puedo ir"), Some(At(santiago(2025, 11, 11, 11, 0))));
        assert_eq!(none("tipo las 11 me sirve"), Some(At(santiago(2025, 11, 11, 11, 0))));
        assert_eq!(none("Quiero visitar el proyecto esta semana"), None);
        assert_eq!(none("nos juntamos mañana?"), Some(Day(date(2025, 11, 12))));
        assert_eq!(none("el 18 de septiembre es feriado"), None);
    }

    #[test]
    fn dates_and_ordinals_do_not_collide() {
        assert_eq!(pick("el 2 de diciembre"), Some(Day(date(2025, 12, 2))));
        assert_eq!(pick("la primera vez que compro"), None);
        assert_eq!(pick("el 2 a las 10"), Some(At(santiago(2025, 12, 2, 10, 0))));
    }

    #[test]
    fn months_ahead_for_the_timeline() {
        let today = date(2025, 11, 11);
        let days = |text: &str| days_until_month(&tokenize(text), today);
        assert_eq!(days("a fin de año"), Some(50));
        assert_eq!(days("para marzo"), Some(110));
        assert_eq!(days("en diciembre"), Some(20));
        assert_eq!(days("en noviembre"), Some(0));
        assert_eq!(days("el 12 de marzo"), None);
        assert_eq!(days("en la mañana"), None);
    }
}
