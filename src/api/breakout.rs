//! `/api/breakout/*`: the CSWeb breakout facade of seed 000, in the seed's own shapes
//! (snake_case fields, its error codes). The paths carry no tenant: the bearer token's
//! tenant and project (a token bound to one project) scope them. A breakout job is an
//! ordinary `CsproBreakout` operation; its `job_id` is the operation id.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{Map, Value};

use super::auth::{ProjectPath, ProjectRef};
use super::error::ApiError;
use super::format::time;
use super::wire::answers::breakout::{
    DictionaryDeleted, DictionaryList, DictionaryView, TableView, TablesDeleted, TablesView,
};
use super::wire::{answers, params};
use super::AppState;
use crate::cspro::dictionary::Dictionary;
use crate::cspro::layout::{Layout, TableKind};
use crate::domain::auth::{Principal, Scope};
use crate::store::breakout::{BreakoutData, BreakoutDictionary};
use crate::store::StoreError;

pub mod jobs;
pub mod register;

pub use jobs::{jobs, start, status};
pub use register::register;

fn facade(
    status: StatusCode,
    title: &'static str,
    code: &'static str,
    message: impl Into<String>,
    extra: impl IntoIterator<Item = (&'static str, Value)>,
) -> ApiError {
    ApiError::Facade {
        status,
        title,
        code,
        message: message.into(),
        extra: extra
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Map<_, _>>(),
    }
}

/// Store failures as the seed names them: an unreachable database is
/// `DB_CONNECTION_ERROR`.
fn store_error(e: StoreError) -> ApiError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "breakout: database unavailable");
        return facade(
            StatusCode::SERVICE_UNAVAILABLE,
            "Database connection failed",
            "DB_CONNECTION_ERROR",
            "Cannot connect to the analytics database; retry shortly",
            [],
        );
    }
    e.into()
}

fn dictionary_not_found(name: &str) -> ApiError {
    facade(
        StatusCode::NOT_FOUND,
        "Dictionary not found",
        "DICTIONARY_NOT_FOUND",
        format!("No dictionary named '{name}' is registered; check the dictionary name"),
        [("dictionary", name.into())],
    )
}

/// The project the token is bound to, once it may act there with `scope`.
async fn target(
    state: &AppState,
    principal: &Principal,
    scope: Scope,
) -> Result<ProjectRef, ApiError> {
    let Some(project) = principal.project_id else {
        return Err(facade(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "INSUFFICIENT_PERMISSIONS",
            "the breakout API needs a token bound to one project",
            [],
        ));
    };
    let path = ProjectPath {
        tenant_id: principal.tenant_id.to_string(),
        project_id: project.to_string(),
    };
    state.authorize(principal, &path, Some(scope)).await
}

fn parse_dictionary(text: &str, field: &str) -> Result<(Dictionary, Layout), ApiError> {
    let dictionary = Dictionary::parse(text).map_err(|e| {
        facade(
            StatusCode::BAD_REQUEST,
            "Invalid dictionary",
            "INVALID_DICTIONARY",
            format!("the dictionary cannot be read: {e}"),
            [("field", field.into())],
        )
    })?;
    let layout = Layout::new(&dictionary).map_err(|e| {
        facade(
            StatusCode::BAD_REQUEST,
            "Invalid dictionary",
            "INVALID_DICTIONARY",
            format!("the dictionary cannot be broken out: {e}"),
            [("field", field.into())],
        )
    })?;
    Ok((dictionary, layout))
}

fn dictionary_view(d: &BreakoutDictionary) -> DictionaryView {
    let tables: Vec<String> = Dictionary::parse(&d.dictionary)
        .ok()
        .and_then(|dict| Layout::new(&dict).ok())
        .map(|l| l.table_names().map(str::to_owned).collect())
        .unwrap_or_default();
    let data_path = match &d.data {
        BreakoutData::ServerFile(path) => Some(path),
        BreakoutData::Upload(_) => None,
    };
    DictionaryView {
        name: d.name.clone(),
        label: d.label.clone(),
        data_kind: d.data_kind.as_str(),
        uploaded: data_path.is_none(),
        data_path: data_path.cloned(),
        tables,
        created_at: time(d.created_at),
    }
}

#[utoipa::path(
    get,
    operation_id = "breakout_list_dictionaries",
    path = "/api/breakout/dictionaries",
    tag = "breakout",
    summary = "List dictionaries",
    responses((status = 200, description = "The project's dictionaries", body = answers::breakout::DictionaryList))
)]
pub async fn list_dictionaries(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsRead).await?;
    let all = state
        .store
        .breakout()
        .dictionaries(target.project)
        .await
        .map_err(store_error)?;
    let data: Vec<DictionaryView> = all.iter().map(dictionary_view).collect();
    Ok(HttpResponse::Ok().json(DictionaryList {
        total: data.len(),
        data,
    }))
}

#[utoipa::path(
    get,
    operation_id = "breakout_get_dictionary",
    path = "/api/breakout/dictionaries/{name}",
    tag = "breakout",
    summary = "A dictionary",
    params(params::DictionaryNameParam),
    responses((status = 200, description = "The dictionary", body = answers::breakout::DictionaryView))
)]
pub async fn get_dictionary(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsRead).await?;
    let found = state
        .store
        .breakout()
        .dictionary(target.project, &name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| dictionary_not_found(&name))?;
    Ok(HttpResponse::Ok().json(dictionary_view(&found)))
}

#[utoipa::path(
    delete,
    operation_id = "breakout_delete_dictionary",
    path = "/api/breakout/dictionaries/{name}",
    tag = "breakout",
    summary = "Remove a dictionary",
    params(params::DictionaryNameParam),
    responses((status = 200, description = "Removed", body = answers::breakout::DictionaryDeleted))
)]
pub async fn delete_dictionary(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsWrite).await?;
    if !state
        .store
        .breakout()
        .delete_dictionary(target.project, &name)
        .await
        .map_err(store_error)?
    {
        return Err(dictionary_not_found(&name));
    }
    Ok(HttpResponse::Ok().json(DictionaryDeleted {
        message: "Dictionary deleted successfully",
        dictionary: name.into_inner(),
    }))
}

/// `HH:MM:SS`, as the seed shows durations.
pub fn clock_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `12.5 MB`: binary multiples, one decimal.
pub fn human_size(bytes: i64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// The seed's 404 for a dictionary without breakout tables, registered or not (one
/// never registered needs registering first, which the suggestion adds).
fn no_tables(dictionary: &str, registered: bool) -> ApiError {
    let suggestion = if registered {
        "Run breakout first using POST /api/breakout/start".to_owned()
    } else {
        "Run breakout first using POST /api/breakout/start, once the dictionary is registered with POST /api/breakout/dictionaries".to_owned()
    };
    facade(
        StatusCode::NOT_FOUND,
        "No tables found",
        "TABLES_NOT_FOUND",
        format!("No breakout tables found for dictionary '{dictionary}'"),
        [
            ("suggestion", suggestion.into()),
            ("dictionary", dictionary.into()),
        ],
    )
}

/// The project's own breakout tables of the dictionary (never a table another project
/// recorded), with the dictionary's layout while it is registered.
async fn output_tables(
    state: &AppState,
    target: ProjectRef,
    dictionary: &str,
) -> Result<(Option<Layout>, Vec<String>, chrono::DateTime<chrono::Utc>), ApiError> {
    let registered = state
        .store
        .breakout()
        .dictionary(target.project, dictionary)
        .await
        .map_err(store_error)?;
    let output = state
        .store
        .breakout()
        .own_output(target.project, dictionary)
        .await
        .map_err(store_error)?
        .filter(|o| !o.tables.is_empty())
        .ok_or_else(|| no_tables(dictionary, registered.is_some()))?;
    let layout = match registered {
        Some(r) => Some(parse_dictionary(&r.dictionary, "dictionary")?.1),
        None => None,
    };
    Ok((layout, output.tables, output.created_at))
}

#[utoipa::path(
    get,
    operation_id = "breakout_tables",
    path = "/api/breakout/tables/{dictionary}",
    tag = "breakout",
    summary = "A dictionary's tables",
    params(params::TablesDictionaryParam),
    responses((status = 200, description = "The tables a breakout of the dictionary created", body = answers::breakout::TablesView))
)]
pub async fn tables(
    state: web::Data<AppState>,
    principal: Principal,
    dictionary: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsRead).await?;
    let (layout, names, created_at) = output_tables(&state, target, &dictionary).await?;
    // What each table is, from the dictionary's layout; the cases table comes first in a
    // breakout's output, also when the dictionary that says so is no longer registered.
    let role = |name: &str| -> &'static str {
        match &layout {
            Some(layout) => layout
                .tables
                .iter()
                .find(|t| t.name == name)
                .map_or("record", |t| t.kind.role()),
            None if names.first().map(String::as_str) == Some(name) => TableKind::Cases.role(),
            None => "record",
        }
    };
    let stats = state
        .store
        .breakout()
        .table_stats(target.project, &names)
        .await
        .map_err(store_error)?;
    let total: i64 = stats.iter().map(|s| s.size_bytes).sum();
    let tables: Vec<TableView> = stats
        .iter()
        .map(|s| {
            let kind = role(&s.name);
            TableView {
                name: s.name.clone(),
                kind,
                row_count: s.row_count,
                size: human_size(s.size_bytes),
                size_bytes: s.size_bytes,
            }
        })
        .collect();
    let database = state
        .store
        .breakout()
        .database_name()
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(TablesView {
        dictionary: dictionary.into_inner(),
        label: layout.as_ref().map(|l| l.prefix.clone()),
        database,
        schema: state.store.breakout().schema(target.project),
        tables,
        total_size: human_size(total),
        total_size_bytes: total,
        created_at: time(created_at),
    }))
}

#[utoipa::path(
    delete,
    operation_id = "breakout_delete_tables",
    path = "/api/breakout/tables/{dictionary}",
    tag = "breakout",
    summary = "Drop a dictionary's tables",
    params(params::TablesDictionaryParam),
    responses((status = 200, description = "Dropped", body = answers::breakout::TablesDeleted))
)]
pub async fn delete_tables(
    state: web::Data<AppState>,
    principal: Principal,
    dictionary: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsWrite).await?;
    let (_, names, _) = output_tables(&state, target, &dictionary).await?;
    let stats = state
        .store
        .breakout()
        .table_stats(target.project, &names)
        .await
        .map_err(store_error)?;
    let freed: i64 = stats.iter().map(|s| s.size_bytes).sum();
    state
        .store
        .breakout()
        .drop_tables(target.project, &dictionary, &names)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(TablesDeleted {
        message: "Tables deleted successfully",
        dictionary: dictionary.into_inner(),
        deleted_tables: names,
        freed_space: human_size(freed),
        freed_bytes: freed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_like_the_seed() {
        assert_eq!(
            clock_duration(Duration::from_secs(45 * 60 + 12)),
            "00:45:12"
        );
        assert_eq!(
            clock_duration(Duration::from_secs(100 * 3600 + 1)),
            "100:00:01"
        );
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(13_107_200), "12.5 MB");
    }
}
