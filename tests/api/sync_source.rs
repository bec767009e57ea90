//! A real cursor-paginated source on a free local port, shaped like seed 004's GraphQL
//! API (`demarche(number) { dossiers(first, after, updatedSince) { pageInfo { endCursor
//! hasNextPage } nodes { number dateDerniereModification } } }`), and the same records as a
//! JSON REST endpoint (`GET /items?first&after&updatedSince`). Records are ordered by
//! modification time then number, so a changed record moves to the end; a cursor is the
//! (time, number) of the last record of a page. Failures can be scripted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

/// What the source answers instead of a page.
#[derive(Debug, Clone)]
pub enum Trouble {
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    GraphqlErrors(&'static str),
    /// A page whose `dossiers` lack `pageInfo`.
    NoPageInfo,
}

#[derive(Debug, Clone)]
pub struct Asked {
    pub at: Instant,
    pub variables: Value,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    /// (number, modified at in ms).
    records: Mutex<Vec<(u64, i64)>>,
    troubles: Mutex<VecDeque<Trouble>>,
    always: Mutex<Option<Trouble>>,
    asked: Mutex<Vec<Asked>>,
    pages_served: AtomicUsize,
    delay: Mutex<Duration>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

pub struct Source {
    pub url: String,
    pub rest_url: String,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

const BASE_MS: i64 = 1_700_000_000_000;

fn iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn cursor_of(number: u64, ms: i64) -> String {
    format!("{ms}-{number}")
}

fn parse_cursor(cursor: &str) -> Option<(i64, u64)> {
    let (ms, number) = cursor.split_once('-')?;
    Some((ms.parse().ok()?, number.parse().ok()?))
}

fn parse_since(value: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis())
}

impl State {
    /// The page after `after` of records modified since `since`: (nodes, end cursor,
    /// has next page).
    fn page(
        &self,
        first: usize,
        after: Option<&str>,
        since: Option<&str>,
    ) -> (Vec<Value>, Option<String>, bool) {
        let mut records = self.records.lock().unwrap().clone();
        records.sort_by_key(|&(number, ms)| (ms, number));
        let after = after.and_then(parse_cursor);
        let since = since.and_then(parse_since);
        let selected: Vec<(u64, i64)> = records
            .into_iter()
            .filter(|&(_, ms)| since.is_none_or(|s| ms >= s))
            .filter(|&(number, ms)| after.is_none_or(|a| (ms, number) > a))
            .collect();
        let page: Vec<(u64, i64)> = selected.iter().copied().take(first).collect();
        let more = selected.len() > page.len();
        let end = page.last().map(|&(n, ms)| cursor_of(n, ms));
        let nodes = page
            .into_iter()
            .map(|(number, ms)| json!({"number": number, "dateDerniereModification": iso(ms), "state": "en_construction"}))
            .collect();
        (nodes, end, more)
    }

    fn trouble(&self) -> Option<Trouble> {
        self.troubles
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| self.always.lock().unwrap().clone())
    }
}

fn trouble_reply(trouble: Trouble) -> HttpResponse {
    match trouble {
        Trouble::Status {
            status,
            retry_after,
        } => {
            let mut reply =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
            if let Some(seconds) = retry_after {
                reply.insert_header(("retry-after", seconds.to_string()));
            }
            reply.body("busy")
        }
        Trouble::GraphqlErrors(message) => {
            HttpResponse::Ok().json(json!({"data": null, "errors": [{"message": message}]}))
        }
        Trouble::NoPageInfo => {
            HttpResponse::Ok().json(json!({"data": {"demarche": {"dossiers": {"nodes": []}}}}))
        }
    }
}

struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn graphql(
    req: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<Arc<State>>,
) -> HttpResponse {
    let _in_flight = InFlight::enter(&state);
    let variables = body["variables"].clone();
    state.asked.lock().unwrap().push(Asked {
        at: Instant::now(),
        variables: variables.clone(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(trouble) = state.trouble() {
        return trouble_reply(trouble);
    }
    let first = variables["first"].as_u64().unwrap_or(100) as usize;
    let (nodes, end, more) = state.page(
        first,
        variables["after"].as_str(),
        variables["updatedSince"].as_str(),
    );
    state.pages_served.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().json(
        json!({"data": {"demarche": {"number": variables["demarcheNumber"], "dossiers": {
            "pageInfo": {"endCursor": end, "hasNextPage": more},
            "nodes": nodes,
        }}}}),
    )
}

async fn rest(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<Arc<State>>,
) -> HttpResponse {
    let _in_flight = InFlight::enter(&state);
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    state.asked.lock().unwrap().push(Asked {
        at: Instant::now(),
        variables: json!({"limit": get("limit"), "cursor": get("cursor"), "since": get("since")}),
        authorization: req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    if let Some(trouble) = state.trouble() {
        return trouble_reply(trouble);
    }
    let first = get("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
    let (nodes, end, more) = state.page(first, get("cursor").as_deref(), get("since").as_deref());
    state.pages_served.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok()
        .json(json!({"items": nodes, "page": {"endCursor": end, "hasNextPage": more}}))
}

impl Source {
    /// A source of `count` records numbered from 1, modified a second apart.
    pub async fn start(count: u64) -> Self {
        let state = Arc::new(State::default());
        *state.records.lock().unwrap() = (1..=count)
            .map(|n| (n, BASE_MS + n as i64 * 1000))
            .collect();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(1 << 20))
                .route("/graphql", web::post().to(graphql))
                .route("/items", web::get().to(rest))
        })
        .workers(2)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Source {
            url: format!("http://{addr}/graphql"),
            rest_url: format!("http://{addr}"),
            state,
            handle,
        }
    }

    /// These answers first, one per request, before pages are served again.
    pub fn trouble(&self, troubles: impl IntoIterator<Item = Trouble>) {
        self.state.troubles.lock().unwrap().extend(troubles);
    }

    /// This answer to every request from now on.
    pub fn always(&self, trouble: Trouble) {
        *self.state.always.lock().unwrap() = Some(trouble);
    }

    /// Each page waits this long before it is answered.
    pub fn slow(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Records `numbers` change now: they move to the end of the order.
    pub fn touch(&self, numbers: &[u64]) {
        let mut records = self.state.records.lock().unwrap();
        let latest = records.iter().map(|&(_, ms)| ms).max().unwrap_or(BASE_MS);
        for (i, &number) in numbers.iter().enumerate() {
            if let Some(r) = records.iter_mut().find(|(n, _)| *n == number) {
                r.1 = latest + 1000 * (i as i64 + 1);
            }
        }
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.state.asked.lock().unwrap().clone()
    }

    pub fn pages_served(&self) -> usize {
        self.state.pages_served.load(Ordering::SeqCst)
    }

    /// The most requests it ever answered at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// The GraphQL query of seed 004's example, with the variables Relais sets.
pub const SEED_QUERY: &str = "query getDemarche($demarcheNumber: Int!, $first: Int, $after: String, $updatedSince: ISO8601DateTime) { demarche(number: $demarcheNumber) { dossiers(first: $first, after: $after, updatedSince: $updatedSince) { pageInfo { endCursor hasNextPage } nodes { number dateDerniereModification } } } }";

/// A `CursorSync` operation's body reading `source` the seed's way.
pub fn sync_operation(source: &Source, sync_name: &str, page_size: u32) -> Value {
    json!({
        "operationType": "CursorSync",
        "operationName": format!("sync {sync_name}"),
        "parameters": {
            "syncName": sync_name,
            "endpoint": source.url,
            "query": SEED_QUERY,
            "operationName": "getDemarche",
            "variables": {"demarcheNumber": 42},
            "pageSize": page_size,
            "updatedSince": "2020-02-22",
            "nodesPath": "data.demarche.dossiers.nodes",
            "pageInfoPath": "data.demarche.dossiers.pageInfo",
            "idPath": "number",
            "updatedAtPath": "dateDerniereModification"
        },
        "retryPolicy": {"maxRetries": 3, "retryDelay": 1, "backoffMultiplier": 2, "maxDelay": 5}
    })
}
