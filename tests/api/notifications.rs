//! Slack and email notifications, and alerts when an endpoint is disabled: against a real
//! SMTP server (aiosmtpd) and a local HTTP server that answers as Slack does.

use std::time::Duration;

use relais::config::SmtpConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{eventually, Backend, TestApp};
use crate::receiver::{Receiver, Reply};
use crate::smtp::{free_port, Mail, SmtpSink};

both_backends!(
    slack_gets_one_block_kit_message_when_an_operation_fails,
    slack_answers_are_handled_as_slack_documents_them,
    notifications_that_cannot_be_sent_are_refused_naming_the_field,
    the_slack_url_is_a_secret_and_must_be_a_public_https_address,
    a_mail_arrives_once_per_recipient_with_both_parts_and_headers,
    a_mail_is_retried_until_the_smtp_server_is_back_and_arrives_once,
    an_endpoint_answering_410_produces_exactly_one_alert_mail,
    a_batch_notifies_its_end_with_its_members_counts,
    a_burst_of_slack_messages_drains_one_at_a_time_at_slacks_pace,
);

const WAIT: Duration = Duration::from_secs(30);

fn smtp(url: String) -> impl FnOnce(&mut relais::config::Config) {
    move |config| {
        config.smtp = Some(SmtpConfig {
            url,
            from: "Relais <relais@example.com>".into(),
        })
    }
}

async fn put_slack(app: &TestApp, url: &str) -> crate::common::Response {
    app.call(
        Method::PUT,
        &app.api("/integrations/slack"),
        Some(&app.token),
        Some(&json!({"webhookUrl": url})),
    )
    .await
}

/// Starts an operation of a type only pull workers run, and ends it as a worker would:
/// completed, or failed for good with `disk full`.
async fn run(app: &TestApp, name: &str, notifications: Value, fail: bool) -> String {
    let id = start(app, "Report", name, notifications).await;
    end(app, "Report", &id, fail).await;
    id
}

async fn start(app: &TestApp, operation_type: &str, name: &str, notifications: Value) -> String {
    let started = app
        .post(
            &app.api("/operation"),
            &json!({"operationType": operation_type, "operationName": name, "notifications": notifications}),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    started.body["operationId"].as_str().unwrap().to_owned()
}

/// Leases the next operation of the type (which must be `id`) and ends it.
async fn end(app: &TestApp, operation_type: &str, id: &str, fail: bool) {
    let lease = app
        .lease(&json!({"operationTypes": [operation_type], "max": 1}))
        .await
        .remove(0);
    assert_eq!(lease["operationId"], id);
    let token = lease["leaseToken"].as_str().unwrap();
    let ended = if fail {
        app.post(
            &app.api(&format!("/operation/{id}/fail")),
            &json!({"leaseToken": token, "error": {"code": "DISK_FULL", "message": "disk full on /data"}}),
        )
        .await
    } else {
        app.post(
            &app.api(&format!("/operation/{id}/complete")),
            &json!({"leaseToken": token, "summary": {"rows": 3}}),
        )
        .await
    };
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.text);
}

async fn notification_counts(app: &TestApp, id: &str) -> Value {
    app.get(&app.api(&format!("/operation/{id}"))).await.body["notifications"].clone()
}

async fn slack_gets_one_block_kit_message_when_an_operation_fails(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let slack = Receiver::start().await;
    slack.fallback(Reply::status(200));
    let put = put_slack(&app, &slack.url).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["status"], "Active");
    let shown = app.get(&app.api("/integrations/slack")).await;
    assert_eq!(shown.status, StatusCode::OK);
    let masked = shown.body["webhookUrl"].as_str().unwrap();
    assert!(masked.contains('…') && masked != slack.url, "{masked}");
    assert!(
        !shown.text.contains(&slack.url),
        "the URL never shows in full"
    );

    let id = run(
        &app,
        "Nightly report",
        json!({"slack": {"channel": "#process-mining", "mentionUsers": ["@analyst", "@data-team"]}}),
        true,
    )
    .await;
    let got = slack.wait_for(1, WAIT).await;
    let message = got[0].json();
    // The incoming webhook posts to its own channel; the one asked for is shown.
    assert!(
        message["blocks"].to_string().contains("#process-mining"),
        "{message}"
    );
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("Nightly report") && text.contains("failed"),
        "{text}"
    );
    assert!(
        text.contains("@analyst") && text.contains("@data-team"),
        "{text}"
    );
    let blocks = message["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= 50, "{message}");
    let all = message.to_string();
    assert!(
        all.contains("disk full on /data") && all.contains("DISK_FULL"),
        "{all}"
    );
    assert!(all.contains("Report"), "the operation type: {all}");
    assert!(
        all.contains(&format!("/async/operation/{id}")),
        "the tracking URL: {all}"
    );
    assert!(all.contains("Duration"), "{all}");
    // Only the end is notified: nothing for the start, and no second message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.received().len(), 1);
    let counts = eventually(WAIT, || async {
        let c = notification_counts(&app, &id).await;
        (c["sent"] == 1).then_some(c)
    })
    .await;
    assert_eq!(counts, json!({"sent": 1, "failed": 0, "pending": 0}));

    let removed = app.delete(&app.api("/integrations/slack"), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&app.api("/integrations/slack")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn slack_answers_are_handled_as_slack_documents_them(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, smtp(sink.url())).await;
    let slack = Receiver::start().await;
    assert_eq!(put_slack(&app, &slack.url).await.status, StatusCode::OK);
    let alerts = app
        .call(
            Method::PUT,
            &app.api("/integrations/alerts"),
            Some(&app.token),
            Some(&json!({"email": ["ops@example.com"]})),
        )
        .await;
    assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.text);
    let to_slack = json!({"slack": {"channel": "#ops"}});

    // 429: retried after Retry-After, then delivered.
    slack.script([
        Reply::status(429).header("Retry-After", "1"),
        Reply::status(200),
    ]);
    let first = run(&app, "Rate limited", to_slack.clone(), false).await;
    let got = slack.wait_for(2, WAIT).await;
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    eventually(WAIT, || async {
        (notification_counts(&app, &first).await["sent"] == 1).then_some(())
    })
    .await;

    // 400 invalid_payload: failed for good, not retried.
    slack.script([Reply {
        body: Some("invalid_payload".into()),
        ..Reply::status(400)
    }]);
    let refused = run(&app, "Refused", to_slack.clone(), false).await;
    slack.wait_for(3, WAIT).await;
    let counts = eventually(WAIT, || async {
        let c = notification_counts(&app, &refused).await;
        (c["failed"] == 1).then_some(c)
    })
    .await;
    assert_eq!(counts["sent"], 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        slack.received().len(),
        3,
        "a refused payload is not sent again"
    );

    // 404 channel_not_found: the integration is disabled with Slack's reason, its owner
    // alerted by mail, and messages queued afterwards are not sent.
    let later = start(&app, "Later", "After", to_slack.clone()).await;
    slack.script([Reply {
        body: Some("channel_not_found".into()),
        ..Reply::status(404)
    }]);
    run(&app, "Channel gone", to_slack.clone(), false).await;
    let integration = eventually(WAIT, || async {
        let r = app.get(&app.api("/integrations/slack")).await;
        (r.body["status"] == "Disabled").then_some(r.body)
    })
    .await;
    assert!(
        integration["disabledReason"]
            .as_str()
            .unwrap()
            .contains("channel_not_found"),
        "{integration}"
    );
    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(mails[0].rcpt_to, ["ops@example.com"]);
    assert!(mails[0]
        .subject()
        .contains("Slack integration was disabled"));
    let body = mails[0].text.clone().unwrap_or_default();
    assert!(
        body.contains("channel_not_found") && body.contains("integrations/slack"),
        "{body}"
    );

    end(&app, "Later", &later, false).await;
    let counts = eventually(WAIT, || async {
        let c = notification_counts(&app, &later).await;
        (c["failed"] == 1).then_some(c)
    })
    .await;
    assert_eq!(counts["sent"], 0);
    assert_eq!(slack.received().len(), 4);
    // A start asking for Slack now is refused until the integration is set again.
    let refused = app
        .post(
            &app.api("/operation"),
            &json!({"operationType": "Report", "operationName": "x", "notifications": to_slack}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["field"], "notifications.slack");
    assert_eq!(put_slack(&app, &slack.url).await.body["status"], "Active");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.mails().len(), 1, "one alert");
}

async fn notifications_that_cannot_be_sent_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let start = |notifications: Value| {
        let app = &app;
        async move {
            app.post(
                &app.api("/operation"),
                &json!({"operationType": "Report", "operationName": "n", "notifications": notifications}),
            )
            .await
        }
    };
    let refused = start(json!({"email": ["analyst@company.com"]})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.body["field"], "notifications.email");
    assert!(refused.text.contains("RELAIS_SMTP_URL"), "{}", refused.text);
    let refused = start(json!({"slack": {"channel": "#pm"}})).await;
    assert_eq!(refused.body["field"], "notifications.slack");

    let many: Vec<String> = (0..51).map(|i| format!("user{i}@example.com")).collect();
    for (notifications, field) in [
        (
            json!({"email": ["not-an-address"]}),
            "notifications.email[0]",
        ),
        (
            json!({"email": ["a@example.com\r\nBcc: x@evil.io"]}),
            "notifications.email[0]",
        ),
        (
            json!({"email": ["A <a@example.com>"]}),
            "notifications.email[0]",
        ),
        (json!({"email": many}), "notifications.email"),
        (
            json!({"slack": {"channel": ""}}),
            "notifications.slack.channel",
        ),
        (
            json!({"slack": {"channel": "#a b"}}),
            "notifications.slack.channel",
        ),
        (
            json!({"slack": {"mentionUsers": [""]}}),
            "notifications.slack.mentionUsers[0]",
        ),
        (
            json!({"slack": {"chanel": "#pm"}}),
            "notifications.slack.chanel",
        ),
    ] {
        let r = start(notifications.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{notifications}: {}",
            r.text
        );
        assert_eq!(r.body["field"], field, "{notifications}: {}", r.text);
    }
    // A batch's own notifications, and its members', are checked the same way.
    let batch = app
        .post(
            &app.api("/batch"),
            &json!({"batchName": "b", "operations": [
                {"operationKey": "a", "operationType": "Report", "operationName": "a"},
                {"operationKey": "b", "operationType": "Report", "operationName": "b",
                 "notifications": {"email": ["x@example.com"]}}
            ]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::BAD_REQUEST, "{}", batch.text);
    assert_eq!(batch.body["field"], "operations[1].notifications.email");
    let batch = app
        .post(
            &app.api("/batch"),
            &json!({"batchName": "b", "notifications": {"slack": {}},
                    "operations": [{"operationKey": "a", "operationType": "Report", "operationName": "a"}]}),
        )
        .await;
    assert_eq!(batch.body["field"], "notifications.slack", "{}", batch.text);

    // Alert contacts: mail needs SMTP, Slack needs the integration.
    let put_alerts = |body: Value| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                &app.api("/integrations/alerts"),
                Some(&app.token),
                Some(&body),
            )
            .await
        }
    };
    assert_eq!(
        put_alerts(json!({"email": ["ops@example.com"]})).await.body["field"],
        "email"
    );
    assert_eq!(
        put_alerts(json!({"slack": true})).await.body["field"],
        "slack"
    );
    assert_eq!(
        put_alerts(json!({"email": ["nope"]})).await.body["field"],
        "email[0]"
    );
    assert_eq!(put_alerts(json!({"sms": true})).await.body["field"], "sms");
    assert_eq!(
        app.get(&app.api("/integrations/alerts")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn the_slack_url_is_a_secret_and_must_be_a_public_https_address(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.delivery.allow_private_targets = false).await;
    for url in [
        "http://hooks.slack.com/services/T/B/X",
        "https://127.0.0.1/services/T/B/X",
        "https://[::ffff:10.0.0.1]/x",
        "https://[64:ff9b::a00:1]/x",
        "https://2130706433/x",
        "ftp://hooks.slack.com/x",
        "not a url",
    ] {
        let r = put_slack(&app, url).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.text);
        assert_eq!(r.body["field"], "webhookUrl", "{url}");
    }
    let r = app
        .call(
            Method::PUT,
            &app.api("/integrations/slack"),
            Some(&app.token),
            Some(&json!({"webhookUrl": "https://hooks.slack.com/x", "channel": "#x"})),
        )
        .await;
    assert_eq!(r.body["field"], "channel", "{}", r.text);
    // Another tenant neither sees nor changes this project's integration.
    let (tenant, project, token) = app.other_tenant().await;
    let theirs = format!("/api/{tenant}/{project}/async/integrations/slack");
    let ours = app.api("/integrations/slack");
    let r = app.call(Method::GET, &ours, Some(&token), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.call(Method::GET, &theirs, Some(&app.token), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Without the webhooks:manage scope, no access.
    let reader = app.token_with("operations:read").await;
    let r = app.call(Method::GET, &ours, Some(&reader), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

fn header_of<'m>(mail: &'m Mail, name: &str) -> &'m str {
    mail.header(name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", mail.headers))
}

async fn a_mail_arrives_once_per_recipient_with_both_parts_and_headers(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, smtp(sink.url())).await;
    let id = run(
        &app,
        "Quarterly <numbers>\r\nBcc: intruder@evil.example",
        json!({"email": ["analyst@company.com", "manager@company.com"]}),
        false,
    )
    .await;
    let mails = sink.wait_for(2, WAIT).await;
    let mut recipients: Vec<String> = mails.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    recipients.sort();
    assert_eq!(recipients, ["analyst@company.com", "manager@company.com"]);
    // On PostgreSQL the feed shows an event once no older transaction is still running.
    let completed = eventually(WAIT, || async {
        let events = app.get(&app.api("/events")).await.body;
        events["events"]
            .as_array()?
            .iter()
            .find(|e| e["type"] == "operation.completed")
            .map(|e| e["id"].as_str().unwrap().to_owned())
    })
    .await;
    for mail in &mails {
        let subject = mail.subject();
        assert!(subject.starts_with("[Relais] Operation"), "{subject}");
        assert!(
            subject.contains("completed") && subject.contains("Quarterly <numbers>"),
            "{subject}"
        );
        assert!(!subject.contains(['\r', '\n']));
        assert!(
            mail.header("Bcc").is_none(),
            "no header injected: {:?}",
            mail.headers
        );
        assert!(!mail.rcpt_to.iter().any(|r| r.contains("evil")));
        assert!(header_of(mail, "From").contains("relais@example.com"));
        assert_eq!(header_of(mail, "To"), mail.rcpt_to[0]);
        assert!(header_of(mail, "Message-ID").contains('@'));
        chrono::DateTime::parse_from_rfc2822(header_of(mail, "Date")).expect("an RFC 2822 date");
        assert_eq!(header_of(mail, "X-Relais-Event-Id"), completed);
        let text = mail.text.as_deref().expect("a text/plain part");
        let html = mail.html.as_deref().expect("a text/html part");
        assert!(text.contains(&format!("/async/operation/{id}")), "{text}");
        assert!(html.contains("Quarterly &lt;numbers&gt;"), "{html}");
    }
    let counts = eventually(WAIT, || async {
        let c = notification_counts(&app, &id).await;
        (c["sent"] == 2).then_some(c)
    })
    .await;
    assert_eq!(counts["failed"], 0);
}

async fn a_mail_is_retried_until_the_smtp_server_is_back_and_arrives_once(backend: Backend) {
    let port = free_port();
    let app = TestApp::spawn_with(backend, smtp(format!("smtp://127.0.0.1:{port}"))).await;
    let id = run(
        &app,
        "While SMTP is down",
        json!({"email": ["analyst@company.com", "reject-me@company.com", "tempfail-ops@company.com"]}),
        true,
    )
    .await;
    // Nothing listens yet: the attempts fail and are retried.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(notification_counts(&app, &id).await["sent"], 0);
    let sink = SmtpSink::start_on(port).await;
    // The server defers the tempfail address once (451): it arrives on a later attempt.
    let mails = sink.wait_for(2, Duration::from_secs(60)).await;
    let mut recipients: Vec<String> = mails.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["analyst@company.com", "tempfail-ops@company.com"]
    );
    assert!(mails[0].subject().contains("failed"));
    // The address the server refuses for good (550) fails; the others arrived once.
    let counts = eventually(Duration::from_secs(60), || async {
        let c = notification_counts(&app, &id).await;
        (c["sent"] == 2 && c["failed"] == 1).then_some(c)
    })
    .await;
    assert_eq!(counts["pending"], 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.mails().len(), 2, "each sent once");
}

async fn an_endpoint_answering_410_produces_exactly_one_alert_mail(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with(backend, smtp(sink.url())).await;
    let gone = Receiver::start().await;
    gone.fallback(Reply::status(410));
    let webhook = app
        .register_webhook(&json!({"webhookUrl": gone.url, "webhookName": "Billing sync"}))
        .await;
    let webhook_id = webhook["webhookId"].as_str().unwrap().to_owned();
    let put = app
        .call(
            Method::PUT,
            &app.api("/integrations/alerts"),
            Some(&app.token),
            Some(&json!({"email": ["owner@example.com", "oncall@example.com"]})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(
        app.get(&app.api("/integrations/alerts")).await.body["email"][1],
        "oncall@example.com"
    );
    // Several deliveries in flight to the endpoint at once: it is disabled, and alerted, once.
    for i in 0..3 {
        run(&app, &format!("op {i}"), json!({}), false).await;
    }
    let mails = sink.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails_now = sink.mails();
    assert_eq!(mails_now.len(), 2, "one alert per contact: {mails_now:?}");
    let owner = mails
        .iter()
        .find(|m| m.rcpt_to == ["owner@example.com"])
        .unwrap();
    assert_eq!(
        owner.subject(),
        "[Relais] Webhook \"Billing sync\" was disabled"
    );
    let text = owner.text.clone().unwrap();
    for part in [
        gone.url.as_str(),
        "410",
        &format!("/webhooks/{webhook_id}/enable"),
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let shown = app
        .get(&app.api(&format!("/webhooks/{webhook_id}")))
        .await
        .body;
    assert_eq!(shown["status"], "Disabled");
    // The event is in the feed too, for tools that watch it.
    let disabled: Vec<Value> = eventually(WAIT, || async {
        let events = app.get(&app.api("/events?first=100")).await.body;
        let disabled: Vec<Value> = events["events"]
            .as_array()?
            .iter()
            .filter(|e| e["type"] == "endpoint.disabled")
            .cloned()
            .collect();
        (!disabled.is_empty()).then_some(disabled)
    })
    .await;
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["data"]["id"], webhook_id.as_str());
}

async fn a_batch_notifies_its_end_with_its_members_counts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let slack = Receiver::start().await;
    assert_eq!(put_slack(&app, &slack.url).await.status, StatusCode::OK);
    let submitted = app
        .post(
            &app.api("/batch"),
            &json!({"batchName": "Monthly pipeline",
                    "notifications": {"slack": {"channel": "#batches"}},
                    "operations": [
                        {"operationKey": "a", "operationType": "Report", "operationName": "a"},
                        {"operationKey": "b", "operationType": "Report", "operationName": "b", "dependencies": ["a"]}
                    ]}),
        )
        .await;
    assert_eq!(submitted.status, StatusCode::ACCEPTED, "{}", submitted.text);
    let batch_id = submitted.body["batchId"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let lease = eventually(WAIT, || async {
            app.lease(&json!({"operationTypes": ["Report"], "max": 1}))
                .await
                .pop()
        })
        .await;
        let id = lease["operationId"].as_str().unwrap();
        let done = app
            .post(
                &app.api(&format!("/operation/{id}/complete")),
                &json!({"leaseToken": lease["leaseToken"]}),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    }
    let got = slack.wait_for(1, WAIT).await;
    let message = got[0].json();
    assert!(
        message["blocks"].to_string().contains("#batches"),
        "{message}"
    );
    let all = message.to_string();
    assert!(
        all.contains("Batch") && all.contains("Monthly pipeline"),
        "{all}"
    );
    assert!(all.contains("completed"), "{all}");
    assert!(all.contains("2 completed"), "the members' counts: {all}");
    assert!(all.contains(&format!("/async/batch/{batch_id}")), "{all}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slack.received().len(),
        1,
        "members notify nobody; the batch once"
    );
}

async fn a_burst_of_slack_messages_drains_one_at_a_time_at_slacks_pace(backend: Backend) {
    const MESSAGES: usize = 30;
    let app = TestApp::spawn(backend).await;
    let slack = Receiver::start().await;
    let answer = Duration::from_millis(100);
    slack.fallback(Reply::status(200).after(answer));
    assert_eq!(put_slack(&app, &slack.url).await.status, StatusCode::OK);
    let started = std::time::Instant::now();
    for i in 0..MESSAGES {
        run(
            &app,
            &format!("burst {i}"),
            json!({"slack": {"channel": "#ops"}}),
            true,
        )
        .await;
    }
    let got = slack.wait_for(MESSAGES, WAIT).await;
    let took = started.elapsed();
    eprintln!("{MESSAGES} Slack messages in {took:?}");
    // One at a time, 100 ms each: 3 s, and the messages that wait go back to the queue
    // spaced at that pace, so they do not take much longer.
    assert!(
        took < Duration::from_secs(15),
        "{MESSAGES} messages took {took:?}"
    );
    assert_eq!(got.len(), MESSAGES, "each message sent once");
}
