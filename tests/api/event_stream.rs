//! `GET …/async/events/stream`: Server-Sent Events with the feed's envelopes, `id:` the
//! feed cursor; a client that drops and comes back with `Last-Event-ID` misses nothing
//! and gets nothing twice; bad input is a 400 naming the field; another tenant's stream
//! is a 404; the stream ends when the server begins shutting down.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{cli_tenant, eventually, Backend, ServeProcess, TestApp, TestDb};

both_backends!(
    a_dropped_stream_resumes_after_its_last_event_id_and_misses_nothing,
    a_stream_takes_only_the_types_asked_for,
    a_stream_from_now_skips_what_was_already_written,
    streams_of_one_project_each_get_the_log_from_their_own_cursor,
    a_stream_refuses_bad_input_and_other_tenants,
    a_stream_ends_when_the_server_begins_shutting_down
);

/// One message of the stream.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    event: String,
    data: Value,
}

/// A stream being read, message by message.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .client
            .get(format!("{}{}{query}", app.base, app.api("/events/stream")))
            .bearer_auth(&app.token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next frame (a message, or a comment or `retry:` line, as `None`); panics
    /// after `limit`, or when the stream ends.
    async fn frame(&mut self, limit: Duration) -> Option<Message> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                    }
                }
                return match (id, event, data) {
                    (Some(id), Some(event), Some(data)) => Some(Message { id, event, data }),
                    _ => None,
                };
            }
            let chunk = tokio::time::timeout(limit, self.response.chunk())
                .await
                .expect("a frame in time")
                .unwrap()
                .expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` messages, skipping comments.
    async fn messages(&mut self, n: usize) -> Vec<Message> {
        let mut messages = Vec::new();
        while messages.len() < n {
            if let Some(m) = self.frame(Duration::from_secs(20)).await {
                messages.push(m);
            }
        }
        messages
    }

    /// Nothing but comments for `quiet`.
    async fn stays_quiet(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.frame(quiet * 2)).await {
            assert!(frame.is_none(), "unexpected {frame:?}");
        }
    }
}

/// The feed's events after `after`, as the stream should have sent them.
async fn feed(app: &TestApp, types: &str) -> Vec<Value> {
    let r = app
        .get(&format!("{}?first=1000{types}", app.api("/events")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["events"].as_array().unwrap().clone()
}

async fn echo(app: &TestApp, name: &str) {
    app.start_operation(&json!({"operationType": "Echo", "operationName": name}))
        .await;
}

async fn a_dropped_stream_resumes_after_its_last_event_id_and_misses_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut stream = Stream::open(&app, "", None).await;
    echo(&app, "first").await;
    // An Echo operation: started, then completed.
    let first = stream.messages(2).await;
    assert_eq!(first[0].event, "operation.started");
    assert_eq!(first[1].event, "operation.completed");
    for m in &first {
        assert_eq!(m.data["type"], m.event.as_str());
    }
    drop(stream);

    // Events made while no one listens, then a reconnection from the last id.
    for i in 0..5 {
        echo(&app, &format!("while away {i}")).await;
    }
    let last = first.last().unwrap().id.clone();
    let mut resumed = Stream::open(&app, "", Some(&last)).await;
    let rest = resumed.messages(10).await;
    echo(&app, "after").await;
    let live = resumed.messages(2).await;
    resumed.stays_quiet(Duration::from_millis(500)).await;

    let streamed: Vec<Value> = first
        .iter()
        .chain(&rest)
        .chain(&live)
        .map(|m| m.data.clone())
        .collect();
    assert_eq!(streamed, feed(&app, "").await, "the feed, event for event");
    let ids: std::collections::HashSet<&str> = first
        .iter()
        .chain(&rest)
        .chain(&live)
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(ids.len(), 14, "each message its own id");

    // The feed's cursors and the stream's ids are one: `after` takes either.
    let r = app
        .get(&format!("{}?after={last}", app.api("/events")))
        .await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 12, "{}", r.text);
    let mut from_query = Stream::open(&app, &format!("?after={}", rest[9].id), None).await;
    let after_query = from_query.messages(2).await;
    assert_eq!(after_query[0].data, live[0].data);
}

async fn a_stream_takes_only_the_types_asked_for(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut stream = Stream::open(&app, "?types=operation.completed", None).await;
    for i in 0..3 {
        echo(&app, &format!("op {i}")).await;
    }
    let messages = stream.messages(3).await;
    assert!(messages.iter().all(|m| m.event == "operation.completed"));
    stream.stays_quiet(Duration::from_millis(500)).await;
    let streamed: Vec<Value> = messages.into_iter().map(|m| m.data).collect();
    assert_eq!(streamed, feed(&app, "&types=operation.completed").await);
}

async fn a_stream_from_now_skips_what_was_already_written(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..3 {
        echo(&app, &format!("before {i}")).await;
    }
    // Every event of the operations above is committed: their ends are in the feed.
    eventually(Duration::from_secs(20), || async {
        (feed(&app, "&types=operation.completed").await.len() == 3).then_some(())
    })
    .await;
    let mut stream = Stream::open(&app, "?from=now", None).await;
    echo(&app, "after").await;
    let messages = stream.messages(2).await;
    for m in &messages {
        assert_eq!(m.data["data"]["operationName"], "after", "{:?}", m.data);
    }
    stream.stays_quiet(Duration::from_millis(300)).await;
    // Its ids are cursors like any other: a reconnection goes on from there.
    let mut resumed = Stream::open(&app, "?from=now", Some(&messages[0].id)).await;
    assert_eq!(resumed.messages(1).await[0].data, messages[1].data);
    // `from=start`, the default, is the oldest event kept.
    let mut start = Stream::open(&app, "?from=start", None).await;
    assert_eq!(
        start.messages(1).await[0].data["data"]["operationName"],
        "before 0"
    );
}

/// The streams of a project share one reader of its log: each still gets what follows
/// its own cursor, of its own types, once, whether it joined before the events or
/// afterwards with an older id.
async fn streams_of_one_project_each_get_the_log_from_their_own_cursor(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut all = Stream::open(&app, "", None).await;
    let mut completed = Stream::open(&app, "?types=operation.completed", None).await;
    for i in 0..3 {
        echo(&app, &format!("before {i}")).await;
    }
    let mut from_all = all.messages(6).await;
    let mut from_completed = completed.messages(3).await;
    // Joins while the others follow, from an id two events in.
    let mut late = Stream::open(&app, "", Some(&from_all[1].id)).await;
    let mut from_late = late.messages(4).await;
    for i in 0..2 {
        echo(&app, &format!("after {i}")).await;
    }
    from_all.extend(all.messages(4).await);
    from_completed.extend(completed.messages(2).await);
    from_late.extend(late.messages(4).await);
    for stream in [&mut all, &mut completed, &mut late] {
        stream.stays_quiet(Duration::from_millis(300)).await;
    }
    let data = |messages: &[Message]| messages.iter().map(|m| m.data.clone()).collect::<Vec<_>>();
    let everything = feed(&app, "").await;
    assert_eq!(data(&from_all), everything);
    assert_eq!(data(&from_late), everything[2..]);
    assert_eq!(
        data(&from_completed),
        feed(&app, "&types=operation.completed").await
    );
}

async fn a_stream_refuses_bad_input_and_other_tenants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = app.api("/events/stream");
    let get = |query: &str, header: Option<&[u8]>, token: Option<&str>| {
        let mut request = app.client.get(format!("{}{path}{query}", app.base));
        if let Some(value) = header {
            let value = reqwest::header::HeaderValue::from_bytes(value).unwrap();
            request = request.header("Last-Event-ID", value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let token = Some(app.token.as_str());
    for (query, header, field) in [
        ("", Some(&b"garbage"[..]), "Last-Event-ID"),
        // Not text: a byte above ASCII.
        ("", Some(&b"djE6MTox\xff"[..]), "Last-Event-ID"),
        ("?after=garbage", None, "after"),
        ("?types=operation.nope", None, "types"),
        ("?first=10", None, "first"),
        ("?after=a&after=b", None, "after"),
        ("?from=later", None, "from"),
        ("?from=now&after=djE6MTox", None, "from"),
    ] {
        let (status, body) = get(query, header, token).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{query} {header:?}: {body}"
        );
        assert_eq!(body["field"], field, "{query} {header:?}: {body}");
    }
    let (status, _) = get("", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let workers_only = app.token_with("workers").await;
    let (status, _) = get("", None, Some(&workers_only)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, other) = app.other_tenant().await;
    let (status, _) = get("", None, Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's stream");
}

async fn a_stream_ends_when_the_server_begins_shutting_down(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (t, p, token) = cli_tenant(&db.url, "stream");
    // The listener stays open 5 s after SIGTERM: the stream must end well before.
    let mut server = ServeProcess::start(&db, &[("RELAIS_SHUTDOWN_DELAY", "5")]).await;
    let mut response = reqwest::Client::new()
        .get(format!("{}/api/{t}/{p}/async/events/stream", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let opening = response.chunk().await.unwrap().unwrap();
    assert!(std::str::from_utf8(&opening)
        .unwrap()
        .starts_with("retry: "));
    server.terminate();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended when shutdown began");
    let exit = server.exited(Duration::from_secs(20)).await;
    assert!(exit.success(), "{exit:?}");
}
