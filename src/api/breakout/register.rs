//! `POST /api/breakout/dictionaries`: a dictionary registered with its data, either
//! uploaded as `multipart/form-data` or named as files on the server.
//!
//! Memory stays bounded whatever the files: a JSON body is read within the body limit;
//! each uploaded part goes to a temporary file as it arrives, and is refused with a 413
//! naming it once over its limit; uploaded data then goes into the database a chunk at a
//! time. Server files are read only if they are regular files (never a device, a FIFO, a
//! socket or a directory), and a dictionary only up to its limit.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{dictionary_view, facade, parse_dictionary, store_error, target};
use crate::api::auth::ProjectRef;
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::api::wire::breakout::RegisterBody;
use crate::api::wire::{self, answers};
use crate::api::AppState;
use crate::clock;
use crate::cspro::csdb::CsdbFile;
use crate::cspro::data::decode_text;
use crate::cspro::dictionary::Dictionary;
use crate::domain::auth::{Principal, Scope};
use crate::domain::FieldError;
use crate::executors::breakout::input::{self, FileError, RegularFile};
use crate::store::breakout::{BreakoutData, BreakoutDictionary, DataKind, UploadError};

/// `multipart/form-data` with the parts `dictionary` (the `.dcf`) and `data` (`.dat` or
/// `.csdb`), or JSON `{"dictionaryPath", "dataPath"}` naming files on the server (admin
/// scope: they are read with the server's rights). For a `.csdb` the dictionary may be
/// left out: the file carries its own.
#[utoipa::path(
    post,
    operation_id = "breakout_register_register",
    path = "/api/breakout/dictionaries",
    tag = "breakout",
    summary = "Register a dictionary and its data",
    request_body(content((wire::breakout::RegisterBody = "application/json"), ("multipart/form-data")), description = "Files on the server as JSON, or the `dictionary` and `data` parts uploaded"),
    responses((status = 201, description = "Registered", body = answers::breakout::DictionaryView))
)]
pub async fn register(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let multipart = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        upload(state, principal, req, payload).await
    } else {
        by_path(state, principal, payload).await
    }
}

fn named(field: &'static str) -> impl Fn(FileError) -> ApiError {
    move |e| FieldError::new(field, e.to_string()).into()
}

async fn by_path(
    state: web::Data<AppState>,
    principal: Principal,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::Admin).await?;
    let limit = state.config.body_limit;
    // The outer `Err` is the limit; the inner one a body that broke off.
    let bytes = match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => bytes,
        Err(_) => return Err(ApiError::PayloadTooLarge { limit }),
        Ok(Err(e)) => {
            return Err(ApiError::MalformedJson(format!(
                "the body could not be read: {e}"
            )))
        }
    };
    let request: RegisterBody = Body(bytes).json()?;
    let data = server_file(&state, &request.data_path, "dataPath").await?;
    let dictionary_file = match &request.dictionary_path {
        Some(path) => Some(server_file(&state, path, "dictionaryPath").await?),
        None => None,
    };
    let data_kind = data.data_kind().await.map_err(named("dataPath"))?;
    let max_dictionary = state.config.breakout_dictionary_limit;
    // Opening a .csdb now turns a corrupt file into a 400 rather than a failed job later.
    let embedded = match data_kind {
        DataKind::Csdb => Some(csdb_dictionary(&data, max_dictionary, "dataPath").await?),
        DataKind::Dat => None,
    };
    let (dictionary_text, field) = match (dictionary_file, embedded) {
        (Some(file), _) => {
            let bytes = file
                .read_all(max_dictionary)
                .await
                .map_err(named("dictionaryPath"))?;
            (decode_text(&bytes).into_owned(), "dictionaryPath")
        }
        (None, Some(text)) => (text, "dataPath"),
        (None, None) => {
            return Err(FieldError::new(
                "dictionaryPath",
                "required for a text data file (only a .csdb carries its dictionary)",
            )
            .into())
        }
    };
    let (dictionary, _) = parse_dictionary(&dictionary_text, field)?;
    let path = data.path.to_string_lossy().into_owned();
    let record = record(
        target,
        dictionary,
        dictionary_text,
        data_kind,
        BreakoutData::ServerFile(path),
    );
    state
        .store
        .breakout()
        .put_dictionary(&record)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(dictionary_view(&record)))
}

fn record(
    target: ProjectRef,
    dictionary: Dictionary,
    text: String,
    data_kind: DataKind,
    data: BreakoutData,
) -> BreakoutDictionary {
    BreakoutDictionary {
        tenant: target.tenant,
        project: target.project,
        name: dictionary.name,
        label: dictionary.label,
        dictionary: text,
        data_kind,
        data,
        created_at: clock::now(),
    }
}

/// A server file named by `field`, opened if it is a regular file (within the breakout
/// data directory, when one is configured).
async fn server_file(
    state: &AppState,
    path: &str,
    field: &'static str,
) -> Result<RegularFile, ApiError> {
    let resolved = input::resolve(path).await.map_err(named(field))?;
    if let Some(dir) = &state.config.breakout_data_dir {
        if !resolved.starts_with(dir) {
            return Err(FieldError::new(
                field,
                format!(
                    "must lie within the breakout data directory {}",
                    dir.display()
                ),
            )
            .into());
        }
    }
    input::open_regular(resolved).await.map_err(named(field))
}

/// The dictionary inside a `.csdb`, which is opened (and so checked) on the way.
async fn csdb_dictionary(
    file: &RegularFile,
    max_dictionary: u64,
    field: &'static str,
) -> Result<String, ApiError> {
    let max_dictionary = usize::try_from(max_dictionary).unwrap_or(usize::MAX);
    let csdb = CsdbFile::open(&file.path, max_dictionary)
        .await
        .map_err(|e| FieldError::new(field, e.to_string()))?;
    let text = csdb.dictionary_text().to_owned();
    let _ = csdb.close().await;
    // SQLite opened the path itself: it must still be the file that was checked.
    file.still_in_place().await.map_err(named(field))?;
    Ok(text)
}

/// A part received into a temporary file, removed when dropped.
struct Received {
    file: RegularFile,
    _path: tempfile::TempPath,
}

/// The multipart form of registration: both files are sent, and kept in the database.
async fn upload(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let target = target(&state, &principal, Scope::OperationsWrite).await?;
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let (mut dictionary, mut data): (Option<Received>, Option<Received>) = (None, None);
    while let Some(part) = form.next().await {
        let mut part = part.map_err(malformed)?;
        let name = part.name().unwrap_or_default().to_owned();
        let (slot, limit, setting) = match name.as_str() {
            "dictionary" => (
                &mut dictionary,
                state.config.breakout_dictionary_limit,
                "RELAIS_BREAKOUT_DICTIONARY_LIMIT",
            ),
            "data" => (
                &mut data,
                state.config.breakout_upload_limit,
                "RELAIS_BREAKOUT_UPLOAD_LIMIT",
            ),
            "" => {
                return Err(FieldError::new(
                    "body",
                    "every part needs a name: `dictionary` or `data`",
                )
                .into())
            }
            other => {
                return Err(FieldError::new(
                    other,
                    "unknown part: send `dictionary` (the .dcf) and `data` (.dat or .csdb)",
                )
                .into())
            }
        };
        if slot.is_some() {
            return Err(FieldError::new(name, "sent twice: send each part once").into());
        }
        *slot = Some(receive(&mut part, &name, limit, setting).await?);
    }
    let data =
        data.ok_or_else(|| FieldError::new("data", "required: the data file (.dat or .csdb)"))?;
    let data_kind = data.file.data_kind().await.map_err(named("data"))?;
    let max_dictionary = state.config.breakout_dictionary_limit;
    let embedded = match data_kind {
        DataKind::Csdb => Some(csdb_dictionary(&data.file, max_dictionary, "data").await?),
        DataKind::Dat => None,
    };
    let (dictionary_text, field) = match (dictionary, embedded) {
        (Some(part), _) => {
            let bytes = part
                .file
                .read_all(max_dictionary)
                .await
                .map_err(named("dictionary"))?;
            (decode_text(&bytes).into_owned(), "dictionary")
        }
        (None, Some(text)) => (text, "data"),
        (None, None) => {
            return Err(FieldError::new(
                "dictionary",
                "required for a text data file (only a .csdb carries its dictionary)",
            )
            .into())
        }
    };
    let (dictionary, _) = parse_dictionary(&dictionary_text, field)?;

    let mut reader = tokio::fs::File::from_std(data.file.file);
    let (upload, _) = state
        .store
        .breakout()
        .write_upload(target.project, &mut reader)
        .await
        .map_err(|e| match e {
            UploadError::Store(e) => store_error(e),
            UploadError::File(e) => {
                tracing::error!(error = %e, "breakout: the received upload could not be read back");
                ApiError::Internal
            }
        })?;
    let record = record(
        target,
        dictionary,
        dictionary_text,
        data_kind,
        BreakoutData::Upload(upload),
    );
    if let Err(e) = state.store.breakout().put_dictionary(&record).await {
        let _ = state.store.breakout().discard_upload(upload).await;
        return Err(store_error(e));
    }
    Ok(HttpResponse::Created().json(dictionary_view(&record)))
}

fn malformed(e: actix_multipart::MultipartError) -> ApiError {
    FieldError::new("body", format!("not a readable multipart form: {e}")).into()
}

/// Writes a part into a temporary file as it arrives, up to `limit` bytes.
async fn receive(
    part: &mut actix_multipart::Field,
    name: &str,
    limit: u64,
    setting: &str,
) -> Result<Received, ApiError> {
    let temporary = |e: std::io::Error| {
        tracing::error!(error = %e, "breakout: cannot write an upload into a temporary file");
        ApiError::Internal
    };
    let (mut out, path) = input::temporary_file().map_err(temporary)?;
    let mut size = 0u64;
    while let Some(chunk) = part.next().await {
        let chunk = chunk.map_err(malformed)?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(facade(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload too large",
                "PAYLOAD_TOO_LARGE",
                format!("the `{name}` part is larger than the limit of {limit} bytes ({setting})"),
                [("field", name.into()), ("limit", limit.into())],
            ));
        }
        out.write_all(&chunk).await.map_err(temporary)?;
    }
    out.flush().await.map_err(temporary)?;
    drop(out);
    let file = input::open_regular(path.to_path_buf())
        .await
        .map_err(|e| temporary(std::io::Error::other(e)))?;
    Ok(Received { file, _path: path })
}
