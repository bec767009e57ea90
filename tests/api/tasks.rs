//! The worker tasks facade of seed 002 (`/v1`), as a client written from the seed uses
//! it: the seed's bodies (`tests/seeds/002/`) sent as they are, with the seed's headers,
//! and the seed's answers' shapes read from Relais's; a step run by an ordinary pull
//! worker through the async API; the list's query and paging; the keys, tenants' numbers
//! and hostile input; and `/v1/status` through a real SIGTERM.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    cli_tenant, eventually, mint_token, relais_json, Backend, Response, ServeProcess, TestApp,
    TestDb,
};
use crate::seed_clients::{assert_same, assert_shaped, assert_shaped_but_nulls, seed};

both_backends!(
    a_client_from_the_seed_submits_a_step_a_worker_runs_and_lists_it,
    a_failed_step_reads_as_the_seeds_error_with_its_earlier_attempts,
    the_seeds_status_message_cancels_by_path_or_by_x_request_id,
    a_running_task_cancelled_by_path_is_told_to_its_worker,
    keys_tenant_numbers_and_headers_are_checked_and_tenants_kept_apart,
    a_list_pages_by_offset_or_next_and_filters_by_its_predicates,
    hostile_bodies_and_headers_get_4xx_in_the_facades_shape,
    status_is_active_and_says_shutdown_in_progress_after_sigterm,
);

/// A client of the facade: its key, its tenant's number and its session.
struct Vitam<'a> {
    app: &'a TestApp,
    key: String,
    tenant: i64,
}

impl<'a> Vitam<'a> {
    async fn of(app: &'a TestApp) -> Self {
        Vitam {
            app,
            key: app.token.clone(),
            tenant: tenant_number(app, app.tenant).await,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .request(method, format!("{}{path}", self.app.base))
            .header("X-Vitam-Key", &self.key)
            .header("X-Tenant-Id", self.tenant.to_string())
            .header("X-Application-Id", "SESSION-ID-00001")
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        Response::read(request.send().await.expect("request sent")).await
    }

    async fn submit(&self, body: &Value) -> Value {
        let r = self.send(Method::POST, "/v1/tasks", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    async fn task(&self, id: &str) -> Value {
        let r = self
            .send(Method::GET, &format!("/v1/tasks/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    async fn list(&self, body: &Value) -> Value {
        let r = self.send(Method::GET, "/v1/tasks", Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }
}

async fn tenant_number(app: &TestApp, tenant: relais::domain::ids::TenantId) -> i64 {
    app.store()
        .tenants()
        .vitam_id(tenant)
        .await
        .unwrap()
        .expect("every tenant has a number")
        .get()
}

/// A facade error: its status, and the seed's error shape naming `field`.
#[track_caller]
fn refused(r: &Response, status: StatusCode, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["http_code"], status.as_u16(), "{}", r.text);
    for key in ["code", "state", "message", "description"] {
        assert!(r.body[key].is_string(), "{key}: {}", r.text);
    }
    assert!(r.body["errors"].is_array(), "{}", r.text);
    assert_eq!(r.body["field"].as_str(), field, "{}", r.text);
    assert_eq!(r.headers["fullapiversion"], "V1.0", "on errors too");
}

/// Leases the one task of `step` as a pull worker of the async API would.
async fn lease(app: &TestApp, step: &str) -> Value {
    eventually(Duration::from_secs(10), || async {
        app.lease(&json!({"operationTypes": [step], "max": 1, "waitSeconds": 1}))
            .await
            .pop()
    })
    .await
}

async fn worker(app: &TestApp, id: &str, report: &str, body: Value) -> Value {
    let r = app
        .post(&app.api(&format!("/operation/{id}/{report}")), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{report}: {}", r.text);
    r.body
}

async fn a_client_from_the_seed_submits_a_step_a_worker_runs_and_lists_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let step = seed!("002/submit_task.request.json");
    let r = vitam
        .request(Method::POST, "/v1/tasks")
        .header("X-Request-Id", "AbDUh67jj")
        .json(&step)
        .send()
        .await
        .unwrap();
    let r = Response::read(r).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // The seed's answer headers.
    assert_eq!(r.headers["x-request-id"], "AbDUh67jj");
    assert_eq!(r.headers["fullapiversion"], "V1.0");
    assert_eq!(r.headers["x-application-id"], "SESSION-ID-00001");
    assert_eq!(r.headers["x-tenant-id"], vitam.tenant.to_string().as_str());
    let task = r.body;
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/v1/tasks/{id}").as_str());
    let example = seed!("002/task.response.json");
    assert_shaped_but_nulls("submitted", &example, &task, &[], &["end_date", "error"]);
    assert_eq!(task["type"], "name", "the step's name");
    assert_eq!(
        (task["state"].as_str(), task["task_status"].as_str()),
        (Some("pending"), Some("started"))
    );
    let action = &task["actions"][0];
    assert_eq!(action["action"], "id_action");
    assert_eq!(
        action["status"], "Pending",
        "the worker has not reported yet"
    );
    assert_same(
        &action["arguments"],
        &step["actions"][0]["arguments"],
        "arguments",
    );
    assert_same(
        &action["results"],
        &step["actions"][0]["results"],
        "results to fill",
    );
    assert_same(
        &action["post_assign"],
        &step["actions"][0]["post_assign"],
        "post_assign",
    );
    let submitted =
        chrono::DateTime::parse_from_rfc3339(task["start_date"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(task["expiration_date"].as_str().unwrap()).unwrap();
    assert_eq!(
        (expires - submitted).num_seconds(),
        3600,
        "the default timeout"
    );

    // An ordinary pull worker of the step's type runs it, reporting on the action by name.
    let order = lease(&app, "name").await;
    assert_eq!(order["operationId"], id.as_str());
    assert_same(
        &order["parameters"],
        &step,
        "the worker is handed the step as sent",
    );
    let lease_token = order["leaseToken"].clone();
    worker(&app, &id, "progress", json!({"leaseToken": lease_token, "phase": {"phaseName": "id_action", "status": "Running"}})).await;
    let running = vitam.task(&id).await;
    assert_eq!(
        (running["state"].as_str(), running["task_status"].as_str()),
        (Some("running"), Some("running"))
    );
    assert_eq!(running["actions"][0]["status"], "Running");
    assert!(running["actions"][0]["start_time"].is_string());
    let results = json!({"nom_champ_3": "value 3", "nom_champ_4": 4});
    worker(&app, &id, "progress", json!({"leaseToken": lease_token, "phase": {"phaseName": "id_action", "status": "Completed", "results": results}})).await;
    worker(
        &app,
        &id,
        "complete",
        json!({"leaseToken": lease_token, "summary": {"files": 1}}),
    )
    .await;

    let done = vitam.task(&id).await;
    assert_shaped_but_nulls("committed", &example, &done, &[], &["error"]);
    assert_eq!(
        (done["state"].as_str(), done["task_status"].as_str()),
        (Some("done"), Some("commit"))
    );
    assert!(done["end_date"].is_string());
    assert_eq!(done["actions"][0]["status"], "Completed");
    assert_same(
        &done["actions"][0]["results"],
        &results,
        "the worker's results",
    );
    // The result link leads to the task, whose actions carry the worker's results.
    let link = done["result_link"].as_str().unwrap();
    assert_eq!(link, format!("/v1/tasks/{id}"));
    let read = vitam.send(Method::GET, link, None).await;
    assert_eq!(read.status, StatusCode::OK, "{link}: {}", read.text);
    assert_eq!(read.body, done);

    // The seed's list: its query selects steps whose name starts with `abcdef`.
    let listed = vitam
        .submit(&json!({"Step": "abcdef_ingest", "actions": [{"action": "a"}]}))
        .await;
    vitam
        .submit(&json!({"Step": "other", "actions": [{"action": "a"}]}))
        .await;
    let query = seed!("002/list_tasks.request.json");
    let list = vitam.list(&query).await;
    assert_shaped_but_nulls(
        "list",
        &seed!("002/list_tasks.response.json"),
        &list,
        &[],
        &["hits.next"],
    );
    assert_eq!(list["results"], json!([listed["id"]]), "{list}");
    assert_eq!(list["hits"]["total"], 1);
    assert_eq!(list["hits"]["size"], 1);
    assert_eq!(list["hits"]["limit"], 100);
    assert_same(&list["context"], &query, "the context is the request");
    // The same query in the query string (URL-encoded) selects the same; given in both
    // places it is refused.
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query["query"].as_str().unwrap())
        .finish();
    let r = vitam
        .send(Method::GET, &format!("/v1/tasks?{encoded}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["results"], list["results"]);
    assert_eq!(r.body["context"], query);
    let r = vitam
        .send(Method::GET, &format!("/v1/tasks?{encoded}"), Some(&query))
        .await;
    refused(&r, StatusCode::BAD_REQUEST, Some("query"));
    // Without a body: the tasks under way, in the order they were submitted.
    let r = vitam.send(Method::GET, "/v1/tasks", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["hits"]["total"], 2,
        "the committed one is not under way: {}",
        r.text
    );
    assert_eq!(r.body["results"][0], listed["id"]);
}

async fn a_failed_step_reads_as_the_seeds_error_with_its_earlier_attempts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let task = vitam
        .submit(&json!({"Step": "ingest", "actions": [{"action": "check"}, {"action": "store"}]}))
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let first = lease(&app, "ingest").await;
    worker(&app, &id, "fail", json!({"leaseToken": first["leaseToken"], "retryable": true, "error": {
        "code": "Unsupported_Media_Type", "message": "Unsupported media type detected",
        "details": {"http_code": 415, "description": "File xxx has an unsupported media type yyy"}}})).await;
    let second = lease(&app, "ingest").await;
    assert_eq!(second["attempt"], 2);
    worker(&app, &id, "progress", json!({"leaseToken": second["leaseToken"], "phase": {"phaseName": "check", "status": "Failed"}})).await;
    worker(&app, &id, "fail", json!({"leaseToken": second["leaseToken"], "retryable": false, "error": {
        "code": "File_Not_Found", "message": "File is not found",
        "details": {"http_code": 404, "description": "Operation on file xxx cannot be done since file is not found"}}})).await;

    let failed = vitam.task(&id).await;
    // Every field of the seed's example, `error` and its `errors` included.
    assert_shaped("failed", &seed!("002/task.response.json"), &failed, &[]);
    assert_eq!(
        (failed["state"].as_str(), failed["task_status"].as_str()),
        (Some("done"), Some("ko"))
    );
    let error = &failed["error"];
    assert_eq!(
        error,
        &json!({"http_code": 404, "code": "ingest", "state": "File_Not_Found", "message": "File is not found",
                "description": "Operation on file xxx cannot be done since file is not found",
                "errors": [{"http_code": 415, "code": "ingest", "state": "Unsupported_Media_Type",
                            "message": "Unsupported media type detected",
                            "description": "File xxx has an unsupported media type yyy"}]})
    );
    assert_eq!(failed["actions"][0]["status"], "Failed");
    assert_eq!(failed["actions"][1]["status"], "Pending", "never reached");
    let list = vitam.list(&json!({"query": "task_status='ko'"})).await;
    assert_eq!(list["results"], json!([id]));
}

async fn the_seeds_status_message_cancels_by_path_or_by_x_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let message = seed!("002/task_message.request.json");
    let step = json!({"Step": "ingest", "actions": [{"action": "a"}]});
    let by_body = vitam.submit(&step).await["id"].as_str().unwrap().to_owned();
    let by_path = vitam.submit(&step).await["id"].as_str().unwrap().to_owned();

    // `PUT /v1/tasks` cancels the task its `X-RequestId` names.
    let mut named = message.clone();
    named["X-RequestId"] = json!(by_body);
    let r = vitam.send(Method::PUT, "/v1/tasks", Some(&named)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_shaped_but_nulls(
        "cancelled",
        &seed!("002/task.response.json"),
        &r.body,
        &[],
        &["error"],
    );
    assert_eq!(r.body["id"], by_body.as_str());
    assert_eq!(
        (r.body["state"].as_str(), r.body["task_status"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    let status = app.get(&app.api(&format!("/operation/{by_body}"))).await;
    assert_eq!(status.body["status"], "Cancelled");
    assert_eq!(
        status.body["cancellation"]["reason"],
        "message informatif retour"
    );
    // Cancelling what is over is the seed's 409.
    let again = vitam.send(Method::PUT, "/v1/tasks", Some(&named)).await;
    refused(&again, StatusCode::CONFLICT, None);
    // Without the task it names, `PUT /v1/tasks` knows nothing to cancel.
    let mut anonymous = message.clone();
    anonymous.as_object_mut().unwrap().remove("X-RequestId");
    refused(
        &vitam.send(Method::PUT, "/v1/tasks", Some(&anonymous)).await,
        StatusCode::BAD_REQUEST,
        Some("X-RequestId"),
    );
    refused(
        &vitam.send(Method::PUT, "/v1/tasks", Some(&message)).await,
        StatusCode::BAD_REQUEST,
        Some("X-RequestId"),
    );

    // `PUT /v1/tasks/{id_async}`: a message naming another task is a 412, and cancels nothing.
    let path = format!("/v1/tasks/{by_path}");
    refused(
        &vitam.send(Method::PUT, &path, Some(&named)).await,
        StatusCode::PRECONDITION_FAILED,
        Some("X-RequestId"),
    );
    assert_eq!(vitam.task(&by_path).await["state"], "pending");
    let mut same = message.clone();
    same["X-RequestId"] = json!(by_path);
    let r = vitam.send(Method::PUT, &path, Some(&same)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["task_status"], "cancelled");
    // Its fields are checked, as every body's.
    let third = vitam.submit(&step).await["id"].as_str().unwrap().to_owned();
    for (field, value) in [
        ("code", json!(42)),
        ("vitamCode", json!(-1)),
        ("timestamp", json!("yesterday")),
        ("message", json!("a\u{7}b")),
    ] {
        let mut bad = json!({});
        bad[field] = value;
        refused(
            &vitam
                .send(Method::PUT, &format!("/v1/tasks/{third}"), Some(&bad))
                .await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }
    // With no body at all, the path says it all.
    let r = vitam
        .send(Method::PUT, &format!("/v1/tasks/{third}"), None)
        .await;
    assert_eq!(r.body["task_status"], "cancelled", "{}", r.text);
}

async fn keys_tenant_numbers_and_headers_are_checked_and_tenants_kept_apart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let step = json!({"Step": "ingest", "actions": [{"action": "a"}]});
    let mine = vitam.submit(&step).await["id"].as_str().unwrap().to_owned();

    // The operator's tenant number, as `relais tenant create --json` prints it, is the
    // X-Tenant-Id of a key made for that tenant.
    let created = relais_json(
        app.database_url(),
        &["tenant", "create", "--name", "vitam", "--json"],
    );
    let number = created["vitamTenantId"]
        .as_i64()
        .expect("vitamTenantId is a number");
    assert_ne!(number, vitam.tenant, "each tenant its own");
    let tenant: relais::domain::ids::TenantId =
        created["tenantId"].as_str().unwrap().parse().unwrap();
    let project = created["projectId"].as_str().unwrap().parse().unwrap();
    assert_eq!(tenant_number(&app, tenant).await, number);
    let theirs = Vitam {
        app: &app,
        key: mint_token(
            app.store(),
            tenant,
            Some(project),
            "operations:read,operations:write",
        )
        .await,
        tenant: number,
    };
    let their_task = theirs.submit(&step).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Another tenant's number is a 401 (the key is not valid for it); another tenant's
    // task is not found: nothing to probe.
    let wrong_number = Vitam {
        app: &app,
        key: vitam.key.clone(),
        tenant: number,
    };
    refused(
        &wrong_number.send(Method::GET, "/v1/tasks", None).await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    refused(
        &wrong_number.send(Method::GET, "/v1/status", None).await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    refused(
        &vitam
            .send(Method::GET, &format!("/v1/tasks/{their_task}"), None)
            .await,
        StatusCode::NOT_FOUND,
        None,
    );
    let mut cancel = json!({"X-RequestId": their_task});
    refused(
        &vitam.send(Method::PUT, "/v1/tasks", Some(&cancel)).await,
        StatusCode::NOT_FOUND,
        None,
    );
    refused(
        &vitam
            .send(Method::PUT, &format!("/v1/tasks/{their_task}"), None)
            .await,
        StatusCode::NOT_FOUND,
        None,
    );
    assert_eq!(
        theirs.task(&their_task).await["state"],
        "pending",
        "untouched"
    );
    assert_eq!(
        theirs.list(&json!({})).await["results"],
        json!([their_task]),
        "their list is theirs"
    );
    assert_eq!(vitam.list(&json!({})).await["results"], json!([mine]));
    cancel["X-RequestId"] = json!(mine);
    refused(
        &theirs.send(Method::PUT, "/v1/tasks", Some(&cancel)).await,
        StatusCode::NOT_FOUND,
        None,
    );
    // Paging from another tenant's task is no page of this one.
    refused(
        &vitam
            .send(Method::GET, "/v1/tasks", Some(&json!({"next": their_task})))
            .await,
        StatusCode::BAD_REQUEST,
        Some("next"),
    );

    // Without X-Tenant-Id, the seed's 412 naming it.
    let r = app
        .client
        .get(format!("{}/v1/tasks/{mine}", app.base))
        .header("X-Vitam-Key", &vitam.key)
        .send()
        .await
        .unwrap();
    let r = Response::read(r).await;
    refused(&r, StatusCode::PRECONDITION_FAILED, Some("X-Tenant-Id"));
    assert!(
        r.headers.get("x-application-id").is_none(),
        "none sent, none echoed"
    );
    // With it, the task, and the number echoed.
    let r = vitam
        .send(Method::GET, &format!("/v1/tasks/{mine}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["x-tenant-id"], vitam.tenant.to_string().as_str());

    // Keys: missing, unknown, a bearer token instead, a callback token, a tenant-wide key,
    // a key without the scope.
    let bare_at = |path: &str, headers: &[(&str, &str)]| {
        let mut request = app.client.get(format!("{}{path}", app.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    };
    let bare = |headers: &[(&str, &str)]| bare_at("/v1/tasks", headers);
    for headers in [
        vec![],
        vec![("X-Vitam-Key", "rls_nope")],
        vec![("X-Vitam-Key", " ")],
        vec![("Authorization", &*format!("Bearer {}", vitam.key))],
    ] {
        let r = Response::read(bare(&headers).send().await.unwrap()).await;
        refused(&r, StatusCode::UNAUTHORIZED, None);
        assert!(
            r.headers.get("x-tenant-id").is_none(),
            "nobody's tenant is told"
        );
    }
    let tenant_wide = mint_token(app.store(), app.tenant, None, "operations:read").await;
    let own_number = vitam.tenant.to_string();
    let r = Response::read(
        bare(&[("X-Vitam-Key", &tenant_wide), ("X-Tenant-Id", &own_number)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused(&r, StatusCode::FORBIDDEN, None);
    let reader = Vitam {
        app: &app,
        key: app.token_with("operations:read").await,
        tenant: vitam.tenant,
    };
    refused(
        &reader.send(Method::POST, "/v1/tasks", Some(&step)).await,
        StatusCode::FORBIDDEN,
        None,
    );
    refused(
        &reader.send(Method::PUT, "/v1/tasks", Some(&cancel)).await,
        StatusCode::FORBIDDEN,
        None,
    );
    assert_eq!(reader.list(&json!({})).await["results"], json!([mine]));
    // The status is no project's: any valid key reads it.
    let r = Response::read(
        bare_at("/v1/status", &[("X-Vitam-Key", &tenant_wide)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Headers: malformed numbers, sessions that cannot be echoed, headers sent twice.
    for number in [
        "abc",
        "-1",
        "1.5",
        "9007199254740992",
        "99999999999999999999999",
        " ",
    ] {
        let r = Response::read(
            bare(&[("X-Vitam-Key", &vitam.key), ("X-Tenant-Id", number)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        refused(&r, StatusCode::PRECONDITION_FAILED, Some("X-Tenant-Id"));
    }
    for session in ["has space", "é", &"x".repeat(129)] {
        let r = Response::read(
            bare(&[("X-Vitam-Key", &vitam.key), ("X-Application-Id", session)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        refused(&r, StatusCode::BAD_REQUEST, Some("X-Application-Id"));
        assert!(r.headers.get("x-application-id").is_none(), "not echoed");
    }
    let twice = bare(&[
        ("X-Vitam-Key", &vitam.key),
        ("X-Tenant-Id", "1"),
        ("X-Tenant-Id", "2"),
    ]);
    refused(
        &Response::read(twice.send().await.unwrap()).await,
        StatusCode::BAD_REQUEST,
        Some("X-Tenant-Id"),
    );
    // Options are in the body; a query string is refused, naming its parameter.
    let r = vitam.send(Method::GET, "/v1/tasks?limit=5", None).await;
    refused(&r, StatusCode::BAD_REQUEST, Some("limit"));
    // A NUL in the path, and paths the facade does not have, answer in its shape.
    refused(
        &vitam.send(Method::GET, "/v1/tasks/op-%00", None).await,
        StatusCode::BAD_REQUEST,
        Some("path"),
    );
    refused(
        &vitam.send(Method::GET, "/v1/tasks/not-an-id", None).await,
        StatusCode::BAD_REQUEST,
        Some("id_async"),
    );
    // A method a path does not take: the seed's shape too, with `Allow`.
    let r = vitam.send(Method::DELETE, "/v1/tasks", None).await;
    refused(&r, StatusCode::METHOD_NOT_ALLOWED, None);
    assert_eq!(r.headers["allow"], "GET, POST, PUT");
    refused(
        &vitam.send(Method::GET, "/v1/nothing", None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    refused(
        &vitam
            .send(
                Method::GET,
                "/v1/tasks/op-00000000-0000-0000-0000-000000000000",
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        None,
    );
}

async fn a_list_pages_by_offset_or_next_and_filters_by_its_predicates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let mut ids = Vec::new();
    for step in ["pager", "pager", "pager.v2", "pager", "other"] {
        let task = vitam
            .submit(&json!({"Step": step, "actions": [{"action": "a"}]}))
            .await;
        ids.push(task["id"].as_str().unwrap().to_owned());
        // Each its own millisecond: the times below tell the submissions apart by their
        // `start_date`, and two quick ones could share one.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let first = vitam
        .list(&json!({"query": "name='pager*'", "limit": 2}))
        .await;
    assert_eq!(first["results"], json!([ids[0], ids[1]]));
    assert_eq!(
        first["hits"],
        json!({"total": 4, "size": 2, "offset": 0, "limit": 2, "time_out": false, "next": ids[2]})
    );
    let second = vitam
        .list(&json!({"query": "name='pager*'", "limit": 2, "next": first["hits"]["next"]}))
        .await;
    assert_eq!(second["results"], json!([ids[2], ids[3]]));
    assert_eq!(second["hits"]["offset"], 2);
    assert_eq!(second["hits"]["next"], Value::Null, "the last page");
    let by_offset = vitam
        .list(&json!({"query": "name='pager*'", "offset": 3}))
        .await;
    assert_eq!(by_offset["results"], json!([ids[3]]));
    assert_eq!(by_offset["hits"]["offset"], 3);
    let beyond = vitam.list(&json!({"offset": 50})).await;
    assert_eq!(beyond["results"], json!([]));
    assert_eq!(beyond["hits"]["total"], 5);
    assert_eq!(
        vitam.list(&json!({"query": "name=pager"})).await["hits"]["total"],
        3,
        "exactly"
    );

    // One committed, one cancelled: they leave the tasks under way.
    let order = lease(&app, "other").await;
    assert_eq!(order["operationId"], ids[4].as_str());
    worker(
        &app,
        &ids[4],
        "complete",
        json!({"leaseToken": order["leaseToken"]}),
    )
    .await;
    let r = vitam
        .send(Method::PUT, &format!("/v1/tasks/{}", ids[0]), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ids_of = |list: Value| list["results"].clone();
    assert_eq!(
        ids_of(vitam.list(&json!({})).await),
        json!([ids[1], ids[2], ids[3]])
    );
    assert_eq!(
        ids_of(vitam.list(&json!({"query": "state='done'"})).await),
        json!([ids[4]])
    );
    assert_eq!(
        ids_of(vitam.list(&json!({"query": "state='cancelled'"})).await),
        json!([ids[0]])
    );
    assert_eq!(
        ids_of(vitam.list(&json!({"query": "task_status='commit'"})).await),
        json!([ids[4]])
    );
    assert_eq!(
        ids_of(
            vitam
                .list(&json!({"query": "state='done' & task_status='started'"}))
                .await
        ),
        json!([])
    );
    assert_eq!(
        ids_of(
            vitam
                .list(&json!({"query": "state='pending'&name='pager.v2'"}))
                .await
        ),
        json!([ids[2]])
    );
    // Times: since and until around the submissions.
    let submitted = vitam.task(&ids[2]).await["start_date"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = vitam
        .list(&json!({"query": format!("since>='{submitted}'&name='pager*'")}))
        .await;
    assert_eq!(ids_of(since), json!([ids[2], ids[3]]));
    let until = vitam
        .list(&json!({"query": format!("until<'{submitted}'")}))
        .await;
    assert_eq!(ids_of(until), json!([ids[1]]));
    assert_eq!(
        vitam.list(&json!({"query": "since>'2999-01-01'"})).await["hits"]["total"],
        0
    );

    // What cannot be applied is the seed's 412, naming the query; bad paging a 400.
    for query in [
        "color='red'",
        "name>'x'",
        "since='2015-07-14'",
        "state='finished'",
        "name='a*b'",
        "name='open",
    ] {
        let r = vitam
            .send(Method::GET, "/v1/tasks", Some(&json!({"query": query})))
            .await;
        refused(&r, StatusCode::PRECONDITION_FAILED, Some("query"));
        assert!(
            r.body["description"]
                .as_str()
                .unwrap()
                .starts_with("query: "),
            "{}",
            r.text
        );
    }
    for (body, field) in [
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 101}), "limit"),
        (json!({"offset": -1}), "offset"),
        (json!({"offset": 1, "next": ids[1]}), "next"),
        (json!({"next": "async_id_next"}), "next"),
        (json!({"limit": "5"}), "limit"),
        (json!({"query": null}), "query"),
        (json!({"page": 2}), "page"),
    ] {
        refused(
            &vitam.send(Method::GET, "/v1/tasks", Some(&body)).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }
}

async fn hostile_bodies_and_headers_get_4xx_in_the_facades_shape(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let step = seed!("002/submit_task.request.json");
    // Named refusals of the step: its name, its actions, their fields.
    let refusals = [
        (json!({"actions": [{"action": "a"}]}), "Step"),
        (json!({"Step": null, "actions": [{"action": "a"}]}), "Step"),
        (
            json!({"Step": "has space", "actions": [{"action": "a"}]}),
            "Step",
        ),
        (json!({"Step": "s"}), "actions"),
        (json!({"Step": "s", "actions": []}), "actions"),
        (
            json!({"Step": "s", "actions": [{"action": "a"}, {"action": "a "}]}),
            "actions[1].action",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a\u{1}"}]}),
            "actions[0].action",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a", "status": "Done"}]}),
            "actions[0].status",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a", "start_time": "yesterday"}]}),
            "actions[0].start_time",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a", "arguments": null}]}),
            "actions[0].arguments",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a", "post_assign": [{"target": "t"}]}]}),
            "actions[0].post_assign[0].result",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a", "unknown": 1}]}),
            "actions[0].unknown",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a\u{0}"}]}),
            "actions[0].action",
        ),
        (
            json!({"Step": "s", "actions": [{"action": "a"}], "context\u{0}": 1}),
            "context\\u0000",
        ),
    ];
    for (body, field) in refusals {
        let r = vitam.send(Method::POST, "/v1/tasks", Some(&body)).await;
        refused(&r, StatusCode::BAD_REQUEST, Some(field));
    }
    // A step of a built-in type is run by that built-in: `Echo` commits it at once.
    let echo = vitam
        .submit(&json!({"Step": "Echo", "actions": [{"action": "a"}, {"action": "b"}]}))
        .await;
    let echo = echo["id"].as_str().unwrap().to_owned();
    let committed = eventually(Duration::from_secs(20), || async {
        let task = vitam.task(&echo).await;
        (task["state"] == "done").then_some(task)
    })
    .await;
    assert_eq!(committed["task_status"], "commit", "{committed}");
    assert_eq!(
        committed["actions"][1]["status"], "Completed",
        "{committed}"
    );
    // Oversize and broken bodies.
    let huge =
        json!({"Step": "s", "actions": [{"action": "a"}], "blob": "x".repeat(2 * 1024 * 1024)});
    refused(
        &vitam.send(Method::POST, "/v1/tasks", Some(&huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
    );
    let r = Response::read(
        vitam
            .request(Method::POST, "/v1/tasks")
            .header("content-type", "application/json")
            .body("{\"Step\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused(&r, StatusCode::BAD_REQUEST, None);
    // An Idempotency-Key makes a retried submission safe, and another body with it a 409.
    let keyed = |body: &Value| {
        vitam
            .request(Method::POST, "/v1/tasks")
            .header("Idempotency-Key", "step-1")
            .json(body)
            .send()
    };
    let first = Response::read(keyed(&step).await.unwrap()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = Response::read(keyed(&step).await.unwrap()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["id"], first.body["id"], "the same task");
    refused(
        &Response::read(
            keyed(&json!({"Step": "t", "actions": [{"action": "a"}]}))
                .await
                .unwrap(),
        )
        .await,
        StatusCode::CONFLICT,
        None,
    );

    // Every field of every body replaced by hostile values: never a 5xx.
    let task = vitam.submit(&step).await["id"].as_str().unwrap().to_owned();
    let routes = [
        (Method::POST, "/v1/tasks".to_owned(), step.clone()),
        (
            Method::GET,
            "/v1/tasks".to_owned(),
            json!({"query": "name='a*'&since>'2015-07-14'", "offset": 0, "limit": 10}),
        ),
        (
            Method::PUT,
            "/v1/tasks".to_owned(),
            json!({"X-RequestId": task, "code": 201, "vitamCode": 1, "timestamp": "2015-07-14T17:07:14Z", "message": "m"}),
        ),
        (
            Method::PUT,
            format!("/v1/tasks/{task}"),
            seed!("002/task_message.request.json"),
        ),
    ];
    let mut sent = 0;
    for (method, path, body) in &routes {
        let mut bodies = crate::fuzz::garbage();
        bodies.extend(
            crate::fuzz::mutations(body)
                .iter()
                .map(|b| b.to_string().into_bytes()),
        );
        for bytes in bodies {
            let r = vitam
                .request(method.clone(), path)
                .header("content-type", "application/json")
                .body(bytes.clone())
                .send()
                .await
                .expect("the server answers");
            let status = r.status();
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            assert!(
                !status.is_server_error(),
                "{method} {path} answered {status} to {shown}"
            );
            if status.is_client_error() {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert_eq!(
                    body["http_code"],
                    status.as_u16(),
                    "{method} {path}: {body} to {shown}"
                );
            }
            sent += 1;
        }
    }
    assert!(sent > 300, "the corpus is not empty: {sent}");
}

async fn status_is_active_and_says_shutdown_in_progress_after_sigterm(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let r = vitam.send(Method::GET, "/v1/status", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_shaped("status", &seed!("002/status.response.json"), &r.body, &[]);
    assert_eq!(r.body["status"], "Active");
    assert_eq!(r.body["service"], "relais");
    let again = vitam.send(Method::GET, "/v1/status", None).await;
    assert_eq!(again.body["id"], r.body["id"], "one instance, one id");
    assert_eq!(again.body["startDate"], r.body["startDate"]);
    let r = app.call(Method::GET, "/v1/status", None, None).await;
    refused(&r, StatusCode::UNAUTHORIZED, None);
    drop(app);

    // A real process, stopped as an orchestrator stops it: for its grace period it
    // still answers, saying it is shutting down, then exits.
    let db = TestDb::create(backend).await;
    let mut serve = ServeProcess::start(&db, &[("RELAIS_SHUTDOWN_DELAY", "30")]).await;
    let (_, _, key) = cli_tenant(&db.url, "vitam");
    let client = reqwest::Client::new();
    let status = || async {
        let r = client
            .get(format!("{}/v1/status", serve.base))
            .header("X-Vitam-Key", &key)
            .send()
            .await
            .unwrap();
        Response::read(r).await
    };
    let before = status().await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    assert_eq!(before.body["status"], "Active");
    serve.terminate();
    let during = eventually(Duration::from_secs(10), || async {
        let r = status().await;
        (r.status == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
    })
    .await;
    assert_eq!(
        during.body["status"], "ShutdownInProgress",
        "{}",
        during.text
    );
    assert_eq!(during.body["id"], before.body["id"]);
    let ready = client
        .get(format!("{}/readyz", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "load balancers stop sending work"
    );
    // A second signal ends the wait.
    serve.terminate();
    let exit = serve.exited(Duration::from_secs(20)).await;
    assert!(exit.success(), "{exit:?}");
}

async fn a_running_task_cancelled_by_path_is_told_to_its_worker(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let vitam = Vitam::of(&app).await;
    let id = vitam
        .submit(&json!({"Step": "ingest_running", "actions": [{"action": "a"}, {"action": "b"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lease = app
        .lease(&json!({"operationTypes": ["ingest_running"], "max": 1}))
        .await
        .remove(0);
    assert_eq!(lease["operationId"], id.as_str());
    let token = lease["leaseToken"].as_str().unwrap().to_owned();
    worker(
        &app,
        &id,
        "progress",
        json!({"leaseToken": token, "phase": {"phaseName": "a", "status": "Running"}}),
    )
    .await;
    assert_eq!(vitam.task(&id).await["state"], "running");

    let r = vitam
        .send(Method::PUT, &format!("/v1/tasks/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(vitam.task(&id).await["state"], "cancelled");
    // The worker learns it on its next heartbeat, and can no longer complete it.
    let heartbeat = worker(
        &app,
        &id,
        "progress",
        json!({"leaseToken": token, "percentage": 60}),
    )
    .await;
    assert_eq!(heartbeat["cancelRequested"], true, "{heartbeat}");
    let complete = app
        .post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": token}),
        )
        .await;
    assert_eq!(complete.status, StatusCode::CONFLICT, "{}", complete.text);
    // Cancelling it again is the seed's 409.
    let again = vitam
        .send(Method::PUT, &format!("/v1/tasks/{id}"), None)
        .await;
    refused(&again, StatusCode::CONFLICT, None);
}
