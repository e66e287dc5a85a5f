//! Appointments: viewings and meetings of a lead with an agent, the broker's availability, the
//! broker's and agents' Google Calendars, and reminders.
//!
//! - [`model`]: parsed types (`AppointmentType`, `AppointmentStatus`, `NewAppointment`, …) and the
//!   small booking rules; [`repo`]: tenant-scoped queries; [`service`]: the use cases, including
//!   [`service::book`] and [`service::next_free_slots`] for the conversation engine.
//! - [`availability`]: the pure computation of free slots (windows − busy time, DST-aware).
//! - [`schedule`]: availability windows and blocks (`/api/broker/calendar/…`).
//! - [`calendar`]: Google connections, the broker's and each agent's own (OAuth, tokens,
//!   free/busy); [`sync`]: the `calendar_sync` job (to the agent's calendar, else the broker's);
//!   [`reminders`]: the 24 h / 1 h reminders (`notification` job).

pub mod availability;
pub mod calendar;
pub mod model;
pub mod reminders;
pub mod repo;
pub mod schedule;
pub mod service;
pub mod sync;

pub use availability::Slot;
pub use model::{Appointment, AppointmentStatus, AppointmentType, NewAppointment};
