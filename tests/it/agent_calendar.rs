//! Agents' own Google Calendars, against the fake Google of `calendar.rs` (accounts told apart by
//! their tokens): the consent flow for "me" through the shared callback (encrypted refresh token,
//! status, disconnect by the agent or an ADMIN, tenancy), `calendar_sync` writing to the agent's
//! calendar when connected and to the broker's otherwise (moving the event when the appointment
//! changes agent, or the agent disconnects), free/busy of an agent's calendar blocking only that
//! agent, and a Meet link only when Google returns one.

use poem::http::StatusCode;
use serde_json::{Value, json};
use shared::appointments::sync::{self, Synced};
use shared::jobs::calendar_sync::CalendarAction;

use crate::appointments::{book, complete_lead, delete, expect, get, local, next_monday, put};
use crate::calendar::{FakeGoogle, app_with, callback, connect, fake_google, job, pending, scalar, state_from};
use crate::common::{TestApp, User, expect_error};

const ME: &str = "/api/v1/agents/me/calendar";

/// Connects `user`'s own calendar to the fake account `account` through the real consent flow.
async fn connect_own(app: &TestApp, user: &User, account: &str) {
    let state = state_from(app, user, &format!("{ME}/auth-url")).await;
    let resp = callback(app, &format!("code=good:{account}&state={state}")).await;
    assert_eq!(resp.0.status(), StatusCode::FOUND);
    assert_eq!(resp.0.headers()["location"], "http://front.test/settings?tab=calendar&owner=agent&status=success");
}

fn event_in(google: &FakeGoogle, account: &str, id: &str) -> Option<Value> {
    google.state.lock().unwrap().events.get(&(account.to_string(), id.to_string())).cloned()
}

async fn event_owner(app: &TestApp, appointment: &Value) -> Option<i64> {
    scalar::<Option<i64>>(
        app,
        &format!("SELECT google_event_user_id FROM appointments WHERE id = {}", appointment["id"]),
    )
    .await
    .flatten()
}

#[tokio::test]
async fn an_agent_connects_their_own_calendar_and_admins_see_and_disconnect_it() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let ana = app.user_in(&admin, "agent").await;
    let bea = app.user_in(&admin, "agent").await;
    let not_connected =
        json!({"connected": false, "email": null, "calendar_id": null, "connected_at": null, "configured": true});
    assert_eq!(expect(get(&app, &ana, &format!("{ME}/status")).await, 200).await, not_connected);

    let url =
        expect(get(&app, &ana, &format!("{ME}/auth-url")).await, 200).await["auth_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://accounts.google.com/o/oauth2/v2/auth?") && url.contains("access_type=offline"));
    assert!(url.contains("redirect_uri=http%3A%2F%2Fapi.test%2Fapi%2Fbroker%2Fcalendar%2Fcallback"), "{url}");
    connect_own(&app, &ana, "ana").await;
    let exchange = google.seen("POST", "/token");
    assert_eq!(exchange.last().unwrap().form["code"], "good:ana");

    let stored: String =
        scalar(&app, &format!("SELECT refresh_token FROM agent_calendar_connections WHERE user_id = {}", ana.id))
            .await
            .unwrap();
    assert!(stored.starts_with("enc:v1:") && !stored.contains("ana-refresh-1"));
    assert_eq!(app.infra().cipher.decrypt(&stored).as_deref(), Some("ana-refresh-1"));
    let status = expect(get(&app, &ana, &format!("{ME}/status")).await, 200).await;
    assert_eq!((status["connected"].as_bool(), status["email"].as_str()), (Some(true), Some("ana@inmobiliaria.cl")));
    assert_eq!(expect(get(&app, &bea, &format!("{ME}/status")).await, 200).await, not_connected);
    let broker = expect(get(&app, &admin, "/api/broker/calendar/status").await, 200).await;
    assert_eq!(broker["connected"], false, "an agent's calendar is not the broker's");
    let audit = expect(
        get(&app, &admin, "/api/v1/admin/audit-log?action=calendar_connect&resource_type=agent_calendar_connection")
            .await,
        200,
    )
    .await;
    assert_eq!(audit["total"], 1);

    // ADMINs see every user's calendar; agents cannot list, nor look at or disconnect a colleague's.
    let list = expect(get(&app, &admin, "/api/broker/calendar/agents").await, 200).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "the ADMIN and both agents: {list:?}");
    let row = |id: i64| list.iter().find(|r| r["user_id"] == id).unwrap().clone();
    assert_eq!(row(ana.id)["calendar"]["connected"], true);
    assert_eq!(row(ana.id)["calendar"]["email"], "ana@inmobiliaria.cl");
    assert_eq!(
        (row(bea.id)["calendar"]["connected"].as_bool(), row(admin.id)["role"].as_str()),
        (Some(false), Some("ADMIN"))
    );
    expect_error(get(&app, &ana, "/api/broker/calendar/agents").await, 403, "forbidden").await;
    let ana_path = format!("/api/broker/calendar/agents/{}", ana.id);
    assert_eq!(expect(get(&app, &admin, &format!("{ana_path}/status")).await, 200).await["connected"], true);
    assert_eq!(expect(get(&app, &ana, &format!("{ana_path}/status")).await, 200).await["connected"], true);
    expect_error(get(&app, &bea, &format!("{ana_path}/status")).await, 403, "forbidden").await;
    expect_error(delete(&app, &bea, &format!("{ana_path}/disconnect")).await, 403, "forbidden").await;
    let other = app.new_broker().await;
    expect_error(get(&app, &other, &format!("{ana_path}/status")).await, 404, "not_found").await;
    expect_error(delete(&app, &other, &format!("{ana_path}/disconnect")).await, 404, "not_found").await;
    assert!(expect(get(&app, &other, "/api/broker/calendar/agents").await, 200).await.as_array().unwrap().len() == 1);

    // The ADMIN disconnects it; Ana connects again and disconnects herself.
    let out = expect(delete(&app, &admin, &format!("{ana_path}/disconnect")).await, 200).await;
    assert_eq!(out["message"], "Google Calendar disconnected");
    assert_eq!(expect(get(&app, &ana, &format!("{ME}/status")).await, 200).await["connected"], false);
    connect_own(&app, &ana, "ana").await;
    let out = expect(delete(&app, &ana, &format!("{ME}/disconnect")).await, 200).await;
    assert_eq!(out["message"], "Google Calendar disconnected");
    let again = expect(delete(&app, &ana, &format!("{ME}/disconnect")).await, 200).await;
    assert_eq!(again["message"], "Google Calendar was not connected");
    let audit = expect(get(&app, &admin, "/api/v1/admin/audit-log?action=calendar_disconnect").await, 200).await;
    assert_eq!(audit["total"], 2);

    // A user deactivated during the consent connects nothing; a platform user has no calendar of its own.
    let state = state_from(&app, &bea, &format!("{ME}/auth-url")).await;
    expect(put(&app, &admin, &format!("/api/broker/users/{}", bea.id), json!({"is_active": false})).await, 200).await;
    let resp = callback(&app, &format!("code=good:bea&state={state}")).await;
    assert_eq!(
        resp.0.headers()["location"],
        "http://front.test/settings?tab=calendar&owner=agent&status=error&reason=agent_not_found"
    );
    assert_eq!(scalar::<i64>(&app, "SELECT count(*) FROM agent_calendar_connections").await, Some(0));
    let root = app.superadmin().await;
    expect_error(get(&app, &root, &format!("{ME}/auth-url")).await, 403, "forbidden").await;
}

#[tokio::test]
async fn without_google_settings_an_agents_calendar_is_not_configured() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let ana = app.user_in(&admin, "agent").await;
    expect_error(get(&app, &ana, &format!("{ME}/auth-url")).await, 400, "calendar_not_configured").await;
    assert_eq!(expect(get(&app, &ana, &format!("{ME}/status")).await, 200).await["configured"], false);
}

#[tokio::test]
async fn events_go_to_the_agents_own_calendar_else_the_brokers_and_follow_the_appointment() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let ana = app.user_in(&admin, "agent").await;
    let bea = app.user_in(&admin, "agent").await;
    let monday = next_monday();
    let lead = complete_lead(&app, &admin).await;

    // Only Ana's calendar is connected: her appointments are synced, Bea's are not.
    connect_own(&app, &ana, "ana").await;
    book(&app, &admin, json!({"lead_id": lead, "start_time": local(monday, 9, 0).to_rfc3339(), "agent_id": bea.id}))
        .await;
    assert_eq!(pending(&app, "calendar_sync").await, 0);
    let a = book(
        &app,
        &admin,
        json!({"lead_id": lead, "start_time": local(monday, 10, 0).to_rfc3339(), "agent_id": ana.id}),
    )
    .await;
    assert_eq!(pending(&app, "calendar_sync").await, 1);
    let Synced::Upserted(event) = sync::run(app.infra(), &job(&a, CalendarAction::Upsert), "t1").await.unwrap() else {
        panic!("not upserted")
    };
    let insert = google.seen("POST", "/events");
    assert_eq!(insert.len(), 1);
    assert_eq!(insert[0].auth.as_deref(), Some("Bearer ana-access-1"), "written with Ana's token");
    assert!(event_in(&google, "ana", &event.id).is_some() && event_in(&google, "main", &event.id).is_none());
    assert_eq!(event_owner(&app, &a).await, Some(ana.id));
    let detail = expect(get(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    assert_eq!(detail["meet_url"], "https://meet.google.com/abc-defg-hij");

    // The broker connects too: Bea's next appointment goes to the broker's calendar.
    connect(&app, &admin).await;
    let b = book(
        &app,
        &admin,
        json!({"lead_id": lead, "start_time": local(monday, 12, 0).to_rfc3339(), "agent_id": bea.id}),
    )
    .await;
    let Synced::Upserted(b_event) = sync::run(app.infra(), &job(&b, CalendarAction::Upsert), "t2").await.unwrap()
    else {
        panic!("not upserted")
    };
    assert_eq!(google.seen("POST", "/events").last().unwrap().auth.as_deref(), Some("Bearer access-1"));
    assert!(event_in(&google, "main", &b_event.id).is_some());
    assert_eq!(event_owner(&app, &b).await, None);

    // Ana's appointment passes to Bea: its event leaves Ana's calendar for the broker's.
    let moved =
        expect(put(&app, &admin, &format!("/api/v1/appointments/{}", a["id"]), json!({"agent_id": bea.id})).await, 200)
            .await;
    sync::run(app.infra(), &job(&moved, CalendarAction::Upsert), "t3").await.unwrap();
    let deleted = google.seen("DELETE", "/events");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].auth.as_deref(), Some("Bearer ana-access-1"));
    assert!(event_in(&google, "ana", &event.id).is_none());
    let in_broker = event_in(&google, "main", &event.id).expect("the event in the broker's calendar");
    assert!(in_broker.get("conferenceData").is_none(), "the Meet link it has is kept");
    assert_eq!(event_owner(&app, &a).await, None);
    let detail = expect(get(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    assert_eq!(detail["meet_url"], "https://meet.google.com/abc-defg-hij");

    // And back to Ana, then Ana disconnects: the next change writes it to the broker's calendar.
    let back =
        expect(put(&app, &admin, &format!("/api/v1/appointments/{}", a["id"]), json!({"agent_id": ana.id})).await, 200)
            .await;
    sync::run(app.infra(), &job(&back, CalendarAction::Upsert), "t4").await.unwrap();
    assert!(event_in(&google, "ana", &event.id).is_some() && event_in(&google, "main", &event.id).is_none());
    assert_eq!(event_owner(&app, &a).await, Some(ana.id));
    expect(delete(&app, &ana, &format!("{ME}/disconnect")).await, 200).await;
    let noted = expect(
        put(&app, &admin, &format!("/api/v1/appointments/{}", a["id"]), json!({"notes": "Trae la carpeta"})).await,
        200,
    )
    .await;
    sync::run(app.infra(), &job(&noted, CalendarAction::Upsert), "t5").await.unwrap();
    assert!(event_in(&google, "main", &event.id).is_some());
    assert_eq!(event_owner(&app, &a).await, None);

    // A cancel deletes it from the calendar that holds it.
    expect(delete(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    let cancelled = expect(get(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    assert_eq!(sync::run(app.infra(), &job(&cancelled, CalendarAction::Delete), "t6").await.unwrap(), Synced::Deleted);
    assert!(event_in(&google, "main", &event.id).is_none());
    let gone: Option<String> =
        scalar::<Option<String>>(&app, &format!("SELECT google_event_id FROM appointments WHERE id = {}", a["id"]))
            .await
            .flatten();
    assert!(gone.is_none());
}

#[tokio::test]
async fn an_agents_busy_time_blocks_only_that_agent() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let ana = app.user_in(&admin, "agent").await;
    let bea = app.user_in(&admin, "agent").await;
    connect_own(&app, &ana, "ana").await;
    let monday = next_monday();
    google.set(|g| {
        g.account_busy
            .insert("ana".into(), vec![(local(monday, 10, 0).to_rfc3339(), local(monday, 11, 30).to_rfc3339())]);
    });
    let slots = |agent: Option<i64>| {
        let app = &app;
        let admin = &admin;
        async move {
            let mut q = format!("/api/v1/appointments/available-slots?start_date={monday}&end_date={monday}");
            if let Some(a) = agent {
                q.push_str(&format!("&agent_id={a}"));
            }
            let b = expect(get(app, admin, &q).await, 200).await;
            b.as_array().unwrap().iter().map(|s| s["time"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(slots(Some(ana.id)).await, ["09:00", "12:00", "13:00", "14:00", "15:00", "16:00", "17:00"]);
    let asked = google.seen("POST", "/freeBusy");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].auth.as_deref(), Some("Bearer ana-access-1"));
    assert_eq!(slots(Some(bea.id)).await.len(), 9, "Bea's calendar is not connected");
    assert_eq!(google.seen("POST", "/freeBusy").len(), 1, "nothing to ask Google for Bea");
    assert_eq!(slots(None).await.len(), 9, "Bea is free when Ana is busy");

    // The broker's calendar blocks everybody; Ana's only her.
    connect(&app, &admin).await;
    google.set(|g| g.busy = vec![(local(monday, 16, 0).to_rfc3339(), local(monday, 17, 0).to_rfc3339())]);
    assert_eq!(slots(None).await, ["09:00", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00", "17:00"]);
    assert_eq!(slots(Some(ana.id)).await, ["09:00", "12:00", "13:00", "14:00", "15:00", "17:00"]);

    // Ana's calendar failing leaves only our data and the broker's calendar.
    google.set(|g| g.fail_free_busy = true);
    assert_eq!(slots(Some(ana.id)).await.len(), 9);
}

#[tokio::test]
async fn no_meet_link_is_stored_when_google_gives_none() {
    let google = fake_google().await;
    let app = app_with(&google).await;
    let admin = app.new_broker().await;
    let ana = app.user_in(&admin, "agent").await;
    connect_own(&app, &ana, "ana").await;
    google.set(|g| g.no_meet = true);
    let lead = complete_lead(&app, &admin).await;
    let a = book(&app, &admin, json!({"lead_id": lead, "start_time": local(next_monday(), 10, 0).to_rfc3339()})).await;
    sync::run(app.infra(), &job(&a, CalendarAction::Upsert), "t").await.unwrap();
    let sent = google.seen("POST", "/events");
    assert!(sent[0].json["conferenceData"]["createRequest"].is_object(), "a Meet link was asked for");
    let detail = expect(get(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    assert!(detail["meet_url"].is_null(), "never invented: {detail}");
    // A second version asks again (the appointment still has none).
    let moved = expect(
        put(&app, &admin, &format!("/api/v1/appointments/{}", a["id"]), json!({"duration_minutes": 30})).await,
        200,
    )
    .await;
    google.set(|g| g.no_meet = false);
    sync::run(app.infra(), &job(&moved, CalendarAction::Upsert), "t2").await.unwrap();
    let patched = google.seen("PATCH", "/events");
    assert!(patched[0].json["conferenceData"]["createRequest"].is_object());
    let detail = expect(get(&app, &admin, &format!("/api/v1/appointments/{}", a["id"])).await, 200).await;
    assert_eq!(detail["meet_url"], "https://meet.google.com/abc-defg-hij", "the link Google returned");
}
