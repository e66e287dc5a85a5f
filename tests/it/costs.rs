//! `/api/v1/admin/costs`: figures computed from a known ledger, zero-filled days, z-score outliers,
//! the streamed CSV export, the calls list, SUPERADMIN's ranking, and who may read what.

use chrono::{Duration, Utc};
use poem::http::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::common::{TestApp, User, body, expect_error, phone};

async fn get(app: &TestApp, user: &User, path: &str) -> poem::test::TestResponse {
    app.client().get(path).header("authorization", user.bearer()).send().await
}

async fn ok(resp: poem::test::TestResponse) -> Value {
    let status = resp.0.status();
    let b = body(resp).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b
}

/// One ledger row, `ago` before now.
#[allow(clippy::too_many_arguments)]
async fn call(
    app: &TestApp,
    broker: i64,
    lead: Option<i64>,
    provider: &str,
    call_type: &str,
    cost: f64,
    latency: i32,
    fallback: bool,
    error: Option<&str>,
    ago: Duration,
) {
    app.db()
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO llm_calls (broker_id, lead_id, provider, model, call_type, input_tokens, output_tokens, \
                                    estimated_cost_usd, latency_ms, error, fallback_used, created_at) \
             VALUES ($1, $2, $3, 'm-1', $4, 100, 50, $5, $6, $7, $8, now() - $9 * interval '1 second')",
            vec![
                broker.into(),
                lead.into(),
                provider.into(),
                call_type.into(),
                cost.into(),
                latency.into(),
                error.map(str::to_string).into(),
                fallback.into(),
                (ago.num_seconds() as f64).into(),
            ],
        ))
        .await
        .unwrap();
}

async fn qualify(app: &TestApp, lead: i64) {
    app.db()
        .execute_unprepared(&format!("UPDATE leads SET calificacion = 'calificado' WHERE id = {lead}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_summary_adds_up_the_ledger_and_divides_by_results() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id.unwrap();
    let l1 = app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap();
    let l2 = app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap();
    qualify(&app, l1).await;
    call(&app, b, Some(l1), "gemini", "chat_response", 0.010, 400, false, None, Duration::hours(1)).await;
    call(&app, b, Some(l1), "openai", "qualification", 0.020, 800, true, None, Duration::days(2)).await;
    call(&app, b, Some(l2), "gemini", "chat_response", 0.030, 600, false, Some("timeout"), Duration::days(5)).await;
    // Outside a week, inside a month; and another broker's spend that must never show.
    call(&app, b, Some(l2), "local", "chat_response", 0.0, 2, false, None, Duration::days(20)).await;
    let other = app.new_broker().await;
    call(&app, other.broker_id.unwrap(), None, "gemini", "chat_response", 5.0, 100, false, None, Duration::hours(2))
        .await;
    // One booked appointment, one cancelled (not counted).
    for status in ["scheduled", "cancelled"] {
        app.db()
            .execute_unprepared(&format!(
                "INSERT INTO appointments (broker_id, lead_id, start_time, end_time, status) \
                 VALUES ({b}, {l1}, now() + interval '1 day', now() + interval '1 day 1 hour', '{status}')"
            ))
            .await
            .unwrap();
    }

    let s = ok(get(&app, &admin, "/api/v1/admin/costs/summary?period=week").await).await;
    assert_eq!(s["broker_id"], b);
    assert_eq!(s["period"], "week");
    assert_eq!(s["total_calls"], 3, "{s}");
    assert!((s["total_cost_usd"].as_f64().unwrap() - 0.06).abs() < 1e-9, "{s}");
    assert_eq!((s["fallback_calls"].as_i64(), s["error_calls"].as_i64()), (Some(1), Some(1)));
    assert!((s["fallback_rate"].as_f64().unwrap() - 0.333).abs() < 1e-9);
    assert!((s["avg_latency_ms"].as_f64().unwrap() - 600.0).abs() < 1e-9);
    assert_eq!(s["input_tokens"], 300);
    assert!((s["cost_by_provider"]["gemini"].as_f64().unwrap() - 0.04).abs() < 1e-9, "{s}");
    assert!((s["cost_by_call_type"]["qualification"].as_f64().unwrap() - 0.02).abs() < 1e-9);
    assert_eq!(s["qualified_leads"], 1);
    assert!((s["cost_per_qualified_lead_usd"].as_f64().unwrap() - 0.06).abs() < 1e-9);
    assert_eq!(s["booked_appointments"], 1);
    assert!((s["cost_per_booked_appointment_usd"].as_f64().unwrap() - 0.06).abs() < 1e-9);
    assert_eq!(s["daily_alert"], false);
    // Today's spend (UTC day) is the call of an hour ago, unless that was yesterday.
    let now = chrono::Utc::now();
    let today = if (now - Duration::hours(1)).date_naive() == now.date_naive() { 0.010 } else { 0.0 };
    assert!((s["daily_cost_usd"].as_f64().unwrap() - today).abs() < 1e-9, "{s}");

    let month = ok(get(&app, &admin, "/api/v1/admin/costs/summary").await).await;
    assert_eq!((month["period"].as_str(), month["total_calls"].as_i64()), (Some("month"), Some(4)));
    assert!((month["daily_cost_usd"].as_f64().unwrap() - today).abs() < 1e-9, "the same whatever the period");
    let day = ok(get(&app, &admin, "/api/v1/admin/costs/summary?period=today").await).await;
    assert!((day["daily_cost_usd"].as_f64().unwrap() - today).abs() < 1e-9, "{day}");
    // A broker without any call still gets its booked appointments counted.
    let idle = app.new_broker().await;
    let empty = ok(get(&app, &idle, "/api/v1/admin/costs/summary").await).await;
    assert_eq!((empty["total_calls"].as_i64(), empty["booked_appointments"].as_i64()), (Some(0), Some(0)));

    // An alert threshold of zero dollars: any spend today raises it.
    let alerting = TestApp::spawn_with(|k| (k == "DAILY_COST_ALERT_USD").then(|| "0.005".into())).await;
    let a2 = alerting.new_broker().await;
    call(&alerting, a2.broker_id.unwrap(), None, "gemini", "chat_response", 0.01, 5, false, None, Duration::seconds(5))
        .await;
    let s2 = ok(get(&alerting, &a2, "/api/v1/admin/costs/summary?period=today").await).await;
    assert_eq!((s2["daily_alert"].as_bool(), s2["daily_alert_threshold_usd"].as_f64()), (Some(true), Some(0.005)));

    // Daily: one entry per day of the week window (8 calendar days), zero-filled.
    let d = ok(get(&app, &admin, "/api/v1/admin/costs/daily?period=week").await).await;
    let days = d["daily"].as_array().unwrap();
    assert_eq!(days.len(), 8, "{d}");
    let sum: f64 = days.iter().map(|x| x["cost_usd"].as_f64().unwrap()).sum();
    assert!((sum - 0.06).abs() < 1e-9);
    assert_eq!(days.iter().filter(|x| x["calls"].as_i64() == Some(0)).count(), 5);
    assert_eq!(days.last().unwrap()["date"], Utc::now().date_naive().to_string());
}

#[tokio::test]
async fn outliers_are_flagged_by_z_score() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id.unwrap();
    let mut leads = Vec::new();
    for _ in 0..12 {
        leads.push(app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap());
    }
    for (i, l) in leads.iter().enumerate() {
        let cost = if i == 0 { 1.0 } else { 0.01 };
        call(&app, b, Some(*l), "gemini", "chat_response", cost, 100, false, None, Duration::hours(1)).await;
    }
    let o = ok(get(&app, &admin, "/api/v1/admin/costs/outliers?period=week&limit=3").await).await;
    let list = o["outliers"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["lead_id"], leads[0]);
    assert_eq!(list[0]["is_outlier"], true, "{o}");
    assert!(list[0]["z_score"].as_f64().unwrap() >= 3.0);
    assert_eq!(list[1]["is_outlier"], false);
    assert_eq!(o["leads_with_cost"], 12);
    expect_error(get(&app, &admin, "/api/v1/admin/costs/outliers?limit=0").await, 422, "validation_error").await;
    expect_error(get(&app, &admin, "/api/v1/admin/costs/outliers?limit=101").await, 422, "validation_error").await;
}

#[tokio::test]
async fn the_export_streams_every_row_as_safe_csv() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id.unwrap();
    // More rows than one export page.
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO llm_calls (broker_id, provider, model, call_type, estimated_cost_usd, latency_ms, created_at) \
             SELECT {b}, 'gemini', 'gemini-2.0-flash', 'chat_response', 0.001, 10, now() - g * interval '1 second' \
             FROM generate_series(1, 4500) g"
        ))
        .await
        .unwrap();
    call(&app, b, None, "openai", "chat_response", 0.5, 10, true, Some("=cmd|' /C calc'!A0"), Duration::seconds(1))
        .await;
    let resp = get(&app, &admin, "/api/v1/admin/costs/export?period=today").await;
    resp.assert_status_is_ok();
    resp.assert_header("content-type", "text/csv; charset=utf-8");
    resp.assert_header("content-disposition", format!("attachment; filename=llm_costs_broker{b}_today.csv"));
    let text = resp.0.into_body().into_string().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "id,broker_id,lead_id,provider,model,call_type,used_fallback,input_tokens,output_tokens,estimated_cost_usd,latency_ms,error,created_at"
    );
    // Rows created before today's midnight fall outside `today`; count what the window holds.
    let expected: i64 = app
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT count(*) FROM llm_calls WHERE broker_id = {b} AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(lines.len() as i64 - 1, expected);
    let ids: Vec<i64> = lines[1..].iter().map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered, no repeats");
    let bad = lines.iter().find(|l| l.contains("calc")).unwrap();
    assert!(bad.contains(",'=cmd|' /C calc'!A0,"), "{bad}");
    assert!(bad.contains(",openai,") && bad.contains(",1,"), "{bad}");

    let month = get(&app, &admin, "/api/v1/admin/costs/export?period=month").await;
    let n = month.0.into_body().into_string().await.unwrap().lines().count();
    assert_eq!(n, 4502);
}

#[tokio::test]
async fn the_calls_list_filters_and_pages() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id.unwrap();
    let lead = app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap();
    for i in 0..5 {
        call(&app, b, Some(lead), "gemini", "chat_response", 0.01, 10, false, None, Duration::minutes(i)).await;
    }
    call(&app, b, None, "openai", "embedding", 0.0001, 10, false, Some("429"), Duration::minutes(10)).await;
    let page = ok(get(&app, &admin, "/api/v1/admin/costs/calls?limit=2&page=2").await).await;
    assert_eq!((page["total"].as_u64(), page["items"].as_array().unwrap().len()), (Some(6), 2));
    let errors = ok(get(&app, &admin, "/api/v1/admin/costs/calls?status=error").await).await;
    assert_eq!(errors["total"], 1);
    assert_eq!(errors["items"][0]["error"], "429");
    assert_eq!(errors["items"][0]["used_fallback"], false);
    let by_lead =
        ok(get(&app, &admin, &format!("/api/v1/admin/costs/calls?lead_id={lead}&provider=GEMINI")).await).await;
    assert_eq!(by_lead["total"], 5);
    let from = (Utc::now() - Duration::minutes(2) - Duration::seconds(30)).to_rfc3339();
    let recent = ok(get(&app, &admin, &format!("/api/v1/admin/costs/calls?from={}", urlencode(&from))).await).await;
    assert_eq!(recent["total"], 3, "{recent}");
    expect_error(get(&app, &admin, "/api/v1/admin/costs/calls?status=maybe").await, 422, "validation_error").await;
    expect_error(get(&app, &admin, "/api/v1/admin/costs/calls?page=0").await, 422, "validation_error").await;
    expect_error(get(&app, &admin, "/api/v1/admin/costs/calls?limit=500").await, 422, "validation_error").await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn only_admins_read_costs_and_only_their_own() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id.unwrap();
    let other = app.new_broker().await;
    call(&app, b, None, "gemini", "chat_response", 0.25, 10, false, None, Duration::hours(1)).await;
    call(&app, other.broker_id.unwrap(), None, "gemini", "chat_response", 1.0, 10, false, None, Duration::hours(1))
        .await;
    let agent = app.user_in(&admin, "agent").await;
    for path in ["summary", "daily", "outliers", "export", "calls", "by-broker"] {
        expect_error(get(&app, &agent, &format!("/api/v1/admin/costs/{path}")).await, 403, "forbidden").await;
        app.client().get(format!("/api/v1/admin/costs/{path}")).send().await.assert_status(StatusCode::UNAUTHORIZED);
    }
    expect_error(
        get(&app, &admin, &format!("/api/v1/admin/costs/summary?broker_id={}", other.broker_id.unwrap())).await,
        403,
        "forbidden",
    )
    .await;
    expect_error(get(&app, &admin, "/api/v1/admin/costs/by-broker").await, 403, "forbidden").await;
    expect_error(get(&app, &admin, "/api/v1/admin/costs/summary?period=year").await, 422, "validation_error").await;
    let theirs = ok(get(&app, &other, "/api/v1/admin/costs/calls").await).await;
    assert_eq!(theirs["total"], 1);

    let root = app.superadmin().await;
    let all = ok(get(&app, &root, "/api/v1/admin/costs/summary").await).await;
    assert!(all["broker_id"].is_null());
    assert_eq!(all["total_calls"], 2);
    let one = ok(get(&app, &root, &format!("/api/v1/admin/costs/summary?broker_id={b}")).await).await;
    assert!((one["total_cost_usd"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    let ranking = ok(get(&app, &root, "/api/v1/admin/costs/by-broker?period=week").await).await;
    let brokers = ranking["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 2);
    assert_eq!(brokers[0]["broker_id"], other.broker_id.unwrap());
    assert!(brokers[0]["cost_per_lead"].is_null());
    let export = get(&app, &root, "/api/v1/admin/costs/export").await;
    export.assert_header("content-disposition", "attachment; filename=llm_costs_all_month.csv");
}

#[tokio::test]
async fn folding_into_hourly_rollups_changes_no_figure() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let b = admin.broker_id.unwrap();
    let lead = app.lead(&admin, json!({"phone": phone()})).await["id"].as_i64().unwrap();
    // Spread over the month: the window's ragged first hour, whole hours, and the last minute.
    for (i, ago) in [
        Duration::days(30) - Duration::minutes(5),
        Duration::days(12),
        Duration::hours(5),
        Duration::minutes(90),
        Duration::seconds(20),
    ]
    .into_iter()
    .enumerate()
    {
        let err = (i == 2).then_some("500");
        call(
            &app,
            b,
            Some(lead),
            if i % 2 == 0 { "gemini" } else { "openai" },
            "chat_response",
            0.001 * (i as f64 + 1.0),
            100 * (i as i32 + 1),
            i == 3,
            err,
            ago,
        )
        .await;
    }
    call(&app, b, None, "gemini", "embedding", 0.0005, 7, false, None, Duration::days(3)).await;
    let before_summary = ok(get(&app, &admin, "/api/v1/admin/costs/summary").await).await;
    let before_daily = ok(get(&app, &admin, "/api/v1/admin/costs/daily").await).await;
    assert_eq!(before_summary["total_calls"], 6);

    let now = Utc::now();
    assert_eq!(shared::costs::fold(app.infra(), now).await.unwrap(), 5, "the call of the last two minutes waits");
    assert_eq!(shared::costs::fold(app.infra(), now).await.unwrap(), 0, "nothing is folded twice");
    let rolled: i64 = app
        .db()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT sum(calls)::int8 FROM llm_call_rollups"))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(rolled, 5);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("from");
        v.as_object_mut().unwrap().remove("to");
        v
    };
    let after_summary = ok(get(&app, &admin, "/api/v1/admin/costs/summary").await).await;
    assert_eq!(strip(after_summary.clone()), strip(before_summary), "{after_summary}");
    assert_eq!(ok(get(&app, &admin, "/api/v1/admin/costs/daily").await).await, before_daily);
    // A new call after the fold is counted from the ledger.
    call(&app, b, Some(lead), "openai", "chat_response", 1.0, 10, false, None, Duration::seconds(1)).await;
    let s = ok(get(&app, &admin, "/api/v1/admin/costs/summary?period=week").await).await;
    assert_eq!(s["total_calls"], 5, "{s}");
    // A later fold adds it to the roll-ups of its hour and its day; the daily and hourly roll-ups
    // agree, and the figures do not move.
    let before = ok(get(&app, &admin, "/api/v1/admin/costs/summary?period=week").await).await;
    let daily_before = ok(get(&app, &admin, "/api/v1/admin/costs/daily").await).await;
    assert!(daily_before["daily"].as_array().unwrap().len() >= 30, "{daily_before}");
    let later = now + Duration::minutes(3);
    assert_eq!(shared::costs::fold(app.infra(), later).await.unwrap(), 2);
    let sums: (i64, i64, f64, f64) = {
        let r = app
            .db()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT (SELECT sum(calls)::int8 FROM llm_call_rollups), (SELECT sum(calls)::int8 FROM llm_call_rollups_daily), \
                        (SELECT sum(cost_usd) FROM llm_call_rollups), (SELECT sum(cost_usd) FROM llm_call_rollups_daily)",
            ))
            .await
            .unwrap()
            .unwrap();
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
            r.try_get_by_index(2).unwrap(),
            r.try_get_by_index(3).unwrap(),
        )
    };
    assert_eq!((sums.0, sums.1), (7, 7));
    assert!((sums.2 - sums.3).abs() < 1e-9, "{sums:?}");
    let after = ok(get(&app, &admin, "/api/v1/admin/costs/summary?period=week").await).await;
    assert_eq!(strip(after.clone()), strip(before), "{after}");
    assert_eq!(ok(get(&app, &admin, "/api/v1/admin/costs/daily").await).await, daily_before);
    // Another broker's roll-ups stay out.
    let other = app.new_broker().await;
    assert_eq!(ok(get(&app, &other, "/api/v1/admin/costs/summary").await).await["total_calls"], 0);
}
