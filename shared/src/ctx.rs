//! `Ctx`: who is calling. Passed first to every repository and service call, so tenant data can only
//! be reached through a scope derived from it.

use std::sync::Arc;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Superadmin,
    Admin,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Superadmin => "SUPERADMIN",
            Role::Admin => "ADMIN",
            Role::Agent => "AGENT",
        }
    }

    /// Parses a stored or claimed role, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SUPERADMIN" => Some(Role::Superadmin),
            "ADMIN" => Some(Role::Admin),
            "AGENT" => Some(Role::Agent),
            _ => None,
        }
    }
}

/// Where a request came from, for the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// The caller. `broker_id` is `None` only for SUPERADMIN (and the system context).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctx {
    pub user_id: Option<i64>,
    pub broker_id: Option<i64>,
    pub role: Role,
    pub origin: Option<Arc<Origin>>,
}

/// Which leads a caller may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeadScope {
    /// Every broker (SUPERADMIN, system), optionally narrowed to one broker.
    All { broker_id: Option<i64> },
    /// One broker's leads (ADMIN).
    Broker(i64),
    /// One broker's leads assigned to one user (AGENT).
    Assigned { broker_id: i64, user_id: i64 },
}

impl Ctx {
    pub fn user(user_id: i64, broker_id: Option<i64>, role: Role) -> Self {
        Self { user_id: Some(user_id), broker_id, role, origin: None }
    }

    /// Work the system does for one broker (jobs, sweeps): no user, an ADMIN's reach in that broker.
    pub fn broker_system(broker_id: i64) -> Self {
        Self { user_id: None, broker_id: Some(broker_id), role: Role::Admin, origin: None }
    }

    /// The same caller, remembering where the request came from.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(Arc::new(origin));
        self
    }

    pub fn is_superadmin(&self) -> bool {
        self.role == Role::Superadmin
    }

    /// ADMIN or SUPERADMIN, else 403.
    pub fn require_admin(&self) -> Result<()> {
        match self.role {
            Role::Superadmin | Role::Admin => Ok(()),
            Role::Agent => Err(Error::forbidden("This action requires the ADMIN role")),
        }
    }

    /// SUPERADMIN, else 403.
    pub fn require_superadmin(&self) -> Result<()> {
        if self.is_superadmin() { Ok(()) } else { Err(Error::forbidden("This action requires the SUPERADMIN role")) }
    }

    /// The caller's own broker; SUPERADMIN without one gets a 422 asking for `broker_id`.
    pub fn own_broker(&self) -> Result<i64> {
        self.broker_id.ok_or_else(|| Error::invalid_body("broker_id", "broker_id is required for platform users"))
    }

    /// The broker a write acts on: the caller's own, or for SUPERADMIN the one it names (required).
    pub fn target_broker(&self, requested: Option<i64>) -> Result<i64> {
        match (self.role, requested) {
            (Role::Superadmin, Some(id)) => Ok(id),
            (Role::Superadmin, None) => self.own_broker(),
            (_, Some(id)) if Some(id) != self.broker_id => Err(Error::NotFound("Broker")),
            _ => self.own_broker(),
        }
    }

    /// The lead scope of this caller; `broker_filter` narrows SUPERADMIN to one broker and must be the
    /// caller's own broker for everybody else.
    pub fn lead_scope(&self, broker_filter: Option<i64>) -> Result<LeadScope> {
        match (self.role, self.broker_id, self.user_id) {
            (Role::Superadmin, _, _) => Ok(LeadScope::All { broker_id: broker_filter }),
            (_, Some(b), _) if broker_filter.is_some_and(|f| f != b) => Err(Error::NotFound("Broker")),
            (Role::Admin, Some(b), _) => Ok(LeadScope::Broker(b)),
            (Role::Agent, Some(b), Some(u)) => Ok(LeadScope::Assigned { broker_id: b, user_id: u }),
            _ => Err(Error::forbidden("No broker is associated with this account")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_reach_only_their_assigned_leads() {
        let ctx = Ctx::user(5, Some(2), Role::Agent);
        assert_eq!(ctx.lead_scope(None).unwrap(), LeadScope::Assigned { broker_id: 2, user_id: 5 });
        assert!(ctx.require_admin().is_err());
    }

    #[test]
    fn another_brokers_filter_is_not_found() {
        let ctx = Ctx::user(1, Some(2), Role::Admin);
        assert!(matches!(ctx.lead_scope(Some(3)), Err(Error::NotFound(_))));
        assert_eq!(ctx.lead_scope(Some(2)).unwrap(), LeadScope::Broker(2));
    }

    #[test]
    fn superadmin_scope_is_explicit() {
        let ctx = Ctx::user(1, None, Role::Superadmin);
        assert_eq!(ctx.lead_scope(None).unwrap(), LeadScope::All { broker_id: None });
        assert_eq!(ctx.target_broker(Some(9)).unwrap(), 9);
        assert!(ctx.target_broker(None).is_err());
    }
}
