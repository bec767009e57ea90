//! A `CursorSync` operation's parameters, checked: where the source is, how to ask it for
//! a page, and where the records and the cursor are in its answers.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{DotPath, SyncName};
use crate::domain::fields::http_url;
use crate::domain::FieldError;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 10_000;
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 8 * 1024 * 1024;
/// A page is held in memory while its records are written: this bounds what one attempt
/// may hold.
pub const MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;
const MAX_QUERY_LEN: usize = 100_000;
const MAX_PARAM_NAME_LEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindParam {
    Graphql,
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum MethodParam {
    Get,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ParamsInParam {
    Query,
    Body,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    sync_name: String,
    endpoint: String,
    kind: Option<KindParam>,
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<Map<String, Value>>,
    method: Option<MethodParam>,
    path: Option<String>,
    params_in: Option<ParamsInParam>,
    first_param: Option<String>,
    after_param: Option<String>,
    updated_since_param: Option<String>,
    body: Option<Map<String, Value>>,
    page_size: Option<u32>,
    updated_since: Option<String>,
    nodes_path: String,
    page_info_path: String,
    id_path: String,
    updated_at_path: Option<String>,
    credential: Option<String>,
    max_page_bytes: Option<u64>,
}

/// How a page is asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A POST of `{query, operationName, variables}`; `first`, `after` and
    /// `updatedSince` are added to the variables.
    Graphql {
        query: String,
        operation_name: Option<String>,
        variables: Map<String, Value>,
    },
    /// A JSON API: the paging values go in the query string or in the JSON body, under
    /// the names given.
    Rest {
        method: Method,
        params_in: ParamsIn,
        names: PagingNames,
        body: Map<String, Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsIn {
    Query,
    Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingNames {
    pub first: String,
    pub after: String,
    pub updated_since: String,
}

/// A checked `CursorSync` request.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSpec {
    pub name: SyncName,
    /// For REST, with `path` joined on.
    pub endpoint: url::Url,
    pub source: Source,
    pub page_size: u32,
    /// Sent on every page (as the seed does): once the sync has a cursor, the cursor is
    /// what moves it on.
    pub updated_since: Option<String>,
    pub nodes_path: DotPath,
    pub page_info_path: DotPath,
    pub id_path: DotPath,
    pub updated_at_path: Option<DotPath>,
    pub credential: Option<SyncName>,
    pub max_page_bytes: u64,
}

fn field(path: &str) -> String {
    if path == "." {
        "parameters".to_owned()
    } else {
        format!("parameters.{path}")
    }
}

fn param_name(value: Option<String>, default: &str, name: &str) -> Result<String, FieldError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    let ok = !value.is_empty()
        && value.len() <= MAX_PARAM_NAME_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
    if !ok {
        return Err(FieldError::new(
            field(name),
            format!("must be 1 to {MAX_PARAM_NAME_LEN} letters, digits or `_-.[]`"),
        ));
    }
    Ok(value)
}

/// An ISO date (`2020-02-22`) or an RFC 3339 time, passed to the source as given.
fn checked_updated_since(value: &str) -> Result<String, FieldError> {
    let ok = chrono::DateTime::parse_from_rfc3339(value).is_ok()
        || chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok();
    if !ok {
        return Err(FieldError::new(
            "parameters.updatedSince",
            "must be a date (2020-02-22) or an RFC 3339 time",
        ));
    }
    Ok(value.to_owned())
}

fn reject_for(kind: &str, present: &[(&str, bool)]) -> Result<(), FieldError> {
    match present.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(FieldError::new(
            field(name),
            format!("does not apply to a `{kind}` source"),
        )),
        None => Ok(()),
    }
}

impl SyncSpec {
    pub fn parse(parameters: &Value) -> Result<SyncSpec, FieldError> {
        let p: Params = serde_path_to_error::deserialize(parameters).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // A missing field is reported at its parent: name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            match missing {
                Some(name) if path == "." => FieldError::new(field(name), message),
                _ => FieldError::new(field(&path), message),
            }
        })?;
        let name = SyncName::parse(&p.sync_name, "parameters.syncName")?;
        let mut endpoint = http_url(&p.endpoint, "parameters.endpoint")?;
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err(FieldError::new(
                "parameters.endpoint",
                "must not carry credentials: store them with PUT …/credentials/{name} and name it in `credential`",
            ));
        }
        let kind = p.kind.unwrap_or(KindParam::Graphql);
        let source = match kind {
            KindParam::Graphql => {
                reject_for(
                    "graphql",
                    &[
                        ("method", p.method.is_some()),
                        ("path", p.path.is_some()),
                        ("paramsIn", p.params_in.is_some()),
                        ("firstParam", p.first_param.is_some()),
                        ("afterParam", p.after_param.is_some()),
                        ("updatedSinceParam", p.updated_since_param.is_some()),
                        ("body", p.body.is_some()),
                    ],
                )?;
                let query = p.query.ok_or_else(|| {
                    FieldError::new("parameters.query", "is required for a `graphql` source")
                })?;
                if query.trim().is_empty() || query.len() > MAX_QUERY_LEN {
                    return Err(FieldError::new(
                        "parameters.query",
                        format!("must be a GraphQL document of 1 to {MAX_QUERY_LEN} bytes"),
                    ));
                }
                let variables = p.variables.unwrap_or_default();
                for reserved in ["first", "after", "updatedSince"] {
                    if variables.contains_key(reserved) {
                        return Err(FieldError::new(
                            format!("parameters.variables.{reserved}"),
                            "is set by the sync itself (from pageSize, the cursor and updatedSince)",
                        ));
                    }
                }
                Source::Graphql {
                    query,
                    operation_name: p.operation_name,
                    variables,
                }
            }
            KindParam::Rest => {
                reject_for(
                    "rest",
                    &[
                        ("query", p.query.is_some()),
                        ("operationName", p.operation_name.is_some()),
                        ("variables", p.variables.is_some()),
                    ],
                )?;
                let method = match p.method.unwrap_or(MethodParam::Get) {
                    MethodParam::Get => Method::Get,
                    MethodParam::Post => Method::Post,
                };
                let params_in = match p.params_in {
                    Some(ParamsInParam::Query) => ParamsIn::Query,
                    Some(ParamsInParam::Body) => ParamsIn::Body,
                    None if method == Method::Post => ParamsIn::Body,
                    None => ParamsIn::Query,
                };
                if method == Method::Get && (params_in == ParamsIn::Body || p.body.is_some()) {
                    let name = if p.body.is_some() { "body" } else { "paramsIn" };
                    return Err(FieldError::new(
                        field(name),
                        "a GET request has no body: use `\"method\": \"POST\"`",
                    ));
                }
                if let Some(path) = &p.path {
                    endpoint = joined(&endpoint, path)?;
                }
                Source::Rest {
                    method,
                    params_in,
                    names: PagingNames {
                        first: param_name(p.first_param, "first", "firstParam")?,
                        after: param_name(p.after_param, "after", "afterParam")?,
                        updated_since: param_name(
                            p.updated_since_param,
                            "updatedSince",
                            "updatedSinceParam",
                        )?,
                    },
                    body: p.body.unwrap_or_default(),
                }
            }
        };
        let page_size = p.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(FieldError::new(
                "parameters.pageSize",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        let max_page_bytes = p.max_page_bytes.unwrap_or(DEFAULT_MAX_PAGE_BYTES);
        if !(1024..=MAX_PAGE_BYTES).contains(&max_page_bytes) {
            return Err(FieldError::new(
                "parameters.maxPageBytes",
                format!("must be between 1024 and {MAX_PAGE_BYTES}"),
            ));
        }
        Ok(SyncSpec {
            name,
            endpoint,
            source,
            page_size,
            updated_since: p
                .updated_since
                .as_deref()
                .map(checked_updated_since)
                .transpose()?,
            nodes_path: DotPath::parse(&p.nodes_path, "parameters.nodesPath")?,
            page_info_path: DotPath::parse(&p.page_info_path, "parameters.pageInfoPath")?,
            id_path: DotPath::parse(&p.id_path, "parameters.idPath")?,
            updated_at_path: p
                .updated_at_path
                .as_deref()
                .map(|v| DotPath::parse(v, "parameters.updatedAtPath"))
                .transpose()?,
            credential: p
                .credential
                .as_deref()
                .map(|v| SyncName::parse(v, "parameters.credential"))
                .transpose()?,
            max_page_bytes,
        })
    }

    /// The request for the page after `cursor` (the first page without one).
    pub fn page_request(&self, cursor: Option<&str>) -> PageRequest {
        let first = Value::from(self.page_size);
        match &self.source {
            Source::Graphql {
                query,
                operation_name,
                variables,
            } => {
                let mut variables = variables.clone();
                variables.insert("first".into(), first);
                if let Some(cursor) = cursor {
                    variables.insert("after".into(), cursor.into());
                }
                if let Some(since) = &self.updated_since {
                    variables.insert("updatedSince".into(), since.as_str().into());
                }
                let mut body = Map::new();
                body.insert("query".into(), query.as_str().into());
                if let Some(name) = operation_name {
                    body.insert("operationName".into(), name.as_str().into());
                }
                body.insert("variables".into(), Value::Object(variables));
                PageRequest {
                    method: Method::Post,
                    url: self.endpoint.clone(),
                    body: Some(Value::Object(body)),
                }
            }
            Source::Rest {
                method,
                params_in,
                names,
                body,
            } => {
                let mut paging: BTreeMap<&str, Value> = BTreeMap::new();
                paging.insert(&names.first, first);
                if let Some(cursor) = cursor {
                    paging.insert(&names.after, cursor.into());
                }
                if let Some(since) = &self.updated_since {
                    paging.insert(&names.updated_since, since.as_str().into());
                }
                let mut url = self.endpoint.clone();
                let mut body = body.clone();
                match params_in {
                    ParamsIn::Query => {
                        let mut pairs = url.query_pairs_mut();
                        for (name, value) in &paging {
                            match value {
                                Value::String(s) => pairs.append_pair(name, s),
                                other => pairs.append_pair(name, &other.to_string()),
                            };
                        }
                    }
                    ParamsIn::Body => {
                        for (name, value) in paging {
                            body.insert(name.to_owned(), value);
                        }
                    }
                }
                PageRequest {
                    method: *method,
                    url,
                    body: (*method == Method::Post).then_some(Value::Object(body)),
                }
            }
        }
    }
}

/// `path` appended to the endpoint's path (a query in it joins the endpoint's), never
/// replacing its host.
fn joined(endpoint: &url::Url, path: &str) -> Result<url::Url, FieldError> {
    if path.is_empty()
        || path.len() > 2000
        || path.contains("://")
        || path.starts_with("//")
        || path.chars().any(|c| c.is_control() || c == '#')
    {
        return Err(FieldError::new(
            "parameters.path",
            "must be a path (and query) under the endpoint, without control characters",
        ));
    }
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut url = endpoint.clone();
    let base = endpoint.path().trim_end_matches('/');
    url.set_path(&format!("{base}/{}", path.trim_start_matches('/')));
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        url.query_pairs_mut().extend_pairs(pairs);
    }
    if url.host() != endpoint.host() || url.port() != endpoint.port() {
        return Err(FieldError::new(
            "parameters.path",
            "must stay on the endpoint's host",
        ));
    }
    Ok(url)
}

/// One page's request, as the executor sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub method: Method,
    pub url: url::Url,
    pub body: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Value {
        json!({
            "syncName": "dossiers-123",
            "endpoint": "https://www.demarches-simplifiees.fr/api/v2/graphql",
            "query": "query getDemarche($demarcheNumber: Int!, $first: Int, $after: String, $updatedSince: ISO8601DateTime) { demarche(number: $demarcheNumber) { dossiers(first: $first, after: $after, updatedSince: $updatedSince) { pageInfo { endCursor hasNextPage } nodes { number dateDerniereModification } } } }",
            "operationName": "getDemarche",
            "variables": {"demarcheNumber": 123},
            "updatedSince": "2020-02-22",
            "nodesPath": "data.demarche.dossiers.nodes",
            "pageInfoPath": "data.demarche.dossiers.pageInfo",
            "idPath": "number",
            "updatedAtPath": "dateDerniereModification",
            "credential": "ds-token"
        })
    }

    fn field_of(mut change: impl FnMut(&mut Value)) -> Option<String> {
        let mut v = seed();
        change(&mut v);
        SyncSpec::parse(&v).err().map(|e| e.field)
    }

    #[test]
    fn the_seed_request_becomes_its_graphql_page_requests() {
        let spec = SyncSpec::parse(&seed()).unwrap();
        assert_eq!(spec.page_size, 100);
        let first = spec.page_request(None);
        assert_eq!(first.method, Method::Post);
        let body = first.body.unwrap();
        assert_eq!(body["operationName"], "getDemarche");
        assert_eq!(
            body["variables"],
            json!({"demarcheNumber": 123, "first": 100, "updatedSince": "2020-02-22"})
        );
        let next = spec.page_request(Some("MjAyMC0wMi0yMg")).body.unwrap();
        assert_eq!(next["variables"]["after"], "MjAyMC0wMi0yMg");
    }

    #[test]
    fn a_rest_source_gets_its_paging_values_where_it_asked() {
        let spec = SyncSpec::parse(&json!({
            "syncName": "items", "kind": "rest", "endpoint": "http://api.example/v1?team=7",
            "path": "/items", "firstParam": "limit", "afterParam": "cursor",
            "updatedSince": "2024-01-01T00:00:00Z", "updatedSinceParam": "since",
            "nodesPath": "items", "pageInfoPath": "page", "idPath": "id"
        }))
        .unwrap();
        let req = spec.page_request(Some("c 1"));
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.body, None);
        assert_eq!(
            req.url.as_str(),
            "http://api.example/v1/items?team=7&cursor=c+1&limit=100&since=2024-01-01T00%3A00%3A00Z"
        );
        let post = SyncSpec::parse(&json!({
            "syncName": "items", "kind": "rest", "endpoint": "http://api.example/search",
            "method": "POST", "body": {"filter": "open"}, "pageSize": 5,
            "nodesPath": "items", "pageInfoPath": "page", "idPath": "id"
        }))
        .unwrap();
        let req = post.page_request(None);
        assert_eq!(req.body, Some(json!({"filter": "open", "first": 5})));
    }

    #[test]
    fn bad_parameters_name_their_field() {
        assert_eq!(field_of(|_| {}), None);
        assert_eq!(
            field_of(|v| v["syncName"] = json!("a/b")),
            Some("parameters.syncName".into())
        );
        assert_eq!(
            field_of(|v| v["syncName"] = json!("a\u{0}")),
            Some("parameters.syncName".into())
        );
        assert_eq!(
            field_of(|v| v["endpoint"] = json!("ftp://x")),
            Some("parameters.endpoint".into())
        );
        assert_eq!(
            field_of(|v| v["endpoint"] = json!("https://u:p@x.example/")),
            Some("parameters.endpoint".into())
        );
        assert_eq!(
            field_of(|v| v["kind"] = json!("soap")),
            Some("parameters.kind".into())
        );
        assert_eq!(
            field_of(|v| {
                v.as_object_mut().unwrap().remove("query");
            }),
            Some("parameters.query".into())
        );
        assert_eq!(
            field_of(|v| v["pageSize"] = json!(0)),
            Some("parameters.pageSize".into())
        );
        assert_eq!(
            field_of(|v| v["pageSize"] = json!(-1)),
            Some("parameters.pageSize".into())
        );
        assert_eq!(
            field_of(|v| v["pageSize"] = json!(1e30)),
            Some("parameters.pageSize".into())
        );
        assert_eq!(
            field_of(|v| v["updatedSince"] = json!("yesterday")),
            Some("parameters.updatedSince".into())
        );
        assert_eq!(
            field_of(|v| v["nodesPath"] = json!("data..nodes")),
            Some("parameters.nodesPath".into())
        );
        assert_eq!(
            field_of(|v| v["variables"]["after"] = json!("x")),
            Some("parameters.variables.after".into())
        );
        assert_eq!(
            field_of(|v| v["method"] = json!("GET")),
            Some("parameters.method".into())
        );
        assert_eq!(
            field_of(|v| {
                v.as_object_mut().unwrap().remove("nodesPath");
            }),
            Some("parameters.nodesPath".into())
        );
        assert_eq!(
            field_of(|v| v["surprise"] = json!(1)),
            Some("parameters.surprise".into())
        );
        assert_eq!(
            field_of(|v| v["maxPageBytes"] = json!(1u64 << 40)),
            Some("parameters.maxPageBytes".into())
        );
        assert_eq!(
            field_of(|v| v["credential"] = json!("")),
            Some("parameters.credential".into())
        );
    }

    #[test]
    fn a_rest_path_cannot_leave_the_endpoint() {
        let rest = |path: &str| {
            SyncSpec::parse(&json!({
                "syncName": "s", "kind": "rest", "endpoint": "http://api.example/v1",
                "path": path, "nodesPath": "items", "pageInfoPath": "page", "idPath": "id"
            }))
            .map(|s| s.endpoint.to_string())
            .map_err(|e| e.field)
        };
        assert_eq!(rest("items").unwrap(), "http://api.example/v1/items");
        for bad in ["//evil.example/x", "http://evil.example/", "a\nb", ""] {
            assert_eq!(rest(bad), Err("parameters.path".to_owned()), "{bad:?}");
        }
        assert_eq!(
            rest("/@evil.example").unwrap(),
            "http://api.example/v1/@evil.example"
        );
    }
}
