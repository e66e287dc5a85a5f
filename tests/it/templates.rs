//! `/api/v1/templates`: CRUD per broker, variables, rendering for a lead, roles and isolation.

use serde_json::{Value, json};

use crate::common::{TestApp, User, body, expect_error, phone};

async fn send(app: &TestApp, user: &User, method: &str, path: &str, b: Option<Value>) -> poem::test::TestResponse {
    let client = app.client();
    let req = match method {
        "POST" => client.post(path),
        "PUT" => client.put(path),
        "DELETE" => client.delete(path),
        _ => client.get(path),
    }
    .header("authorization", user.bearer());
    match b {
        Some(b) => req.body_json(&b).send().await,
        None => req.send().await,
    }
}

async fn ok(resp: poem::test::TestResponse, status: u16) -> Value {
    let s = resp.0.status().as_u16();
    let b = body(resp).await;
    assert_eq!(s, status, "{b}");
    b
}

#[tokio::test]
async fn templates_are_managed_per_broker_and_rendered_for_a_lead() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    let t = ok(
        send(
            &app,
            &admin,
            "POST",
            "/api/v1/templates",
            Some(json!({"name": "Bienvenida", "channel": "whatsapp", "agent_type": "perfilador",
                        "content": "Hola {{name}}, soy {{agent_name}} de {{broker_name}}.\nTu comuna: {{comuna}}. {{desconocida}}Visita: {{appointment_date}}",
                        "whatsapp_template_name": "bienvenida_v1", "whatsapp_parameters": ["name", "broker_name"]})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        t["variables"],
        json!(["name", "agent_name", "broker_name", "comuna", "desconocida", "appointment_date"])
    );
    assert_eq!(t["whatsapp_language"], "es");
    let id = t["id"].as_i64().unwrap();

    let lead =
        app.lead(&admin, json!({"phone": phone(), "name": "Carla Soto", "lead_metadata": {"comuna": "Ñuñoa"}})).await;
    let r = ok(
        send(&app, &admin, "POST", &format!("/api/v1/templates/{id}/render"), Some(json!({"lead_id": lead["id"]})))
            .await,
        200,
    )
    .await;
    let text = r["rendered"].as_str().unwrap();
    assert!(text.starts_with("Hola Carla Soto, soy "), "{text}");
    assert!(text.contains("Tu comuna: Ñuñoa. Visita: "), "{text}");
    assert!(text.contains('\n'));
    assert!(!text.contains("{{"), "{text}");
    assert_eq!(r["missing"], json!(["desconocida", "appointment_date"]), "{r}");
    assert_eq!(r["whatsapp_template"]["name"], "bienvenida_v1");
    assert_eq!(r["whatsapp_template"]["parameters"][0], "Carla Soto");

    // List and filters; the same name on the same channel is a 409.
    ok(
        send(
            &app,
            &admin,
            "POST",
            "/api/v1/templates",
            Some(
                json!({"name": "Recordatorio", "channel": "telegram", "content": "Te esperamos {{appointment_time}}"}),
            ),
        )
        .await,
        201,
    )
    .await;
    expect_error(
        send(
            &app,
            &admin,
            "POST",
            "/api/v1/templates",
            Some(json!({"name": "bienvenida", "channel": "whatsapp", "content": "x"})),
        )
        .await,
        409,
        "template_exists",
    )
    .await;
    let all = ok(send(&app, &admin, "GET", "/api/v1/templates", None).await, 200).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    assert_eq!(all["data"][0]["name"], "Recordatorio", "newest first");
    let wa = ok(send(&app, &admin, "GET", "/api/v1/templates?channel=whatsapp", None).await, 200).await;
    assert_eq!(wa["data"].as_array().unwrap().len(), 1);
    let perf = ok(send(&app, &admin, "GET", "/api/v1/templates/agent-type/perfilador", None).await, 200).await;
    assert_eq!(perf["data"][0]["id"], id);

    // Changing the content re-reads the variables unless they are sent.
    let u = ok(
        send(&app, &admin, "PUT", &format!("/api/v1/templates/{id}"), Some(json!({"content": "Hola {{first_name}}"})))
            .await,
        200,
    )
    .await;
    assert_eq!(u["variables"], json!(["first_name"]));
    let u = ok(
        send(
            &app,
            &admin,
            "PUT",
            &format!("/api/v1/templates/{id}"),
            Some(json!({"variables": ["first_name", "extra"], "agent_type": null})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!((u["variables"].clone(), u["agent_type"].clone()), (json!(["first_name", "extra"]), Value::Null));

    // An agent reads and renders, but does not write; another broker sees nothing.
    let agent = app.user_in(&admin, "agent").await;
    ok(send(&app, &agent, "GET", &format!("/api/v1/templates/{id}"), None).await, 200).await;
    expect_error(
        send(&app, &agent, "POST", "/api/v1/templates", Some(json!({"name": "x", "channel": "email", "content": "x"})))
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_error(send(&app, &agent, "DELETE", &format!("/api/v1/templates/{id}"), None).await, 403, "forbidden").await;
    // The agent may not render for a lead that is not theirs.
    expect_error(
        send(&app, &agent, "POST", &format!("/api/v1/templates/{id}/render"), Some(json!({"lead_id": lead["id"]})))
            .await,
        404,
        "not_found",
    )
    .await;
    let other = app.new_broker().await;
    expect_error(send(&app, &other, "GET", &format!("/api/v1/templates/{id}"), None).await, 404, "not_found").await;
    expect_error(
        send(&app, &other, "PUT", &format!("/api/v1/templates/{id}"), Some(json!({"name": "mío"}))).await,
        404,
        "not_found",
    )
    .await;
    assert!(
        ok(send(&app, &other, "GET", "/api/v1/templates", None).await, 200).await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let theirs = ok(
        send(
            &app,
            &other,
            "POST",
            "/api/v1/templates",
            Some(json!({"name": "Bienvenida", "channel": "whatsapp", "content": "Hola"})),
        )
        .await,
        201,
    )
    .await;
    expect_error(
        send(
            &app,
            &admin,
            "POST",
            &format!("/api/v1/templates/{}/render", theirs["id"]),
            Some(json!({"lead_id": lead["id"]})),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    ok(send(&app, &admin, "DELETE", &format!("/api/v1/templates/{id}"), None).await, 204).await;
    expect_error(send(&app, &admin, "GET", &format!("/api/v1/templates/{id}"), None).await, 404, "not_found").await;
}

#[tokio::test]
async fn bad_templates_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let admin = app.new_broker().await;
    for (b, field) in [
        (json!({"name": "", "channel": "whatsapp", "content": "x"}), "name"),
        (json!({"name": "a".repeat(201), "channel": "whatsapp", "content": "x"}), "name"),
        (json!({"name": "x", "channel": "fax", "content": "x"}), "channel"),
        (json!({"name": "x", "channel": "email", "content": "   "}), "content"),
        (json!({"name": "x", "channel": "email", "content": "a".repeat(10_001)}), "content"),
        (json!({"name": "x", "channel": "email", "content": "x", "agent_type": "jefe"}), "agent_type"),
        (json!({"name": "x", "channel": "email", "content": "x", "variables": ["no vale"]}), "variables"),
        (
            json!({"name": "x", "channel": "email", "content": "x", "whatsapp_template_name": "promo"}),
            "whatsapp_template_name",
        ),
        (
            json!({"name": "x", "channel": "whatsapp", "content": "x", "whatsapp_template_name": "Promo Navidad"}),
            "whatsapp_template_name",
        ),
    ] {
        let e = expect_error(
            send(&app, &admin, "POST", "/api/v1/templates", Some(b.clone())).await,
            422,
            "validation_error",
        )
        .await;
        assert_eq!(e["detail"][0]["loc"][1], field, "{b} -> {e}");
    }
    expect_error(send(&app, &admin, "GET", "/api/v1/templates?channel=fax", None).await, 422, "validation_error").await;
    expect_error(send(&app, &admin, "GET", "/api/v1/templates/agent-type/jefe", None).await, 422, "validation_error")
        .await;
    expect_error(
        send(&app, &admin, "POST", "/api/v1/templates/999999/render", Some(json!({"lead_id": 1}))).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        send(&app, &admin, "POST", "/api/v1/templates", Some(json!({"channel": "email"}))).await,
        422,
        "validation_error",
    )
    .await;
}
