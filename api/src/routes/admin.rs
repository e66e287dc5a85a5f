//! `/api/v1/admin`: the audit log.

use chrono::{DateTime, Utc};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use shared::audit;

use super::ApiTags;
use crate::error::ApiResult;
use crate::security::Auth;
use crate::state::AppState;
use poem::web::Data;

pub struct AdminApi;

#[derive(Object)]
pub struct AuditOut {
    pub id: i64,
    pub user_id: Option<i64>,
    pub broker_id: Option<i64>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<i64>,
    pub changes: Value,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct AuditPage {
    pub data: Vec<AuditOut>,
    pub total: u64,
    pub page: u64,
    pub limit: u64,
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// The audit log (SUPERADMIN: all or `broker_id`; ADMIN: own broker), newest first
    #[allow(clippy::too_many_arguments)] // one argument per documented query parameter
    #[oai(path = "/api/v1/admin/audit-log", method = "get", operation_id = "admin_audit_log")]
    async fn audit_log(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        broker_id: Query<Option<i64>>,
        #[oai(validator(max_length = 64))] action: Query<Option<String>>,
        #[oai(validator(max_length = 64))] resource_type: Query<Option<String>>,
        #[oai(default = "one", validator(minimum(value = "1"), maximum(value = "100000")))] page: Query<u64>,
        #[oai(default = "fifty", validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<u64>,
    ) -> ApiResult<Json<AuditPage>> {
        let filter = audit::Filter {
            broker_id: broker_id.0,
            action: action.0,
            resource_type: resource_type.0,
            page: page.0,
            limit: limit.0,
        };
        let (rows, total) = audit::list(&state.infra.db, &auth, &filter).await?;
        Ok(Json(AuditPage {
            data: rows
                .into_iter()
                .map(|r| AuditOut {
                    id: r.id,
                    user_id: r.user_id,
                    broker_id: r.broker_id,
                    action: r.action,
                    resource_type: r.resource_type,
                    resource_id: r.resource_id,
                    changes: r.changes,
                    ip_address: r.ip_address,
                    user_agent: r.user_agent,
                    request_id: r.request_id,
                    created_at: r.created_at,
                })
                .collect(),
            total,
            page: page.0,
            limit: limit.0,
        }))
    }
}

fn one() -> u64 {
    1
}

fn fifty() -> u64 {
    50
}
