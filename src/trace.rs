//! The request a piece of work is done for, carried along with it: the API sets it for
//! each request; the store stamps it on the events the request causes, so the lines the
//! dispatcher logs for their deliveries name it too. One search for a request id then
//! finds the request, its writes and its deliveries.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `work` as part of the request `id`.
pub async fn for_request<F: Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// The id of the request being served, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
