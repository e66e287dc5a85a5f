//! Free appointment slots, as a pure function of weekly windows, busy intervals, the agents who could
//! take the appointment and the clock. No I/O: the service loads the inputs and calls [`free_slots`].
//!
//! Windows are wall-clock times in America/Santiago, so a window "09:00–18:00" is 12:00–21:00 UTC in
//! summer (UTC−3) and 13:00–22:00 UTC in winter (UTC−4). Chile changes its clocks at local midnight,
//! so on those days a few wall-clock times do not exist (September) or exist twice (April): a
//! candidate start that does not exist is skipped, one that exists twice takes the first instant.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::leads::model::TZ;

/// A free appointment slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// In America/Santiago (its RFC 3339 form carries the `-03:00` / `-04:00` offset).
    pub start: DateTime<Tz>,
    pub end: DateTime<Tz>,
    pub duration_minutes: u32,
}

impl Slot {
    /// The local calendar day of the start.
    pub fn date(&self) -> NaiveDate {
        self.start.date_naive()
    }

    /// The local start time, `HH:MM`.
    pub fn time(&self) -> String {
        self.start.format("%H:%M").to_string()
    }
}

/// A weekly window in which appointments can start and end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// 0 = Monday … 6 = Sunday.
    pub day_of_week: u32,
    pub start: NaiveTime,
    pub end: NaiveTime,
    /// Candidate starts are `start`, `start + step`, … (the slot's `slot_duration_minutes`).
    pub step_minutes: u32,
    pub valid_from: Option<NaiveDate>,
    pub valid_until: Option<NaiveDate>,
    /// `None`: the window is every agent's.
    pub agent_id: Option<i64>,
}

impl Window {
    fn applies_on(&self, date: NaiveDate) -> bool {
        date.weekday().num_days_from_monday() == self.day_of_week
            && self.valid_from.is_none_or(|f| f <= date)
            && self.valid_until.is_none_or(|u| date <= u)
    }

    fn applies_to(&self, agent: Option<i64>) -> bool {
        self.agent_id.is_none() || self.agent_id == agent
    }
}

/// The hours used when a broker has configured none (SPEC §2): Monday–Friday 09:00–18:00 and
/// Saturday 09:00–13:00, hourly.
pub fn default_windows() -> Vec<Window> {
    let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
    let day = |d, end| Window {
        day_of_week: d,
        start: at(9),
        end: at(end),
        step_minutes: 60,
        valid_from: None,
        valid_until: None,
        agent_id: None,
    };
    (0..5).map(|d| day(d, 18)).chain([day(5, 13)]).collect()
}

/// Time somebody cannot be booked: an appointment, a block, a Google Calendar busy period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `None`: nobody can be booked (a broker-wide block, the broker's Google Calendar).
    pub agent_id: Option<i64>,
}

/// Who could take the appointment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agents {
    /// This agent.
    One(i64),
    /// Any of these: a slot is free when at least one of them is. An empty list stands for a broker
    /// without agents, where only broker-wide windows and busy times count.
    AnyOf(Vec<i64>),
}

/// What is asked for: local days `from..=to`, a duration, and the current instant (nothing at or
/// before it is offered).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub duration_minutes: u32,
    pub now: DateTime<Utc>,
    pub agents: &'a Agents,
}

/// The instant a Santiago wall-clock time denotes: the first of two on the April change, `None`
/// for a time skipped in September.
pub fn local_instant(date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    TZ.from_local_datetime(&date.and_time(time)).earliest().map(|t| t.with_timezone(&Utc))
}

/// The end of a window: like [`local_instant`], but a skipped time means the instant clocks
/// jumped to.
fn window_end(date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    local_instant(date, time).or_else(|| {
        let (later, wrapped) = time.overflowing_add_signed(Duration::hours(1));
        if wrapped == 0 { local_instant(date, later) } else { local_instant(date.succ_opt()?, later) }
    })
}

/// `[start, end)`.
type Interval = (DateTime<Utc>, DateTime<Utc>);

/// Every free slot in the request, earliest first, one per start instant.
pub fn free_slots(windows: &[Window], busy: &[Busy], req: &Request<'_>) -> Vec<Slot> {
    let agents: Vec<Option<i64>> = match req.agents {
        Agents::One(a) => vec![Some(*a)],
        Agents::AnyOf(list) if list.is_empty() => vec![None],
        Agents::AnyOf(list) => list.iter().copied().map(Some).collect(),
    };
    let duration = Duration::minutes(i64::from(req.duration_minutes));
    // Each agent's busy times (its own and everybody's), gathered once rather than filtered out of
    // the whole broker's list for every candidate start.
    let busy_of: BTreeMap<Option<i64>, Vec<Interval>> = agents
        .iter()
        .map(|&a| {
            let own = busy.iter().filter(|b| b.agent_id.is_none() || b.agent_id == a).map(|b| (b.start, b.end));
            (a, own.collect())
        })
        .collect();
    let is_free = |agent: Option<i64>, start: DateTime<Utc>, end: DateTime<Utc>| {
        busy_of.get(&agent).is_none_or(|list| !list.iter().any(|&(s, e)| s < end && e > start))
    };
    let mut found: BTreeMap<DateTime<Utc>, DateTime<Utc>> = BTreeMap::new();
    let mut date = req.from;
    while date <= req.to {
        for w in windows.iter().filter(|w| w.applies_on(date)) {
            let Some(limit) = window_end(date, w.end) else { continue };
            let step = Duration::minutes(i64::from(w.step_minutes.max(1)));
            let mut t = w.start;
            loop {
                if let Some(start) = local_instant(date, t) {
                    let end = start + duration;
                    if end > limit {
                        break;
                    }
                    if start > req.now
                        && !found.contains_key(&start)
                        && agents.iter().any(|a| w.applies_to(*a) && is_free(*a, start, end))
                    {
                        found.insert(start, end);
                    }
                }
                let (next, wrapped) = t.overflowing_add_signed(step);
                if wrapped != 0 || next >= w.end {
                    break;
                }
                t = next;
            }
        }
        let Some(next) = date.succ_opt() else { break };
        date = next;
    }
    found
        .into_iter()
        .map(|(start, end)| Slot {
            start: start.with_timezone(&TZ),
            end: end.with_timezone(&TZ),
            duration_minutes: req.duration_minutes,
        })
        .collect()
}

/// `busy` minus the parts covered by `ours` (both lists of `[start, end)`). Used on the broker's
/// Google free/busy answer: the events we created for our own appointments show there too, and they
/// must block only their agent, not the whole broker.
pub fn subtract(
    busy: &[(DateTime<Utc>, DateTime<Utc>)],
    ours: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut ours: Vec<_> = ours.iter().copied().filter(|(s, e)| s < e).collect();
    ours.sort();
    let mut out = Vec::new();
    for &(start, end) in busy {
        let mut cursor = start;
        for &(s, e) in &ours {
            if e <= cursor || s >= end {
                continue;
            }
            if s > cursor {
                out.push((cursor, s));
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            out.push((cursor, end));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Offset;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn long_ago() -> DateTime<Utc> {
        utc("2000-01-01T00:00:00Z")
    }

    fn request(from: NaiveDate, to: NaiveDate, agents: &Agents) -> Request<'_> {
        Request { from, to, duration_minutes: 60, now: long_ago(), agents }
    }

    fn starts(slots: &[Slot]) -> Vec<String> {
        slots.iter().map(|s| s.start.to_rfc3339()).collect()
    }

    /// The days in `year` on which Santiago's UTC offset changes, found by asking chrono-tz.
    fn offset_changes(year: i32) -> Vec<(NaiveDate, i32, i32)> {
        let offset = |date: NaiveDate| {
            TZ.from_utc_datetime(&date.and_hms_opt(12, 0, 0).unwrap()).offset().fix().local_minus_utc() / 3600
        };
        let mut out = Vec::new();
        let mut date = d(year, 1, 1);
        while date.year() == year {
            let next = date.succ_opt().unwrap();
            if offset(date) != offset(next) {
                out.push((next, offset(date), offset(next)));
            }
            date = next;
        }
        out
    }

    #[test]
    fn chile_changes_clocks_on_the_first_sundays_of_april_and_september() {
        // Not assumed: read from the time-zone database.
        assert_eq!(offset_changes(2026), vec![(d(2026, 4, 5), -3, -4), (d(2026, 9, 6), -4, -3)]);
        assert_eq!(offset_changes(2027), vec![(d(2027, 4, 4), -3, -4), (d(2027, 9, 5), -4, -3)]);
        for (day, _, _) in offset_changes(2026).into_iter().chain(offset_changes(2027)) {
            assert_eq!(day.weekday(), chrono::Weekday::Sun);
        }
    }

    #[test]
    fn default_hours_are_weekdays_nine_to_six_and_saturday_morning() {
        let agents = Agents::One(1);
        // Monday 2026-03-09 … Sunday 2026-03-15 (summer, UTC−3).
        let slots = free_slots(&default_windows(), &[], &request(d(2026, 3, 9), d(2026, 3, 15), &agents));
        let per_day = |day: u32| slots.iter().filter(|s| s.date() == d(2026, 3, day)).count();
        assert_eq!([9, 10, 11, 12, 13, 14, 15].map(per_day), [9, 9, 9, 9, 9, 4, 0]);
        assert_eq!(slots[0].start.to_rfc3339(), "2026-03-09T09:00:00-03:00");
        assert_eq!(slots[8].time(), "17:00");
        assert_eq!(slots[8].end.to_rfc3339(), "2026-03-09T18:00:00-03:00");
        let saturday: Vec<String> = slots.iter().filter(|s| s.date() == d(2026, 3, 14)).map(Slot::time).collect();
        assert_eq!(saturday, ["09:00", "10:00", "11:00", "12:00"]);
    }

    #[test]
    fn summer_and_winter_slots_carry_their_offsets() {
        let agents = Agents::One(1);
        let summer = free_slots(&default_windows(), &[], &request(d(2027, 1, 12), d(2027, 1, 12), &agents));
        assert_eq!(summer[0].start.to_rfc3339(), "2027-01-12T09:00:00-03:00");
        assert_eq!(summer[0].start.with_timezone(&Utc).to_rfc3339(), "2027-01-12T12:00:00+00:00");
        let winter = free_slots(&default_windows(), &[], &request(d(2026, 7, 14), d(2026, 7, 14), &agents));
        assert_eq!(winter[0].start.to_rfc3339(), "2026-07-14T09:00:00-04:00");
        assert_eq!(winter[0].start.with_timezone(&Utc).to_rfc3339(), "2026-07-14T13:00:00+00:00");
    }

    #[test]
    fn the_change_days_keep_wall_clock_hours_in_the_new_offset() {
        let agents = Agents::One(1);
        // Sunday windows, so the change days themselves have slots.
        let sunday = |start, end| Window {
            day_of_week: 6,
            start,
            end,
            step_minutes: 60,
            valid_from: None,
            valid_until: None,
            agent_id: None,
        };
        for (year, (april, _, _), (september, _, _)) in
            [2026, 2027].map(|y| (y, offset_changes(y)[0], offset_changes(y)[1]))
        {
            let windows = [sunday(hm(0, 0), hm(3, 0)), sunday(hm(9, 0), hm(11, 0))];
            // April: clocks go back at 00:00 to 23:00 of Saturday; the Sunday is all UTC−4.
            let slots = free_slots(&windows, &[], &request(april, april, &agents));
            assert_eq!(
                starts(&slots),
                [0, 1, 2, 9, 10].map(|h| format!("{april}T{h:02}:00:00-04:00")),
                "April change of {year}"
            );
            // September: 00:00–00:59 does not exist; the day starts at 01:00 UTC−3.
            let slots = free_slots(&windows, &[], &request(september, september, &agents));
            assert_eq!(
                starts(&slots),
                [1, 2, 9, 10].map(|h| format!("{september}T{h:02}:00:00-03:00")),
                "September change of {year}"
            );
            assert_eq!(slots[0].start.with_timezone(&Utc).to_rfc3339(), format!("{september}T04:00:00+00:00"));
        }
    }

    #[test]
    fn the_saturday_before_the_april_change_has_its_late_hour_once() {
        let agents = Agents::One(1);
        let saturday = Window {
            day_of_week: 5,
            start: hm(22, 0),
            end: hm(23, 59),
            step_minutes: 30,
            valid_from: None,
            valid_until: None,
            agent_id: None,
        };
        let slots = free_slots(
            &[saturday],
            &[],
            &Request { duration_minutes: 30, ..request(d(2026, 4, 4), d(2026, 4, 4), &agents) },
        );
        assert_eq!(
            starts(&slots),
            ["2026-04-04T22:00:00-03:00", "2026-04-04T22:30:00-03:00", "2026-04-04T23:00:00-03:00"]
        );
    }

    #[test]
    fn nothing_at_or_before_now_is_offered() {
        let agents = Agents::One(1);
        let now = utc("2026-03-09T14:30:00Z"); // 11:30 in Santiago
        let slots =
            free_slots(&default_windows(), &[], &Request { now, ..request(d(2026, 3, 9), d(2026, 3, 9), &agents) });
        assert_eq!(slots.first().map(Slot::time).as_deref(), Some("12:00"));
        let exactly = utc("2026-03-09T15:00:00Z");
        let slots = free_slots(
            &default_windows(),
            &[],
            &Request { now: exactly, ..request(d(2026, 3, 9), d(2026, 3, 9), &agents) },
        );
        assert_eq!(slots.first().map(Slot::time).as_deref(), Some("13:00"));
    }

    #[test]
    fn busy_times_remove_overlapping_candidates_only() {
        let agents = Agents::One(7);
        let busy = [
            // 10:00–11:00 of agent 7: exactly one slot.
            Busy { start: utc("2026-03-09T13:00:00Z"), end: utc("2026-03-09T14:00:00Z"), agent_id: Some(7) },
            // 12:30–12:45 for everybody: touches 12:00 and nothing else.
            Busy { start: utc("2026-03-09T15:30:00Z"), end: utc("2026-03-09T15:45:00Z"), agent_id: None },
            // Another agent's appointment does not matter.
            Busy { start: utc("2026-03-09T17:00:00Z"), end: utc("2026-03-09T18:00:00Z"), agent_id: Some(8) },
        ];
        let slots = free_slots(&default_windows(), &busy, &request(d(2026, 3, 9), d(2026, 3, 9), &agents));
        let times: Vec<String> = slots.iter().map(Slot::time).collect();
        assert_eq!(times, ["09:00", "11:00", "13:00", "14:00", "15:00", "16:00", "17:00"]);
    }

    #[test]
    fn without_an_agent_a_slot_is_free_while_one_agent_is() {
        let agents = Agents::AnyOf(vec![1, 2]);
        let ten = |agent| Busy {
            start: utc("2026-03-09T13:00:00Z"),
            end: utc("2026-03-09T14:00:00Z"),
            agent_id: Some(agent),
        };
        let day = request(d(2026, 3, 9), d(2026, 3, 9), &agents);
        let one_busy = free_slots(&default_windows(), &[ten(1)], &day);
        assert!(one_busy.iter().any(|s| s.time() == "10:00"));
        let both_busy = free_slots(&default_windows(), &[ten(1), ten(2)], &day);
        assert!(!both_busy.iter().any(|s| s.time() == "10:00"));
        assert_eq!(both_busy.len(), 8);
        // A broker without agents: only broker-wide busy time counts.
        let nobody = Agents::AnyOf(vec![]);
        let slots = free_slots(&default_windows(), &[ten(1)], &request(d(2026, 3, 9), d(2026, 3, 9), &nobody));
        assert_eq!(slots.len(), 9);
    }

    #[test]
    fn configured_windows_step_validity_and_agent() {
        let agents = Agents::One(3);
        let base = Window {
            day_of_week: 1, // Tuesday
            start: hm(10, 0),
            end: hm(12, 0),
            step_minutes: 30,
            valid_from: Some(d(2026, 3, 10)),
            valid_until: Some(d(2026, 3, 17)),
            agent_id: None,
        };
        let others = Window { agent_id: Some(4), start: hm(15, 0), end: hm(16, 0), ..base.clone() };
        let slots = free_slots(&[base, others], &[], &request(d(2026, 3, 1), d(2026, 3, 31), &agents));
        let got: Vec<String> = slots.iter().map(|s| format!("{} {}", s.date(), s.time())).collect();
        assert_eq!(
            got,
            [
                "2026-03-10 10:00",
                "2026-03-10 10:30",
                "2026-03-10 11:00",
                "2026-03-17 10:00",
                "2026-03-17 10:30",
                "2026-03-17 11:00"
            ]
        );
    }

    #[test]
    fn overlapping_windows_give_each_start_once() {
        let agents = Agents::One(1);
        let mut windows = default_windows();
        windows.extend(default_windows());
        let slots = free_slots(&windows, &[], &request(d(2026, 3, 9), d(2026, 3, 9), &agents));
        assert_eq!(slots.len(), 9);
    }

    #[test]
    fn a_long_duration_must_fit_in_the_window() {
        let agents = Agents::One(1);
        let slots = free_slots(
            &default_windows(),
            &[],
            &Request { duration_minutes: 240, ..request(d(2026, 3, 14), d(2026, 3, 14), &agents) },
        );
        assert_eq!(slots.iter().map(Slot::time).collect::<Vec<_>>(), ["09:00"]);
    }

    #[test]
    fn our_own_events_are_taken_out_of_googles_busy_times() {
        let t = |h: u32| utc(&format!("2026-03-09T{h:02}:00:00Z"));
        // Google: busy 10–14 (our appointment 11–12 inside an external 10–14 block) and 15–16 (ours).
        let busy = [(t(10), t(14)), (t(15), t(16))];
        let ours = [(t(11), t(12)), (t(15), t(16))];
        assert_eq!(subtract(&busy, &ours), vec![(t(10), t(11)), (t(12), t(14))]);
        assert_eq!(subtract(&busy, &[]), busy.to_vec());
        assert_eq!(subtract(&[(t(10), t(12))], &[(t(9), t(13))]), vec![]);
    }
}
